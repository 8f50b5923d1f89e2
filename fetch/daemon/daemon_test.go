package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/popfetch/popfetch/fetch"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// wait bounds every wait on the daemon; it only matters when a test fails.
const wait = 5 * time.Second

// The daemon's tests run in a testing/synctest bubble: its clock moves
// only when every goroutine of the test is blocked, so schedules, backoff
// and login delays are checked without sleeping, and synctest.Wait says
// when the scheduler has finished reacting.

// t0 is when a bubble's clock starts: midnight UTC, 1 January 2000.
var t0 = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// bubbleClock moves the bubble's clock for the harness and reads the
// scheduler's plan.
type bubbleClock struct{ d *Daemon }

// Advance lets d pass and waits until the daemon has done everything due
// by then.
func (c *bubbleClock) Advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// Now is the bubble's time.
func (c *bubbleClock) Now() time.Time { return time.Now() }

// waitTimer waits until the scheduler is quiet and checks that its latest
// timer is set for at.
func (c *bubbleClock) waitTimer(t *testing.T, at time.Time) {
	t.Helper()
	synctest.Wait()
	c.d.mu.Lock()
	last := c.d.timerAt
	c.d.mu.Unlock()
	if !last.Equal(at) {
		t.Fatalf("scheduler timer = %v; want %v", last.Sub(t0), at.Sub(t0))
	}
}

// call is one invocation of the fake PollFunc; the test answers it.
type call struct {
	name  string
	acct  *rcfile.Account
	ctx   context.Context
	opts  fetch.PollOptions
	reply chan reply
}

// stopping reports whether the daemon asked the poll to stop gracefully
// (PollOptions.Stop is closed).
func (c *call) stopping() bool {
	select {
	case <-c.opts.Stop:
		return true
	default:
		return false
	}
}

type reply struct {
	r        fetch.Result
	panicVal any
}

func (c *call) ret(r fetch.Result) { c.reply <- reply{r: r} }

// succeedsWith answers name's next poll with success after checking that
// it uses password pass (the new one), and waits for name to be idle.
func (h *harness) succeedsWith(name, pass string) {
	h.t.Helper()
	c := h.nextFor(name)
	if c.acct.Password.Inline != pass {
		h.t.Fatalf("poll of %s used password %q; want the new one, %q", name, c.acct.Password.Inline, pass)
	}
	c.ret(fetch.Result{})
	if st := h.waitIdleOrBackoff(name); st.State != StateIdle {
		h.t.Fatalf("after success: state of %s = %v; want idle", name, st.State)
	}
}

type harness struct {
	t      *testing.T
	clock  *bubbleClock
	d      *Daemon
	calls  chan *call
	logs   *testutil.SyncBuffer
	cancel context.CancelFunc
	runErr chan error

	mu         sync.Mutex
	active     map[string]int // running polls per account
	activeHost map[string]int // per lower-case server
	maxAcct    int
	maxHost    int
	maxTotal   int
	total      int
}

func acct(name, server string, iv time.Duration) *rcfile.Account {
	return &rcfile.Account{Name: name, Server: server, Username: name, Interval: iv,
		Password: rcfile.Password{Inline: "secret"}}
}

// acctIn is account name on pop.example for user, with its own state_dir.
func acctIn(name, user, dir string) *rcfile.Account {
	a := acct(name, "pop.example", time.Hour)
	a.Username, a.StateDir = user, dir
	return a
}

func config(accts ...*rcfile.Account) *rcfile.Config {
	return &rcfile.Config{Path: "/etc/popfetch.hcl", MaxParallel: 8, PerServer: 2, Accounts: accts}
}

// newHarness builds a daemon with a fake clock, zero jitter (unless
// jitter is given) and a fake PollFunc; start runs it.
func newHarness(t *testing.T, cfg *rcfile.Config, jitter func(time.Duration) time.Duration) *harness {
	t.Helper()
	return newHarnessAlerts(t, cfg, jitter, nil)
}

// newHarnessAlerts is newHarness with an alert engine fed by the daemon.
func newHarnessAlerts(t *testing.T, cfg *rcfile.Config, jitter func(time.Duration) time.Duration, alerts Alerts) *harness {
	t.Helper()
	h := &harness{
		t:          t,
		clock:      &bubbleClock{},
		calls:      make(chan *call),
		logs:       &testutil.SyncBuffer{},
		active:     map[string]int{},
		activeHost: map[string]int{},
	}
	if jitter == nil {
		jitter = func(time.Duration) time.Duration { return 0 }
	}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if now := time.Now(); !now.Equal(t0) {
		t.Fatalf("the harness runs at %v; want t0 (%v), in a fresh synctest bubble", now, t0)
	}
	h.d = New(cfg, h.poll, Options{Log: log, Jitter: jitter, Alerts: alerts})
	h.clock.d = h.d
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.runErr = make(chan error, 1)
	go func() { h.runErr <- h.d.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		h.d.Abort() // releases polls the test left blocked
		select {
		case <-h.runErr:
		case <-time.After(wait):
			h.t.Errorf("Run did not return after cancel and Abort")
		}
	})
}

// startOne starts a harness for the one account "a" on pop.example,
// polled every interval.
func startOne(t *testing.T, interval time.Duration) *harness {
	t.Helper()
	h := newHarness(t, config(acct("a", "pop.example", interval)), nil)
	h.start()
	return h
}

func (h *harness) poll(ctx context.Context, a *rcfile.Account, opts fetch.PollOptions) fetch.Result {
	host := strings.ToLower(a.Server)
	h.mu.Lock()
	h.active[a.Name]++
	h.activeHost[host]++
	h.total++
	h.maxAcct = max(h.maxAcct, h.active[a.Name])
	h.maxHost = max(h.maxHost, h.activeHost[host])
	h.maxTotal = max(h.maxTotal, h.total)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.active[a.Name]--
		h.activeHost[host]--
		h.total--
		h.mu.Unlock()
	}()
	c := &call{name: a.Name, acct: a, ctx: ctx, opts: opts, reply: make(chan reply, 1)}
	select {
	case h.calls <- c:
	case <-ctx.Done():
		return fetch.Result{Err: ctx.Err()}
	}
	select {
	case rep := <-c.reply:
		if rep.panicVal != nil {
			panic(rep.panicVal)
		}
		return rep.r
	case <-ctx.Done():
		return fetch.Result{Err: ctx.Err()}
	}
}

// next returns the next poll started: one the daemon has started by the
// time every goroutine of the test waits.
func (h *harness) next() *call {
	h.t.Helper()
	synctest.Wait()
	select {
	case c := <-h.calls:
		return c
	default:
		h.t.Fatalf("no poll started at t0+%v", time.Since(t0))
		return nil
	}
}

// nextN returns the next n polls, which must have started, by account.
func (h *harness) nextN(n int) map[string]*call {
	h.t.Helper()
	polls := map[string]*call{}
	for range n {
		c := h.next()
		polls[c.name] = c
	}
	return polls
}

// nextFor returns the next poll and checks its account.
func (h *harness) nextFor(name string) *call {
	h.t.Helper()
	c := h.next()
	if c.name != name {
		h.t.Fatalf("poll started for %q; want %q", c.name, name)
	}
	return c
}

func (h *harness) status(name string) AccountStatus {
	h.t.Helper()
	for _, a := range h.d.Status().Accounts {
		if a.Name == name {
			return a
		}
	}
	h.t.Fatalf("Status() has no account %q", name)
	return AccountStatus{}
}

// polling counts accounts in state polling. The scheduler marks an
// account polling before its goroutine starts, so this is exact once the
// scheduler is quiet.
func (h *harness) polling() int {
	n := 0
	for _, a := range h.d.Status().Accounts {
		if a.State == StatePolling {
			n++
		}
	}
	return n
}

func (h *harness) countLog(substr string) int { return strings.Count(h.logs.String(), substr) }

func TestDaemonFirstPollJitter(t *testing.T) {
	tests := []struct {
		interval time.Duration
		wantMax  time.Duration
	}{
		{30 * time.Second, 3 * time.Second},
		{2 * time.Minute, 12 * time.Second},
		{5 * time.Minute, 30 * time.Second},
		{24 * time.Hour, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.interval.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var gotMax time.Duration
				jitter := func(m time.Duration) time.Duration { gotMax = m; return m } // the worst case
				h := newHarness(t, config(acct("a", "pop.example", tt.interval)), jitter)
				if gotMax != tt.wantMax {
					t.Fatalf("jitter max = %v; want %v", gotMax, tt.wantMax)
				}
				h.start()
				h.clock.waitTimer(t, t0.Add(tt.wantMax))
				if got := h.status("a").NextPoll; !got.Equal(t0.Add(tt.wantMax)) {
					t.Fatalf("NextPoll = %v; want t0+%v", got.Sub(t0), tt.wantMax)
				}
				h.clock.Advance(tt.wantMax - time.Millisecond)
				if n := h.polling(); n != 0 {
					t.Fatalf("%d polls before the jittered start", n)
				}
				h.clock.Advance(time.Millisecond)
				h.nextFor("a").ret(fetch.Result{})
			})
		})
	}
}

func TestDaemonInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, 5*time.Minute)
		for i := range 3 {
			c := h.nextFor("a")
			h.clock.Advance(7 * time.Second) // the poll itself takes time
			c.ret(fetch.Result{New: 1, Delivered: 1, Deleted: 1})
			// Fixed delay: due one interval after the poll ended.
			next := h.clock.Now().Add(5 * time.Minute)
			h.clock.waitTimer(t, next)
			st := h.status("a")
			if st.State != StateIdle || !st.NextPoll.Equal(next) || st.Totals.Polls != i+1 || st.Totals.Delivered != i+1 {
				t.Fatalf("poll %d: status = %+v; want idle, next %v, %d polls", i, st, next.Sub(t0), i+1)
			}
			h.clock.Advance(5*time.Minute - time.Second)
			if h.polling() != 0 {
				t.Fatalf("poll %d: polled before the interval passed", i)
			}
			h.clock.Advance(time.Second)
		}
		h.nextFor("a").ret(fetch.Result{})
	})
}

func TestBackoffDelay(t *testing.T) {
	m, hr := time.Minute, time.Hour
	tests := []struct {
		interval time.Duration
		want     []time.Duration // after failure 1, 2, ...
		refused  bool
	}{
		{30 * time.Second, []time.Duration{30 * time.Second, m, 2 * m, 4 * m, 4 * m}, false},
		{5 * m, []time.Duration{75 * time.Second, 150 * time.Second, 5 * m, 10 * m, 20 * m, 40 * m, 40 * m}, false},
		{hr, []time.Duration{15 * m, 30 * m, hr, hr}, false},
		{24 * hr, []time.Duration{6 * hr, 12 * hr, 24 * hr, 24 * hr}, false},
		// After a refused login (ErrLoginRefused).
		{m, []time.Duration{hr, 2 * hr, 4 * hr, 8 * hr, 8 * hr}, true},
		{5 * hr, []time.Duration{5 * hr, 8 * hr, 8 * hr}, true},
		{24 * hr, []time.Duration{24 * hr, 24 * hr}, true},
	}
	for _, tt := range tests {
		for i, want := range tt.want {
			if got := backoffDelay(tt.interval, i+1, tt.refused); got != want {
				t.Errorf("backoffDelay(%v, %d, refused %v) = %v; want %v", tt.interval, i+1, tt.refused, got, want)
			}
		}
	}
	if got := backoffDelay(5*m, 1000, false); got != 40*m {
		t.Errorf("backoffDelay(5m, 1000) = %v; want the cap 40m", got)
	}
}

// TestDaemonBackoff drives one account through failures: the delays double
// up to the cap, and one success brings back the normal interval.
func TestDaemonBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, 5*time.Minute)
		errNet := errors.New("dial tcp: connection refused")
		for i := range 7 {
			h.nextFor("a").ret(fetch.Result{Err: errNet})
			delay := backoffDelay(5*time.Minute, i+1, false)
			next := h.clock.Now().Add(delay)
			h.clock.waitTimer(t, next)
			if st := h.status("a"); st.State != StateBackoff || st.Failures != i+1 || !st.NextPoll.Equal(next) {
				t.Fatalf("failure %d: status = %+v; want backoff, next in %v", i+1, st, delay)
			}
			h.clock.Advance(delay)
		}
		h.nextFor("a").ret(fetch.Result{})
		next := h.clock.Now().Add(5 * time.Minute)
		h.clock.waitTimer(t, next)
		if st := h.status("a"); st.State != StateIdle || st.Failures != 0 || st.Totals.Failures != 7 {
			t.Fatalf("after success: status = %+v; want idle, 0 failures, 7 failed polls", st)
		}
	})
}

// TestDaemonLogOncePerError: a repeated error is not logged again at Warn;
// a different one is; recovery is logged once at Info.
func TestDaemonLogOncePerError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, time.Minute)
		errA := fmt.Errorf("%w: [IN-USE] maildrop locked", fetch.ErrInUse)
		errB := errors.New("[SYS/TEMP] try later")
		for _, err := range []error{errA, errA, errB, errB, errB, nil, nil} {
			h.nextFor("a").ret(fetch.Result{Err: err})
			delay := time.Minute
			if st := h.waitIdleOrBackoff("a"); st.Failures > 0 {
				delay = backoffDelay(time.Minute, st.Failures, false)
			}
			h.clock.waitTimer(t, h.clock.Now().Add(delay))
			h.clock.Advance(delay)
		}
		h.nextFor("a")
		logs := h.logs.String()
		if n := strings.Count(logs, "level=WARN"); n != 2 {
			t.Errorf("%d Warn lines; want 2 (one per distinct error):\n%s", n, logs)
		}
		if n := h.countLog(`level=INFO msg="poll succeeded again"`); n != 1 {
			t.Errorf("%d recovery lines; want 1:\n%s", n, logs)
		}
	})
}

// waitIdleOrBackoff waits until the account's poll has been processed.
func (h *harness) waitIdleOrBackoff(name string) AccountStatus {
	h.t.Helper()
	synctest.Wait()
	if st := h.status(name); st.State != StatePolling {
		return st
	}
	h.t.Fatalf("account %q still polling", name)
	return AccountStatus{}
}

// TestDaemonLoginRefused: a login refused without an [AUTH] code is neither
// held for good nor retried every poll: the backoff starts at an hour and
// doubles up to 8 hours, every refusal is an Error line, and SIGHUP (the
// operator fixed the password) or a success ends it.
func TestDaemonLoginRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, time.Minute)
		refused := fmt.Errorf("pass: %w: -ERR message is damaged", fetch.ErrLoginRefused)
		at := t0
		for i, delay := range []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 8 * time.Hour} {
			h.nextFor("a").ret(fetch.Result{Err: refused})
			h.clock.waitTimer(t, at.Add(delay))
			st := h.status("a")
			if st.State != StateBackoff || !st.NextPoll.Equal(at.Add(delay)) || st.Failures != i+1 {
				t.Fatalf("after refusal %d: status = %+v; want backoff until +%v", i+1, st, at.Add(delay).Sub(t0))
			}
			if !st.Last.AuthFailed {
				t.Fatalf("after refusal %d: last poll not flagged as a failed login: %+v", i+1, st.Last)
			}
			if n := h.countLog(`level=ERROR msg="login refused`); n != i+1 {
				t.Fatalf("%d Error lines after %d refusals; want one each:\n%s", n, i+1, h.logs)
			}
			// Not a minute earlier.
			h.clock.Advance(delay - time.Minute)
			if h.polling() != 0 {
				t.Fatalf("polled %v after refusal %d; want %v", delay-time.Minute, i+1, delay)
			}
			h.clock.Advance(time.Minute)
			at = at.Add(delay)
		}
		// A long interval is not shortened by the backoff.
		if got := backoffDelay(24*time.Hour, 1, true); got != 24*time.Hour {
			t.Fatalf("backoffDelay(24h, 1, refused) = %v; want 24h", got)
		}

		// SIGHUP cuts the backoff short, as it lifts a hold.
		h.nextFor("a").ret(fetch.Result{Err: refused})
		h.clock.waitTimer(t, at.Add(8*time.Hour))
		if n := h.d.LiftAuthHolds(); n != 1 {
			t.Fatalf("LiftAuthHolds = %d; want 1", n)
		}
		h.nextFor("a").ret(fetch.Result{})
		if st := h.waitIdleOrBackoff("a"); st.State != StateIdle || st.Failures != 0 {
			t.Fatalf("after success: status = %+v; want idle", st)
		}
		if n := h.countLog(`level=ERROR msg="authentication failed`); n != 0 {
			t.Fatalf("a refused login was taken for wrong credentials (auth-hold):\n%s", h.logs)
		}
	})
}

// TestDaemonAuthHold: ErrAuth stops the account's polls until PollNow or
// a Reload that changes the account; an unchanged reload keeps the hold.
func TestDaemonAuthHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := acct("a", "pop.example", time.Minute)
		h := newHarness(t, config(a, acct("b", "other.example", time.Hour)), nil)
		h.start()
		errAuth := fmt.Errorf("pass: %w: -ERR [AUTH] invalid credentials", fetch.ErrAuth)
		polls := h.nextN(2)
		polls["a"].ret(fetch.Result{Err: errAuth})
		polls["b"].ret(fetch.Result{})
		h.waitIdleOrBackoff("a")
		h.clock.waitTimer(t, t0.Add(time.Hour)) // only b is scheduled
		st := h.status("a")
		if st.State != StateAuthHold || !st.NextPoll.IsZero() {
			t.Fatalf("after ErrAuth: status = %+v; want auth-hold, no next poll", st)
		}
		if n := h.countLog(`level=ERROR msg="authentication failed`); n != 1 {
			t.Fatalf("%d Error lines for the auth failure; want 1:\n%s", n, h.logs)
		}
		h.clock.Advance(59 * time.Minute)
		if h.polling() != 0 {
			t.Fatalf("account in auth-hold was polled")
		}

		// An unchanged reload keeps the hold.
		h.d.Reload(config(acct("a", "pop.example", time.Minute), acct("b", "other.example", time.Hour)))
		h.clock.waitTimer(t, t0.Add(time.Hour))
		if st := h.status("a"); st.State != StateAuthHold {
			t.Fatalf("after unchanged Reload: state = %v; want auth-hold", st.State)
		}

		// PollNow lifts the hold for one try; it fails again → held again.
		done := make(chan []fetch.Result, 1)
		go func() {
			res, err := h.d.PollNow(context.Background(), []string{"a"})
			if err != nil {
				t.Errorf("PollNow: %v", err)
			}
			done <- res
		}()
		h.nextFor("a").ret(fetch.Result{Err: errAuth})
		if res := <-done; len(res) != 1 || !errors.Is(res[0].Err, fetch.ErrAuth) {
			t.Fatalf("PollNow = %+v; want one fetch.ErrAuth result", res)
		}
		if st := h.waitIdleOrBackoff("a"); st.State != StateAuthHold {
			t.Fatalf("after failed PollNow: state = %v; want auth-hold", st.State)
		}

		// A changed password lifts the hold: polled soon (jitter 0: at once).
		changed := acct("a", "pop.example", time.Minute)
		changed.Password.Inline = "fixed"
		h.d.Reload(config(changed, acct("b", "other.example", time.Hour)))
		h.succeedsWith("a", "fixed")
	})
}

// TestDaemonLoginDelay: the server's LOGIN-DELAY pushes the next poll
// past the interval, and PollNow inside it does not log in.
func TestDaemonLoginDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, 2*time.Minute)
		h.nextFor("a").ret(fetch.Result{LoginDelay: 10 * time.Minute})
		next := t0.Add(10 * time.Minute)
		h.clock.waitTimer(t, next)
		if st := h.status("a"); !st.NextPoll.Equal(next) || !st.NotBefore.Equal(next) {
			t.Fatalf("status = %+v; want next poll and not-before at t0+10m", st)
		}
		res, err := h.d.PollNow(context.Background(), nil)
		if err != nil || len(res) != 1 || !errors.Is(res[0].Err, fetch.ErrLoginDelay) {
			t.Fatalf("PollNow inside LOGIN-DELAY = %+v, %v; want an fetch.ErrLoginDelay result", res, err)
		}
		h.clock.Advance(10*time.Minute - time.Second)
		if h.polling() != 0 {
			t.Fatalf("polled inside LOGIN-DELAY")
		}
		h.clock.Advance(time.Second)
		// A failure with a delay: backoff (30s) is shorter, the delay wins.
		h.nextFor("a").ret(fetch.Result{Err: fmt.Errorf("%w: [LOGIN-DELAY] wait", fetch.ErrLoginDelay), LoginDelay: 5 * time.Minute})
		h.clock.waitTimer(t, next.Add(5*time.Minute))
	})
}

// TestDaemonLimits: at most MaxParallel sessions, at most PerServer to one
// host (case-insensitive), and a freed slot is reused at once.
func TestDaemonLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := config(
			acct("a1", "pop.A.example", time.Hour), acct("a2", "POP.a.example", time.Hour),
			acct("a3", "pop.a.example", time.Hour), acct("a4", "pop.a.example", time.Hour),
			acct("b1", "pop.b.example", time.Hour), acct("b2", "pop.b.example", time.Hour),
			acct("c1", "pop.c.example", time.Hour),
		)
		cfg.MaxParallel, cfg.PerServer = 4, 2
		h := newHarness(t, cfg, nil)
		h.start()
		pending := map[string]string{} // not yet started: name → host
		for _, a := range cfg.Accounts {
			pending[a.Name] = strings.ToLower(a.Server)
		}
		var running []*call
		take := func() {
			c := h.next()
			delete(pending, c.name)
			running = append(running, c)
		}
		for range 4 {
			take()
		}
		if n := h.polling(); n != 4 {
			t.Fatalf("%d polls running; want MaxParallel 4", n)
		}
		for len(running) > 0 {
			h.mu.Lock()
			if h.maxTotal > 4 || h.maxHost > 2 {
				t.Fatalf("max sessions %d (want ≤4), max per host %d (want ≤2)", h.maxTotal, h.maxHost)
			}
			h.mu.Unlock()
			c := running[0]
			running = running[1:]
			c.ret(fetch.Result{})
			// The freed slot goes to a waiting account whose host has room.
			perHost := map[string]int{}
			for _, r := range running {
				perHost[strings.ToLower(r.acct.Server)]++
			}
			for _, host := range pending {
				if perHost[host] < 2 {
					take()
					break
				}
			}
		}
		for _, a := range h.d.Status().Accounts {
			h.waitIdleOrBackoff(a.Name)
		}
		for _, a := range h.d.Status().Accounts {
			if a.Totals.Polls != 1 {
				t.Errorf("account %s: %d polls; want 1", a.Name, a.Totals.Polls)
			}
		}
	})
}

// TestDaemonSameAccountQueued: a PollNow on an account that is polling
// does not start a second session; it gets one more poll afterwards.
func TestDaemonSameAccountQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, time.Minute)
		first := h.nextFor("a")
		// Two concurrent requests share the extra poll; the poll in flight
		// must not answer them.
		done := h.queueNow(t, "a", 2)
		first.ret(fetch.Result{New: 1})
		second := h.nextFor("a")
		second.ret(fetch.Result{New: 2})
		for range 2 {
			if res := <-done; len(res) != 1 || res[0].New != 2 {
				t.Fatalf("PollNow = %+v; want the result of the poll after the request (New 2)", res)
			}
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.maxAcct != 1 {
			t.Fatalf("max concurrent sessions for one account = %d; want 1", h.maxAcct)
		}
	})
}

// queueNow starts n PollNow requests for name, each on its own goroutine,
// and returns once the daemon has queued them (every goroutine waits);
// their results arrive on the channel.
func (h *harness) queueNow(t *testing.T, name string, n int) <-chan []fetch.Result {
	t.Helper()
	done := make(chan []fetch.Result, n)
	for range n {
		go func() {
			res, err := h.d.PollNow(context.Background(), []string{name})
			if err != nil {
				t.Errorf("PollNow: %v", err)
			}
			done <- res
		}()
	}
	synctest.Wait()
	return done
}

// TestDaemonSlowAccount: an account stuck in a poll holds only its slot;
// others on the same and other servers keep their schedule.
func TestDaemonSlowAccount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, config(acct("slow", "pop.example", time.Minute), acct("fast", "pop.example", time.Minute)), nil)
		h.start()
		polls := h.nextN(2)
		polls["fast"].ret(fetch.Result{})
		for range 5 {
			h.clock.waitTimer(t, h.clock.Now().Add(time.Minute))
			h.clock.Advance(time.Minute)
			h.nextFor("fast").ret(fetch.Result{})
		}
		polls["slow"].ret(fetch.Result{})
	})
}

// TestDaemonReload covers add, remove (with a poll in flight), change and
// unchanged, and the generation counter.
func TestDaemonReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gone := acct("gone", "pop.example", time.Hour)
		// Its poll stays in flight throughout; keep its time limit (30 ×
		// timeout) beyond the test so the limit is not the scheduler's timer.
		gone.Timeout = time.Hour
		h := newHarness(t, config(
			gone,
			acct("changed", "pop.example", time.Hour),
			acct("same", "other.example", time.Hour),
		), nil)
		h.start()
		polls := h.nextN(3)
		h.clock.Advance(time.Minute)
		polls["changed"].ret(fetch.Result{}) // ends at t0+1m
		polls["same"].ret(fetch.Result{})
		h.waitIdleOrBackoff("changed")
		h.waitIdleOrBackoff("same")
		h.clock.waitTimer(t, t0.Add(time.Hour+time.Minute))
		sameNext := h.status("same").NextPoll

		h.clock.Advance(time.Minute) // t0+2m
		ch := acct("changed", "pop.example", 10*time.Minute)
		moved := acct("same", "other.example", time.Hour)
		moved.DeclRange.Start.Line = 42 // moving a block is not a change
		h.d.Reload(config(ch, moved, acct("new", "new.example", time.Hour)))

		// "new" is polled at once (jitter 0); "gone" is still in flight.
		h.nextFor("new").ret(fetch.Result{})
		st := h.d.Status()
		if st.Generation != 2 || !st.LoadedAt.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("generation %d loaded at %v; want 2 at t0+2m", st.Generation, st.LoadedAt.Sub(t0))
		}
		var names []string
		for _, a := range st.Accounts {
			names = append(names, a.Name)
		}
		if got := strings.Join(names, ","); got != "changed,new,same" {
			t.Fatalf("accounts = %s; want changed,new,same", got)
		}
		if got := h.status("changed").NextPoll; !got.Equal(t0.Add(11 * time.Minute)) {
			t.Fatalf("changed: next poll %v; want t0+11m (last end + new interval)", got.Sub(t0))
		}
		if got := h.status("same").NextPoll; !got.Equal(sameNext) {
			t.Fatalf("same: next poll %v; want unchanged %v", got.Sub(t0), sameNext.Sub(t0))
		}
		if _, err := h.d.PollNow(context.Background(), []string{"gone"}); !errors.Is(err, ErrUnknownAccount) {
			t.Fatalf("PollNow(gone) = %v; want ErrUnknownAccount", err)
		}

		// The removed account's poll finishes; it is never polled again.
		polls["gone"].ret(fetch.Result{})
		h.clock.waitTimer(t, t0.Add(11*time.Minute))
		h.clock.Advance(9 * time.Minute)
		h.nextFor("changed").ret(fetch.Result{})
		h.waitIdleOrBackoff("changed")
		h.clock.Advance(2 * time.Hour)
		for range 3 {
			if c := h.next(); c.name == "gone" {
				t.Fatalf("removed account polled")
			} else {
				c.ret(fetch.Result{})
			}
		}
	})
}

func TestDaemonPollNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, config(acct("a", "pop.example", time.Hour), acct("b", "pop.example", time.Hour)), nil)
		h.start()
		for range 2 {
			h.next().ret(fetch.Result{})
		}
		h.waitIdleOrBackoff("a")
		h.waitIdleOrBackoff("b")

		if _, err := h.d.PollNow(context.Background(), []string{"a", "nope"}); !errors.Is(err, ErrUnknownAccount) || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("PollNow(a, nope) = %v; want ErrUnknownAccount naming nope", err)
		}
		if h.polling() != 0 {
			t.Fatalf("PollNow with an unknown name started a poll")
		}

		// No names: every account, at once, results in name order.
		done := make(chan []fetch.Result, 1)
		go func() {
			res, err := h.d.PollNow(context.Background(), nil)
			if err != nil {
				t.Errorf("PollNow: %v", err)
			}
			done <- res
		}()
		polls := h.nextN(2)
		polls["b"].ret(fetch.Result{Delivered: 2})
		polls["a"].ret(fetch.Result{Delivered: 1})
		res := <-done
		if len(res) != 2 || res[0].Account != "a" || res[0].Delivered != 1 || res[1].Account != "b" || res[1].Delivered != 2 {
			t.Fatalf("PollNow() = %+v; want a (1 delivered), b (2 delivered)", res)
		}

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := h.d.PollNow(ctx, []string{"a"}); !errors.Is(err, context.Canceled) {
			t.Fatalf("PollNow(cancelled ctx) = %v; want context.Canceled", err)
		}
	})
}

// TestDaemonShutdown: cancelling Run's ctx waits for the poll in flight
// without cancelling its ctx; Abort then cancels it.
func TestDaemonShutdown(t *testing.T) {
	for _, abort := range []bool{false, true} {
		t.Run(fmt.Sprintf("abort=%v", abort), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := startOne(t, time.Hour)
				c := h.nextFor("a")
				h.cancel()
				synctest.Wait()
				if p := h.d.phaseNow(); p != phaseStopping {
					t.Fatalf("phase after cancel with a poll in flight = %v; want stopping", p)
				}
				if _, err := h.d.PollNow(context.Background(), nil); !errors.Is(err, ErrStopped) {
					t.Fatalf("PollNow while stopping = %v; want ErrStopped", err)
				}
				select {
				case err := <-h.runErr:
					t.Fatalf("Run returned %v with a poll in flight", err)
				default:
				}
				if c.ctx.Err() != nil {
					t.Fatalf("poll ctx cancelled by a graceful stop")
				}
				if !c.stopping() {
					t.Fatalf("poll does not see the graceful stop (PollOptions.Stop)")
				}
				if abort {
					h.d.Abort()
					select {
					case <-c.ctx.Done():
					case <-time.After(wait):
						t.Fatalf("Abort did not cancel the poll ctx")
					}
				} else {
					c.ret(fetch.Result{})
				}
				select {
				case err := <-h.runErr:
					if err != nil {
						t.Fatalf("Run = %v; want nil", err)
					}
				case <-time.After(wait):
					t.Fatalf("Run did not return after the poll ended")
				}
				h.runErr <- nil // for the cleanup
				if abort && h.countLog("poll aborted") != 1 {
					t.Fatalf("no 'poll aborted' log:\n%s", h.logs)
				}
				if h.countLog("level=WARN") != 0 {
					t.Fatalf("shutdown logged a warning:\n%s", h.logs)
				}
			})
		})
	}
}

func (d *Daemon) phaseNow() phase {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.phase
}

// TestDaemonPanic: a panicking PollFunc is logged with its stack and the
// account, counts as a failure, and the daemon keeps scheduling.
func TestDaemonPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, config(acct("a", "pop.example", time.Minute), acct("b", "pop.example", time.Minute)), nil)
		h.start()
		polls := h.nextN(2)
		polls["a"].reply <- reply{panicVal: "boom"}
		polls["b"].ret(fetch.Result{})
		h.waitIdleOrBackoff("b")
		st := h.waitIdleOrBackoff("a")
		if st.State != StateBackoff || st.Last == nil || !strings.Contains(st.Last.Err, "boom") {
			t.Fatalf("after panic: status = %+v; want backoff with the panic as error", st)
		}
		logs := h.logs.String()
		if !strings.Contains(logs, `msg="panic in poll" account=a panic=boom`) || !strings.Contains(logs, "runtime/debug.Stack") {
			t.Fatalf("panic not logged with account and stack:\n%s", logs)
		}
		h.clock.Advance(time.Minute)
		for range 2 {
			h.next().ret(fetch.Result{})
		}
	})
}

// TestDaemonLocked: another popfetch holding the mailbox is not a
// failure: no backoff, no warning, one Info line however often it happens,
// and the retry comes after min(interval, 1m), not a whole interval
// (which may be 24h).
func TestDaemonLocked(t *testing.T) {
	for _, tt := range []struct{ interval, retry time.Duration }{
		{24 * time.Hour, time.Minute},
		{30 * time.Second, 30 * time.Second},
	} {
		t.Run(tt.interval.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := startOne(t, tt.interval)
				errLocked := fmt.Errorf("%w: uidl: state file locked", fetch.ErrLocked)
				for range 3 {
					h.nextFor("a").ret(fetch.Result{Err: errLocked})
					next := h.clock.Now().Add(tt.retry)
					h.clock.waitTimer(t, next)
					if st := h.waitIdleOrBackoff("a"); st.State != StateIdle || st.Failures != 0 || !st.NextPoll.Equal(next) {
						t.Fatalf("after ErrLocked: status = %+v; want idle, next poll in %v", st, tt.retry)
					}
					h.clock.Advance(tt.retry - time.Millisecond)
					if h.polling() != 0 {
						t.Fatalf("polled before the retry was due")
					}
					h.clock.Advance(time.Millisecond)
				}
				h.nextFor("a").ret(fetch.Result{})
				h.clock.waitTimer(t, h.clock.Now().Add(tt.interval))
				if n := h.countLog("mailbox locked by another popfetch"); n != 1 {
					t.Errorf("%d 'locked' lines; want 1:\n%s", n, h.logs)
				}
				if n := h.countLog("level=WARN"); n != 0 {
					t.Errorf("fetch.ErrLocked logged %d warnings; want none:\n%s", n, h.logs)
				}
			})
		})
	}
}

// TestDaemonReloadRemovesQueued: a PollNow queued behind a running poll
// fails with ErrRemoved when Reload drops the account; the poll in flight
// still finishes and reports.
func TestDaemonReloadRemovesQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, config(acct("a", "pop.example", time.Hour), acct("b", "pop.example", time.Hour)), nil)
		h.start()
		polls := h.nextN(2)
		done := h.queueNow(t, "a", 1)
		h.d.Reload(config(acct("b", "pop.example", time.Hour)))
		if res := <-done; len(res) != 1 || !errors.Is(res[0].Err, ErrRemoved) {
			t.Fatalf("queued PollNow after removal = %+v; want ErrRemoved", res)
		}
		polls["a"].ret(fetch.Result{})
		polls["b"].ret(fetch.Result{})
		synctest.Wait()
		h.d.mu.Lock()
		_, still := h.d.accts["a"]
		h.d.mu.Unlock()
		if still {
			t.Fatalf("removed account kept after its last poll")
		}
	})
}

// TestDaemonReloadDuringPoll: a poll that fails on settings a Reload has
// already replaced does not put the new settings on hold.
func TestDaemonReloadDuringPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, time.Hour)
		c := h.nextFor("a")
		fixed := acct("a", "pop.example", time.Hour)
		fixed.Password.Inline = "fixed"
		h.d.Reload(config(fixed))
		c.ret(fetch.Result{Err: fmt.Errorf("%w: -ERR [AUTH] bad password", fetch.ErrAuth)})
		h.succeedsWith("a", "fixed") // jitter 0: at once
	})
}

func TestDaemonErrorKeyIgnoresEphemeralPort(t *testing.T) {
	a := errors.New("account x: read tcp 127.0.0.1:58954->127.0.0.1:110: i/o timeout")
	b := errors.New("account x: read tcp 127.0.0.1:40022->127.0.0.1:110: i/o timeout")
	c := errors.New("account x: read tcp [::1]:40022->[::1]:110: i/o timeout")
	d := errors.New("account x: read tcp [::1]:40023->[::1]:110: i/o timeout")
	if errorKey(a) != errorKey(b) || errorKey(c) != errorKey(d) {
		t.Fatalf("errorKey differs: %q vs %q; %q vs %q", errorKey(a), errorKey(b), errorKey(c), errorKey(d))
	}
	if errorKey(a) == errorKey(errors.New("account x: dial tcp 127.0.0.1:110: connect: connection refused")) {
		t.Fatal("different errors share a key")
	}
}

// readRC returns an rc file of ../../testdata/rc/same (see rcfile's
// equal_test.go): a.hcl, with every kind of nested block, and a-moved.hcl,
// which means the same with its blocks moved and a comment on top.
func readRC(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata/rc/same", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func parseRC(t *testing.T, src string) (*rcfile.Config, map[string]*rcfile.Account) {
	t.Helper()
	cfg, diags := rcfile.Parse([]byte(src), "/etc/popfetch/popfetch.hcl")
	if diags.HasErrors() {
		t.Fatalf("Parse: %v", diags)
	}
	m := map[string]*rcfile.Account{}
	for _, a := range cfg.Accounts {
		m[a.Name] = a
	}
	return cfg, m
}

// TestDaemonReloadMovedBlocks: reloading a file whose blocks only moved
// keeps every account's state: backoff stays backoff (no retry storm), a
// hold stays held, the schedule is unchanged, nothing is "changed".
func TestDaemonReloadMovedBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, _ := parseRC(t, readRC(t, "a.hcl"))
		h := newHarness(t, cfg, nil)
		h.start()
		polls := h.nextN(3)
		polls["one"].ret(fetch.Result{Err: errors.New("dial tcp: connection refused")})
		polls["two"].ret(fetch.Result{Err: fmt.Errorf("%w: -ERR [AUTH] no", fetch.ErrAuth)})
		polls["three"].ret(fetch.Result{})
		before := map[string]AccountStatus{}
		for _, name := range []string{"one", "two", "three"} {
			before[name] = h.waitIdleOrBackoff(name)
		}
		h.clock.waitTimer(t, t0.Add(backoffDelay(2*time.Minute, 1, false)))

		moved, _ := parseRC(t, readRC(t, "a-moved.hcl"))
		if err := h.d.Reload(moved); err != nil {
			t.Fatalf("Reload = %v", err)
		}
		if h.d.Status().Generation != 2 {
			t.Fatalf("generation %d; want 2", h.d.Status().Generation)
		}
		h.clock.waitTimer(t, t0.Add(backoffDelay(2*time.Minute, 1, false)))
		for name, want := range before {
			got := h.status(name)
			if got.State != want.State || got.Failures != want.Failures || !got.NextPoll.Equal(want.NextPoll) {
				t.Errorf("%s after reloading moved blocks: %+v; want unchanged %+v", name, got, want)
			}
		}
		if n := h.countLog("account changed"); n != 0 {
			t.Errorf("%d 'account changed' lines for blocks that only moved:\n%s", n, h.logs)
		}
		if h.polling() != 0 {
			t.Errorf("the reload started a poll")
		}
	})
}

// TestDaemonLogLevels: one Info line for a poll that moved mail, Debug for
// an idle one, Warn when a message could not be delivered.
func TestDaemonLogLevels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, time.Minute)
		for _, r := range []fetch.Result{{Messages: 4}, {Messages: 6, New: 2, Delivered: 2, Deleted: 2}, {Messages: 4}, {Messages: 5, New: 1, Failed: 1}} {
			h.nextFor("a").ret(r)
			h.clock.waitTimer(t, h.clock.Now().Add(time.Minute))
			h.clock.Advance(time.Minute)
		}
		h.nextFor("a")
		want := map[string]int{
			`level=DEBUG msg="poll done" account=a messages=4 new=0`:            2,
			`level=INFO msg="poll done" account=a messages=6 new=2 delivered=2`: 1,
			`level=WARN msg="poll done" account=a messages=5 new=1 delivered=0`: 1,
			`msg="poll done"`: 4,
		}
		for line, n := range want {
			if got := h.countLog(line); got != n {
				t.Errorf("%d lines with %q; want %d:\n%s", got, line, n, h.logs)
			}
		}
	})
}

// TestDaemonLiftAuthHolds: SIGHUP's LiftAuthHolds releases a held account
// at once (jitter 0); a poll running at that moment that fails
// authentication is retried once instead of held, then held again.
func TestDaemonLiftAuthHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, config(acct("a", "pop.example", time.Hour), acct("b", "other.example", time.Hour)), nil)
		h.start()
		errAuth := fmt.Errorf("%w: -ERR [AUTH] invalid credentials", fetch.ErrAuth)
		polls := h.nextN(2)
		polls["a"].ret(fetch.Result{Err: errAuth})
		if st := h.waitIdleOrBackoff("a"); st.State != StateAuthHold {
			t.Fatalf("state = %v; want auth-hold", st.State)
		}
		// b is still polling: its failure comes after the lift.
		if n := h.d.LiftAuthHolds(); n != 1 {
			t.Fatalf("LiftAuthHolds() = %d; want 1 (a)", n)
		}
		h.nextFor("a").ret(fetch.Result{})
		if st := h.waitIdleOrBackoff("a"); st.State != StateIdle {
			t.Fatalf("a after the lift and a good poll: state %v; want idle", st.State)
		}
		if n := h.countLog(`msg="authentication hold lifted by the operator; polling again" account=a`); n != 1 {
			t.Errorf("%d lift lines for a; want 1:\n%s", n, h.logs)
		}

		polls["b"].ret(fetch.Result{Err: errAuth})
		h.nextFor("b").ret(fetch.Result{Err: errAuth}) // one more try, then held
		if st := h.waitIdleOrBackoff("b"); st.State != StateAuthHold {
			t.Fatalf("b after its retry failed: state %v; want auth-hold", st.State)
		}
		h.clock.waitTimer(t, t0.Add(time.Hour)) // only a is scheduled
		if n := h.d.LiftAuthHolds(); n != 1 {
			t.Fatalf("second LiftAuthHolds() = %d; want 1 (b)", n)
		}
		h.nextFor("b").ret(fetch.Result{})
	})
}

// TestDaemonReloadStateDirRefused: a new state_dir needs a restart; the
// reload is refused whole, and the running config stays.
func TestDaemonReloadStateDirRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := config(acct("a", "pop.example", time.Hour))
		cfg.StateDir = "/var/lib/popfetch"
		h := newHarness(t, cfg, nil)
		next := config(acct("a", "pop.example", time.Hour), acct("b", "pop.example", time.Hour))
		next.StateDir = "/srv/popfetch"
		err := h.d.Reload(next)
		if !errors.Is(err, ErrRestartRequired) || !strings.Contains(err.Error(), "state_dir changed") {
			t.Fatalf("Reload(new state_dir) = %v; want ErrRestartRequired naming state_dir", err)
		}
		if st := h.d.Status(); st.Generation != 1 || len(st.Accounts) != 1 {
			t.Fatalf("after a refused reload: generation %d, %d accounts; want 1, 1", st.Generation, len(st.Accounts))
		}
		next.StateDir = cfg.StateDir
		if err := h.d.Reload(next); err != nil || h.d.Status().Generation != 2 {
			t.Fatalf("Reload(same state_dir) = %v, generation %d; want nil, 2", err, h.d.Status().Generation)
		}
	})
}

// TestDaemonReloadAccountStateDirRefused: a per-account state_dir is
// where that mailbox's UIDL journal lives; moving it in a running daemon
// would start the mailbox with an empty journal (a keep mailbox fetched
// again in full). Such a reload is refused whole like a top-level one,
// also when the account is renamed at the same time (same mailbox), and
// the running config stays.
func TestDaemonReloadAccountStateDirRefused(t *testing.T) {
	cfg := config(acctIn("a", "joe", "/var/lib/popfetch"), acctIn("b", "ann", "/var/lib/popfetch"))
	cfg.StateDir = "/var/lib/popfetch"
	for _, tc := range []struct {
		name string
		next *rcfile.Config
		want string // "" = applied
	}{
		{"moved", config(acctIn("a", "joe", "/srv/a"), acctIn("b", "ann", "/var/lib/popfetch")), "account a: state_dir changed from /var/lib/popfetch to /srv/a"},
		{"renamed and moved", config(acctIn("x", "joe", "/srv/a"), acctIn("b", "ann", "/var/lib/popfetch")), "account x: state_dir changed"},
		{"other mailbox", config(acctIn("a", "joe", "/var/lib/popfetch"), acctIn("b", "ann", "/var/lib/popfetch"), acctIn("c", "eve", "/srv/c")), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, cfg, nil)
				tc.next.StateDir = cfg.StateDir
				err := h.d.Reload(tc.next)
				if tc.want == "" {
					if err != nil || h.d.Status().Generation != 2 {
						t.Fatalf("Reload = %v, generation %d; want nil, 2", err, h.d.Status().Generation)
					}
					return
				}
				if !errors.Is(err, ErrRestartRequired) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Reload = %v; want ErrRestartRequired containing %q", err, tc.want)
				}
				st := h.d.Status()
				if st.Generation != 1 || len(st.Accounts) != 2 || h.status("a").Name != "a" {
					t.Fatalf("after a refused reload: generation %d, accounts %+v; want 1 and the old ones", st.Generation, st.Accounts)
				}
				h.d.mu.Lock()
				dir := h.d.accts["a"].cfg.StateDir
				h.d.mu.Unlock()
				if dir != "/var/lib/popfetch" {
					t.Fatalf("account a polls with state_dir %s after a refused reload; want the old one", dir)
				}
			})
		})
	}
}

// TestDaemonReloadStateDirRemovedReadded: removing an account in one
// reload and adding its mailbox back with another state_dir in the next
// is a move of its journal too, refused; back with the old state_dir, or
// under another name with it, is fine.
func TestDaemonReloadStateDirRemovedReadded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := config(acctIn("a", "joe", "/var/lib/popfetch"), acctIn("b", "ann", "/var/lib/popfetch"))
		cfg.StateDir = "/var/lib/popfetch"
		h := newHarness(t, cfg, nil)
		for i, step := range []struct {
			next *rcfile.Config
			want string // "" = applied
		}{
			{config(acctIn("b", "ann", "/var/lib/popfetch")), ""}, // a removed
			{config(acctIn("a", "joe", "/srv/a"), acctIn("b", "ann", "/var/lib/popfetch")), "account a: state_dir changed from /var/lib/popfetch to /srv/a"},
			{config(acctIn("x", "joe", "/srv/a"), acctIn("b", "ann", "/var/lib/popfetch")), "account x: state_dir changed from /var/lib/popfetch to /srv/a"},
			{config(acctIn("x", "joe", "/var/lib/popfetch"), acctIn("b", "ann", "/var/lib/popfetch")), ""},
		} {
			step.next.StateDir = cfg.StateDir
			gen := h.d.Status().Generation
			err := h.d.Reload(step.next)
			if step.want == "" {
				if err != nil || h.d.Status().Generation != gen+1 {
					t.Fatalf("step %d: Reload = %v, generation %d; want nil, %d", i, err, h.d.Status().Generation, gen+1)
				}
				continue
			}
			if !errors.Is(err, ErrRestartRequired) || !strings.Contains(err.Error(), step.want) || h.d.Status().Generation != gen {
				t.Fatalf("step %d: Reload = %v, generation %d; want ErrRestartRequired containing %q, generation %d", i, err, h.d.Status().Generation, step.want, gen)
			}
		}
	})
}

// TestDaemonFetchAllOncePerPass: fetch_all is one pass over the mailbox
// per start or change of the account, not every poll (with keep, every
// poll would deliver the whole mailbox again). A poll that fails before
// delivering anything leaves the pass for the next one; one that got
// through, or delivered something, ends it; a changed account gets a new
// pass. The account's config itself is never changed.
func TestDaemonFetchAllOncePerPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := acct("a", "pop.example", time.Hour)
		a.FetchAll, a.Keep = true, true
		h := newHarness(t, config(a), nil)
		h.start()
		first := true
		poll := func(wantFetchAll bool, res fetch.Result) {
			t.Helper()
			var c *call
			done := make(chan struct{})
			if first {
				c, first = h.nextFor("a"), false // the scheduled first poll
				close(done)
			} else {
				go func() { h.d.PollNow(context.Background(), []string{"a"}); close(done) }()
				c = h.nextFor("a")
			}
			got := c.acct.FetchAll
			c.ret(res)
			<-done
			h.waitIdleOrBackoff("a")
			if got != wantFetchAll {
				t.Fatalf("poll given FetchAll = %v; want %v", got, wantFetchAll)
			}
		}
		refused := errors.New("connection refused")
		poll(true, fetch.Result{Err: refused})  // failed before delivering: the pass is still due
		poll(true, fetch.Result{Delivered: 3})  // got through: the pass is over
		poll(false, fetch.Result{})             // only new mail from now on
		poll(false, fetch.Result{Err: refused}) //
		if !a.FetchAll {
			t.Fatalf("the daemon changed the account's config")
		}
		// An unchanged reload starts no new pass.
		h.d.Reload(config(a))
		poll(false, fetch.Result{})
		// A change of the account (here its interval) does; a poll that
		// delivered something before it failed ends it too.
		b := *a
		b.Interval = 2 * time.Hour
		h.d.Reload(config(&b))
		poll(true, fetch.Result{Err: refused, Delivered: 1})
		poll(false, fetch.Result{})
	})
}

// TestDaemonLoginDelayAnswersQueued: a PollNow queued behind a poll that
// ends with a LOGIN-DELAY is answered when that poll ends, not when the
// delay does.
func TestDaemonLoginDelayAnswersQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, time.Minute)
		c := h.nextFor("a")
		done := h.queueNow(t, "a", 1)
		c.ret(fetch.Result{LoginDelay: time.Hour})
		select {
		case res := <-done:
			if len(res) != 1 || !errors.Is(res[0].Err, fetch.ErrLoginDelay) {
				t.Fatalf("queued PollNow = %+v; want an fetch.ErrLoginDelay result", res)
			}
		case <-time.After(wait):
			t.Fatalf("queued PollNow still waiting for the LOGIN-DELAY to end (the clock did not move)")
		}
		h.clock.waitTimer(t, t0.Add(time.Hour))
		if h.polling() != 0 {
			t.Fatalf("polled inside the LOGIN-DELAY")
		}
	})
}

// TestDaemonAbortIsNotAFailure: after Abort (the second signal) a session
// returns whatever the closed connection gave it, e.g. "use of closed
// network connection", not context.Canceled. That is the abort: no
// failure counted, no backoff, no warning.
func TestDaemonAbortIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{})
		poll := func(ctx context.Context, a *rcfile.Account, _ fetch.PollOptions) fetch.Result {
			close(started)
			<-ctx.Done()
			return fetch.Result{Err: fmt.Errorf("account a: retr 7: read tcp 127.0.0.1:4242->127.0.0.1:110: use of closed network connection")}
		}
		logs := &testutil.SyncBuffer{}
		d := New(config(acct("a", "pop.example", time.Hour)), poll, Options{
			Jitter: func(time.Duration) time.Duration { return 0 },
			Log:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		ctx, cancel := context.WithCancel(context.Background())
		runErr := make(chan error, 1)
		go func() { runErr <- d.Run(ctx) }()
		<-started
		cancel()
		d.Abort()
		select {
		case err := <-runErr:
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
		case <-time.After(wait):
			t.Fatal("Run did not return after Abort")
		}
		st := d.Status().Accounts[0]
		if st.State != StateIdle || st.Failures != 0 || st.Totals.Failures != 0 {
			t.Errorf("after an aborted poll: %+v; want idle, no failures", st)
		}
		if !strings.Contains(logs.String(), `msg="poll aborted" account=a`) || strings.Contains(logs.String(), "level=WARN") {
			t.Errorf("want 'poll aborted' and no warning:\n%s", logs)
		}
	})
}

// TestDaemonPollTimeLimit: a session still running after its time limit
// is asked to stop gracefully (its ctx is not cancelled); the account is
// due again at once but after the accounts already waiting for a slot.
func TestDaemonPollTimeLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow, other := acct("a-slow", "pop.example", time.Hour), acct("b-waiting", "other.example", time.Hour)
		slow.Timeout = 2 * time.Minute // limit max(30m, 30 × 2m) = 1h
		other.Timeout = time.Hour      // 30h: not reached here
		cfg := config(slow, other)
		cfg.MaxParallel = 1
		// Both first polls 1s after start: the session starts on a timer, not
		// on the wake-up of start-up, so the scheduler must plan the new
		// session's time limit when it starts it.
		h := newHarness(t, cfg, func(time.Duration) time.Duration { return time.Second })
		h.start()
		h.clock.waitTimer(t, t0.Add(time.Second))
		h.clock.Advance(time.Second)
		c := h.nextFor("a-slow") // both due at t0+1s; names break the tie
		limit := pollTimeLimit(slow)
		if limit != time.Hour {
			t.Fatalf("pollTimeLimit = %v; want 1h", limit)
		}
		h.clock.waitTimer(t, t0.Add(time.Second+limit))
		h.clock.Advance(limit - time.Second)
		if c.stopping() {
			t.Fatalf("poll told to stop before its limit")
		}
		h.clock.Advance(time.Second)
		if !c.stopping() {
			t.Fatalf("poll not told to stop at its time limit")
		}
		if c.ctx.Err() != nil {
			t.Fatalf("the time limit cancelled the poll ctx; want a graceful stop")
		}
		c.ret(fetch.Result{New: 10, Delivered: 10, Deleted: 10})
		h.nextFor("b-waiting").ret(fetch.Result{})
		c = h.nextFor("a-slow") // at once, not an interval later
		if c.stopping() {
			t.Fatalf("the new session starts already stopped")
		}
		if got := h.clock.Now(); !got.Equal(t0.Add(time.Second + limit)) {
			t.Fatalf("second session at t0+%v; want t0+%v", got.Sub(t0), time.Second+limit)
		}
		c.ret(fetch.Result{})
		if n := h.countLog("poll reached its time limit"); n != 1 {
			t.Errorf("%d time-limit lines; want 1:\n%s", n, h.logs)
		}
	})
}

// TestDaemonRenameWaitsForOldPoll: a reload that renames an account starts
// the new name only after the old name's last poll has ended: one mailbox
// never has two sessions, even across a rename (and a changed port).
func TestDaemonRenameWaitsForOldPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := acct("old", "pop.example", time.Hour)
		old.Username = "joe"
		old.Timeout = time.Hour // time limit 30h: not the scheduler's timer here
		h := newHarness(t, config(old, acct("other", "other.example", time.Hour)), nil)
		h.start()
		polls := h.nextN(2)
		polls["other"].ret(fetch.Result{})
		h.waitIdleOrBackoff("other")

		renamed := acct("new", "POP.example", time.Hour)
		renamed.Username, renamed.Port = "joe", 995
		h.clock.waitTimer(t, t0.Add(time.Hour))
		// other's new interval moves the scheduler's timer: once it shows,
		// the scheduler has acted on the reload.
		if err := h.d.Reload(config(renamed, acct("other", "other.example", 50*time.Minute))); err != nil {
			t.Fatal(err)
		}
		h.clock.waitTimer(t, t0.Add(50*time.Minute))
		if st := h.status("new"); st.State != StateIdle || h.polling() != 0 {
			t.Fatalf("new started while the old name's poll of the same mailbox runs: %+v", st)
		}
		polls["old"].ret(fetch.Result{})
		h.nextFor("new").ret(fetch.Result{})
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.maxHost > 1 {
			t.Fatalf("%d sessions to pop.example at once; want 1", h.maxHost)
		}
	})
}

// TestDaemonRetryRefusedDele: a scheduled poll does not ask again for the
// DELEs a server kept refusing; the first poll after the daemon starts, a
// poll an operator asks for (PollNow), the first poll after SIGHUP
// (LiftAuthHolds) and the first after a change of the account's config
// do, once each. The same polls reload the user directory
// (FreshDirectory).
func TestDaemonRetryRefusedDele(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, time.Minute)
		retrying := func(c *call) bool { return c.opts.RetryDele }
		step := func(what string, want bool) {
			t.Helper()
			c := h.nextFor("a")
			if got := retrying(c); got != want {
				t.Errorf("%s: poll retries refused DELEs = %v; want %v", what, got, want)
			}
			if got := c.opts.FreshDirectory; got != want {
				t.Errorf("%s: poll loads the directory afresh = %v; want %v", what, got, want)
			}
			c.ret(fetch.Result{Undeletable: 1})
			h.waitIdleOrBackoff("a")
		}
		step("first poll after the start", true)
		h.clock.Advance(time.Minute)
		step("next scheduled poll", false)

		done := make(chan []fetch.Result, 1)
		go func() { res, _ := h.d.PollNow(context.Background(), []string{"a"}); done <- res }()
		step("PollNow", true)
		if res := <-done; len(res) != 1 || res[0].Undeletable != 1 {
			t.Errorf("PollNow = %+v", res)
		}

		h.d.LiftAuthHolds()
		h.clock.Advance(time.Minute)
		step("first poll after SIGHUP", true)
		h.clock.Advance(time.Minute)
		step("the one after", false)

		h.d.Reload(config(acct("a", "pop.example", time.Minute)))
		h.clock.Advance(time.Minute)
		step("after an unchanged reload", false)
		changed := acct("a", "pop.example", time.Minute)
		changed.Keep = true
		h.d.Reload(config(changed))
		h.clock.Advance(time.Minute)
		step("after a config change", true)

		if st := h.status("a"); st.Last == nil || st.Last.Undeletable != 1 {
			t.Errorf("status Last = %+v; want Undeletable 1", st.Last)
		}
	})
}

// TestDaemonStatusDirectory: Status carries each account's directory state
// from its last poll, keeps it through a poll that failed before reaching
// the directory (the state lock held elsewhere), and drops it when the
// account's ldap block is gone.
func TestDaemonStatusDirectory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := acct("a", "pop.example", time.Minute)
		a.Multidrop = &rcfile.Multidrop{LocalDomains: []string{"example.com"}, LDAP: &rcfile.LDAP{URL: "ldaps://dc.example.com"}}
		h := newHarness(t, config(a), nil)
		h.start()
		t0 := time.Now()
		ok := &fetch.DirectoryState{Source: "ldap", URL: "ldaps://dc.example.com", Users: 42, Addresses: 97, LoadedAt: t0}
		stale := &fetch.DirectoryState{Source: "ldap", URL: "ldaps://dc.example.com", Users: 42, Addresses: 97, LoadedAt: t0,
			Stale: true, GraceUntil: t0.Add(time.Hour), LastError: "connection refused", LastErrorAt: t0.Add(time.Minute), FailingSince: t0.Add(time.Minute)}
		down := &fetch.DirectoryState{Source: "ldap", URL: "ldaps://dc.example.com", LastError: "connection refused",
			LastErrorAt: t0.Add(3 * time.Minute), FailingSince: t0.Add(time.Minute)}
		steps := []struct {
			name string
			res  fetch.Result
			want *fetch.DirectoryState
		}{
			{"loaded", fetch.Result{Directory: ok}, ok},
			{"stale copy", fetch.Result{Directory: stale}, stale},
			{"no good copy", fetch.Result{Directory: down, Err: fmt.Errorf("account a: %w: connection refused", fetch.ErrDirectory)}, down},
			{"failed before the directory", fetch.Result{Err: fetch.ErrLocked}, down},
		}
		for _, s := range steps {
			h.nextFor("a").ret(s.res)
			st := h.waitIdleOrBackoff("a")
			if got := st.Directory; fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", s.want) {
				t.Fatalf("%s: Status Directory = %+v; want %+v", s.name, got, s.want)
			}
			h.clock.Advance(time.Until(st.NextPoll)) // the backoff after a failure
		}
		h.nextFor("a").ret(fetch.Result{})
		h.waitIdleOrBackoff("a")
		h.d.Reload(config(acct("a", "pop.example", time.Minute)))
		h.clock.Advance(time.Minute)
		h.nextFor("a").ret(fetch.Result{})
		h.waitIdleOrBackoff("a")
		if got := h.status("a").Directory; got != nil {
			t.Fatalf("without ldap: Status Directory = %+v", got)
		}
	})
}

// TestDaemonStatusLastSuccess: LastSuccess is when the last poll without
// an error ended; a failed poll leaves it as it was.
func TestDaemonStatusLastSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startOne(t, time.Minute)
		if got := h.status("a").LastSuccess; !got.IsZero() {
			t.Fatalf("before any poll: LastSuccess = %v; want zero", got)
		}
		steps := []struct {
			name string
			err  error
			ok   bool // the poll counts as a success
		}{
			{"success", nil, true},
			{"failure", errors.New("dial tcp: connection refused"), false},
			{"success again", nil, true},
		}
		var want time.Time
		for _, s := range steps {
			h.nextFor("a").ret(fetch.Result{Err: s.err})
			st := h.waitIdleOrBackoff("a")
			if s.ok {
				want = time.Now()
			}
			if !st.LastSuccess.Equal(want) {
				t.Fatalf("%s: LastSuccess = %v; want %v", s.name, st.LastSuccess, want)
			}
			h.clock.Advance(time.Until(st.NextPoll))
		}
	})
}

// TestDaemonRecordReload: Status carries the last reload attempt, the
// diagnostics of a rejected one cut to MaxReloadDiagnostics, none for an
// applied one; and a Status taken earlier does not change with it.
func TestDaemonRecordReload(t *testing.T) {
	d := New(config(acct("a", "pop.example", time.Minute)), nil, Options{})
	if st := d.Status(); st.LastReload != nil {
		t.Fatalf("before any reload: LastReload = %+v; want nil", st.LastReload)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	diags := []string{"rc:1:1: error: a", "rc:2:1: error: b", "rc:3:1: error: c", "rc:4:1: error: d"}
	tests := []struct {
		name  string
		ok    bool
		diags []string
		want  []string
	}{
		{"rejected, many", false, diags, diags[:MaxReloadDiagnostics]},
		{"rejected, one", false, diags[:1], diags[:1]},
		{"applied", true, diags, nil},
	}
	for _, tt := range tests {
		d.RecordReload(at, tt.ok, tt.diags)
		st := d.Status()
		r := st.LastReload
		if r == nil || !r.At.Equal(at) || r.OK != tt.ok || !slices.Equal(r.Diagnostics, tt.want) {
			t.Fatalf("%s: LastReload = %+v; want at %v ok %v diagnostics %q", tt.name, r, at, tt.ok, tt.want)
		}
		if len(r.Diagnostics) > 0 {
			r.Diagnostics[0] = "changed"
			if d.Status().LastReload.Diagnostics[0] == "changed" {
				t.Fatalf("%s: Status shares its diagnostics with the daemon", tt.name)
			}
		}
	}
}
