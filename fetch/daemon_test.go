package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/rcfile"
)

// wait bounds every wait on the daemon; it only matters when a test fails.
const wait = 5 * time.Second

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fakeClock moves only when the test calls Advance. It remembers the
// deadline of the latest After, which is the scheduler's current plan: once
// it equals what the test expects, the scheduler has finished reacting.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	last    time.Time
	changed chan struct{} // closed and replaced on every After
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0, changed: make(chan struct{})} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.last = c.now.Add(d)
	if d <= 0 {
		ch <- c.now
	} else {
		c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
		} else {
			w.ch <- c.now
		}
	}
	c.waiters = kept
}

// waitTimer waits until the scheduler's latest timer is set for at.
func (c *fakeClock) waitTimer(t *testing.T, at time.Time) {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		last, changed := c.last, c.changed
		c.mu.Unlock()
		if last.Equal(at) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("scheduler timer = %v; want %v", last.Sub(t0), at.Sub(t0))
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// call is one invocation of the fake PollFunc; the test answers it.
type call struct {
	name  string
	acct  *rcfile.Account
	ctx   context.Context
	reply chan reply
}

type reply struct {
	r        Result
	panicVal any
}

func (c *call) ret(r Result) { c.reply <- reply{r: r} }

type harness struct {
	t      *testing.T
	clock  *fakeClock
	d      *Daemon
	calls  chan *call
	logs   *syncBuffer
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

func config(accts ...*rcfile.Account) *rcfile.Config {
	return &rcfile.Config{Path: "/etc/popfetch.hcl", MaxParallel: 8, PerServer: 2, Accounts: accts}
}

// newHarness builds a daemon with a fake clock, zero jitter (unless
// jitter is given) and a fake PollFunc; start runs it.
func newHarness(t *testing.T, cfg *rcfile.Config, jitter func(time.Duration) time.Duration) *harness {
	t.Helper()
	h := &harness{
		t:          t,
		clock:      newFakeClock(),
		calls:      make(chan *call),
		logs:       &syncBuffer{},
		active:     map[string]int{},
		activeHost: map[string]int{},
	}
	if jitter == nil {
		jitter = func(time.Duration) time.Duration { return 0 }
	}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.d = NewDaemon(cfg, h.poll, DaemonOptions{Clock: h.clock, Log: log, Jitter: jitter})
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

func (h *harness) poll(ctx context.Context, a *rcfile.Account) Result {
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
	c := &call{name: a.Name, acct: a, ctx: ctx, reply: make(chan reply, 1)}
	select {
	case h.calls <- c:
	case <-ctx.Done():
		return Result{Err: ctx.Err()}
	}
	select {
	case rep := <-c.reply:
		if rep.panicVal != nil {
			panic(rep.panicVal)
		}
		return rep.r
	case <-ctx.Done():
		return Result{Err: ctx.Err()}
	}
}

// next returns the next poll started.
func (h *harness) next() *call {
	h.t.Helper()
	select {
	case c := <-h.calls:
		return c
	case <-time.After(wait):
		h.t.Fatalf("no poll started within %v", wait)
		return nil
	}
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
			h.nextFor("a").ret(Result{})
		})
	}
}

func TestDaemonInterval(t *testing.T) {
	h := newHarness(t, config(acct("a", "pop.example", 5*time.Minute)), nil)
	h.start()
	for i := range 3 {
		c := h.nextFor("a")
		h.clock.Advance(7 * time.Second) // the poll itself takes time
		c.ret(Result{New: 1, Delivered: 1, Deleted: 1})
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
	h.nextFor("a").ret(Result{})
}

func TestBackoffDelay(t *testing.T) {
	m, hr := time.Minute, time.Hour
	tests := []struct {
		interval time.Duration
		want     []time.Duration // after failure 1, 2, ...
	}{
		{30 * time.Second, []time.Duration{30 * time.Second, m, 2 * m, 4 * m, 4 * m}},
		{5 * m, []time.Duration{75 * time.Second, 150 * time.Second, 5 * m, 10 * m, 20 * m, 40 * m, 40 * m}},
		{hr, []time.Duration{15 * m, 30 * m, hr, hr}},
		{24 * hr, []time.Duration{6 * hr, 12 * hr, 24 * hr, 24 * hr}},
	}
	for _, tt := range tests {
		for i, want := range tt.want {
			if got := backoffDelay(tt.interval, i+1); got != want {
				t.Errorf("backoffDelay(%v, %d) = %v; want %v", tt.interval, i+1, got, want)
			}
		}
	}
	if got := backoffDelay(5*m, 1000); got != 40*m {
		t.Errorf("backoffDelay(5m, 1000) = %v; want the cap 40m", got)
	}
}

// TestDaemonBackoff drives one account through failures: the delays double
// up to the cap, and one success brings back the normal interval.
func TestDaemonBackoff(t *testing.T) {
	h := newHarness(t, config(acct("a", "pop.example", 5*time.Minute)), nil)
	h.start()
	errNet := errors.New("dial tcp: connection refused")
	for i := range 7 {
		h.nextFor("a").ret(Result{Err: errNet})
		delay := backoffDelay(5*time.Minute, i+1)
		next := h.clock.Now().Add(delay)
		h.clock.waitTimer(t, next)
		if st := h.status("a"); st.State != StateBackoff || st.Failures != i+1 || !st.NextPoll.Equal(next) {
			t.Fatalf("failure %d: status = %+v; want backoff, next in %v", i+1, st, delay)
		}
		h.clock.Advance(delay)
	}
	h.nextFor("a").ret(Result{})
	next := h.clock.Now().Add(5 * time.Minute)
	h.clock.waitTimer(t, next)
	if st := h.status("a"); st.State != StateIdle || st.Failures != 0 || st.Totals.Failures != 7 {
		t.Fatalf("after success: status = %+v; want idle, 0 failures, 7 failed polls", st)
	}
}

// TestDaemonLogOncePerError: a repeated error is not logged again at Warn;
// a different one is; recovery is logged once at Info.
func TestDaemonLogOncePerError(t *testing.T) {
	h := newHarness(t, config(acct("a", "pop.example", time.Minute)), nil)
	h.start()
	errA := fmt.Errorf("%w: [IN-USE] maildrop locked", ErrInUse)
	errB := errors.New("[SYS/TEMP] try later")
	for _, err := range []error{errA, errA, errB, errB, errB, nil, nil} {
		h.nextFor("a").ret(Result{Err: err})
		delay := time.Minute
		if st := h.waitIdleOrBackoff("a"); st.Failures > 0 {
			delay = backoffDelay(time.Minute, st.Failures)
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
}

// waitIdleOrBackoff waits until the account's poll has been processed.
func (h *harness) waitIdleOrBackoff(name string) AccountStatus {
	h.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if st := h.status(name); st.State != StatePolling {
			return st
		}
		time.Sleep(time.Millisecond)
	}
	h.t.Fatalf("account %q still polling", name)
	return AccountStatus{}
}

// TestDaemonAuthHold: ErrAuth stops the account's polls until PollNow or
// a Reload that changes the account; an unchanged reload keeps the hold.
func TestDaemonAuthHold(t *testing.T) {
	a := acct("a", "pop.example", time.Minute)
	h := newHarness(t, config(a, acct("b", "other.example", time.Hour)), nil)
	h.start()
	errAuth := fmt.Errorf("pass: %w: -ERR [AUTH] invalid credentials", ErrAuth)
	polls := map[string]*call{}
	for range 2 {
		c := h.next()
		polls[c.name] = c
	}
	polls["a"].ret(Result{Err: errAuth})
	polls["b"].ret(Result{})
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
	done := make(chan []Result, 1)
	go func() {
		res, err := h.d.PollNow(context.Background(), []string{"a"})
		if err != nil {
			t.Errorf("PollNow: %v", err)
		}
		done <- res
	}()
	h.nextFor("a").ret(Result{Err: errAuth})
	if res := <-done; len(res) != 1 || !errors.Is(res[0].Err, ErrAuth) {
		t.Fatalf("PollNow = %+v; want one ErrAuth result", res)
	}
	if st := h.waitIdleOrBackoff("a"); st.State != StateAuthHold {
		t.Fatalf("after failed PollNow: state = %v; want auth-hold", st.State)
	}

	// A changed password lifts the hold: polled soon (jitter 0: at once).
	changed := acct("a", "pop.example", time.Minute)
	changed.Password.Inline = "fixed"
	h.d.Reload(config(changed, acct("b", "other.example", time.Hour)))
	c := h.nextFor("a")
	if c.acct.Password.Inline != "fixed" {
		t.Fatalf("poll used password %q; want the new one", c.acct.Password.Inline)
	}
	c.ret(Result{})
	if st := h.waitIdleOrBackoff("a"); st.State != StateIdle {
		t.Fatalf("after success: state = %v; want idle", st.State)
	}
}

// TestDaemonLoginDelay: the server's LOGIN-DELAY pushes the next poll
// past the interval, and PollNow inside it does not log in.
func TestDaemonLoginDelay(t *testing.T) {
	h := newHarness(t, config(acct("a", "pop.example", 2*time.Minute)), nil)
	h.start()
	h.nextFor("a").ret(Result{LoginDelay: 10 * time.Minute})
	next := t0.Add(10 * time.Minute)
	h.clock.waitTimer(t, next)
	if st := h.status("a"); !st.NextPoll.Equal(next) || !st.NotBefore.Equal(next) {
		t.Fatalf("status = %+v; want next poll and not-before at t0+10m", st)
	}
	res, err := h.d.PollNow(context.Background(), nil)
	if err != nil || len(res) != 1 || !errors.Is(res[0].Err, ErrLoginDelay) {
		t.Fatalf("PollNow inside LOGIN-DELAY = %+v, %v; want an ErrLoginDelay result", res, err)
	}
	h.clock.Advance(10*time.Minute - time.Second)
	if h.polling() != 0 {
		t.Fatalf("polled inside LOGIN-DELAY")
	}
	h.clock.Advance(time.Second)
	// A failure with a delay: backoff (30s) is shorter, the delay wins.
	h.nextFor("a").ret(Result{Err: fmt.Errorf("%w: [LOGIN-DELAY] wait", ErrLoginDelay), LoginDelay: 5 * time.Minute})
	h.clock.waitTimer(t, next.Add(5*time.Minute))
}

// TestDaemonLimits: at most MaxParallel sessions, at most PerServer to one
// host (case-insensitive), and a freed slot is reused at once.
func TestDaemonLimits(t *testing.T) {
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
		c.ret(Result{})
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
}

// TestDaemonSameAccountQueued: a PollNow on an account that is polling
// does not start a second session; it gets one more poll afterwards.
func TestDaemonSameAccountQueued(t *testing.T) {
	h := newHarness(t, config(acct("a", "pop.example", time.Minute)), nil)
	h.start()
	first := h.nextFor("a")
	done := make(chan []Result, 2)
	for range 2 { // two concurrent requests share the extra poll
		go func() {
			res, err := h.d.PollNow(context.Background(), []string{"a"})
			if err != nil {
				t.Errorf("PollNow: %v", err)
			}
			done <- res
		}()
	}
	// Let the requests register; the poll in flight must not answer them.
	deadline := time.Now().Add(wait)
	for h.queued("a") < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	first.ret(Result{New: 1})
	second := h.nextFor("a")
	second.ret(Result{New: 2})
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
}

func (h *harness) queued(name string) int {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	return len(h.d.accts[name].now)
}

// TestDaemonSlowAccount: an account stuck in a poll holds only its slot;
// others on the same and other servers keep their schedule.
func TestDaemonSlowAccount(t *testing.T) {
	h := newHarness(t, config(acct("slow", "pop.example", time.Minute), acct("fast", "pop.example", time.Minute)), nil)
	h.start()
	polls := map[string]*call{}
	for range 2 {
		c := h.next()
		polls[c.name] = c
	}
	polls["fast"].ret(Result{})
	for range 5 {
		h.clock.waitTimer(t, h.clock.Now().Add(time.Minute))
		h.clock.Advance(time.Minute)
		h.nextFor("fast").ret(Result{})
	}
	polls["slow"].ret(Result{})
}

// TestDaemonReload covers add, remove (with a poll in flight), change and
// unchanged, and the generation counter.
func TestDaemonReload(t *testing.T) {
	h := newHarness(t, config(
		acct("gone", "pop.example", time.Hour),
		acct("changed", "pop.example", time.Hour),
		acct("same", "other.example", time.Hour),
	), nil)
	h.start()
	polls := map[string]*call{}
	for range 3 {
		c := h.next()
		polls[c.name] = c
	}
	h.clock.Advance(time.Minute)
	polls["changed"].ret(Result{}) // ends at t0+1m
	polls["same"].ret(Result{})
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
	h.nextFor("new").ret(Result{})
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
	polls["gone"].ret(Result{})
	h.clock.waitTimer(t, t0.Add(11*time.Minute))
	h.clock.Advance(9 * time.Minute)
	h.nextFor("changed").ret(Result{})
	h.waitIdleOrBackoff("changed")
	h.clock.Advance(2 * time.Hour)
	for range 3 {
		if c := h.next(); c.name == "gone" {
			t.Fatalf("removed account polled")
		} else {
			c.ret(Result{})
		}
	}
}

func TestDaemonPollNow(t *testing.T) {
	h := newHarness(t, config(acct("a", "pop.example", time.Hour), acct("b", "pop.example", time.Hour)), nil)
	h.start()
	for range 2 {
		h.next().ret(Result{})
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
	done := make(chan []Result, 1)
	go func() {
		res, err := h.d.PollNow(context.Background(), nil)
		if err != nil {
			t.Errorf("PollNow: %v", err)
		}
		done <- res
	}()
	polls := map[string]*call{}
	for range 2 {
		c := h.next()
		polls[c.name] = c
	}
	polls["b"].ret(Result{Delivered: 2})
	polls["a"].ret(Result{Delivered: 1})
	res := <-done
	if len(res) != 2 || res[0].Account != "a" || res[0].Delivered != 1 || res[1].Account != "b" || res[1].Delivered != 2 {
		t.Fatalf("PollNow() = %+v; want a (1 delivered), b (2 delivered)", res)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.d.PollNow(ctx, []string{"a"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PollNow(cancelled ctx) = %v; want context.Canceled", err)
	}
}

// TestDaemonShutdown: cancelling Run's ctx waits for the poll in flight
// without cancelling its ctx; Abort then cancels it.
func TestDaemonShutdown(t *testing.T) {
	for _, abort := range []bool{false, true} {
		t.Run(fmt.Sprintf("abort=%v", abort), func(t *testing.T) {
			h := newHarness(t, config(acct("a", "pop.example", time.Hour)), nil)
			h.start()
			c := h.nextFor("a")
			h.cancel()
			deadline := time.Now().Add(wait)
			for h.d.phaseNow() != phaseStopping && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
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
			if !stopping(c.ctx) {
				t.Fatalf("poll ctx does not signal the graceful stop (WithGraceful)")
			}
			if abort {
				h.d.Abort()
				select {
				case <-c.ctx.Done():
				case <-time.After(wait):
					t.Fatalf("Abort did not cancel the poll ctx")
				}
			} else {
				c.ret(Result{})
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
	h := newHarness(t, config(acct("a", "pop.example", time.Minute), acct("b", "pop.example", time.Minute)), nil)
	h.start()
	polls := map[string]*call{}
	for range 2 {
		c := h.next()
		polls[c.name] = c
	}
	polls["a"].reply <- reply{panicVal: "boom"}
	polls["b"].ret(Result{})
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
		h.next().ret(Result{})
	}
}

// TestDaemonLocked: another popfetch holding the mailbox is not a
// failure: no backoff, no warning, one Info line however often it happens.
func TestDaemonLocked(t *testing.T) {
	h := newHarness(t, config(acct("a", "pop.example", 5*time.Minute)), nil)
	h.start()
	errLocked := fmt.Errorf("%w: uidl: state file locked", ErrLocked)
	for range 3 {
		h.nextFor("a").ret(Result{Err: errLocked})
		next := h.clock.Now().Add(5 * time.Minute)
		h.clock.waitTimer(t, next)
		if st := h.waitIdleOrBackoff("a"); st.State != StateIdle || st.Failures != 0 || !st.NextPoll.Equal(next) {
			t.Fatalf("after ErrLocked: status = %+v; want idle, next poll after the interval", st)
		}
		h.clock.Advance(5 * time.Minute)
	}
	h.nextFor("a").ret(Result{})
	h.waitIdleOrBackoff("a")
	if n := h.countLog("mailbox locked by another popfetch"); n != 1 {
		t.Errorf("%d 'locked' lines; want 1:\n%s", n, h.logs)
	}
	if n := h.countLog("level=WARN"); n != 0 {
		t.Errorf("ErrLocked logged %d warnings; want none:\n%s", n, h.logs)
	}
}

// TestDaemonReloadRemovesQueued: a PollNow queued behind a running poll
// fails with ErrRemoved when Reload drops the account; the poll in flight
// still finishes and reports.
func TestDaemonReloadRemovesQueued(t *testing.T) {
	h := newHarness(t, config(acct("a", "pop.example", time.Hour), acct("b", "pop.example", time.Hour)), nil)
	h.start()
	polls := map[string]*call{}
	for range 2 {
		c := h.next()
		polls[c.name] = c
	}
	done := make(chan []Result, 1)
	go func() {
		res, err := h.d.PollNow(context.Background(), []string{"a"})
		if err != nil {
			t.Errorf("PollNow: %v", err)
		}
		done <- res
	}()
	deadline := time.Now().Add(wait)
	for h.queued("a") < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	h.d.Reload(config(acct("b", "pop.example", time.Hour)))
	if res := <-done; len(res) != 1 || !errors.Is(res[0].Err, ErrRemoved) {
		t.Fatalf("queued PollNow after removal = %+v; want ErrRemoved", res)
	}
	polls["a"].ret(Result{})
	polls["b"].ret(Result{})
	deadline = time.Now().Add(wait)
	for {
		h.d.mu.Lock()
		_, still := h.d.accts["a"]
		h.d.mu.Unlock()
		if !still {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("removed account kept after its last poll")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDaemonReloadDuringPoll: a poll that fails on settings a Reload has
// already replaced does not put the new settings on hold.
func TestDaemonReloadDuringPoll(t *testing.T) {
	h := newHarness(t, config(acct("a", "pop.example", time.Hour)), nil)
	h.start()
	c := h.nextFor("a")
	fixed := acct("a", "pop.example", time.Hour)
	fixed.Password.Inline = "fixed"
	h.d.Reload(config(fixed))
	c.ret(Result{Err: fmt.Errorf("%w: -ERR [AUTH] bad password", ErrAuth)})
	c = h.nextFor("a") // jitter 0: at once
	if c.acct.Password.Inline != "fixed" {
		t.Fatalf("retry used password %q; want the new one", c.acct.Password.Inline)
	}
	c.ret(Result{})
	if st := h.waitIdleOrBackoff("a"); st.State != StateIdle {
		t.Fatalf("state = %v; want idle", st.State)
	}
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
