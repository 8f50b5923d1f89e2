package fetch

import (
	"context"
	"errors"
	"log/slog"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/filter"
	"github.com/popfetch/popfetch/rcfile"
)

// FilterCheck is what an account's filters decide for one message, as a
// poll's delivery would decide it (CheckFilters).
type FilterCheck struct {
	// Verdicts are the filters asked, in order, with their header
	// changes; after a tempfail only Filter, Action, Unavailable and
	// Reply are known.
	Verdicts []filter.Verdict
	// Message is the copy the filing rules would see: the filtered copy,
	// or the message itself when no filter changed it; nil after a
	// tempfail.
	Message *deliver.Message
	// Rejected is the reason the postmaster copy of a rejected or
	// discarded message carries (X-Popfetch-Reason), "" when the message
	// is to be delivered; Delete says that filter's on_reject is delete.
	Rejected string
	Delete   bool
	// TempFail is the poll's error when a filter answered tempfail or
	// could not be asked under on_unavailable = "tempfail" (or the
	// filtered copy could not be written): the message would stay on the
	// server.
	TempFail error

	out *filterOutcome
}

// Close releases the filtered copy.
func (c *FilterCheck) Close() {
	if c != nil && c.out != nil {
		c.out.close()
	}
}

// CheckFilters runs a's filters on m with rcpts as its recipients by
// the poll's own code (the envelope from m's header and the trusted
// Received field, the chain in order, the same verdicts), for `popfetch
// check --route`. The filtered copy's spool goes to spool, not to the
// account's state directory, so that the check writes no state. It
// returns nil when a has no filters; the error is a chain that cannot
// be built.
func CheckFilters(ctx context.Context, a *rcfile.Account, m *deliver.Message, rcpts []string, spool string, log *slog.Logger) (*FilterCheck, error) {
	fs, err := newFilters(a, localHostOnce())
	if err != nil || fs == nil {
		return nil, err
	}
	fs.spoolDir = spool
	var p checkProgress
	out, err := fs.run(ctx, m, rcpts, &p, log)
	if err != nil {
		c := &FilterCheck{TempFail: err}
		for _, v := range p.verdicts {
			c.Verdicts = append(c.Verdicts, filter.Verdict{Filter: v.Filter, Action: actionNamed(v.Action), Unavailable: v.Unavailable, Reply: v.Reply})
		}
		return c, nil
	}
	return &FilterCheck{Verdicts: out.res.Verdicts, Message: out.m, Rejected: out.reason, Delete: out.drop, out: out}, nil
}

// actionNamed is the filter.Action whose String is s.
func actionNamed(s string) filter.Action {
	for _, a := range []filter.Action{filter.Accept, filter.TempFail, filter.Reject, filter.Discard} {
		if a.String() == s {
			return a
		}
	}
	return filter.TempFail
}

// TrustedClient is the client a's filters are told for a message with
// header head: its trusted Received field (trusted_received).
func TrustedClient(a *rcfile.Account, head []byte) (filter.Received, error) {
	return filter.TrustedReceived(head, filter.Trust{Position: a.TrustedReceived.Position, By: a.TrustedReceived.By})
}

// checkProgress is the Progress of CheckFilters: it keeps the verdicts
// and records nothing.
type checkProgress struct{ verdicts []FilterVerdict }

var errCheckOnly = errors.New("check: nothing is recorded")

func (p *checkProgress) Done(string) bool            { return false }
func (p *checkProgress) Record(string) error         { return errCheckOnly }
func (p *checkProgress) Intend(string) error         { return errCheckOnly }
func (p *checkProgress) Copied(Copy)                 {}
func (p *checkProgress) Filtered(vs []FilterVerdict) { p.verdicts = vs }

// SingleDropRcpt is the recipient a single-drop account's filters are
// told (the poll's RCPT TO): the username if it is an address, else
// username@server.
func SingleDropRcpt(a *rcfile.Account) string { return accountAddress(a) }
