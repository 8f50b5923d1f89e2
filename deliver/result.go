package deliver

import (
	"context"
	"sync"
)

// ResultFunc receives the result of rcpts[i] of a Deliver, and for a copy
// delivered (err nil) its Receipt, as soon as that
// result is final, before Deliver returns: a Maildir or MDA after each copy;
// LMTP as each 250 arrives when it names, in angle brackets, exactly the
// recipient it is due for (as dovecot's do) and the session is in step so
// far; SMTP, and LMTP replies that name no recipient, once for the whole
// transaction, when its last reply is in and the session was in step
// (before QUIT): a stray reply among unnamed ones would shift each later
// reply onto the wrong recipient, which only the count at the end shows,
// while a shifted named reply names another recipient. Deliver's return
// value still holds every result. It is called once per index, from one
// goroutine at a time, and must not block for long (it may fsync a record).
//
// A caller records each copy in it, so that when popfetch is killed in the
// middle of a message to many users, the retry serves only the users whose
// copies were not yet recorded: the duplicates are the copies in flight,
// not the whole group. To stop a Deliver early (its record failed), cancel
// ctx: the targets check it before each copy.
type ResultFunc func(i int, err error, rc Receipt)

// Receipt says where a delivered copy went, for the audit trail: enough
// to find the copy, nothing secret. Its strings may carry what a server
// said (Reply) and are not escaped; a caller that logs them escapes them.
type Receipt struct {
	// Kind is the target: "maildir", "mda", "smtp" or "lmtp"; "" when
	// the target cannot say (a Target that is not a Reporter).
	Kind string
	// Dest is where the copy went: for a Maildir the file's path relative
	// to the Maildir's root ("new/NAME"), for an MDA its argv[0], for SMTP
	// and LMTP the server's address as configured.
	Dest string
	// Reply is the SMTP or LMTP server's final reply to the copy (code and
	// text), "" for other targets.
	Reply string
}

// Reporter is a Target that can report each recipient's result as soon as
// it is final (Maildir, MDA, SMTP/LMTP). Deliver is DeliverReporting with a
// nil report.
type Reporter interface {
	Target
	DeliverReporting(ctx context.Context, m *Message, sender string, rcpts []Recipient, extra []Field, report ResultFunc) []error
}

// DeliverReporting delivers m through t and passes each recipient's result
// to report (if not nil): as soon as it is final when t is a Reporter, else
// when t's Deliver returns.
func DeliverReporting(ctx context.Context, t Target, m *Message, sender string, rcpts []Recipient, extra []Field, report ResultFunc) []error {
	if r, ok := t.(Reporter); ok {
		return r.DeliverReporting(ctx, m, sender, rcpts, extra, report)
	}
	errs := t.Deliver(ctx, m, sender, rcpts, extra)
	if report != nil {
		for i, err := range errs {
			report(i, err, Receipt{})
		}
	}
	return errs
}

// results collects a Deliver's per-recipient results and passes each to
// its ResultFunc once.
type results struct {
	errs []error
	rcs  []Receipt
	hook ResultFunc
	mu   sync.Mutex
	sent []bool
}

func newResults(n int, hook ResultFunc) *results {
	r := &results{errs: make([]error, n), rcs: make([]Receipt, n)}
	if hook != nil {
		r.hook = hook
		r.sent = make([]bool, n)
	}
	return r
}

// set stores the final result of recipient i and reports it.
func (r *results) set(i int, err error) {
	r.errs[i] = err
	r.report(i, err)
}

// delivered stores the receipt of recipient i's copy, set or reported
// after it.
func (r *results) delivered(i int, rc Receipt) {
	r.rcs[i] = rc
}

// report passes the result of i to the hook, unless it has been already.
func (r *results) report(i int, err error) {
	if r.hook == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sent[i] {
		return
	}
	r.sent[i] = true
	var rc Receipt
	if err == nil {
		rc = r.rcs[i]
	}
	r.hook(i, err, rc)
}

// done reports every result not reported yet and returns them all.
func (r *results) done() []error {
	for i, err := range r.errs {
		r.report(i, err)
	}
	return r.errs
}

// The targets that report each result as it is final.
var (
	_ Reporter = (*Maildir)(nil)
	_ Reporter = (*MDA)(nil)
	_ Reporter = (*SMTP)(nil)
)
