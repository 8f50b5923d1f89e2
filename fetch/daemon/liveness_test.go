package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// TestDaemonLiveness runs the real scheduling loop (Run) through random
// events while polls run on their own goroutines and end with every
// outcome (success, temporary failure, [AUTH], a refused login, a lock
// held elsewhere, NotStarted, a panic, LOGIN-DELAY, a stop at the time
// limit): `popfetch now` for some or all accounts, reloads that add,
// remove, rename (two names on one mailbox), move between servers,
// change the limits and the shard, and SIGHUP's LiftAuthHolds. Throughout, no account
// and no mailbox has two sessions at once and the limits hold. Then the
// servers heal, a SIGHUP lifts the holds, and every configured account
// must be polled again within its interval plus jitter (none lost from
// the queues), every `popfetch now` answered, and the stop must end
// every poll.
func TestDaemonLiveness(t *testing.T) {
	for seed := range schedSeeds(20) {
		synctest.Test(t, func(t *testing.T) { daemonLiveness(t, seed) })
	}
}

func daemonLiveness(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	var rmu sync.Mutex // rng is used by the polls' goroutines too
	intn := func(n int) int { rmu.Lock(); defer rmu.Unlock(); return rng.IntN(n) }
	servers := []string{"pop.a.example", "POP.A.example", "pop.b.example", "pop.c.example"}
	intervals := []time.Duration{time.Minute, 5 * time.Minute, time.Hour}
	const pool = 30
	boxOf := make([]string, pool)
	for i := range boxOf {
		if intn(4) == 0 {
			boxOf[i] = fmt.Sprintf("box%d", intn(3))
		}
	}
	mk := func(i int) *rcfile.Account {
		a := acct(fmt.Sprintf("a%02d", i), servers[intn(len(servers))], intervals[intn(len(intervals))])
		a.MailboxID = boxOf[i]
		if intn(4) == 0 {
			a.Timeout = 2 * time.Minute
		}
		return a
	}
	maxLimit := func(cfg *rcfile.Config) (int, int) {
		return max(cfg.MaxParallel, defaultMaxParallel), max(cfg.PerServer, defaultPerServer)
	}
	cfg := &rcfile.Config{MaxParallel: intn(5), PerServer: intn(4)}
	topPar, topHost := maxLimit(cfg)
	for i := range pool {
		if intn(3) > 0 {
			cfg.Accounts = append(cfg.Accounts, mk(i))
		}
	}

	var (
		mu       sync.Mutex
		calm     bool
		running  = map[string]bool{}
		boxes    = map[string]bool{}
		perHost  = map[string]int{}
		total    int
		lastPoll = map[string]time.Time{}
		failures []string
	)
	poll := func(ctx context.Context, a *rcfile.Account, opts fetch.PollOptions) fetch.Result {
		host := hostKey(a)
		mu.Lock()
		if running[a.Name] {
			failures = append(failures, a.Name+" polled twice at once")
		}
		if boxes[a.Mailbox()] {
			failures = append(failures, "two sessions on mailbox "+a.Mailbox())
		}
		running[a.Name], boxes[a.Mailbox()] = true, true
		perHost[host]++
		total++
		if total > topPar || perHost[host] > topHost {
			failures = append(failures, fmt.Sprintf("%d sessions, %d on %s: over the limits %d, %d", total, perHost[host], host, topPar, topHost))
		}
		lastPoll[a.Name] = time.Now()
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(running, a.Name)
			delete(boxes, a.Mailbox())
			perHost[host]--
			total--
			mu.Unlock()
		}()
		durs := []time.Duration{0, time.Second, time.Minute, 10 * time.Minute, 2 * time.Hour}
		dur := durs[intn(len(durs))]
		mu.Lock()
		if calm {
			dur = time.Second
		}
		mu.Unlock()
		select {
		case <-time.After(dur):
		case <-opts.Stop:
			return fetch.Result{Account: a.Name, Delivered: 1}
		case <-ctx.Done():
			return fetch.Result{Account: a.Name, Err: ctx.Err()}
		}
		mu.Lock()
		quiet := calm
		mu.Unlock()
		if quiet {
			return fetch.Result{Account: a.Name}
		}
		r := fetch.Result{Account: a.Name}
		switch intn(9) {
		case 0:
			r.Err = fmt.Errorf("pass: %w", fetch.ErrAuth)
		case 1:
			r.Err = fmt.Errorf("pass: %w", fetch.ErrLoginRefused)
		case 2:
			r.Err = fmt.Errorf("lock: %w", fetch.ErrLocked)
		case 3:
			r.Err = errors.New("connection refused")
		case 4:
			r = fetch.Result{Account: a.Name, NotStarted: true}
		case 5:
			panic("poll went wrong")
		}
		if intn(4) == 0 {
			r.LoginDelay = time.Duration(1+intn(10)) * time.Minute
		}
		return r
	}
	d := New(cfg, poll, Options{Jitter: func(max time.Duration) time.Duration {
		if max <= 0 {
			return 0
		}
		return time.Duration(intn(int(max/time.Second)+1)) * time.Second
	}})
	ctx, stop := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	var asked sync.WaitGroup
	answers := make(chan error, 10000)
	pollNow := func(names []string) {
		asked.Add(1)
		go func() {
			defer asked.Done()
			c, cancel := context.WithTimeout(context.Background(), 48*time.Hour)
			defer cancel()
			_, err := d.PollNow(c, names)
			answers <- err
		}()
	}
	// have is the config's accounts; owned those of the daemon's shard.
	have := func() map[string]*rcfile.Account {
		d.mu.Lock()
		defer d.mu.Unlock()
		m := map[string]*rcfile.Account{}
		for _, a := range d.cfg.Accounts {
			m[a.Name] = a
		}
		return m
	}
	owned := func() map[string]*rcfile.Account {
		d.mu.Lock()
		defer d.mu.Unlock()
		m := map[string]*rcfile.Account{}
		for _, a := range d.cfg.Shard.Owned(d.cfg.Accounts) {
			m[a.Name] = a
		}
		return m
	}
	advances := []time.Duration{0, time.Second, 20 * time.Second, time.Minute, 5 * time.Minute, 31 * time.Minute, 2 * time.Hour}
	for step := range 300 {
		switch k := intn(12); {
		case k < 5:
			time.Sleep(advances[intn(len(advances))])
		case k < 8:
			var req []string
			if intn(3) > 0 {
				for name := range owned() {
					req = append(req, name)
					if intn(3) == 0 {
						break
					}
				}
			}
			pollNow(req)
		case k < 11:
			next := &rcfile.Config{MaxParallel: d.cfg.MaxParallel, PerServer: d.cfg.PerServer, Shard: d.cfg.Shard}
			if intn(4) == 0 {
				next.Shard = []rcfile.Shard{{}, {Index: 0, Count: 2}, {Index: 1, Count: 2}}[intn(3)]
			}
			if intn(3) == 0 {
				next.MaxParallel, next.PerServer = intn(5), intn(4)
				p, h := maxLimit(next)
				mu.Lock()
				topPar, topHost = max(topPar, p), max(topHost, h)
				mu.Unlock()
			}
			cur := have()
			for i := range pool {
				a, ok := cur[fmt.Sprintf("a%02d", i)]
				switch r := intn(10); {
				case r == 0 && ok:
					continue
				case r == 1 && !ok, r == 2 && ok:
					a = mk(i)
				case !ok:
					continue
				}
				next.Accounts = append(next.Accounts, a)
			}
			if err := d.Reload(next); err != nil {
				t.Fatalf("seed %d step %d: reload: %v", seed, step, err)
			}
		default:
			d.LiftAuthHolds()
		}
		synctest.Wait()
		d.mu.Lock()
		if s := checkQueues(d); s != "" {
			d.mu.Unlock()
			t.Fatalf("seed %d step %d: %s", seed, step, s)
		}
		d.mu.Unlock()
		mu.Lock()
		if len(failures) > 0 {
			t.Fatalf("seed %d step %d: %v", seed, step, failures)
		}
		mu.Unlock()
	}

	// Run must stop, every poll in flight end and every request be
	// answered (none waits for its deadline).
	finish := func() {
		stop()
		if err := <-runErr; err != nil {
			t.Fatal(err)
		}
		asked.Wait()
		close(answers)
		for err := range answers {
			if err != nil && !errors.Is(err, ErrStopped) {
				t.Errorf("seed %d: popfetch now: %v", seed, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if total != 0 || len(failures) > 0 {
			t.Fatalf("seed %d: %d polls running after Run returned; %v", seed, total, failures)
		}
	}
	if seed%3 == 0 {
		finish() // a stop in the middle of it all
		return
	}

	// The servers heal; SIGHUP lifts the holds. Every account is then
	// polled within the longest interval, backoff (1h), jitter and
	// LOGIN-DELAY, and a poll's time limit (1h) of waiting for a slot.
	mu.Lock()
	calm = true
	mu.Unlock()
	healed := time.Now()
	d.LiftAuthHolds()
	time.Sleep(4 * time.Hour)
	synctest.Wait()
	mu.Lock()
	for name := range owned() {
		if !lastPoll[name].After(healed) {
			t.Errorf("seed %d: %s not polled in the 4h after the servers healed (last %v)", seed, name, lastPoll[name].Sub(healed))
			d.mu.Lock()
			a := d.accts[name]
			t.Logf("%s: running %v removed %v hold %v next %v notBefore %v now %d q %d host %s box %s busy %v nrun %d perHost %v free %d hosts %d boxHeld %v; check %q",
				name, a.running, a.removed, a.authHold, a.next.Sub(healed), a.notBefore.Sub(healed), len(a.now), a.qwhere, a.host, a.box, d.busyBoxes, d.nrun, d.perHost, len(d.q.free), len(d.q.hosts), d.q.boxHeld, checkQueues(d))
			d.mu.Unlock()
		}
	}
	mu.Unlock()
	st := d.Status()
	for _, a := range st.Accounts {
		if a.State != StateIdle && a.State != StatePolling {
			t.Errorf("seed %d: %s is %s after the servers healed", seed, a.Name, a.State)
		}
	}
	finish()
}
