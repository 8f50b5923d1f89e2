package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/user"
	"strings"
	"sync"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/rules"
	"github.com/popfetch/popfetch/rcfile"
)

// NewDispatcher builds the delivery side of account a from its rc file
// settings: the single-drop target, or multidrop routing over per-user
// targets, each with the postmaster fallback.
func NewDispatcher(a *rcfile.Account) (Dispatcher, error) {
	host := localHostOnce()
	t, err := newTarget(&a.Deliver, host)
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	var pm deliver.Target
	if a.Postmaster != nil {
		if pm, err = newTarget(a.Postmaster, host); err != nil {
			return nil, fmt.Errorf("postmaster: %w", err)
		}
	}
	fs, err := newFilters(a, host)
	if err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	if a.Multidrop != nil {
		d, err := newMultidrop(a, t, pm, host)
		if err != nil {
			return nil, err
		}
		d.(*multidrop).filters = fs
		return d, nil
	}
	filed, err := newFiling(a.Rules, host)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return &singleDrop{target: t, postmaster: pm, rcpt: deliver.Recipient{User: osUserName()}, rules: filed, dest: &a.Deliver,
		filters: fs, address: accountAddress(a)}, nil
}

// newTarget turns one deliver/postmaster block into a Target.
func newTarget(d *rcfile.Destination, host string) (deliver.Target, error) {
	switch {
	case d.Maildir != "":
		return deliver.NewMaildir(d.Maildir, deliver.MaildirOptions{LocalHost: host, Folder: d.Folder}), nil
	case len(d.MDA) > 0:
		return newMDATarget(d, host)
	case d.SMTP != nil:
		return newSMTPTarget(d.SMTP, host)
	}
	return nil, errors.New("no destination (maildir, mda or smtp) configured")
}

var localHostOnce = sync.OnceValue(localHost)

func osUserName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// closeTargets releases what x holds (a Dispatcher, a Target) if it holds
// anything: a deliver.Maildir keeps its directories open between copies.
func closeTargets(x any) {
	if c, ok := x.(io.Closer); ok {
		c.Close()
	}
}

// isMaildir reports whether t is a Maildir, or nothing.
func isMaildir(t deliver.Target) bool {
	_, ok := t.(*deliver.Maildir)
	return ok || t == nil
}

// singleDrop delivers everything to one destination.
type singleDrop struct {
	target     deliver.Target
	postmaster deliver.Target
	rcpt       deliver.Recipient
	rules      *filing             // the account's filing rules, nil for none
	dest       *rcfile.Destination // target's settings, for folder actions
	filters    *filters            // the account's filters, nil for none
	address    string              // the account's address, the filters' recipient
}

// accountAddress is a single-drop account's address, the recipient its
// filters are told: the username if it is an address, else
// username@server.
func accountAddress(a *rcfile.Account) string {
	if strings.Contains(a.Username, "@") {
		return a.Username
	}
	return a.Username + "@" + a.Server
}

// Close releases the targets' resources once the poll is over.
func (d *singleDrop) Close() error {
	closeTargets(d.target)
	closeTargets(d.postmaster)
	d.rules.Close()
	return nil
}

func (d *singleDrop) allMaildir() bool {
	return isMaildir(d.target) && isMaildir(d.postmaster) && d.rules.allMaildir()
}

// streamTarget returns the Maildir and recipient of the one copy of every
// message, when nothing (a filter, a filing rule) needs the whole message
// before its copy is written: the session then streams a large message
// into that Maildir as it arrives (deliver.Maildir.Stream). A copy that
// turns out otherwise is not taken, so this is a hint, never a decision.
func (d *singleDrop) streamTarget() (*deliver.Maildir, deliver.Recipient, bool) {
	md, ok := d.target.(*deliver.Maildir)
	if !ok || d.filters != nil || d.rules != nil {
		return nil, deliver.Recipient{}, false
	}
	return md, d.rcpt, true
}

func (d *singleDrop) Dispatch(ctx context.Context, m *deliver.Message, p Progress, log *slog.Logger) error {
	sender := deliver.ReturnPath(m.Head())
	// The filters first, on the message as fetched; the rules then see
	// the fields they added. Without filters nothing is run (nor
	// allocated: filters.run of none).
	if d.filters != nil {
		fo, err := d.filters.run(ctx, m, []string{d.address}, p, log)
		if err != nil {
			return err
		}
		defer fo.close()
		if fo.rejected != "" {
			return rejectedByFilter(fo, p, log, func(reason string) error {
				cause := &deliver.Error{Target: "filter " + fo.rejected, Permanent: true, Reason: reason}
				why, rc, err := toPostmaster(ctx, d.postmaster, fo.m, sender, cause, nil, p.Intend)
				if err != nil {
					return err
				}
				p.Copied(Copy{Postmaster: true, Reason: why, Receipt: rc})
				return nil
			})
		}
		m = fo.m
	}
	target := d.target
	if dec, ok := d.rules.decide(m); ok {
		logDecision(log, dec, "")
		switch dec.Action.Kind {
		case rules.Discard:
			// Done without a copy, by the explicit rule just logged.
			p.Copied(Copy{Note: noteDiscarded + dec.Rule})
			return nil
		case rules.Postmaster:
			// A quarantine: the postmaster copy with the rule's
			// reason, under the usual contract (no postmaster, or a
			// failing one, keeps the message on the server).
			cause := &deliver.Error{Target: "rule " + dec.Rule, Permanent: true, Reason: ruleReason(dec)}
			reason, rc, err := toPostmaster(ctx, d.postmaster, m, sender, cause, nil, p.Intend)
			if err != nil {
				return err
			}
			p.Copied(Copy{Postmaster: true, Reason: reason, Receipt: rc})
			orDiscard(log).Warn("delivered to the postmaster", "reason", reason)
			return nil
		}
		t, ok := d.rules.target(dec, d.dest)
		if !ok {
			// The rc file refuses such a rule; the message waits.
			return fmt.Errorf("rule %q: no target to %s to", dec.Rule, dec.Action.Kind)
		}
		target = t
	}
	// One copy per message here (the user's, or else the postmaster's),
	// so an intent names it unambiguously.
	rc, err := deliverCopy(ctx, target, m, sender, d.rcpt, nil, p.Intend)
	if err == nil {
		p.Copied(Copy{Receipt: rc})
		return nil
	}
	// A temporary failure keeps the message for the next poll
	// (fetchmail's softbounce); only a permanent one goes to the
	// postmaster.
	if !deliver.IsPermanent(err) {
		return err
	}
	reason, rc, err := toPostmaster(ctx, d.postmaster, m, sender, err, nil, p.Intend)
	if err != nil {
		return err
	}
	p.Copied(Copy{Postmaster: true, Reason: reason, Receipt: rc})
	// Delivered, but not where the user expects it: say so once, where
	// the admin looks, as the multidrop path does for partial routes.
	orDiscard(log).Warn("delivered to the postmaster", "reason", reason)
	return nil
}

// twoPhase is a target that delivers a copy in two phases (as
// deliver.Maildir does): prepared, with its final name known, then
// committed or aborted. Between the two the caller records the name (an
// intent), so that a run killed after the commit but before the UID is
// recorded finds the copy (deliver.Committed) instead of delivering it
// again.
type twoPhase interface {
	Prepare(ctx context.Context, m *deliver.Message, sender string, rc deliver.Recipient, extra []deliver.Field) (*deliver.Prepared, error)
}

// A Maildir that stopped being twoPhase would silently lose its intents.
var _ twoPhase = (*deliver.Maildir)(nil)

// deliverCopy delivers the one copy of m for rc through t and returns its
// receipt (where it went). With intend set and a two-phase target, intend
// gets the copy's final path before each attempt to commit it; other
// targets deliver in one step.
func deliverCopy(ctx context.Context, t deliver.Target, m *deliver.Message, sender string, rc deliver.Recipient, extra []deliver.Field, intend func(path string) error) (deliver.Receipt, error) {
	tp, ok := t.(twoPhase)
	if !ok || intend == nil {
		var got deliver.Receipt
		err := deliver.DeliverReporting(ctx, t, m, sender, []deliver.Recipient{rc}, extra, func(_ int, _ error, r deliver.Receipt) { got = r })[0]
		return got, err
	}
	c, err := tp.Prepare(ctx, m, sender, rc, extra)
	if err != nil {
		return deliver.Receipt{}, err
	}
	// Nothing after a Commit that ended the copy; the tmp file otherwise
	// (a failed or panicking intend).
	defer c.Abort()
	for first := true; ; first = false {
		// Recorded before every attempt: after a name clash the intent
		// must name the fresh name, not the other file that holds the
		// old one. The first intent is best effort (without it a kill at
		// the wrong moment costs a duplicate, nothing more); a fresh one
		// is not, as the intent on record names another's file: the copy
		// is aborted and the delivery fails temporarily, so the message
		// stays on the server and is fetched again. Neither is one the
		// journal failed to write (see errJournalBroken).
		if err := intend(c.Path()); err != nil && (!first || errors.Is(err, errJournalBroken)) {
			// A journal that failed (errJournalBroken) could not
			// record the delivery either: committed, the copy would
			// be delivered again by the next poll.
			return deliver.Receipt{}, fmt.Errorf("record the intent for %s: %w", c.Path(), err)
		}
		if err := c.Commit(); !errors.Is(err, deliver.ErrNameTaken) {
			if err != nil {
				return deliver.Receipt{}, err
			}
			return c.Receipt(), nil
		}
	}
}
