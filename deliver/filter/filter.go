package filter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/popfetch/popfetch/deliver"
)

// Action is a filter's decision about a message.
type Action int

const (
	// Accept: deliver the message (with the filter's changes applied).
	Accept Action = iota
	// TempFail: not now; the message stays on the server and is tried
	// again at the next poll.
	TempFail
	// Reject: the filter refused the message. The caller decides what
	// that means (by default a postmaster copy with the reason).
	Reject
	// Discard: the filter wants the message dropped without a reply.
	Discard
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case TempFail:
		return "tempfail"
	case Reject:
		return "reject"
	case Discard:
		return "discard"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// ChangeKind is the kind of one header change.
type ChangeKind int

const (
	// AddHeader appends a field at the end of the header (SMFIR_ADDHEADER).
	AddHeader ChangeKind = iota + 1
	// InsertHeader inserts a field after the Index-th field, 0 meaning
	// at the top (SMFIR_INSHEADER).
	InsertHeader
	// ChangeHeader replaces the value of the Index-th field named Name
	// (1-based, counted case-insensitively); without such a field it adds
	// one, as sendmail does (SMFIR_CHGHEADER).
	ChangeHeader
	// RemoveHeader removes the Index-th field named Name (SMFIR_CHGHEADER
	// with an empty value). Removed fields keep their place in the count
	// of later changes of the same filter, as in sendmail.
	RemoveHeader
)

func (k ChangeKind) String() string {
	return [...]string{"?", "add", "insert", "change", "remove"}[max(0, min(int(k), 4))]
}

// Change is one header change a filter asked for. Name is a valid field
// name (RFC 5322 ftext); Value is the value as the filter sent it
// without its leading space (line breaks in it are folds: Apply makes
// them CRLF followed by white space).
type Change struct {
	Kind  ChangeKind
	Index int
	Name  string
	Value string
}

// Verdict is one filter's answer for one message.
type Verdict struct {
	Filter string // the filter's name
	Action Action
	// Reply is what the filter said when it did not accept (an SMTP
	// reply, a command's exit status and stderr), or why it was
	// unavailable: one line, safe for a header field, at most 300 bytes.
	Reply string
	// Unavailable: the filter could not be asked (down, timed out,
	// broken protocol) or answered tempfail; Action is then what its
	// on_unavailable says.
	Unavailable bool
	// Quarantine is a milter's quarantine reason (SMFIR_QUARANTINE); the
	// Action is then Reject.
	Quarantine string
	Changes    []Change
	// Body replaces the message body (a milter's SMFIR_REPLBODY), when
	// not nil. Message replaces the whole message (a command filter's
	// output), when not nil. Close releases them.
	Body    *deliver.Spool
	Message *deliver.Spool
	// Ignored counts the changes popfetch does not make: recipients
	// added or removed, a new envelope sender.
	Ignored int
}

// Changed reports whether applying v changes the message.
func (v *Verdict) Changed() bool {
	return len(v.Changes) > 0 || v.Body != nil || v.Message != nil
}

// Close releases the replacement spools.
func (v *Verdict) Close() {
	if v.Body != nil {
		v.Body.Close()
	}
	if v.Message != nil {
		v.Message.Close()
	}
}

// Envelope is what a filter is told besides the message: the SMTP
// envelope and client as the provider's MX saw them.
type Envelope struct {
	Sender  string   // the Return-Path address, "" for the null sender
	Rcpts   []string // the routed recipients' addresses (or the account's)
	Client  Received // from the trusted Received field (TrustedReceived)
	QueueID string   // an id for the milter "i" macro and logs
	// SpoolDir is where replacement content larger than memory goes
	// (deliver.NewSpool's rules: a private directory).
	SpoolDir string
}

// Filter is one filter: a Milter or a Command.
type Filter interface {
	Name() string
	// Check asks the filter about m. An error means the filter could
	// not be asked (down, timed out, protocol broken): Run applies
	// the filter's on_unavailable policy to it.
	Check(ctx context.Context, env *Envelope, m *deliver.Message) (Verdict, error)
}

// OnUnavailable is what a filter that cannot be asked, or answers
// tempfail, means for the message.
type OnUnavailable int

const (
	// UnavailableTempFail (the default) keeps the message on the server
	// to be tried again.
	UnavailableTempFail OnUnavailable = iota
	// UnavailableAccept passes the message unfiltered: the explicit
	// fail-open.
	UnavailableAccept
)

// Step is one filter of a chain with its policy.
type Step struct {
	Filter        Filter
	Timeout       time.Duration // for one message; default 2 minutes
	OnUnavailable OnUnavailable
}

// Result is what a chain decided.
type Result struct {
	Action   Action
	Verdicts []Verdict // one per filter asked, in order
	// Message is the filtered copy (every accepting filter's changes
	// applied) when some filter changed the message, else nil. It is
	// in a spool in Envelope.SpoolDir; Close releases it.
	Message *deliver.Message
}

// Close releases the filtered copy and the verdicts' spools.
func (r *Result) Close() {
	for i := range r.Verdicts {
		r.Verdicts[i].Close()
	}
	if r.Message != nil {
		r.Message.Close()
	}
}

// Run passes m through the steps in order. Each filter sees the message
// as the filters before it left it (their changes applied), as in an MTA's
// milter chain. The first verdict that is not Accept ends the chain and
// is the result; a filter that is unavailable counts per its
// OnUnavailable. The error is only for a failure of popfetch's own (the
// filtered copy could not be written): the message must then stay on the
// server. log carries the account and UID (the caller's message logger).
func Run(ctx context.Context, steps []Step, env *Envelope, m *deliver.Message, log *slog.Logger) (Result, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := Result{Action: Accept}
	cur := m
	for _, st := range steps {
		timeout := st.Timeout
		if timeout <= 0 {
			timeout = 2 * time.Minute
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		v, err := st.Filter.Check(sctx, env, cur)
		cancel()
		v.Filter = st.Filter.Name()
		if err != nil {
			v = Verdict{Filter: v.Filter, Action: TempFail, Unavailable: true, Reply: deliver.SafeValue(err.Error(), 300)}
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				v.Reply = deliver.SafeValue(fmt.Sprintf("no answer within %v: %v", timeout, err), 300)
			}
		} else if v.Action == TempFail {
			v.Unavailable = true
		}
		if v.Unavailable && st.OnUnavailable == UnavailableAccept && ctx.Err() == nil {
			v.Action = Accept
		}
		log.Debug("filter verdict", "filter", v.Filter, "action", v.Action.String(),
			"unavailable", v.Unavailable, "reply", v.Reply, "changes", len(v.Changes), "took", time.Since(start))
		res.Verdicts = append(res.Verdicts, v)
		if v.Action != Accept {
			res.Action = v.Action
			break
		}
		if !v.Changed() {
			continue
		}
		next, err := applyToSpool(cur, &v, env.SpoolDir)
		if err != nil {
			res.Close()
			return Result{}, fmt.Errorf("filter %s: account %s uid %s: writing the filtered copy: %w", v.Filter, m.Account, m.UID, err)
		}
		if res.Message != nil {
			res.Message.Close()
		}
		res.Message, cur = next, next
	}
	return res, nil
}

// applyToSpool writes Apply(m, v) into a new spool in dir and returns it
// as a message with m's identity.
func applyToSpool(m *deliver.Message, v *Verdict, dir string) (*deliver.Message, error) {
	sp := deliver.NewSpool(dir, 0)
	if err := Apply(sp, m, v); err != nil {
		sp.Close()
		return nil, err
	}
	if err := sp.Flush(); err != nil {
		sp.Close()
		return nil, err
	}
	out := *m
	out.Raw, out.Spool = nil, sp
	return &out, nil
}

var _ io.Writer = (*deliver.Spool)(nil)
