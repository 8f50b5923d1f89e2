package daemon

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// BenchmarkPollNowAll measures the scheduler alone: one PollNow for every
// account, each poll returning at once, so what is measured is the
// daemon's bookkeeping per account (starting, finishing, choosing the
// next account to start for each freed slot), not a session's. The
// accounts share one server, under the default limits and per_server 8.
//
//	go test -run '^$' -bench BenchmarkPollNowAll ./fetch/daemon/
func BenchmarkPollNowAll(b *testing.B) {
	for _, n := range []int{500, 5000} {
		for _, perServer := range []int{0, 8} {
			b.Run(fmt.Sprintf("accounts=%d/per_server=%d", n, perServer), func(b *testing.B) {
				cfg := &rcfile.Config{PerServer: perServer}
				for i := range n {
					cfg.Accounts = append(cfg.Accounts, acct(fmt.Sprintf("a%05d", i), "pop.example", 24*time.Hour))
				}
				poll := func(ctx context.Context, a *rcfile.Account, opts fetch.PollOptions) fetch.Result {
					return fetch.Result{Account: a.Name}
				}
				d := New(cfg, poll, Options{Jitter: func(time.Duration) time.Duration { return time.Hour }})
				ctx, cancel := context.WithCancel(context.Background())
				ran := make(chan error, 1)
				go func() { ran <- d.Run(ctx) }()
				defer func() { cancel(); <-ran }()
				runtime.GC()
				b.ResetTimer()
				for range b.N {
					res, err := d.PollNow(context.Background(), nil)
					if err != nil || len(res) != n {
						b.Fatalf("PollNow: %d results, %v", len(res), err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "us/account")
			})
		}
	}
}

// TestStartDueOrder: startDueLocked starts exactly the accounts that
// walking every due account in order (operator requests first, then by
// due time, then by name) and skipping those a limit holds back would
// start: the order the scheduler always had, now found through its
// queues instead of by sorting all waiting accounts on every wake-up
// (TestQueuesMatchScan drives them through events too). Random
// schedules over few servers (in mixed case) and shared mailboxes, with
// polls already running, make the limits bite.
func TestStartDueOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Now()
	for round := range 300 {
		n := 1 + rng.IntN(40)
		cfg := &rcfile.Config{MaxParallel: 1 + rng.IntN(8), PerServer: 1 + rng.IntN(4)}
		if rng.IntN(5) == 0 {
			cfg.MaxParallel, cfg.PerServer = 0, 0 // the defaults
		}
		servers := []string{"pop.a.example", "POP.A.example", "pop.b.example", "pop.c.example"}
		for i := range n {
			a := acct(fmt.Sprintf("a%02d", i), servers[rng.IntN(len(servers))], time.Hour)
			if rng.IntN(6) == 0 {
				a.MailboxID = fmt.Sprintf("box%d", rng.IntN(3)) // a renamed account's old and new name
			}
			cfg.Accounts = append(cfg.Accounts, a)
		}
		d := New(cfg, func(ctx context.Context, a *rcfile.Account, opts fetch.PollOptions) fetch.Result {
			return fetch.Result{Account: a.Name}
		}, Options{})
		d.mu.Lock()
		started := 0
		for _, a := range d.accts {
			a.next = base.Add(time.Duration(rng.IntN(120)-60) * time.Second)
			switch rng.IntN(10) {
			case 0:
				a.authHold = true
			case 1:
				a.notBefore = base.Add(time.Duration(rng.IntN(120)-60) * time.Second)
			}
			if rng.IntN(3) == 0 {
				a.now = append(a.now, make(chan fetch.Result, 1))
				a.nowAt = base.Add(time.Duration(rng.IntN(4)) * time.Second) // ties too
			}
		}
		for _, a := range d.accts {
			if rng.IntN(8) == 0 && !d.busyBoxes[a.box] {
				d.startLocked(a) // already polling
				started++
			}
		}
		d.requeueLocked()   // the fields were set by hand
		var before []string // running already
		for name, a := range d.accts {
			if a.running {
				before = append(before, name)
			}
		}
		want := slices.Sorted(slices.Values(scanSchedule(d, time.Now()).starts))
		d.startDueLocked()
		var got []string
		for name, a := range d.accts {
			if a.running && !slices.Contains(before, name) {
				got = append(got, name)
			}
		}
		started += len(got)
		d.mu.Unlock()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("round %d (max_parallel %d, per_server %d): started %v; want %v", round, cfg.MaxParallel, cfg.PerServer, got, want)
		}
		for range started {
			<-d.results // the polls' goroutines
		}
	}
}
