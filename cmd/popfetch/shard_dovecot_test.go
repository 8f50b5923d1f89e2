package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/daemon"
	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/uidl"
)

// TestShardThreeDaemons runs three `popfetch run` processes with one rc
// file of 300 accounts (300 mailboxes of one dovecot, one message each)
// as shards 0/3, 1/3 and 2/3, each with its own state_dir, and proves that
// every account is polled by exactly one of them: the `now` of each
// daemon polls a disjoint set of accounts whose union is all 300, every
// message arrives exactly once (half the accounts keep their mail on the
// server, so a second poller, with its own empty journal, would deliver
// it again), and each daemon's journals are those of its own accounts.
//
// The three take their shard three ways, each overriding the rc file's
// shard = "0/3" (were the override ignored, all three would poll shard 0
// and two thirds of the mail would stay behind): --shard 0/3,
// POPFETCH_SHARD=1/3, and POPFETCH_SHARD_FROM_HOSTNAME=3 with the host
// name popfetch-2, as in a StatefulSet.
func TestShardThreeDaemons(t *testing.T) {
	const accounts, shards = 300, 3
	srv := dovecottest.Start(t, dovecottest.Options{ReuseProcesses: true})
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	writeFile(t, pwFile, "pw\n")
	mbs := make([]*dovecottest.Mailbox, accounts)
	var accts []rcAccount
	for i := range mbs {
		name := fmt.Sprintf("u%03d", i)
		mbs[i] = srv.AddUser(t, name, "pw")
		mbs[i].Put(t, seqMsg(name, i, 2))
		accts = append(accts, rcAccount{name: name, port: srv.PlainPort, user: name, passFile: pwFile,
			maildir: filepath.Join(dir, "mail", name), keep: i%2 == 0, extra: []string{`interval = "24h"`}})
	}
	// One rc file for all three; state_dir comes from each one's
	// environment, as each replica of a StatefulSet mounts its own volume
	// at one path.
	rc := filepath.Join(dir, "popfetch.hcl")
	text := rcText("STATE", []string{`shard = "0/3"`, "max_parallel = 8", "per_server = 8"}, accts...)
	writeFile(t, rc, strings.Replace(text, `state_dir = "STATE"`, `state_dir = env("SHARD_TEST_STATE")`, 1))

	states := make([]string, shards)

	for i := range shards {
		states[i] = filepath.Join(dir, fmt.Sprintf("state%d", i))
		env := []string{"SHARD_TEST_STATE=" + states[i]}
		args := []string{"-f", rc, "run"}
		switch i {
		case 0:
			args = append(args, "--shard", "0/3")
		case 1:
			env = append(env, "POPFETCH_SHARD=1/3")
		case 2:
			env = append(env, "POPFETCH_SHARD_FROM_HOSTNAME=3", "HOSTNAME=popfetch-2")
		}
		startDaemonArgs(t, rc, env, args...)
	}
	start := time.Now()

	// Every daemon polls all its accounts now (their scheduled first
	// polls are jittered over 30 s; some may run as well, which changes
	// nothing: the journal knows what was delivered).
	nowAll := func() [][]fetch.PollSummary {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res := make([][]fetch.PollSummary, shards)
		errs := make([]error, shards)
		var wg sync.WaitGroup
		for i := range shards {
			wg.Go(func() { res[i], errs[i] = daemon.ControlNow(ctx, daemon.ControlPath(states[i]), nil) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("now on shard %d/3: %v", i, err)
			}
		}
		return res
	}
	res := nowAll()
	cycle := time.Since(start)

	owner := map[string]int{} // account → the shard that polled it
	for i, rs := range res {
		if len(rs) == 0 {
			t.Errorf("shard %d/3 polled no account", i)
		}
		for _, r := range rs {
			if prev, ok := owner[r.Account]; ok {
				t.Errorf("account %s polled by shards %d/3 and %d/3", r.Account, prev, i)
			}
			owner[r.Account] = i
			if r.Err != "" || r.Delivered+r.New == 0 && !hasJournal(states[i], r.Account) {
				t.Errorf("shard %d/3, %s: %+v", i, r.Account, r)
			}
		}
	}
	if len(owner) != accounts {
		t.Fatalf("the three shards polled %d distinct accounts; want all %d", len(owner), accounts)
	}

	// Each message exactly once; the server keeps the keep accounts'.
	for i, mb := range mbs {
		if n := maildirCount(t, accts[i].maildir); n != 1 {
			t.Errorf("%s: %d messages delivered; want 1", mb.User, n)
		}
		want := 0
		if accts[i].keep {
			want = 1
		}
		if n := mb.Count(t); n != want {
			t.Errorf("%s (keep = %v): %d messages on the server; want %d", mb.User, accts[i].keep, n, want)
		}
	}

	// Each daemon's journals are its own accounts', and only theirs.
	for i, st := range states {
		for name, o := range owner {
			if has := hasJournal(st, name); has != (o == i) {
				t.Errorf("state%d has a journal of %s (shard %d/3): %v; want %v", i, name, o, has, o == i)
			}
		}
		ents, err := os.ReadDir(filepath.Join(st, "uidl"))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".uidl") {
				n++
			}
		}
		if n != len(res[i]) {
			t.Errorf("state%d holds %d journals; want %d, one per account of its shard", i, n, len(res[i]))
		}
	}

	// Status: the shard, and only its own accounts, none failing.
	for i, st := range states {
		s, err := daemon.ControlStatus(context.Background(), daemon.ControlPath(st))
		if err != nil {
			t.Fatal(err)
		}
		if s.Shard == nil || s.Shard.Shard != fmt.Sprintf("%d/3", i) || s.Shard.Owned != len(res[i]) || s.Shard.Accounts != accounts || len(s.Accounts) != len(res[i]) {
			t.Errorf("status of shard %d/3: shard %+v, %d accounts listed; want %d of %d", i, s.Shard, len(s.Accounts), len(res[i]), accounts)
		}
		for _, a := range s.Accounts {
			if owner[a.Name] != i || a.Totals.Failures != 0 {
				t.Errorf("status of shard %d/3 lists %s (shard %d/3, %d failures)", i, a.Name, owner[a.Name], a.Totals.Failures)
			}
		}
	}

	// A reload keeps the shard of the flag and the environment, not the
	// rc file's 0/3: the file changes (a comment), each daemon reloads.
	writeFile(t, rc, "# changed\n"+strings.Replace(text, `state_dir = "STATE"`, `state_dir = env("SHARD_TEST_STATE")`, 1))
	for i, st := range states {
		var s daemon.Status
		waitFor(t, 10*time.Second, fmt.Sprintf("shard %d/3 to reload", i), func() bool {
			var err error
			s, err = daemon.ControlStatus(context.Background(), daemon.ControlPath(st))
			return err == nil && s.Generation == 2
		})
		if s.Shard == nil || s.Shard.Shard != fmt.Sprintf("%d/3", i) || len(s.Accounts) != len(res[i]) {
			t.Errorf("after a reload the daemon of shard %d/3 runs shard %+v with %d accounts; want %d/3 with %d", i, s.Shard, len(s.Accounts), i, len(res[i]))
		}
	}

	// `popfetch now` and a one-shot fetch of an account of another shard
	// say so, and poll nothing.
	var theirs string
	for name, o := range owner {
		if o == 1 {
			theirs = name
			break
		}
	}
	t.Setenv("SHARD_TEST_STATE", states[0])
	r := daemonCLI(t, rc, "now", theirs)
	if want := theirs + " is polled by shard 1/3, not by this daemon (shard 0/3)"; r.code != exitUsage || !strings.Contains(r.stderr, want) {
		t.Errorf("popfetch now %s on shard 0/3: exit %d\n%s\nwant exit %d saying %q", theirs, r.code, r.stderr, exitUsage, want)
	}
	r = daemonCLI(t, rc, "fetch", "--shard", "2/3", theirs)
	if want := fmt.Sprintf("account %q is polled by shard 1/3, not by this one (2/3)", theirs); r.code != exitUsage || !strings.Contains(r.stderr, want) {
		t.Errorf("popfetch fetch --shard 2/3 %s: exit %d\n%s\nwant exit %d saying %q", theirs, r.code, r.stderr, exitUsage, want)
	}
	for i, mb := range mbs {
		if n := maildirCount(t, accts[i].maildir); n != 1 {
			t.Errorf("%s: %d messages delivered at the end; want 1", mb.User, n)
		}
	}
	t.Logf("300 accounts, 3 shards: polled in %v, checked in %v", cycle.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

}

// hasJournal says whether stateDir holds the journal of account name (the
// test's accounts log in as their name on 127.0.0.1).
func hasJournal(stateDir, name string) bool {
	_, err := os.Stat(uidl.Path(stateDir, name+"@127.0.0.1"))
	return err == nil
}

// TestNowUnknownAccount: `popfetch now` for an account the rc file does
// not have is a usage error that says so, not "cannot reach the daemon".
func TestNowUnknownAccount(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "a", port: 1, user: "u", pass: "p", maildir: filepath.Join(dir, "Maildir"), extra: []string{`interval = "24h"`}}))
	startDaemon(t, rc)
	r := daemonCLI(t, rc, "now", "nope")
	if r.code != exitUsage || !strings.Contains(r.stderr, "unknown account: nope") || strings.Contains(r.stderr, "cannot reach") {
		t.Errorf("popfetch now nope: exit %d\n%s\nwant exit %d saying unknown account", r.code, r.stderr, exitUsage)
	}
}
