package daemon

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"github.com/popfetch/popfetch/fetch"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/popfetch/popfetch/fetch/alert"
	"github.com/popfetch/popfetch/rcfile"
)

// PollFunc polls one account once; in the daemon it is the POP3 session
// (fetch.Poller.PollWith). It must honour ctx: cancellation aborts the
// session without DELE, which the UIDL store makes safe (see package
// fetch). The daemon cancels ctx only on Abort. On a graceful stop it
// closes opts.Stop instead, so a poll in flight finishes the message it
// is delivering and ends with QUIT. opts.RetryDele asks again for the
// DELEs the server kept refusing.
type PollFunc func(ctx context.Context, a *rcfile.Account, opts fetch.PollOptions) fetch.Result

// Options are the daemon's seams. The zero value is usable.
type Options struct {
	Log *slog.Logger // default: discard
	// Jitter returns a random duration in [0, max]; default uniform. Tests
	// make it deterministic.
	Jitter func(max time.Duration) time.Duration
	// Alerts is told every finished poll, the account's hold state,
	// every configuration and every reload's outcome, and lists the
	// alerts active for Status; nil = no alerts.
	Alerts Alerts
}

// Alerts is what the daemon feeds the alert engine (package fetch/alert's
// Alerter). Its methods must return quickly (no file I/O): they are called with the
// scheduler's lock held, so they must never call back into the Daemon.
type Alerts interface {
	Configure(cfg *rcfile.Config, owned []*rcfile.Account)
	Polled(p alert.Poll)
	Reloaded(at time.Time, ok bool, diagnostics []string)
	Active() []alert.Active
}

// Sentinels of the scheduler.
var (
	// ErrStopped: the daemon is shutting down or has stopped; no new polls start.
	ErrStopped = errors.New("daemon stopped")
	// ErrUnknownAccount: PollNow named an account that is not in the config.
	ErrUnknownAccount = errors.New("unknown account")
	// ErrOtherShard: PollNow named an account of the config that another
	// shard polls (rcfile.Shard).
	ErrOtherShard = errors.New("account of another shard")
	// ErrRemoved: the account left the config before a requested poll started.
	ErrRemoved = errors.New("account removed from config")
	// ErrPanic: the PollFunc panicked; the poll counts as a temporary failure.
	ErrPanic = errors.New("poll panicked")
	// ErrRestartRequired: Reload refused a config with a change that only
	// a restart can apply; the running config stays in effect.
	ErrRestartRequired = errors.New("restart popfetch to apply")
)

// Scheduling policy. Intervals are fixed-delay: the next poll is due one
// Interval after the previous one finished, so a slow server never causes a
// pile-up of sessions.
const (
	// firstJitterMax bounds the random delay of an account's first poll (at
	// start-up and when Reload adds it): min(interval/10, 30s), so that 500
	// accounts do not all dial in the same second.
	firstJitterMax = 30 * time.Second
	// backoffMin is the floor of the first retry after a temporary failure.
	// The first retry comes after max(interval/4, 30s), then the delay
	// doubles per consecutive failure up to max(interval, min(8*interval,
	// 1h)): a blip is retried quickly, a broken server is not hammered, and
	// no account is polled less often than its own interval would (24h
	// stays 24h) nor, for short intervals, less than hourly.
	backoffMin    = 30 * time.Second
	backoffMaxCap = time.Hour
	// refusedMin and refusedMax bound the backoff after ErrLoginRefused
	// (a login refused without an [AUTH] code): max(interval, 1h), then
	// doubling per refusal up to max(interval, 8h). A wrong password is
	// then tried at most a few times a day, far below the failed-login
	// rate that lockout policies act on, while a mailbox problem the
	// server reports the same way still heals by itself.
	refusedMin = time.Hour
	refusedMax = 8 * time.Hour
	// defaultInterval is used only if a hand-built Config leaves Interval
	// zero; rcfile always sets one (30s..24h).
	defaultInterval    = 5 * time.Minute
	defaultMaxParallel = 8
	defaultPerServer   = 2
	// lockedRetry caps the wait after ErrLocked. The other holder is a
	// one-shot `popfetch fetch` or the last poll of a renamed account:
	// both end soon, and waiting a whole interval (up to 24h) for them
	// would skip a day of mail.
	lockedRetry = time.Minute
	// pollLimitMin and pollLimitPerTimeout bound a session as a whole:
	// each command, TLS handshake and RETR has its own deadline, but a
	// server that answers slowly, each reply just inside its deadline,
	// could keep a session (and one of the max_parallel slots) for days.
	// After max(30m, 30 × timeout) the session is told to stop gracefully
	// (finish the messages in flight, DELE them, QUIT) and the account is
	// due again at once, so a big backlog still goes on in a new session
	// while accounts waiting for a slot get their turn first.
	pollLimitMin        = 30 * time.Minute
	pollLimitPerTimeout = 30
)

// pollTimeLimit is how long one session of a may run before the daemon
// asks it to stop after the messages in flight.
func pollTimeLimit(a *rcfile.Account) time.Duration {
	return max(pollLimitMin, pollLimitPerTimeout*a.Timeout)
}

// firstPollJitter is the maximum jitter of an account's first poll.
func firstPollJitter(interval time.Duration) time.Duration {
	return min(interval/10, firstJitterMax)
}

// backoffDelay is the wait after the n-th consecutive failure (n ≥ 1):
// a first delay, doubled per further failure up to a limit. The last
// failure decides which: a temporary one starts at max(interval/4,
// backoffMin) up to max(interval, min(8*interval, backoffMaxCap)); a
// refused login (refused) at max(interval, refusedMin) up to
// max(interval, refusedMax).
func backoffDelay(interval time.Duration, n int, refused bool) time.Duration {
	d, limit := max(interval/4, backoffMin), max(interval, min(8*interval, backoffMaxCap))
	if refused {
		d, limit = max(interval, refusedMin), max(interval, refusedMax)
	}
	for i := 1; i < n && d < limit; i++ {
		d *= 2 // bounded by limit, so no overflow
	}
	return min(d, limit)
}

// AccountState is what the scheduler is doing with an account.
type AccountState string

const (
	StateIdle     AccountState = "idle"      // waiting for its next interval
	StatePolling  AccountState = "polling"   // a session is running
	StateBackoff  AccountState = "backoff"   // the last poll failed temporarily; retrying later
	StateAuthHold AccountState = "auth-hold" // the server rejected the credentials; no polls until the account's config changes, LiftAuthHolds (SIGHUP) or PollNow
)

// localAddr matches the "local->" part of a net.OpError text
// ("read tcp 127.0.0.1:58954->192.0.2.1:995: i/o timeout"): the ephemeral
// port differs on every connection.
var localAddr = regexp.MustCompile(`(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.%a-z]+\]):\d+->`)

// errorKey is the text that decides whether a failure is "the same error
// again" (logged once) or a new one: the error without the parts that
// change on every attempt.
func errorKey(err error) string {
	return localAddr.ReplaceAllString(err.Error(), "")
}

// Totals are an account's counters since the daemon started.
type Totals struct {
	Polls     int `json:"polls"`
	Failures  int `json:"failures"` // polls that ended with an error
	New       int `json:"new"`
	Delivered int `json:"delivered"`
	Deleted   int `json:"deleted"`
}

// AccountStatus is one account in Status.
type AccountStatus struct {
	Name   string       `json:"name"`
	Server string       `json:"server"`
	State  AccountState `json:"state"`
	// NextPoll is when the next poll is due; zero while polling or in
	// auth-hold. It already accounts for LOGIN-DELAY.
	NextPoll  time.Time          `json:"next_poll,omitzero"`
	NotBefore time.Time          `json:"not_before,omitzero"` // the server's LOGIN-DELAY ends; zero if none
	Failures  int                `json:"failures"`            // consecutive temporary failures
	Last      *fetch.PollSummary `json:"last,omitempty"`      // nil until the first poll finished
	// LastSuccess is when the last poll without an error ended; zero
	// until one has (the metric popfetch_last_success_timestamp_seconds).
	LastSuccess time.Time `json:"last_success,omitzero"`
	Totals      Totals    `json:"totals"`
	// Directory is the user directory (multidrop ldap) as the last poll
	// that reached it saw it; nil for an account without one.
	Directory *fetch.DirectoryState `json:"directory,omitempty"`
}

// ActiveAlert is one alert condition that has started and not ended.
type ActiveAlert struct {
	Account   string    `json:"account,omitempty"` // "" for the daemon itself (reload-rejected)
	Condition string    `json:"condition"`         // see package fetch/alert's Condition
	Since     time.Time `json:"since"`
	Detail    string    `json:"detail,omitempty"`
}

// Status is a snapshot of the daemon for `popfetch status`.
type Status struct {
	Started    time.Time       `json:"started"` // zero until Run starts
	Generation int             `json:"generation"`
	LoadedAt   time.Time       `json:"loaded_at"`
	ConfigPath string          `json:"config_path,omitempty"`
	Accounts   []AccountStatus `json:"accounts"` // sorted by name; only the shard's own
	// Shard is the part of the accounts this daemon polls; nil if it
	// polls them all.
	Shard *ShardStatus `json:"shard,omitempty"`
	// LastReload is the outcome of the last attempt to reload the rc
	// file (SIGHUP or a change to the file); nil until one was made.
	LastReload *ReloadStatus `json:"last_reload,omitempty"`
	// Alerts are the alert conditions active now, global first, then by
	// account.
	Alerts []ActiveAlert `json:"alerts,omitempty"`
}

// ReloadStatus is the outcome of one attempt to reload the rc file.
type ReloadStatus struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"` // false: rejected, the running configuration stays
	// Diagnostics are the first reasons a rejected reload gave, one line
	// each ("file:line:col: error: summary"), at most MaxReloadDiagnostics.
	Diagnostics []string `json:"diagnostics,omitempty"`
}

// MaxReloadDiagnostics bounds ReloadStatus.Diagnostics: the first few
// errors say what to fix; the full list is in the log.
const MaxReloadDiagnostics = 3

// ShardStatus says which shard a daemon runs and how many of the
// config's accounts it owns; the others are not its business, so they
// are neither polled nor listed.
type ShardStatus struct {
	Shard    string `json:"shard"`    // "i/N"
	Owned    int    `json:"owned"`    // accounts this shard polls
	Accounts int    `json:"accounts"` // accounts in the config
}

// account is the scheduler's state for one configured account. Guarded by
// Daemon.mu.
type account struct {
	cfg *rcfile.Account
	// host and box are hostKey(cfg) and cfg.Mailbox(), kept with cfg
	// (setCfg): the scheduler looks at them for every waiting account
	// each time it picks one to start, and computing them allocates.
	host, box string
	next      time.Time // when the next scheduled poll is due (ignored in auth-hold)
	notBefore time.Time // LOGIN-DELAY (RFC 2449): no session starts before this
	lastEnd   time.Time // when the last poll finished
	lastOK    time.Time // when the last poll without an error finished
	failures  int       // consecutive temporary failures
	lastErr   string    // for logging once per change of error
	authHold  bool      // fetch.ErrAuth (RFC 3206 [AUTH]): do not retry on our own
	refused   bool      // the last poll ended in ErrLoginRefused: in its long backoff

	running  bool
	runHost  string        // the host key the running poll counts against
	runBox   string        // the mailbox key of the running poll
	changed  bool          // the config changed while polling: a failure is the old config's
	removed  bool          // left the config while running; dropped when the poll ends
	liftHold bool          // LiftAuthHolds came while polling: an auth failure of this poll does not hold
	stop     chan struct{} // the running poll's PollOptions.Stop
	stopped  bool          // stop is closed
	deadline time.Time     // when the running poll is asked to stop (pollTimeLimit)
	cut      bool          // the running poll was stopped at its deadline: more mail may wait

	now      []chan fetch.Result // PollNow waiters for a poll not yet started
	nowAt    time.Time           // when the first of now was asked for (read only while now is not empty)
	inflight []chan fetch.Result // PollNow waiters for the running poll

	last   *fetch.PollSummary
	totals Totals
	// directory: the last poll's Result.Directory (kept while a poll
	// fails before it reaches the directory).
	directory *fetch.DirectoryState

	// retryDele: the next poll asks again for the DELEs the server kept
	// refusing (the daemon's start, an operator's SIGHUP or a config
	// change since the last poll started; PollNow does so too).
	retryDele bool

	// The scheduler's queues (queue.go): which one holds the account,
	// its index there, and the key it was queued under (qkey: when it
	// becomes due, as dueAt; qurgent: an operator asked for it). hq is
	// its server's queue while it is due; didx is its index in
	// queues.deadlines while it runs.
	qwhere  queued
	qurgent bool
	qidx    int
	didx    int
	qkey    time.Time
	hq      *hostQueue

	// fetchAllDone: this account's fetch_all pass is over. fetch_all
	// means one pass over the mailbox (messages already delivered
	// included) per start of the daemon or change of the account's
	// settings, not every poll: with keep, or a server that refuses DELE,
	// every poll would deliver the whole mailbox again. Later polls run
	// as without fetch_all. Reset by Reload when the account changes.
	fetchAllDone bool
}

// setCfg sets the account's settings and the keys derived from them.
func (a *account) setCfg(c *rcfile.Account) {
	a.cfg, a.host, a.box = c, hostKey(c), c.Mailbox()
}

func (a *account) state() AccountState {
	switch {
	case a.running:
		return StatePolling
	case a.authHold:
		return StateAuthHold
	case a.failures > 0:
		return StateBackoff
	}
	return StateIdle
}

// dueAt is when the account may next start a session; ok is false if it
// must not be polled at all (auth-hold without an operator request).
func (a *account) dueAt(now time.Time) (due time.Time, ok bool) {
	if len(a.now) > 0 {
		return maxTime(now, a.notBefore), true
	}
	if a.authHold {
		return time.Time{}, false
	}
	return maxTime(a.next, a.notBefore), true
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func interval(a *rcfile.Account) time.Duration {
	if a.Interval <= 0 {
		return defaultInterval
	}
	return a.Interval
}

// hostKey groups accounts for the per-server limit. DNS names are
// case-insensitive.
func hostKey(a *rcfile.Account) string { return strings.ToLower(a.Server) }

type pollDone struct {
	a *account
	r fetch.Result
}

type phase int

const (
	phaseNew phase = iota
	phaseRunning
	phaseStopping
	phaseStopped
)

// Daemon schedules polls of every account of a Config: each at its own
// interval, with backoff after failures, under the global and per-server
// session limits, never two sessions for one account at once. One
// goroutine (Run) makes every scheduling decision; each poll runs in its
// own goroutine and reports back on a channel, so a slow or failing
// account holds only its own slot, and only for a bounded time (see
// pollTimeLimit).
type Daemon struct {
	poll   PollFunc
	log    *slog.Logger
	alerts Alerts // nil: none
	jitter func(time.Duration) time.Duration

	// abortCtx is the PollFunc's context. It is separate from Run's ctx so
	// that a graceful stop lets sessions finish; Abort cancels it. A
	// graceful stop (Run's ctx ends, or a poll reaches its time limit)
	// closes the poll's own PollOptions.Stop (account.stop).
	abortCtx context.Context
	abort    context.CancelFunc

	kick    chan struct{}      // Reload and PollNow wake the scheduler; buffered 1
	results chan pollDone      // finished polls
	alive   chan chan struct{} // Alive's questions; Run's loop answers each

	mu       sync.Mutex
	cfg      *rcfile.Config
	accts    map[string]*account
	gen      int
	loadedAt time.Time
	started  time.Time
	reload   *ReloadStatus // the last reload attempt (RecordReload)
	phase    phase
	nrun     int            // sessions running
	perHost  map[string]int // sessions running per host key
	// mailboxes running, by rcfile.Account.Mailbox: rcfile rejects two accounts for
	// one mailbox, but a reload that renames an account starts the new
	// name while the old name's last poll may still run.
	busyBoxes map[string]bool
	// boxDirs maps each mailbox (rcfile.Account.Mailbox) polled in this
	// daemon's lifetime to the state_dir its journal is in: the first
	// one it was polled with. Kept after the account is removed, so that
	// removing it in one reload and adding it back with another state_dir
	// in the next is refused as a move too.
	boxDirs map[string]string
	// boxesAt maps each login (see login) polled in this daemon's
	// lifetime to the mailboxes (rcfile.Account.Mailbox, the journal's
	// name) it was polled as. Kept after the account is removed, like
	// boxDirs: a changed mailbox_id is a move of the journal too.
	boxesAt map[string][]string
	// timerAt is the time of the latest timer the scheduler set: when it
	// next wakes on its own unless a poll, Reload or PollNow wakes it
	// first. Only the tests read it, to check the plan.
	timerAt time.Time
	// q holds the accounts waiting for their poll and the running
	// polls' deadlines, so that each wake-up of the loop looks only at
	// what changed (queue.go).
	q queues
	// startHook, if set, is told each account startLocked starts, in
	// order (the tests compare the order with a reference).
	startHook func(name string)
}

// New returns a daemon for cfg (generation 1). Each account's first
// poll is due after a random jitter of up to min(interval/10, 30s) from now.
func New(cfg *rcfile.Config, poll PollFunc, opts Options) *Daemon {
	d := &Daemon{
		poll:    poll,
		log:     opts.Log,
		alerts:  opts.Alerts,
		jitter:  opts.Jitter,
		kick:    make(chan struct{}, 1),
		results: make(chan pollDone),
		alive:   make(chan chan struct{}),
		accts:   map[string]*account{},
		perHost: map[string]int{},
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.jitter == nil {
		d.jitter = func(max time.Duration) time.Duration {
			if max <= 0 {
				return 0
			}
			return rand.N(max + 1)
		}
	}
	d.busyBoxes = map[string]bool{}
	d.q = newQueues()
	d.boxDirs = map[string]string{}
	d.boxesAt = map[string][]string{}
	d.abortCtx, d.abort = context.WithCancel(context.Background())
	d.cfg = &rcfile.Config{}
	d.Reload(cfg) // generation 0: nothing to compare with, never refused
	if d.alerts != nil {
		// Starting with a good file ends a rejected reload of the last run.
		d.alerts.Reloaded(time.Now(), true, nil)
	}
	return d
}

// Abort cancels the context of every poll in flight (the second SIGTERM):
// sessions close without DELE for undelivered mail. Run still waits for
// them to return. Polls started after Abort see a cancelled context.
func (d *Daemon) Abort() { d.abort() }

// Run schedules polls until ctx is done. Then it starts no new session,
// fails PollNow requests that have not started, tells the polls in flight
// to stop after their current message (PollOptions.Stop), waits for them
// (their context is cancelled only by Abort) and returns nil.
// Run may be called once.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.phase != phaseNew {
		d.mu.Unlock()
		return errors.New("daemon: Run called more than once")
	}
	d.phase = phaseRunning
	d.started = time.Now()
	d.mu.Unlock()
	d.log.Info("daemon started", "accounts", len(d.Status().Accounts))

	// One timer for the loop's lifetime, reset on every turn, instead of
	// a new one per turn: the loop turns once per finished poll.
	// (Since Go 1.23 Stop and Reset leave no stale value in the channel.)
	tm := time.NewTimer(time.Hour)
	tm.Stop()
	defer tm.Stop()
	for {
		d.mu.Lock()
		wait, ok := d.startDueLocked()
		d.mu.Unlock()
		var timer <-chan time.Time
		if ok {
			tm.Reset(wait)
			timer = tm.C
		} else {
			tm.Stop()
		}
		select {
		case <-ctx.Done():
			return d.shutdown()
		case <-timer:
		case <-d.kick:
		case q := <-d.alive:
			close(q)
		case done := <-d.results:
			d.mu.Lock()
			d.finishLocked(done)
			d.mu.Unlock()
		}
	}
}

// Alive reports whether Run's scheduling loop answers within ctx: it asks
// the loop itself, so a loop that is stuck (on its lock, or anywhere else)
// or no longer running (stopping, stopped, never started) answers false.
// The service manager's watchdog (sd_notify WATCHDOG=1) is fed only when
// this is true, so that a wedged scheduler gets the daemon restarted.
func (d *Daemon) Alive(ctx context.Context) bool {
	q := make(chan struct{})
	select {
	case d.alive <- q:
	case <-ctx.Done():
		return false
	}
	<-q // the loop closes q at once after receiving it
	return true
}

// shutdown stops scheduling and waits for the polls in flight.
func (d *Daemon) shutdown() error {
	d.mu.Lock()
	d.phase = phaseStopping
	for _, a := range d.accts {
		answer(a.now, fetch.Result{Account: a.cfg.Name, Err: ErrStopped})
		a.now = nil
		if a.running {
			stopPoll(a)
		}
		d.placeLocked(a)
	}
	n := d.nrun
	d.mu.Unlock()
	if n > 0 {
		d.log.Info("stopping: waiting for polls in flight", "polls", n)
	}
	for n > 0 {
		done := <-d.results
		d.mu.Lock()
		d.finishLocked(done)
		n = d.nrun
		d.mu.Unlock()
	}
	d.mu.Lock()
	d.phase = phaseStopped
	d.mu.Unlock()
	d.abort() // release the context; nothing uses it any more
	d.log.Info("daemon stopped")
	return nil
}

// startDueLocked starts every due account that fits under the limits,
// earliest first (operator requests before scheduled polls; see
// dueBefore), and asks polls that reached their time limit to stop. It
// returns how long until the next account not yet due becomes due or the
// next running poll reaches its limit; ok is false if nothing is waiting
// on time. Due accounts held back by a limit need no timer: a finishing
// poll frees the slot and wakes the loop. The queues (queue.go) make
// this O(log n) per account started, stopped or become due, not a scan
// of every account.
func (d *Daemon) startDueLocked() (wait time.Duration, ok bool) {
	now := time.Now()
	q := &d.q
	for len(q.deadlines.s) > 0 {
		a := q.deadlines.s[0]
		if !a.stopped && a.deadline.After(now) {
			break
		}
		heap.Pop(&q.deadlines)
		if a.stopped {
			continue // the daemon is stopping it already
		}
		stopPoll(a)
		a.cut = true
		d.log.Info("poll reached its time limit; stopping after the messages in flight and continuing in a new session",
			"account", a.cfg.Name, "limit", pollTimeLimit(a.cfg))
	}
	d.dueNowLocked(now)
	// Each pass takes the first account of the server whose first
	// account comes first among the servers with a free slot. Starting
	// one only ever holds more back (its server and mailbox get busier),
	// never fewer, so this is the same as walking every due account in
	// order and skipping those a limit holds back.
	for maxPar := d.maxParallelLimit(); d.nrun < maxPar && len(q.free) > 0; {
		hq := q.free[0]
		a := heap.Pop(&hq.due).(*account)
		a.qwhere, a.hq = inNone, nil
		if d.busyBoxes[a.box] {
			// Its mailbox is polled under another name: wait for that
			// poll to end (hostFreedLocked).
			q.boxHeld[a.box] = append(q.boxHeld[a.box], a)
			a.qwhere = inBox
		} else {
			d.startLocked(a)
		}
		d.fixHostLocked(hq)
	}
	var wake time.Time
	if len(q.future.s) > 0 {
		wake = q.future.s[0].qkey
	}
	if len(q.deadlines.s) > 0 && (wake.IsZero() || q.deadlines.s[0].deadline.Before(wake)) {
		wake = q.deadlines.s[0].deadline
	}
	if wake.IsZero() {
		return 0, false
	}
	d.timerAt = wake
	return wake.Sub(now), true
}

func (d *Daemon) startLocked(a *account) {
	a.running = true
	d.unqueueLocked(a)
	if d.startHook != nil {
		d.startHook(a.cfg.Name)
	}
	a.runHost, a.runBox = a.host, a.box
	d.busyBoxes[a.runBox] = true
	a.stop, a.stopped, a.cut = make(chan struct{}), false, false
	a.deadline = time.Now().Add(pollTimeLimit(a.cfg))
	heap.Push(&d.q.deadlines, a)
	d.nrun++
	d.perHost[a.runHost]++
	a.inflight, a.now = a.now, nil
	if len(a.inflight) > 0 {
		a.authHold = false // an explicit operator request lifts the hold
	}
	retryDele := a.retryDele || len(a.inflight) > 0
	a.retryDele = false
	cfg := a.cfg
	if cfg.FetchAll && a.fetchAllDone {
		c := *cfg
		c.FetchAll = false
		cfg = &c
	}
	go d.runPoll(a, cfg, a.stop, retryDele)
}

// stopPoll asks a's running poll to stop after the messages in flight.
func stopPoll(a *account) {
	if !a.stopped {
		a.stopped = true
		close(a.stop)
	}
}

// runPoll runs one session. A panic in the PollFunc is logged with its
// stack and becomes a failed Result, so the daemon and the account's
// schedule survive it.
func (d *Daemon) runPoll(a *account, cfg *rcfile.Account, stop <-chan struct{}, retryDele bool) {
	start := time.Now()
	var r fetch.Result
	defer func() {
		if v := recover(); v != nil {
			d.log.Error("panic in poll", "account", cfg.Name, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			r = fetch.Result{Err: fmt.Errorf("%w: %v", ErrPanic, v)}
		}
		if r.Account == "" {
			r.Account = cfg.Name
		}
		if r.Start.IsZero() {
			r.Start = start
		}
		if r.Elapsed == 0 {
			r.Elapsed = time.Since(start)
		}
		d.results <- pollDone{a, r}
	}()
	// An operator's act (start, SIGHUP, `popfetch now`, a changed
	// account) also reloads the user directory.
	r = d.poll(d.abortCtx, cfg, fetch.PollOptions{Stop: stop, RetryDele: retryDele, FreshDirectory: retryDele})
}

// finishLocked records a finished poll, logs its outcome and plans the
// account's next poll.
//
// Logging: a poll that moved mail is one Info line; an idle one (nothing
// new, no error) is Debug, so that 500 idle accounts do not write 500
// lines per cycle; a failure is one Warn line per change of error, then
// Debug while the same error repeats.
func (d *Daemon) finishLocked(done pollDone) {
	a, r := done.a, done.r
	now := time.Now()
	name := a.cfg.Name
	a.running = false
	// Whatever this poll's outcome does to the account's schedule, it
	// is queued by it once all is done.
	defer d.placeLocked(a)
	if a.didx >= 0 {
		heap.Remove(&d.q.deadlines, a.didx)
	}
	d.nrun--
	if d.perHost[a.runHost]--; d.perHost[a.runHost] <= 0 {
		delete(d.perHost, a.runHost)
	}
	delete(d.busyBoxes, a.runBox)
	d.hostFreedLocked(a.runHost, a.runBox)
	waiters := a.inflight
	a.inflight = nil
	defer answer(waiters, r)
	cut, liftHold := a.cut, a.liftHold
	a.stop, a.stopped, a.cut, a.liftHold = nil, false, false, false

	if a.removed {
		delete(d.accts, name)
		if r.Err != nil {
			d.log.Debug("removed account's last poll done", "account", name, "err", r.Err)
		} else {
			d.log.Debug("removed account's last poll done", "account", name)
		}
		return
	}
	if r.NotStarted {
		// Stopped before it connected (the daemon stopping, or the
		// poll's time limit passing before the session began): the
		// account was not polled, so its last result, totals, error
		// state and fetch_all pass stay as they were. A hold lifted by
		// a reload waits for the next poll that ends.
		d.log.Debug("poll stopped before it connected", "account", name)
		a.changed, a.liftHold = false, liftHold
		switch {
		case cut:
			a.next = now
		case !a.next.After(now):
			a.next = now.Add(interval(a.cfg))
		}
		return
	}

	// A second signal (Abort) closes the connection under the session;
	// what it returns then ("use of closed network connection", a
	// cancelled context, ...) is the abort, not the server's fault.
	aborted := r.Err != nil && d.abortCtx.Err() != nil
	sum := fetch.Summarize(r)
	a.last = &sum
	if r.Err == nil {
		a.lastOK = now
	}
	if r.Directory != nil || a.cfg.Multidrop == nil || a.cfg.Multidrop.LDAP == nil {
		a.directory = r.Directory
	}
	a.lastEnd = now
	a.totals.Polls++
	a.totals.New += r.New
	a.totals.Delivered += r.Delivered
	a.totals.Deleted += r.Deleted
	if r.Err != nil && !aborted {
		a.totals.Failures++
	}
	if r.LoginDelay > 0 {
		// RFC 2449 LOGIN-DELAY: counted from the end of this session, which
		// is no earlier than the server's own reference point (the login).
		a.notBefore = now.Add(r.LoginDelay)
	}
	if len(a.now) > 0 && a.notBefore.After(now) {
		// PollNow requests that came during this poll would otherwise wait
		// out the whole delay (up to hours) for a session: answer now, as
		// PollNow does for an idle account inside its delay.
		answer(a.now, loginDelayResult(name, now, a.notBefore))
		a.now = nil
	}
	iv := interval(a.cfg)
	msg := ""
	if r.Err != nil {
		msg = errorKey(r.Err)
	}

	a.refused = false
	switch {
	case r.Err == nil:
		if a.lastErr != "" {
			d.log.Info("poll succeeded again", "account", name, "previous_err", a.lastErr, "failures", a.failures)
		}
		lvl := slog.LevelDebug
		switch {
		case r.Failed > 0 || r.Undeletable > 0:
			lvl = slog.LevelWarn
		case r.New > 0 || r.Delivered > 0 || r.Deleted > 0:
			lvl = slog.LevelInfo
		}
		d.log.Log(context.Background(), lvl, "poll done", append([]any{"account", name}, r.SummaryAttrs()...)...)
		a.failures, a.lastErr = 0, ""
		a.next = now.Add(iv)
		if cut {
			// Stopped at its time limit with mail left: go on at once
			// (after the accounts already waiting for a slot).
			a.next = now
		}

	case aborted:
		// Neither a failure of the server nor worth a warning; the
		// daemon is going away. Nothing undelivered was deleted.
		d.log.Info("poll aborted", "account", name)
		a.next = now.Add(iv)

	case errors.Is(r.Err, fetch.ErrAuth):
		// RFC 3206 [AUTH]: retrying could lock the account at the
		// provider, so wait for a config change, SIGHUP or PollNow.
		a.authHold = true
		a.failures = 0
		a.lastErr = msg
		d.log.Error("authentication failed; not retrying until the account's config changes, SIGHUP or `popfetch now`",
			"account", name, "server", a.cfg.Server, "user", a.cfg.Username, "err", r.Err)

	case errors.Is(r.Err, fetch.ErrLoginRefused):
		// Maybe the password, maybe the mailbox: the server did not say.
		// Not held (a mailbox problem heals without the operator), but
		// retried rarely, as a wrong password retried every poll is
		// what locks accounts; loud every time, as mail is not flowing.
		a.failures++
		a.refused = true
		delay := backoffDelay(iv, a.failures, true)
		a.next = now.Add(delay)
		a.lastErr = msg
		d.log.Error("login refused without an [AUTH] code (wrong password, or a mailbox problem the server does not name); retrying after a long backoff so that the account is not locked",
			"account", name, "server", a.cfg.Server, "user", a.cfg.Username, "err", r.Err, "failures", a.failures, "retry_in", delay)

	case errors.Is(r.Err, fetch.ErrLocked):
		// Another popfetch owns the mailbox right now; that is normal
		// (a one-shot run), not a failure of the server.
		retry := min(iv, lockedRetry)
		if a.lastErr != msg {
			d.log.Info("mailbox locked by another popfetch process; retrying soon", "account", name, "retry_in", retry)
		}
		a.failures, a.lastErr = 0, msg
		a.next = now.Add(retry)

	default:
		// Temporary: network, [IN-USE], [SYS/TEMP], [LOGIN-DELAY],
		// protocol and TLS errors, panics. Unknown errors are temporary too
		// (maddy's IsTemporaryOrUnspec); the session never DELEs on them.
		a.failures++
		delay := backoffDelay(iv, a.failures, false)
		a.next = now.Add(delay)
		if msg != a.lastErr {
			d.log.Warn("poll failed; will retry", "account", name, "err", r.Err, "failures", a.failures, "retry_in", delay)
		} else {
			d.log.Debug("poll failed again", "account", name, "err", r.Err, "failures", a.failures, "retry_in", delay)
		}
		a.lastErr = msg
	}

	if !a.changed && !aborted && (r.Err == nil || r.Delivered > 0) {
		// The fetch_all pass is used up by a poll that got through, or
		// that delivered something before it failed (each message
		// comes again at most once per pass). One that failed before
		// delivering anything leaves it for the next poll. A poll that
		// ran on settings a Reload has since replaced does not count.
		a.fetchAllDone = true
	}
	if a.changed {
		a.changed = false
		if r.Err != nil {
			// The failure belongs to the settings Reload replaced: give
			// the new ones a fresh start instead of a hold or backoff.
			a.authHold, a.refused, a.failures, a.lastErr = false, false, 0, ""
			a.next = now.Add(d.jitter(firstPollJitter(iv)))
		}
	}
	if liftHold && a.authHold {
		// The operator reloaded during this poll, perhaps after fixing the
		// password source this poll had already read: try once more.
		a.authHold, a.lastErr = false, ""
		a.next = now.Add(d.jitter(firstPollJitter(iv)))
	}
	if d.alerts != nil && !aborted && !errors.Is(r.Err, fetch.ErrLocked) {
		// Held is the state after this poll: a hold lifted by the
		// operator during it is no hold (the next poll decides).
		d.alerts.Polled(alert.Poll{Account: name, At: now, Err: r.Err, Held: a.authHold,
			OAuth2:   errors.Is(r.Err, fetch.ErrTokenRefresh),
			LoggedIn: r.Mechanism != "", Messages: r.Messages, MailboxBytes: r.MailboxBytes,
			Failed: r.Failed, Undeletable: r.Undeletable, New: r.New, Delivered: r.Delivered})
	}
}

// loginDelayResult answers a PollNow that cannot start a session before
// the server's LOGIN-DELAY ends.
func loginDelayResult(name string, now, notBefore time.Time) fetch.Result {
	return fetch.Result{Account: name, Start: now, Err: fmt.Errorf("%w: the server asked not to log in again before %s",
		fetch.ErrLoginDelay, notBefore.Format(time.RFC3339))}
}

func answer(waiters []chan fetch.Result, r fetch.Result) {
	for _, ch := range waiters {
		ch <- r // buffered 1, one send per channel
	}
}

// Reload applies a validated config. Accounts are matched by name:
//   - new ones are added, their first poll jittered as at start-up;
//   - removed ones stop: a poll in flight finishes, queued PollNow
//     requests fail with ErrRemoved;
//   - changed ones (any setting but the position in the file) use the new
//     settings from their next poll on. A change lifts auth-hold and resets
//     backoff (the operator probably fixed the cause), so such an account
//     polls soon; otherwise its next poll is re-planned with the new
//     interval from the end of its last poll. If the account is polling
//     during the Reload and that poll fails, the failure is blamed on the
//     old settings: no hold or backoff, the new ones are tried soon;
//   - unchanged ones keep their schedule and state.
//
// A changed account with fetch_all gets a new fetch_all pass (see
// account.fetchAllDone).
//
// The session limits apply to sessions started from now on. The
// generation counter increases and the load time is recorded.
//
// Only the accounts of cfg.Shard count (rcfile.Shard.Owned): the others
// are as absent, so a changed shard removes and adds accounts as above,
// and the state_dir and mailbox_id checks below see only the accounts
// this daemon polls.
//
// A config whose top-level state_dir differs from the running one is
// refused with ErrRestartRequired and nothing changes: the control socket
// and the daemon lock stay where they are, `popfetch now` and `status`
// would look for them in the new place, and every account would start
// with an empty UIDL store there (keep = true refetches everything).
// A changed per-account state_dir is refused the same way, for the same
// UIDL reason: the account's journal stays in the old directory, and
// applied at once the new, empty one would fetch a keep-mode mailbox again
// in full. The account is matched by its mailbox (rcfile.Account.Mailbox),
// not its name, because the journal belongs to the mailbox: a rename that
// also moves state_dir is the same trap. The mailbox is compared with
// every mailbox polled since the daemon started, not only the accounts
// configured now: removing an account and adding it back with a new
// state_dir in the next reload is the same move. A changed mailbox_id
// (set, changed or removed) is refused the same way: it names the journal,
// so the account would start with a new, empty one. Here the account is
// matched by where it logs in (user name, server and port), which a
// mailbox_id does not change (see mailboxMovedLocked). Every other setting
// applies at run time.
func (d *Daemon) Reload(cfg *rcfile.Config) error {
	d.mu.Lock()
	if d.gen > 0 && cfg.StateDir != d.cfg.StateDir {
		old := d.cfg.StateDir
		d.mu.Unlock()
		return fmt.Errorf("state_dir changed from %s to %s: %w", old, cfg.StateDir, ErrRestartRequired)
	}
	owned := cfg.Shard.Owned(cfg.Accounts)
	if d.gen > 0 {
		if err := d.stateDirMovedLocked(owned); err != nil {
			d.mu.Unlock()
			return err
		}
		if err := d.mailboxMovedLocked(owned); err != nil {
			d.mu.Unlock()
			return err
		}
		if old := d.cfg.Shard; old != cfg.Shard {
			d.log.Info("shard changed", "from", old.String(), "to", cfg.Shard.String(), "accounts", len(owned))
		}
	}
	now := time.Now()
	seen := make(map[string]bool, len(owned))
	for _, na := range owned {
		seen[na.Name] = true
		iv := interval(na)
		a, ok := d.accts[na.Name]
		if !ok {
			// retryDele: a start (or a new account) is an operator's act
			// too; its first poll asks again for refused DELEs.
			added := &account{next: now.Add(d.jitter(firstPollJitter(iv))), retryDele: true, qidx: -1, didx: -1}
			added.setCfg(na)
			d.accts[na.Name] = added
			if d.gen > 0 {
				d.log.Info("account added", "account", na.Name)
			}
			continue
		}
		a.removed = false
		if rcfile.SameAccount(a.cfg, na) {
			a.setCfg(na) // keep the fresh positions for diagnostics
			continue
		}
		a.setCfg(na)
		a.changed = a.running
		a.retryDele = true
		a.fetchAllDone = false // the new settings get their own fetch_all pass
		d.log.Info("account changed", "account", na.Name)
		switch {
		case a.authHold || a.failures > 0:
			a.authHold, a.refused, a.failures, a.lastErr = false, false, 0, ""
			a.next = now.Add(d.jitter(firstPollJitter(iv)))
		case !a.lastEnd.IsZero():
			a.next = maxTime(a.lastEnd.Add(iv), now)
		}
	}
	for name, a := range d.accts {
		if seen[name] || a.removed {
			continue
		}
		answer(a.now, fetch.Result{Account: name, Err: ErrRemoved})
		a.now = nil
		if a.running {
			a.removed = true
		} else {
			delete(d.accts, name)
		}
		d.log.Info("account removed", "account", name)
	}
	for _, na := range owned {
		if _, ok := d.boxDirs[na.Mailbox()]; !ok {
			d.boxDirs[na.Mailbox()] = na.StateDir
		}
		if l := login(na); !slices.Contains(d.boxesAt[l], na.Mailbox()) {
			d.boxesAt[l] = append(d.boxesAt[l], na.Mailbox())
		}
	}
	d.cfg = cfg
	d.requeueLocked()
	d.gen++
	d.loadedAt = now
	gen := d.gen
	if d.alerts != nil {
		d.alerts.Configure(cfg, owned)
	}
	d.mu.Unlock()
	if gen > 1 {
		d.log.Info("config reloaded", "generation", gen, "accounts", len(owned), "shard", cfg.Shard.String())
	}
	d.wake()
	return nil
}

// stateDirMovedLocked returns ErrRestartRequired, naming the account and
// both directories, if an account of cfg polls a mailbox that this daemon
// has polled with a different state_dir (boxDirs), whether the account
// that did is still configured or not. The accounts are visited in
// order, so the error names the same account every time.
func (d *Daemon) stateDirMovedLocked(accts []*rcfile.Account) error {
	for _, na := range accts {
		old, ok := d.boxDirs[na.Mailbox()]
		if !ok || old == na.StateDir {
			continue
		}
		return fmt.Errorf("account %s: state_dir changed from %s to %s; its UIDL journal stays in the old directory "+
			"(starting empty in the new one would fetch a keep mailbox again in full): stop popfetch, move the journal, then start it: %w",
			na.Name, old, na.StateDir, ErrRestartRequired)
	}
	return nil
}

// login names where an account logs in, whatever its mailbox_id: user
// name, server (case-insensitive, as in rcfile.Account.Mailbox) and port.
func login(a *rcfile.Account) string {
	return fmt.Sprintf("%s@%s:%d", a.Username, strings.ToLower(a.Server), a.Port)
}

// mailboxMovedLocked returns ErrRestartRequired, naming the account and
// both journals, if an account of cfg logs in where this daemon has
// polled, but as none of the mailboxes it polled there (boxesAt): its
// mailbox_id was set, changed or removed (also under a new account name,
// or after the account was removed), and the new name would start with an
// empty journal. Two accounts that logged in to one place with their own
// mailbox_id from the start stay as they are. The accounts are visited
// in order, so the error names the same account every time.
func (d *Daemon) mailboxMovedLocked(accts []*rcfile.Account) error {
	for _, na := range accts {
		l := login(na)
		old := d.boxesAt[l]
		if len(old) == 0 || slices.Contains(old, na.Mailbox()) {
			continue
		}
		return fmt.Errorf("account %s: mailbox_id changed: %s was polled with the journal %s, not %s "+
			"(starting empty with the new one would fetch a keep mailbox again in full): stop popfetch, rename the journal, then start it: %w",
			na.Name, l, strings.Join(old, ", "), na.Mailbox(), ErrRestartRequired)
	}
	return nil
}

// LiftAuthHolds ends every auth-hold, and the long backoff after a refused
// login (ErrLoginRefused), on SIGHUP: the account is polled again soon,
// within its first-poll jitter. The rc file names only where
// a password comes from, so fixing the password file, variable or command
// does not show as a changed account; the operator's explicit reload is
// the signal instead. A poll running now that fails authentication gets
// one more try, as it may have read the old password. Every account's next
// poll also asks again for the DELEs the server kept refusing (see
// deleRefusalPolls). It returns how many held accounts were released.
func (d *Daemon) LiftAuthHolds() int {
	d.mu.Lock()
	now := time.Now()
	n := 0
	for name, a := range d.accts {
		a.retryDele = true // SIGHUP: ask again for refused DELEs too
		switch {
		case a.removed:
		case a.running:
			a.liftHold = true
		case a.authHold || a.refused:
			// A refused login waits hours; the operator who fixed the
			// password gets the same prompt retry as for a hold.
			a.authHold, a.refused, a.failures, a.lastErr = false, false, 0, ""
			a.next = now.Add(d.jitter(firstPollJitter(interval(a.cfg))))
			d.placeLocked(a)
			n++
			d.log.Info("authentication hold lifted by the operator; polling again", "account", name)
		}
	}
	d.mu.Unlock()
	d.wake()
	return n
}

func (d *Daemon) wake() {
	select {
	case d.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// PollNow polls the named accounts (all if names is empty) at once,
// bypassing their schedule, backoff and auth-hold, and returns their
// results in the order of names. It fails without polling anything if a
// name is unknown (ErrUnknownAccount), or names an account of the config
// that another shard polls (ErrOtherShard).
//
// An account that is already polling is polled once more after the poll
// in flight: the result returned always comes from a session that started
// after the request, so mail present at the request is fetched. Concurrent
// requests for one account share that one extra poll.
//
// The session limits still apply, and so does a server's LOGIN-DELAY (RFC
// 2449): an idle account inside its delay is not polled, and its Result
// carries ErrLoginDelay at once. If ctx ends first PollNow returns
// ctx.Err(); the polls it asked for still run.
func (d *Daemon) PollNow(ctx context.Context, names []string) ([]fetch.Result, error) {
	d.mu.Lock()
	if d.phase >= phaseStopping {
		d.mu.Unlock()
		return nil, ErrStopped
	}
	if len(names) == 0 {
		for name, a := range d.accts {
			if !a.removed {
				names = append(names, name)
			}
		}
		slices.Sort(names)
	}
	var unknown, others []string
	for _, name := range names {
		if a, ok := d.accts[name]; ok && !a.removed {
			continue
		}
		i := slices.IndexFunc(d.cfg.Accounts, func(a *rcfile.Account) bool { return a.Name == name })
		if i < 0 {
			unknown = append(unknown, name)
		} else {
			sh := d.cfg.Shard
			others = append(others, fmt.Sprintf("%s is polled by shard %d/%d", name, rcfile.ShardOf(d.cfg.Accounts[i].Mailbox(), sh.Count), sh.Count))
		}
	}
	if len(unknown) > 0 {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrUnknownAccount, strings.Join(unknown, ", "))
	}
	if len(others) > 0 {
		sh := d.cfg.Shard
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %s, not by this daemon (shard %s)", ErrOtherShard, strings.Join(others, "; "), sh)
	}
	now := time.Now()
	chans := make([]chan fetch.Result, len(names))
	for i, name := range names {
		a := d.accts[name]
		ch := make(chan fetch.Result, 1)
		chans[i] = ch
		if !a.running && a.notBefore.After(now) {
			ch <- loginDelayResult(name, now, a.notBefore)
			continue
		}
		if len(a.now) == 0 {
			a.nowAt = now
		}
		a.now = append(a.now, ch)
		d.placeLocked(a)
	}
	d.mu.Unlock()
	d.wake()

	results := make([]fetch.Result, len(names))
	for i, ch := range chans {
		select {
		case results[i] = <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return results, nil
}

// Status returns a snapshot; it is safe to call at any time, also before
// Run and after it returned.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	s := Status{
		Started:    d.started,
		Generation: d.gen,
		LoadedAt:   d.loadedAt,
		ConfigPath: d.cfg.Path,
		Accounts:   make([]AccountStatus, 0, len(d.accts)),
	}
	if d.cfg.Shard.Sharded() {
		s.Shard = &ShardStatus{Shard: d.cfg.Shard.String(), Owned: len(d.cfg.Shard.Owned(d.cfg.Accounts)), Accounts: len(d.cfg.Accounts)}
	}
	for name, a := range d.accts {
		if a.removed {
			continue
		}
		as := AccountStatus{
			Name:     name,
			Server:   a.cfg.Server,
			State:    a.state(),
			Failures: a.failures,
			Totals:   a.totals,
		}
		if a.notBefore.After(now) {
			as.NotBefore = a.notBefore
		}
		if due, ok := a.dueAt(now); ok && !a.running {
			as.NextPoll = due
		}
		if a.last != nil {
			l := *a.last
			as.Last = &l
		}
		as.LastSuccess = a.lastOK
		if a.directory != nil {
			ds := *a.directory
			as.Directory = &ds
		}
		s.Accounts = append(s.Accounts, as)
	}
	slices.SortFunc(s.Accounts, func(x, y AccountStatus) int { return strings.Compare(x.Name, y.Name) })
	if d.reload != nil {
		r := *d.reload
		r.Diagnostics = slices.Clone(r.Diagnostics)
		s.LastReload = &r
	}
	if d.alerts != nil {
		for _, x := range d.alerts.Active() {
			s.Alerts = append(s.Alerts, ActiveAlert{Account: x.Account, Condition: string(x.Condition), Since: x.Since, Detail: x.Detail})
		}
	}
	return s
}

// RecordReload records the outcome of an attempt to reload the rc file
// for Status: when, whether it was applied, and for a rejected one the
// reasons (only the first MaxReloadDiagnostics are kept). Reload itself
// does not record: a reload can be rejected before a Config exists (the
// file does not parse), and only the caller sees that.
func (d *Daemon) RecordReload(at time.Time, ok bool, diagnostics []string) {
	r := &ReloadStatus{At: at, OK: ok}
	if !ok {
		r.Diagnostics = slices.Clone(diagnostics[:min(len(diagnostics), MaxReloadDiagnostics)])
	}
	d.mu.Lock()
	d.reload = r
	if d.alerts != nil {
		d.alerts.Reloaded(at, ok, diagnostics)
	}
	d.mu.Unlock()
}

// Running reports whether the scheduler is running: Run has started and
// no stop has begun. /healthz answers 200 only then.
func (d *Daemon) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.phase == phaseRunning && d.gen > 0
}
