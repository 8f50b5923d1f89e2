package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// TestQueuesMatchScan drives the scheduler through random events (time
// passing, polls ending with every kind of outcome and LOGIN-DELAY,
// `popfetch now`, reloads that add, remove and change accounts and the
// limits, SIGHUP's LiftAuthHolds) and checks after each that
// startDueLocked, with its queues, starts the same accounts in the same
// order, stops the same polls at their time limit and sets the same
// timer as scanSchedule, the scan of every account the scheduler used
// to make on each wake-up. An event whose change to an account the
// queues miss shows as a different start or timer; checkQueues also
// checks the queues themselves after each event and each start.
func TestQueuesMatchScan(t *testing.T) {
	for seed := range schedSeeds(60) {
		synctest.Test(t, func(t *testing.T) { queuesMatchScan(t, seed) })
	}
}

func queuesMatchScan(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	servers := []string{"pop.a.example", "POP.A.example", "pop.b.example", "pop.c.example"}
	intervals := []time.Duration{time.Minute, 5 * time.Minute, time.Hour}
	const pool = 24
	boxOf := make([]string, pool) // fixed per name: a changed mailbox_id is refused
	for i := range boxOf {
		if rng.IntN(5) == 0 {
			boxOf[i] = fmt.Sprintf("box%d", rng.IntN(3)) // a renamed account's old and new name
		}
	}
	mk := func(i int) *rcfile.Account {
		a := acct(fmt.Sprintf("a%02d", i), servers[rng.IntN(len(servers))], intervals[rng.IntN(len(intervals))])
		a.MailboxID = boxOf[i]
		if rng.IntN(4) == 0 {
			a.Timeout = 2 * time.Minute // a 60-minute poll limit instead of 30
		}
		return a
	}
	limits := func(cfg *rcfile.Config) {
		cfg.MaxParallel, cfg.PerServer = rng.IntN(5), rng.IntN(4) // 0: the defaults
	}
	cfg := &rcfile.Config{}
	limits(cfg)
	for i := range pool {
		if rng.IntN(3) > 0 {
			cfg.Accounts = append(cfg.Accounts, mk(i))
		}
	}

	type pending struct {
		name  string
		reply chan fetch.Result
	}
	calls := make(chan pending, 2*pool)
	poll := func(ctx context.Context, a *rcfile.Account, opts fetch.PollOptions) fetch.Result {
		p := pending{a.Name, make(chan fetch.Result)}
		calls <- p
		return <-p.reply
	}
	d := New(cfg, poll, Options{Jitter: func(max time.Duration) time.Duration {
		if max <= 0 {
			return 0
		}
		return time.Duration(rng.Int64N(int64(max) + 1))
	}})
	var started []string
	d.startHook = func(name string) { started = append(started, name) }
	running := map[string]pending{}
	finish := func(p pending, r fetch.Result) {
		delete(running, p.name)
		p.reply <- r
		done := <-d.results
		d.mu.Lock()
		d.finishLocked(done)
		d.mu.Unlock()
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	names := func() []string {
		d.mu.Lock()
		defer d.mu.Unlock()
		var s []string
		for name, a := range d.accts {
			if !a.removed {
				s = append(s, name)
			}
		}
		slices.Sort(s)
		return s
	}
	errTemp := errors.New("connection refused")
	advances := []time.Duration{0, time.Second, 20 * time.Second, time.Minute, 5 * time.Minute, 31 * time.Minute, 2 * time.Hour}

	for step := range 400 {
		var event string
		switch k := rng.IntN(20); {
		case k < 6:
			dt := advances[rng.IntN(len(advances))]
			event = fmt.Sprintf("advance %v", dt)
			time.Sleep(dt)
		case k < 12 && len(running) > 0:
			keys := slices.Sorted(maps.Keys(running))
			p := running[keys[rng.IntN(len(keys))]]
			r := fetch.Result{Account: p.name, Delivered: rng.IntN(2)}
			switch rng.IntN(8) {
			case 0:
				r.Err = fmt.Errorf("pass: %w", fetch.ErrAuth)
			case 1:
				r.Err = fmt.Errorf("pass: %w", fetch.ErrLoginRefused)
			case 2:
				r.Err = fmt.Errorf("lock: %w", fetch.ErrLocked)
			case 3:
				r.Err = errTemp
			case 4:
				r = fetch.Result{Account: p.name, NotStarted: true}
			}
			if rng.IntN(4) == 0 {
				r.LoginDelay = time.Duration(1+rng.IntN(10)) * time.Minute
			}
			event = fmt.Sprintf("finish %s: err %v, login delay %v, not started %v", p.name, r.Err, r.LoginDelay, r.NotStarted)
			finish(p, r)
		case k < 15:
			var req []string // all
			if all := names(); len(all) > 0 && rng.IntN(3) > 0 {
				for range 1 + rng.IntN(3) {
					req = append(req, all[rng.IntN(len(all))])
				}
			}
			event = fmt.Sprintf("poll now %v", req)
			d.PollNow(cancelled, req) // queues the requests; their answers are not awaited
		case k < 18:
			next := &rcfile.Config{MaxParallel: d.cfg.MaxParallel, PerServer: d.cfg.PerServer}
			if rng.IntN(3) == 0 {
				limits(next)
			}
			have := map[string]*rcfile.Account{}
			for _, a := range d.cfg.Accounts {
				have[a.Name] = a
			}
			for i := range pool {
				a, ok := have[fmt.Sprintf("a%02d", i)]
				switch r := rng.IntN(10); {
				case r == 0 && ok:
					continue // removed
				case r == 1 && !ok, r == 2 && ok:
					a = mk(i) // added, or changed (server, interval, timeout)
				case !ok:
					continue
				}
				next.Accounts = append(next.Accounts, a)
			}
			event = fmt.Sprintf("reload: %d accounts, max_parallel %d, per_server %d", len(next.Accounts), next.MaxParallel, next.PerServer)
			if err := d.Reload(next); err != nil {
				t.Fatalf("seed %d step %d: %s: %v", seed, step, event, err)
			}
		default:
			event = "lift auth holds"
			d.LiftAuthHolds()
		}

		d.mu.Lock()
		if s := checkQueues(d); s != "" {
			d.mu.Unlock()
			t.Fatalf("seed %d step %d, after %s: %s", seed, step, event, s)
		}
		now := time.Now()
		want := scanSchedule(d, now)
		stoppedBefore := map[string]bool{}
		for name, a := range d.accts {
			stoppedBefore[name] = a.stopped
		}
		started = started[:0]
		wait, ok := d.startDueLocked()
		var stops []string
		for name, a := range d.accts {
			if a.running && a.stopped && !stoppedBefore[name] {
				stops = append(stops, name)
			}
		}
		if s := checkQueues(d); s != "" {
			d.mu.Unlock()
			t.Fatalf("seed %d step %d, after %s and its starts: %s", seed, step, event, s)
		}
		d.mu.Unlock()
		slices.Sort(stops)
		var wake time.Time
		if ok {
			wake = now.Add(wait)
		}
		if !slices.Equal(started, want.starts) || !slices.Equal(stops, want.stops) || !wake.Equal(want.wake) {
			t.Fatalf("seed %d step %d, after %s:\nstarted %v, stopped %v, wakes at %v;\nthe scan starts %v, stops %v, wakes at %v",
				seed, step, event, started, stops, wake.Sub(now), want.starts, want.stops, want.wake.Sub(now))
		}
		synctest.Wait() // the started polls have called
		for {
			select {
			case p := <-calls:
				running[p.name] = p
				continue
			default:
			}
			break
		}
	}
	for _, name := range slices.Sorted(maps.Keys(running)) {
		finish(running[name], fetch.Result{Account: name})
	}
}

// scanPlan is what the scheduler does at one wake-up: the accounts it
// starts, in order, the polls it stops at their time limit (sorted) and
// when it wakes next (zero: only when told).
type scanPlan struct {
	starts, stops []string
	wake          time.Time
}

// scanSchedule is the scheduler's plan at now as it used to be made, by
// a scan of every account: each running poll's deadline, each due
// account sorted (operator requests first, then by due time, then by
// name) and started in that order unless a limit holds it back, each
// account not yet due for the timer. It changes nothing.
func scanSchedule(d *Daemon, now time.Time) scanPlan {
	type cand struct {
		a      *account
		due    time.Time
		urgent bool
	}
	var p scanPlan
	var cands []cand
	earlier := func(t time.Time) {
		if p.wake.IsZero() || t.Before(p.wake) {
			p.wake = t
		}
	}
	for name, a := range d.accts {
		if a.running {
			switch {
			case a.stopped:
			case !a.deadline.After(now):
				p.stops = append(p.stops, name)
			default:
				earlier(a.deadline)
			}
			continue
		}
		if a.removed {
			continue
		}
		due, ok := a.dueAt(now)
		switch {
		case !ok:
		case due.After(now):
			earlier(due)
		default:
			cands = append(cands, cand{a, due, len(a.now) > 0})
		}
	}
	slices.Sort(p.stops)
	slices.SortFunc(cands, func(x, y cand) int {
		if x.urgent != y.urgent {
			if x.urgent {
				return -1
			}
			return 1
		}
		k, l := x.due, y.due
		if x.urgent {
			k, l = x.a.nowAt, y.a.nowAt
		}
		if c := k.Compare(l); c != 0 {
			return c
		}
		return strings.Compare(x.a.cfg.Name, y.a.cfg.Name)
	})
	nrun, perHost, boxes := d.nrun, maps.Clone(d.perHost), maps.Clone(d.busyBoxes)
	maxPar, perServer := d.cfg.MaxParallel, d.cfg.PerServer
	if maxPar <= 0 {
		maxPar = defaultMaxParallel
	}
	if perServer <= 0 {
		perServer = defaultPerServer
	}
	for _, c := range cands {
		if nrun >= maxPar {
			break
		}
		if perHost[c.a.host] >= perServer || boxes[c.a.box] {
			continue
		}
		perHost[c.a.host]++
		boxes[c.a.box] = true
		nrun++
		p.starts = append(p.starts, c.a.cfg.Name)
		earlier(now.Add(pollTimeLimit(c.a.cfg)))
	}
	return p
}

// TestPollNowArrivalOrder: operator requests are served in the order they
// came, not by name, so that with one slot an account asked for again and
// again cannot keep one later in the alphabet waiting.
func TestPollNowArrivalOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := &rcfile.Config{MaxParallel: 1, Accounts: []*rcfile.Account{
			acct("a", "pop.a.example", time.Hour), acct("busy", "pop.b.example", time.Hour), acct("z", "pop.c.example", time.Hour)}}
		release := make(chan struct{})
		d := New(cfg, func(ctx context.Context, a *rcfile.Account, opts fetch.PollOptions) fetch.Result {
			<-release
			return fetch.Result{Account: a.Name}
		}, Options{Jitter: func(time.Duration) time.Duration { return 0 }})
		var started []string
		d.startHook = func(name string) { started = append(started, name) }
		step := func() {
			d.mu.Lock()
			d.startDueLocked()
			d.mu.Unlock()
		}
		// finish ends the running poll and starts what is due next.
		finish := func() {
			release <- struct{}{}
			done := <-d.results
			d.mu.Lock()
			d.finishLocked(done)
			d.mu.Unlock()
			step()
		}
		d.mu.Lock()
		for _, a := range d.accts {
			a.next = time.Now().Add(time.Hour) // none due but by request
		}
		d.requeueLocked()
		d.mu.Unlock()
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		d.PollNow(cancelled, []string{"busy"}) // queues the request; the answer is not awaited
		step()
		for _, name := range []string{"z", "a", "busy", "a", "busy", "a"} {
			time.Sleep(time.Second)
			d.PollNow(cancelled, []string{name})
			if name == "busy" {
				finish() // the slot goes to the request that came first
			}
		}
		if want := []string{"busy", "z", "a"}; !slices.Equal(started, want) {
			t.Errorf("started %v; want %v", started, want)
		}
		for range 3 {
			finish()
		}
	})
}
