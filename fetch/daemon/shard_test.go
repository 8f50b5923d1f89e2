package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// shardConfig is 12 accounts on pop.example, run as shard sh.
func shardConfig(sh rcfile.Shard) *rcfile.Config {
	var accts []*rcfile.Account
	for i := range 12 {
		accts = append(accts, acct(fmt.Sprintf("a%02d", i), "pop.example", time.Hour))
	}
	cfg := config(accts...)
	cfg.Shard = sh
	return cfg
}

// ownedNames are the names of the accounts of cfg that shard i/n polls,
// by rcfile.ShardOf of the account's mailbox.
func ownedNames(cfg *rcfile.Config, i, n int) []string {
	var out []string
	for _, a := range cfg.Accounts {
		if rcfile.ShardOf(a.Mailbox(), n) == i {
			out = append(out, a.Name)
		}
	}
	return out
}

// pollAll answers every poll that has started and returns the accounts
// they were for, sorted.
func (h *harness) pollAll() []string {
	h.t.Helper()
	var names []string
	for {
		synctest.Wait()
		select {
		case c := <-h.calls:
			names = append(names, c.name)
			c.ret(fetch.Result{Account: c.name})
		default:
			slices.Sort(names)
			return names
		}
	}
}

func statusNames(s Status) []string {
	var out []string
	for _, a := range s.Accounts {
		out = append(out, a.Name)
	}
	return out
}

// TestDaemonShard: a daemon of shard i/N polls, lists and accepts
// `popfetch now` for only the accounts whose mailbox hashes to i; a
// reload with another shard removes and adds accounts accordingly.
func TestDaemonShard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := shardConfig(rcfile.Shard{Index: 1, Count: 3})
		own1, own2 := ownedNames(cfg, 1, 3), ownedNames(cfg, 2, 3)
		if len(own1) == 0 || len(own2) == 0 || len(own1)+len(own2) >= len(cfg.Accounts) {
			t.Fatalf("shards 1/3 and 2/3 own %v and %v of 12 accounts; the test needs some in each of the three", own1, own2)
		}
		h := newHarness(t, cfg, nil)
		h.start()
		if got := h.pollAll(); !slices.Equal(got, own1) {
			t.Fatalf("shard 1/3 polled %v; want %v", got, own1)
		}
		st := h.d.Status()
		if got := statusNames(st); !slices.Equal(got, own1) {
			t.Errorf("status lists %v; want %v", got, own1)
		}
		if st.Shard == nil || *st.Shard != (ShardStatus{Shard: "1/3", Owned: len(own1), Accounts: 12}) {
			t.Errorf("status shard = %+v; want 1/3, %d of 12", st.Shard, len(own1))
		}

		other := own2[0]
		_, err := h.d.PollNow(context.Background(), []string{own1[0], other})
		if want := other + " is polled by shard 2/3, not by this daemon (shard 1/3)"; !errors.Is(err, ErrOtherShard) || !strings.Contains(err.Error(), want) {
			t.Errorf("PollNow(%s) = %v; want ErrOtherShard saying %q", other, err, want)
		}
		if _, err := h.d.PollNow(context.Background(), []string{other, "nope"}); !errors.Is(err, ErrUnknownAccount) || !strings.Contains(err.Error(), "nope") {
			t.Errorf("PollNow(%s, nope) = %v; want ErrUnknownAccount naming nope", other, err)
		}
		if got := h.pollAll(); len(got) != 0 {
			t.Fatalf("refused PollNow requests polled %v", got)
		}
		done := make(chan []fetch.Result, 1)
		go func() {
			res, _ := h.d.PollNow(context.Background(), nil)
			done <- res
		}()
		if got := h.pollAll(); !slices.Equal(got, own1) {
			t.Fatalf("PollNow(all) polled %v; want %v", got, own1)
		}
		if res := <-done; len(res) != len(own1) {
			t.Fatalf("PollNow(all) = %d results; want %d", len(res), len(own1))
		}

		// A reload with shard 2/3: 1/3's accounts go, 2/3's come and are
		// polled at once (zero jitter).
		if err := h.d.Reload(shardConfig(rcfile.Shard{Index: 2, Count: 3})); err != nil {
			t.Fatal(err)
		}
		if got := h.pollAll(); !slices.Equal(got, own2) {
			t.Fatalf("after the reload to 2/3 polled %v; want %v", got, own2)
		}
		if got := statusNames(h.d.Status()); !slices.Equal(got, own2) {
			t.Errorf("after the reload to 2/3 status lists %v; want %v", got, own2)
		}
		if !strings.Contains(h.logs.String(), "shard changed") {
			t.Errorf("the change of shard is not logged:\n%s", h.logs.String())
		}

		// No shard: every account; 2/3's keep their schedule.
		if err := h.d.Reload(shardConfig(rcfile.Shard{})); err != nil {
			t.Fatal(err)
		}
		var rest []string
		for _, a := range cfg.Accounts {
			if !slices.Contains(own2, a.Name) {
				rest = append(rest, a.Name)
			}
		}
		if got := h.pollAll(); !slices.Equal(got, rest) {
			t.Fatalf("after the reload without shard polled %v; want the accounts not polled yet, %v", got, rest)
		}
		if st := h.d.Status(); len(st.Accounts) != 12 || st.Shard != nil {
			t.Errorf("without shard: status lists %d accounts, shard %+v; want 12, nil", len(st.Accounts), st.Shard)
		}
	})
}

// TestControlNowOtherShard: over the control socket, `now` for an
// account of another shard or for no account of the config fails with an
// error that matches its sentinel, so that popfetch now can say so
// instead of reporting an unreachable daemon.
func TestControlNowOtherShard(t *testing.T) {
	cfg := shardConfig(rcfile.Shard{Index: 0, Count: 3})
	other := ownedNames(cfg, 1, 3)[0]
	d := New(cfg, func(ctx context.Context, a *rcfile.Account, _ fetch.PollOptions) fetch.Result {
		return fetch.Result{Account: a.Name}
	}, Options{Jitter: func(m time.Duration) time.Duration { return m }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	path := ControlPath(t.TempDir())
	serve(t, path, d)

	_, err := ControlNow(context.Background(), path, []string{other})
	if !errors.Is(err, ErrOtherShard) || !strings.Contains(err.Error(), other+" is polled by shard 1/3") {
		t.Errorf("ControlNow(%s) = %v; want ErrOtherShard naming shard 1/3", other, err)
	}
	_, err = ControlNow(context.Background(), path, []string{"nope"})
	if !errors.Is(err, ErrUnknownAccount) || errors.Is(err, ErrOtherShard) || !strings.Contains(err.Error(), "unknown account: nope") {
		t.Errorf("ControlNow(nope) = %v; want ErrUnknownAccount", err)
	}
	st, err := ControlStatus(context.Background(), path)
	if err != nil || st.Shard == nil || st.Shard.Shard != "0/3" || st.Shard.Accounts != 12 || st.Shard.Owned != len(st.Accounts) {
		t.Errorf("ControlStatus = %+v, %v; want shard 0/3 owning the accounts listed, of 12", st.Shard, err)
	}
}
