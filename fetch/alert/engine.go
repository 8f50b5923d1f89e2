package alert

import (
	"fmt"

	"github.com/popfetch/popfetch/rcfile"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Condition names one kind of trouble. The values are stable: they
// appear in alert subjects, the JSON document, `popfetch status` and the
// state file.
type Condition string

const (
	// AuthHold: the server rejected the credentials; the daemon does not
	// retry until the operator acts. Clears with a poll that succeeds.
	AuthHold Condition = "auth-hold"
	// Failing: every poll of the account failed for longer than After.
	Failing Condition = "failing"
	// DeliveryFailing: a delivery target refused messages temporarily
	// (disk full, LMTP server down) for longer than After; the messages
	// wait on the server.
	DeliveryFailing Condition = "delivery-failing"
	// DeleRefused: the server kept refusing DELE for delivered messages
	// (fetch.Result.Undeletable).
	DeleRefused Condition = "dele-refused"
	// ReloadRejected: the rc file was changed or SIGHUP sent, and the new
	// file was rejected; the daemon runs on the old one. Global (no
	// account); clears with the next accepted reload.
	ReloadRejected Condition = "reload-rejected"
	// OAuth2Refresh: getting an OAuth2 access token failed (the identity
	// provider refused the refresh token or could not be reached).
	OAuth2Refresh Condition = "oauth2-refresh"
	// OAuth2Expiring: the identity provider said when the account's
	// refresh token stops working (package fetch/oauth stores it), and
	// that is within RefreshExpiryWindow. Clears when the token file no
	// longer says so: `popfetch login` renewed it.
	OAuth2Expiring Condition = "oauth2-expiring"
	// NoSuccess: no poll of the account succeeded for After, and none
	// failed either (that is Failing): polls do not happen at all.
	NoSuccess Condition = "no-success"
	// MailboxFull: a keep-mode mailbox on the server holds more messages
	// or bytes than the alert block's thresholds: the provider's quota
	// may soon refuse new mail.
	MailboxFull Condition = "mailbox-full"
)

// Conditions lists every Condition, in the order the engine evaluates them.
var Conditions = []Condition{AuthHold, Failing, DeliveryFailing, DeleRefused, ReloadRejected, OAuth2Refresh, OAuth2Expiring, NoSuccess, MailboxFull}

// Rate limits. A condition that clears and comes back within
// RenotifyAfter of its last notice is active again, but silently (it
// flaps), and no more than MaxPerHour raise notices go out in any hour
// across all accounts (a network outage hits every account at once: one
// person should not get 500 mails). A suppressed raise gets no recovery
// notice either, so the two always pair up; a recovery notice of a raise
// that was sent is never dropped. A suppressed condition still active
// when the limits allow is raised then (Tick): held back, not lost.
const (
	RenotifyAfter = time.Hour
	MaxPerHour    = 20
)

// Key identifies one active condition: Account is "" for a global one.
type Key struct {
	Account   string
	Condition Condition
}

// Active is one condition that has started and not yet cleared.
type Active struct {
	Account   string    `json:"account,omitempty"`
	Condition Condition `json:"condition"`
	Since     time.Time `json:"since"`
	Detail    string    `json:"detail,omitempty"`
	// Notified says that a raise notice was sent for it (not suppressed
	// by the rate limit): its recovery notice will be sent too.
	Notified bool `json:"notified"`
}

// Event says whether a Notice starts or ends a condition.
type Event string

const (
	Raised  Event = "raised"
	Cleared Event = "cleared"
)

// Notice is one alert to send: a condition raised or cleared.
type Notice struct {
	ID        string    `json:"id"` // unique; the Message-ID's left part
	Event     Event     `json:"event"`
	Account   string    `json:"account,omitempty"`
	Condition Condition `json:"condition"`
	Since     time.Time `json:"since"` // when the condition started
	At        time.Time `json:"at"`    // when this notice was made
	Detail    string    `json:"detail,omitempty"`
	// Suppressed: the rate limit held this raise back; it is logged, not
	// sent. Never set on a Cleared notice.
	Suppressed bool `json:"-"`
}

// AccountConfig is what the engine needs to know of one account.
type AccountConfig struct {
	After       time.Duration // how long before failing counts (DefaultAfter)
	Keep        bool          // mail stays on the server: MailboxFull applies
	MaxMessages int           // MailboxFull threshold; 0 = none
	MaxBytes    int64         // MailboxFull threshold; 0 = none
	// Interval is how often the account is polled: NoSuccess waits at
	// least two of them, whatever After says (an `after` of an hour for
	// an account polled daily is not a missed poll every day).
	Interval time.Duration
}

// DefaultAfter is the alert block's default `after` for an account
// polled every interval (rcfile.DefaultAlertAfter).
func DefaultAfter(interval time.Duration) time.Duration {
	return rcfile.DefaultAlertAfter(interval)
}

// Poll is what the daemon tells the engine about one finished poll.
type Poll struct {
	Account string
	At      time.Time
	Err     error // nil: the poll succeeded
	// Held: the account is on authentication hold after this poll.
	Held bool
	// OAuth2: Err is a failure to get an OAuth2 access token.
	OAuth2 bool
	// LoggedIn: the session got past the login, so Messages and
	// MailboxBytes describe the maildrop.
	LoggedIn     bool
	Messages     int
	MailboxBytes int64
	Failed       int // messages a target refused temporarily
	Undeletable  int // messages whose DELE the server kept refusing
	// New and Delivered: the messages selected for retrieval and those
	// of them delivered; the others wait on the server (in keep mode,
	// Messages counts the delivered ones kept there too).
	New, Delivered int
}

// accountState is the engine's memory of one account between polls.
type accountState struct {
	LastOK        time.Time `json:"last_ok,omitzero"`        // last successful poll, or when first seen
	FailingSince  time.Time `json:"failing_since,omitzero"`  // first failure of the current run of failures
	DeliverySince time.Time `json:"delivery_since,omitzero"` // first poll with Failed > 0 of the current run
	Waiting       int       `json:"waiting,omitempty"`       // messages not delivered at the last login (Poll.New, Delivered)
	LastErr       string    `json:"last_err,omitempty"`
}

// State is the engine's whole memory, as persisted in the state file.
type State struct {
	Active    []Active                 `json:"active"`
	Accounts  map[string]*accountState `json:"accounts"`
	LastRaise map[string]time.Time     `json:"last_raise,omitempty"` // by key string, for RenotifyAfter
	Sent      []time.Time              `json:"sent,omitempty"`       // raise notices sent in the last hour
}

// Engine decides when a condition starts and when it ends. It is pure:
// time comes in with every call, and what to send comes out as Notices;
// it neither sends, logs nor persists (Alerter does). Not safe for
// concurrent use.
type Engine struct {
	cfg       map[string]AccountConfig
	accts     map[string]*accountState
	active    map[Key]*Active
	lastRaise map[Key]time.Time
	sent      []time.Time
	newID     func() string
	// resumed is when the daemon started (Resume); zero = long ago.
	resumed time.Time
}

// ResumeGrace is how long after a start NoSuccess waits before it looks
// at the last success the state file remembers: after a planned stop
// of a day, every account's first poll is due within seconds, and an
// alert that the first poll then clears would be noise. A daemon that
// keeps crashing within this time is systemd's to report.
const ResumeGrace = 5 * time.Minute

// Resume records that the daemon started at now (see ResumeGrace).
func (e *Engine) Resume(now time.Time) { e.resumed = now }

// NewEngine returns an engine with no account and nothing active.
// newID makes Notice.ID (nil: a counter, for tests).
func NewEngine(newID func() string) *Engine {
	e := &Engine{
		cfg:       map[string]AccountConfig{},
		accts:     map[string]*accountState{},
		active:    map[Key]*Active{},
		lastRaise: map[Key]time.Time{},
		newID:     newID,
	}
	if e.newID == nil {
		n := 0
		e.newID = func() string { n++; return fmt.Sprintf("n%d", n) }
	}
	return e
}

func keyString(k Key) string { return k.Account + "/" + string(k.Condition) }

func parseKey(s string) (Key, bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return Key{}, false
	}
	return Key{Account: s[:i], Condition: Condition(s[i+1:])}, true
}

// Restore replaces the engine's memory with st (read from the state
// file at start-up), so that a condition active before a restart is not
// raised again.
func (e *Engine) Restore(st State) {
	e.active = map[Key]*Active{}
	for _, a := range st.Active {
		a := a
		// Nothing would ever clear a condition this version does not
		// know (a downgrade, a hand edit), or a per-account one without
		// an account: it would stay in `popfetch status` forever.
		if !slices.Contains(Conditions, a.Condition) || (a.Account == "") != (a.Condition == ReloadRejected) {
			continue
		}
		e.active[Key{a.Account, a.Condition}] = &a
	}
	e.accts = map[string]*accountState{}
	for name, s := range st.Accounts {
		if s != nil {
			c := *s
			e.accts[name] = &c
		}
	}
	e.lastRaise = map[Key]time.Time{}
	for ks, t := range st.LastRaise {
		if k, ok := parseKey(ks); ok {
			e.lastRaise[k] = t
		}
	}
	e.sent = slices.Clone(st.Sent)
}

// State returns the engine's memory for the state file.
func (e *Engine) State() State {
	st := State{Active: e.Active(), Accounts: map[string]*accountState{}, LastRaise: map[string]time.Time{}, Sent: slices.Clone(e.sent)}
	for name, s := range e.accts {
		c := *s
		st.Accounts[name] = &c
	}
	for k, t := range e.lastRaise {
		st.LastRaise[keyString(k)] = t
	}
	return st
}

// Active lists the active conditions, global first, then by account and
// condition.
func (e *Engine) Active() []Active {
	out := make([]Active, 0, len(e.active))
	for _, a := range e.active {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(x, y Active) int {
		if c := strings.Compare(x.Account, y.Account); c != 0 {
			return c
		}
		return strings.Compare(string(x.Condition), string(y.Condition))
	})
	return out
}

// Configure sets the accounts the daemon polls. An account seen for the
// first time counts as successful now (NoSuccess needs a start); the
// conditions of an account no longer configured clear.
func (e *Engine) Configure(now time.Time, accts map[string]AccountConfig) []Notice {
	var out []Notice
	for k := range e.active {
		if _, ok := accts[k.Account]; k.Account != "" && !ok {
			out = e.clear(out, now, k, "the account was removed from the configuration")
		}
	}
	for name := range e.accts {
		if _, ok := accts[name]; !ok {
			delete(e.accts, name)
		}
	}
	e.cfg = map[string]AccountConfig{}
	for name, c := range accts {
		if c.After <= 0 {
			c.After = time.Hour
		}
		e.cfg[name] = c
		if s := e.accts[name]; s == nil {
			e.accts[name] = &accountState{LastOK: now}
		} else if !c.Keep || (c.MaxMessages == 0 && c.MaxBytes == 0) {
			out = e.clear(out, now, Key{name, MailboxFull}, "the mailbox thresholds no longer apply (keep or the thresholds changed)")
		}
	}
	slices.SortFunc(out, byKey)
	return out
}

func byKey(x, y Notice) int {
	if c := strings.Compare(x.Account, y.Account); c != 0 {
		return c
	}
	return strings.Compare(string(x.Condition), string(y.Condition))
}

// Reload records the outcome of an attempt to reload the rc file: a
// rejected one raises ReloadRejected (once, however many follow), an
// accepted one clears it. A rejection while it is active replaces its
// detail: `popfetch status` shows what is wrong with the file now, not
// with the first rejected version, and the recovery notice says what
// the last rejected version had.
func (e *Engine) Reload(now time.Time, ok bool, diagnostics []string) []Notice {
	k := Key{"", ReloadRejected}
	if ok {
		detail := "the rc file was reloaded"
		if a := e.active[k]; a != nil && a.Detail != "" {
			detail += "; the last rejected version said: " + strings.ReplaceAll(a.Detail, "\n", "; ")
		}
		return e.clear(nil, now, k, cut(detail, maxDetail))
	}
	detail := strings.Join(diagnostics, "\n")
	if a := e.active[k]; a != nil {
		a.Detail = cut(detail, maxDetail)
		return nil
	}
	return e.raise(nil, now, k, detail)
}

// Poll records one finished poll and returns the notices it causes.
func (e *Engine) Poll(p Poll) []Notice {
	c, ok := e.cfg[p.Account]
	if !ok {
		return nil // not (or no longer) configured
	}
	s := e.accts[p.Account]
	now := p.At
	var out []Notice
	k := func(c Condition) Key { return Key{p.Account, c} }
	if p.Err == nil {
		s.LastOK, s.FailingSince, s.LastErr = now, time.Time{}, ""
	} else {
		s.LastErr = p.Err.Error()
		if p.Held {
			s.FailingSince = time.Time{} // AuthHold says it
		} else if s.FailingSince.IsZero() {
			s.FailingSince = now
		}
	}
	if p.LoggedIn || p.Err == nil {
		s.Waiting = max(p.New-p.Delivered, p.Failed)
	}

	switch {
	case p.Err == nil:
		out = e.clear(out, now, k(AuthHold), "a poll succeeded")
		out = e.clear(out, now, k(OAuth2Refresh), "a poll succeeded")
		out = e.clear(out, now, k(Failing), "a poll succeeded")
		out = e.clear(out, now, k(NoSuccess), "a poll succeeded")
	case p.OAuth2:
		out = e.raise(out, now, k(OAuth2Refresh), s.LastErr)
	case p.Held:
		out = e.raise(out, now, k(AuthHold), s.LastErr)
	}

	if p.Failed > 0 {
		if s.DeliverySince.IsZero() {
			s.DeliverySince = now
		}
	} else if p.Err == nil {
		s.DeliverySince = time.Time{}
		out = e.clear(out, now, k(DeliveryFailing), "every message of the last poll was delivered")
	}

	if p.Undeletable > 0 {
		out = e.raise(out, now, k(DeleRefused), fmt.Sprintf("%d delivered message(s) stay on the server because it refuses to delete them", p.Undeletable))
	} else if p.Err == nil {
		out = e.clear(out, now, k(DeleRefused), "the server deleted what it was asked to")
	}

	if p.LoggedIn || p.Err == nil {
		if over := overQuota(c, p.Messages, p.MailboxBytes); over != "" {
			out = e.raise(out, now, k(MailboxFull), over)
		} else if c.Keep {
			out = e.clear(out, now, k(MailboxFull), fmt.Sprintf("the mailbox holds %d message(s), %d bytes", p.Messages, p.MailboxBytes))
		}
	}
	out = e.timers(out, now, p.Account)
	return out
}

// overQuota says how a keep-mode mailbox exceeds its thresholds, or "".
func overQuota(c AccountConfig, n int, size int64) string {
	if !c.Keep {
		return ""
	}
	var why []string
	if c.MaxMessages > 0 && n > c.MaxMessages {
		why = append(why, fmt.Sprintf("%d messages (threshold %d)", n, c.MaxMessages))
	}
	if c.MaxBytes > 0 && size > c.MaxBytes {
		why = append(why, fmt.Sprintf("%d bytes (threshold %d)", size, c.MaxBytes))
	}
	if len(why) == 0 {
		return ""
	}
	return "the mailbox on the server holds " + strings.Join(why, " and ")
}

// Tick raises the conditions that only time brings: Failing,
// DeliveryFailing and NoSuccess past After. The daemon calls it
// periodically, so that an account that is not polled at all is noticed.
func (e *Engine) Tick(now time.Time) []Notice {
	var out []Notice
	names := make([]string, 0, len(e.cfg))
	for name := range e.cfg {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		out = e.timers(out, now, name)
	}
	return e.deferred(out, now)
}

func (e *Engine) timers(out []Notice, now time.Time, name string) []Notice {
	c, s := e.cfg[name], e.accts[name]
	if s == nil {
		return out
	}
	// A time after now was written while the clock was wrong (set back
	// since): count from now rather than wait for the clock to get there.
	for _, t := range []*time.Time{&s.LastOK, &s.FailingSince, &s.DeliverySince} {
		if t.After(now) {
			*t = now
		}
	}
	if !s.FailingSince.IsZero() && now.Sub(s.FailingSince) >= c.After {
		out = e.raise(out, now, Key{name, Failing}, fmt.Sprintf("every poll since %s failed; the last error: %s", s.FailingSince.UTC().Format(time.RFC3339), s.LastErr))
	}
	if !s.DeliverySince.IsZero() && now.Sub(s.DeliverySince) >= c.After {
		out = e.raise(out, now, Key{name, DeliveryFailing}, fmt.Sprintf("delivery has failed temporarily since %s; %d message(s) wait on the server", s.DeliverySince.UTC().Format(time.RFC3339), s.Waiting))
	}
	_, held := e.active[Key{name, AuthHold}]
	_, oauth := e.active[Key{name, OAuth2Refresh}]
	if s.FailingSince.IsZero() && !held && !oauth && !s.LastOK.IsZero() && now.Sub(s.LastOK) >= max(c.After, 2*c.Interval) && now.Sub(e.resumed) >= ResumeGrace {
		out = e.raise(out, now, Key{name, NoSuccess}, fmt.Sprintf("no poll has succeeded since %s", s.LastOK.UTC().Format(time.RFC3339)))
	}
	return out
}

// RefreshExpiryWarn is how long before a refresh token's known expiry
// OAuth2Expiring is raised, at most: three days leave a weekend to sign
// in again. For a token that lives less than four times that (Google's
// testing-mode tokens live 7 days), a quarter of its life: a grant the
// user chose to make short is not announced as expiring the moment it
// is made.
const RefreshExpiryWarn = 3 * 24 * time.Hour

// RefreshExpiryWindow is how long before expires, of a refresh token
// issued at issued (zero: unknown), OAuth2Expiring is raised.
func RefreshExpiryWindow(issued, expires time.Time) time.Duration {
	w := RefreshExpiryWarn
	if life := expires.Sub(issued); !issued.IsZero() && life > 0 && life/4 < w {
		w = life / 4
	}
	return w
}

// TokenExpiry records what account's token file says of its refresh
// token: when it was issued and when it expires (zero: not known to
// expire, or no token file). It raises OAuth2Expiring once the expiry is
// within RefreshExpiryWindow, and clears it once the file says otherwise
// (a new sign-in). The detail names times only, never a token.
func (e *Engine) TokenExpiry(now time.Time, account string, issued, expires time.Time) []Notice {
	if _, ok := e.cfg[account]; !ok {
		return nil
	}
	k := Key{account, OAuth2Expiring}
	if expires.IsZero() {
		return e.clear(nil, now, k, "the refresh token is no longer known to expire (a new sign-in, or the account no longer uses an oauth2 block)")
	}
	at := expires.UTC().Format(time.RFC3339)
	if now.Before(expires.Add(-RefreshExpiryWindow(issued, expires))) {
		return e.clear(nil, now, k, "a new sign-in renewed the refresh token; it now expires at "+at)
	}
	if !now.Before(expires) {
		return e.raise(nil, now, k, fmt.Sprintf("the OAuth2 refresh token expired at %s; no access token can be got until someone signs in again with `popfetch login %s`", at, account))
	}
	return e.raise(nil, now, k, fmt.Sprintf("the OAuth2 refresh token expires at %s (in %s); after that no access token can be got and the account stops until someone signs in again with `popfetch login %s`",
		at, expires.Sub(now).Round(time.Minute), account))
}

// raise starts condition k unless it is active already, and appends its
// notice: sent, or Suppressed by the rate limit.
func (e *Engine) raise(out []Notice, now time.Time, k Key, detail string) []Notice {
	if a := e.active[k]; a != nil {
		return out // once per start, however many polls see it
	}
	detail = cut(detail, maxDetail)
	a := &Active{Account: k.Account, Condition: k.Condition, Since: now, Detail: detail}
	e.active[k] = a
	a.Notified = e.mayNotify(now, k)
	return append(out, Notice{ID: e.newID(), Event: Raised, Account: k.Account, Condition: k.Condition, Since: now, At: now, Detail: detail, Suppressed: !a.Notified})
}

// mayNotify says whether a raise notice for k may go out now under the
// rate limits, and if so counts it.
func (e *Engine) mayNotify(now time.Time, k Key) bool {
	// A time after now was written while the clock was wrong (set back
	// since): it must not silence alerts until the clock gets there.
	hour := now.Add(-time.Hour)
	e.sent = slices.DeleteFunc(e.sent, func(t time.Time) bool { return !t.After(hour) || t.After(now) })
	last, seen := e.lastRaise[k]
	if (seen && !last.After(now) && now.Sub(last) < RenotifyAfter) || len(e.sent) >= MaxPerHour {
		return false
	}
	e.lastRaise[k] = now
	e.sent = append(e.sent, now)
	return true
}

// deferred sends the raise notices the rate limits held back, for the
// conditions still active once the limits allow: a condition that came
// back within RenotifyAfter of its recovery notice and stayed must not
// rest on that "RESOLVED", and one held back by MaxPerHour is late,
// not lost. After a start it waits ResumeGrace: the first polls may
// show that the condition ended while the daemon was stopped.
func (e *Engine) deferred(out []Notice, now time.Time) []Notice {
	if now.Sub(e.resumed) < ResumeGrace {
		return out
	}
	for _, a := range e.Active() {
		k := Key{a.Account, a.Condition}
		if a.Notified || !e.mayNotify(now, k) {
			continue
		}
		e.active[k].Notified = true
		out = append(out, Notice{ID: e.newID(), Event: Raised, Account: a.Account, Condition: a.Condition, Since: a.Since, At: now, Detail: a.Detail})
	}
	return out
}

// clear ends condition k if it is active, and appends its recovery
// notice if its raise was sent.
func (e *Engine) clear(out []Notice, now time.Time, k Key, detail string) []Notice {
	a := e.active[k]
	if a == nil {
		return out
	}
	delete(e.active, k)
	if !a.Notified {
		return out
	}
	return append(out, Notice{ID: e.newID(), Event: Cleared, Account: k.Account, Condition: k.Condition, Since: a.Since, At: now, Detail: detail})
}

// maxDetail bounds a notice's Detail in bytes: a rejected reload may
// have thousands of diagnostics, a server a reply of any length, and the
// notice, its JSON and the state file must stay small.
const maxDetail = 4096

// cut returns s cut to at most n bytes at a rune boundary, with "…"
// when it cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
