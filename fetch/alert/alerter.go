package alert

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/popfetch/popfetch/fetch/oauth"
	"github.com/popfetch/popfetch/internal/durable"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
)

// StateFile is the name of the alerts' state file in the state directory.
const StateFile = "alerts.json"

// Target kinds of a queued notice.
const (
	targetMaildir = "maildir"
	targetSMTP    = "smtp"
	targetCommand = "command"
)

// Retry policy of a notice that could not be sent: after retryMin, then
// doubling up to retryMax, for as long as the daemon runs (and after a
// restart: the queue is in the state file). A notice is never dropped
// for failing; only one whose target left the configuration is.
const (
	retryMin = 30 * time.Second
	retryMax = time.Hour
	// tickEvery is how often Run checks the timed conditions and writes
	// the state file if only the accounts' times changed.
	tickEvery = 30 * time.Second
)

// Sender sends one notice to one target of an alert block. The real one
// delivers through package deliver or runs the command; tests replace it.
type Sender interface {
	Send(ctx context.Context, n Notice, a *rcfile.Alert, target string) error
}

// Options configure an Alerter.
type Options struct {
	StateDir string // the state file lives here (StateFile)
	Host     string // names this machine in From and Message-ID; default os.Hostname()
	Log      *slog.Logger
	Sender   Sender           // default: the real targets (NewSender)
	Now      func() time.Time // default time.Now
}

// item is a notice waiting to be sent to one target: each target has
// its own item, so a broken one delays no other.
type item struct {
	Notice Notice    `json:"notice"`
	Target string    `json:"target"`
	Tries  int       `json:"tries,omitempty"`
	Next   time.Time `json:"next,omitzero"`
}

// fileState is the state file: the engine's memory and the queue, and
// the alert blocks of removed accounts whose notices are still queued
// (Alerter.gone): after a restart, a recovery notice still goes where
// its raise went, not to the global block.
type fileState struct {
	Engine State                    `json:"engine"`
	Queue  []*item                  `json:"queue,omitempty"`
	Gone   map[string]*rcfile.Alert `json:"gone,omitempty"`
}

// Alerter runs the Engine for the daemon: it feeds it, logs and queues
// its notices, keeps the state file, and sends the queue from its own
// goroutine (Run), so that a slow or failing target never holds up a
// poll or a reload. Its methods are safe for concurrent use.
type Alerter struct {
	path   string
	host   string
	log    *slog.Logger
	sender Sender
	now    func() time.Time

	mu    sync.Mutex
	eng   *Engine
	cfg   *rcfile.Config
	queue []*item
	// gone holds the alert blocks of accounts removed from the
	// configuration while they had conditions active: their recovery
	// notices go where the raise went (alertForLocked).
	gone map[string]*rcfile.Alert
	// tokens is the token file of each owned account, "" for one
	// without an oauth2 block; Tick reads them for OAuth2Expiring.
	tokens map[string]string
	dirty  bool // the engine's memory changed since the state file was written
	// gen counts the changes; a write that began at gen leaves dirty
	// set if a change came while it ran.
	gen uint64
	// saving serialises the writes of the state file, which run
	// outside mu: a slow or hung disk must not stall Polled, Reloaded,
	// Configure or Active, which the daemon calls from its scheduler.
	saving sync.Mutex
	// saveErr is the last failure to write the state file, logged once.
	saveErr string
	// started: Run has begun. Before, nothing is written: the daemon
	// has not yet proven (by its lock) that it is the only one on this
	// state directory.
	started bool
	wake    chan struct{}
}

// New returns an Alerter whose memory is read from the state file in
// opts.StateDir, if there is one. A state file that cannot be read is
// logged and replaced: alerts then start afresh.
func New(opts Options) *Alerter {
	a := &Alerter{
		path:   filepath.Join(opts.StateDir, StateFile),
		host:   opts.Host,
		log:    opts.Log,
		sender: opts.Sender,
		now:    opts.Now,
		wake:   make(chan struct{}, 1),
		cfg:    &rcfile.Config{},
		gone:   map[string]*rcfile.Alert{},
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.host == "" {
		a.host, _ = os.Hostname()
		if a.host == "" {
			a.host = "localhost"
		}
	}
	if a.sender == nil {
		a.sender = NewSender(a.host)
	}
	a.eng = NewEngine(newID)
	// Like popfetch's other state files: not one that another user can
	// write (it decides what is sent where), not a FIFO (the start would
	// hang), and bounded.
	b, err := trust.ReadTrusted(a.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		a.log.Error("alerts: state file unreadable; starting afresh", "path", a.path, "err", err)
	default:
		var st fileState
		if err := json.Unmarshal(b, &st); err != nil {
			a.log.Error("alerts: state file corrupt; starting afresh", "path", a.path, "err", err)
		} else {
			a.eng.Restore(st.Engine)
			// Only what this version can send: a hand-edited file may
			// hold anything.
			for _, it := range st.Queue {
				if it != nil && slices.Contains([]string{targetMaildir, targetSMTP, targetCommand}, it.Target) {
					a.queue = append(a.queue, it)
				}
			}
			for name, al := range st.Gone {
				if al != nil && name != "" {
					// Never a program named by a state file: a
					// command notice of a removed account is
					// dropped like one whose block lost its
					// command (Maildir and SMTP notices still go).
					al.Command = nil
					a.gone[name] = al
				}
			}
		}
	}
	return a
}

// newID is a notice's unique ID: the time and 64 random bits.
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("alert.%d.%s", time.Now().Unix(), hex.EncodeToString(b[:]))
}

// Configure tells the Alerter the configuration and the accounts this
// daemon polls (its shard's).
func (a *Alerter) Configure(cfg *rcfile.Config, owned []*rcfile.Account) {
	accts := make(map[string]AccountConfig, len(owned))
	tokens := make(map[string]string, len(owned))
	for _, ac := range owned {
		if ac.OAuth2 != nil {
			tokens[ac.Name] = oauth.TokenPath(ac.StateDir, ac.Name)
		} else {
			tokens[ac.Name] = ""
		}
		c := AccountConfig{After: DefaultAfter(ac.Interval), Keep: ac.Keep, Interval: ac.Interval}
		if al := cfg.AlertFor(ac.Name); al != nil {
			if al.After > 0 {
				c.After = al.After
			}
			c.MaxMessages, c.MaxBytes = al.MailboxMessages, al.MailboxSize
		}
		accts[ac.Name] = c
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, x := range a.eng.Active() {
		if _, ok := accts[x.Account]; x.Account != "" && !ok {
			if al := a.cfg.AlertFor(x.Account); al != nil {
				a.gone[x.Account] = al
			}
		}
	}
	for name := range accts {
		delete(a.gone, name)
	}
	a.cfg = cfg
	a.tokens = tokens
	a.handleLocked(a.eng.Configure(a.now(), accts))
	for name := range a.gone {
		if !slices.ContainsFunc(a.queue, func(q *item) bool { return q.Notice.Account == name }) {
			delete(a.gone, name)
		}
	}
}

// alertForLocked is the alert block of account name: its own or the
// global one, or for an account removed with conditions active, the one
// it had.
func (a *Alerter) alertForLocked(name string) *rcfile.Alert {
	if al := a.gone[name]; al != nil {
		return al
	}
	return a.cfg.AlertFor(name)
}

// Polled feeds one finished poll.
func (a *Alerter) Polled(p Poll) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.markLocked()
	a.handleLocked(a.eng.Poll(p))
}

// Reloaded feeds the outcome of an attempt to reload the rc file.
func (a *Alerter) Reloaded(at time.Time, ok bool, diagnostics []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.markLocked() // the detail of an active rejection may change
	a.handleLocked(a.eng.Reload(at, ok, diagnostics))
}

// Active lists the conditions active now.
func (a *Alerter) Active() []Active {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.eng.Active()
}

// Tick checks the timed conditions now, and what the token files say of
// their refresh tokens' expiry; Run calls it periodically, so an alert
// of an expiring token clears within tickEvery of a `popfetch login`.
func (a *Alerter) Tick() {
	expiry := a.readTokenFiles()
	a.mu.Lock()
	now := a.now()
	ns := a.eng.Tick(now)
	for _, x := range expiry {
		ns = append(ns, a.eng.TokenExpiry(now, x.account, x.issued, x.expires)...)
	}
	a.handleLocked(ns)
	a.mu.Unlock()
	a.save()
}

type tokenExpiry struct {
	account         string
	issued, expires time.Time
}

// readTokenFiles reads the refresh token expiry of every owned account,
// without the lock (file reads). An account without an oauth2 block or
// a token file has none (zero), which clears an alert left from before;
// a file that cannot be read is left out: the polls report it, and what
// was known stands.
func (a *Alerter) readTokenFiles() []tokenExpiry {
	a.mu.Lock()
	names := make([]string, 0, len(a.tokens))
	for name := range a.tokens {
		names = append(names, name)
	}
	paths := a.tokens
	a.mu.Unlock()
	slices.Sort(names)
	out := make([]tokenExpiry, 0, len(names))
	for _, name := range names {
		x := tokenExpiry{account: name}
		if p := paths[name]; p != "" {
			info, err := oauth.ReadInfo(p)
			if err != nil {
				continue
			}
			x.issued, x.expires = info.RefreshIssued, info.RefreshExpiry
		}
		out = append(out, x)
	}
	return out
}

// handleLocked logs every notice, queues those to send, and marks the
// state file for Run to write when anything happened: never here, as
// the daemon calls this from its scheduler.
func (a *Alerter) handleLocked(ns []Notice) {
	if len(ns) == 0 {
		return
	}
	for _, n := range ns {
		attrs := []any{"account", n.Account, "condition", string(n.Condition), "since", n.Since.UTC().Format(time.RFC3339)}
		if n.Condition != ReloadRejected || n.Event == Cleared {
			// A rejected reload's diagnostics were logged by the
			// reload, one line each; once is enough.
			attrs = append(attrs, "detail", n.Detail)
		}
		switch {
		case n.Suppressed:
			a.log.Warn("alert raised; no notice sent (rate limit)", attrs...)
			continue
		case n.Event == Raised:
			a.log.Warn("alert raised", attrs...)
		default:
			a.log.Info("alert cleared", attrs...)
		}
		for _, t := range targets(a.alertForLocked(n.Account)) {
			a.queue = append(a.queue, &item{Notice: n, Target: t})
		}
	}
	a.markLocked()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// markLocked records that the state file must be written again.
func (a *Alerter) markLocked() {
	a.dirty = true
	a.gen++
}

// targets lists the kinds of target an alert block has.
func targets(al *rcfile.Alert) []string {
	if al == nil {
		return nil
	}
	var t []string
	if al.Maildir != "" {
		t = append(t, targetMaildir)
	}
	if al.SMTP != nil {
		t = append(t, targetSMTP)
	}
	if len(al.Command) > 0 {
		t = append(t, targetCommand)
	}
	return t
}

// writeState is writeAtomic; tests replace it to make the disk slow.
var writeState = writeAtomic

// save writes the state file if it changed, atomically (a temporary
// file, fsync, rename, fsync of the directory), mode 0600: after a crash
// it holds the old state or the new, and a condition active before a
// restart is not raised again after it. It takes a snapshot under mu and
// writes without it. A failure is logged; the next change or tick tries
// again. Only Run's goroutine calls it (and tests).
func (a *Alerter) save() {
	a.saving.Lock()
	defer a.saving.Unlock()
	a.mu.Lock()
	if !a.started || !a.dirty {
		a.mu.Unlock()
		return
	}
	gen := a.gen
	b, err := json.MarshalIndent(fileState{Engine: a.eng.State(), Queue: a.queue, Gone: a.gone}, "", "  ")
	a.mu.Unlock()
	if err == nil {
		err = writeState(a.path, b)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		// Once per kind of failure, not at every tick and notice: a full
		// disk would otherwise fill what is left of it with this line.
		kind := err.Error()
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			kind = pe.Op + ": " + pe.Err.Error() // not the temporary file's random name
		}
		if kind != a.saveErr {
			a.log.Error("alerts: cannot write the state file; retrying at every change", "path", a.path, "err", err)
			a.saveErr = kind
		}
		return
	}
	if a.saveErr != "" {
		a.log.Info("alerts: state file written again", "path", a.path)
		a.saveErr = ""
	}
	if a.gen == gen {
		a.dirty = false
	}
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, there is nothing to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return durable.SyncDir(dir)
}

// removeStale removes the temporary files writeAtomic leaves when the
// daemon is killed during a write: only names it makes, only regular
// files this user owns. Run calls it once the daemon holds its lock, so
// no other writer is at work on this state directory.
func (a *Alerter) removeStale() {
	dir, base := filepath.Dir(a.path), "."+filepath.Base(a.path)+"."
	ents, err := os.ReadDir(dir)
	if err != nil {
		return // the write reports a state directory it cannot use
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, base) || len(name) == len(base) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
			continue
		}
		if err := os.Remove(p); err != nil {
			a.log.Warn("alerts: cannot remove a stale temporary state file", "path", p, "err", err)
			continue
		}
		a.log.Info("alerts: removed a stale temporary state file", "path", p)
	}
}

// Run sends the queue, ticks and writes the state file until ctx is
// done. What is still queued then stays in the state file for the next
// start.
func (a *Alerter) Run(ctx context.Context) {
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	a.mu.Lock()
	a.started = true
	a.eng.Resume(a.now())
	a.mu.Unlock()
	a.removeStale()
	a.Tick()
	for {
		a.save()
		wait := a.sendDue(ctx)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			a.save() // what changed since the last write
			return
		case <-tick.C:
			a.Tick()
		case <-a.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// sendDue sends every queued notice that is due, one target at a time,
// without holding the lock while sending, and returns how long until
// the next one is due.
func (a *Alerter) sendDue(ctx context.Context) time.Duration {
	for ctx.Err() == nil {
		a.mu.Lock()
		now := a.now()
		var it *item
		for _, q := range a.queue {
			if !q.Next.After(now) && !a.behindLocked(q) {
				it = q
				break
			}
		}
		if it == nil {
			wait := tickEvery
			for _, q := range a.queue {
				if !a.behindLocked(q) {
					wait = min(wait, q.Next.Sub(now))
				}
			}
			a.mu.Unlock()
			return max(wait, time.Second)
		}
		n, target := it.Notice, it.Target
		al := a.alertForLocked(n.Account)
		a.mu.Unlock()

		var err error
		if !slices.Contains(targets(al), target) {
			err = errGone
		} else {
			err = a.send(ctx, n, al, target)
		}

		a.mu.Lock()
		switch {
		case err == nil || errors.Is(err, errGone):
			if err != nil {
				a.log.Warn("alert not sent: its target left the configuration", "account", n.Account, "condition", string(n.Condition), "target", target)
			} else {
				a.log.Info("alert sent", "account", n.Account, "condition", string(n.Condition), "event", string(n.Event), "target", target)
			}
			a.queue = slices.DeleteFunc(a.queue, func(q *item) bool { return q == it })
			if a.gone[n.Account] != nil && !slices.ContainsFunc(a.queue, func(q *item) bool { return q.Notice.Account == n.Account }) {
				delete(a.gone, n.Account)
			}
		case ctx.Err() != nil:
			a.mu.Unlock()
			return 0
		default:
			it.Tries++
			delay := min(retryMax, retryMin<<min(it.Tries-1, 10))
			it.Next = a.now().Add(delay)
			a.log.Error("alert could not be sent; will retry", "account", n.Account, "condition", string(n.Condition), "event", string(n.Event),
				"target", target, "err", err, "tries", it.Tries, "retry_in", delay)
			// Move it behind the others so one broken target does not
			// delay the notices for working ones, and wait as long with
			// the other notices due for the same target: a command that
			// hangs until CommandTimeout costs that once, not once per
			// queued notice.
			a.queue = append(slices.DeleteFunc(a.queue, func(q *item) bool { return q == it }), it)
			for _, q := range a.queue {
				if q.Target == target && q.Next.Before(it.Next) && a.alertForLocked(q.Notice.Account) == al {
					q.Next = it.Next
				}
			}
		}
		a.markLocked()
		a.mu.Unlock()
		a.save()
	}
	return 0
}

var errGone = errors.New("target no longer configured")

// behindLocked reports whether q must wait for an older notice of the
// same condition to the same target (a raise waiting for its retry):
// each target gets a condition's notices in the order they were made,
// never "RESOLVED" before its "ALERT".
func (a *Alerter) behindLocked(q *item) bool {
	return slices.ContainsFunc(a.queue, func(p *item) bool {
		return p != q && p.Target == q.Target && p.Notice.Account == q.Notice.Account &&
			p.Notice.Condition == q.Notice.Condition && p.Notice.At.Before(q.Notice.At)
	})
}

// send is Sender.Send with a panic turned into an error: a bug in a
// target must not take the daemon down, to crash again on the same
// queued notice at every start.
func (a *Alerter) send(ctx context.Context, n Notice, al *rcfile.Alert, target string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("alert %s to %s: panic: %v", n.ID, target, r)
		}
	}()
	return a.sender.Send(ctx, n, al, target)
}

// Pending is how many notices wait to be sent (for tests and status).
func (a *Alerter) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.queue)
}
