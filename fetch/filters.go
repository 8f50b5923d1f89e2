package fetch

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/filter"
	"github.com/popfetch/popfetch/rcfile"
)

// filterPar bounds the messages of one poll that are in the account's
// filters at once. The deliveries of a poll run concurrently (parallel:
// up to maildirPar), and each would hold a milter connection for the
// whole scan; a milter such as clamav-milter serves few at once
// (MaxThreads, 10 by default in Debian's clamav-milter.conf), and more
// connections than it has threads only queue there. Eight keeps a 100 ms
// scan from serialising the mailbox (80 messages a second) without
// flooding a filter shared by several accounts.
const filterPar = 8

// filters is an account's filter chain (filter blocks), run on each
// message after routing and before the filing rules. A nil *filters has
// no filters. It is safe for concurrent use.
type filters struct {
	steps    []filter.Step
	onReject map[string]string // filter name -> rcfile.OnReject*
	trust    filter.Trust
	spoolDir string
	sem      chan struct{}
}

// newFilters builds a's filter chain; nil when it has none.
func newFilters(a *rcfile.Account, host string) (*filters, error) {
	if len(a.Filters) == 0 {
		return nil, nil
	}
	fs := &filters{onReject: map[string]string{}, spoolDir: spoolDir(a), sem: make(chan struct{}, filterPar),
		trust: filter.Trust{Position: a.TrustedReceived.Position, By: a.TrustedReceived.By}}
	for _, f := range a.Filters {
		var flt filter.Filter
		var err error
		if f.Milter != "" {
			flt, err = filter.NewMilter(f.Name, f.Milter, filter.MilterOptions{Timeout: f.Timeout, LocalHost: host})
		} else {
			flt, err = filter.NewCommand(f.Name, f.Command, filter.CommandOptions{Timeout: f.Timeout,
				TempExitCodes: f.TempExitCodes, RejectExitCodes: f.RejectExitCodes})
		}
		if err != nil {
			return nil, err
		}
		st := filter.Step{Filter: flt, Timeout: f.Timeout}
		if f.OnUnavailable == rcfile.OnUnavailableAccept {
			st.OnUnavailable = filter.UnavailableAccept
		}
		fs.steps = append(fs.steps, st)
		fs.onReject[f.Name] = f.OnReject
	}
	return fs, nil
}

// filterVerdicts is implemented by a Progress that keeps the filters'
// verdicts for the message's audit line (the session's progress does).
type filterVerdicts interface {
	Filtered(vs []FilterVerdict)
}

// FilterVerdict is one filter's answer for a message, for its audit line.
type FilterVerdict struct {
	Filter      string
	Action      string // accept, tempfail, reject, discard
	Unavailable bool
	Reply       string
}

// filterOutcome is what the chain decided for a message, for its
// Dispatcher.
type filterOutcome struct {
	// m is the message to deliver: the filtered copy, or the message
	// itself when no filter changed it.
	m *deliver.Message
	// rejected is the filter that rejected or discarded the message
	// (with reason, for X-Popfetch-Reason), "" when it is to be
	// delivered; drop says that filter's on_reject is delete.
	rejected, reason string
	drop             bool
	res              filter.Result
}

// close releases the filtered copy.
func (o *filterOutcome) close() { o.res.Close() }

// run passes m through the chain with rcpts as its recipients. A
// tempfail (a filter's answer, or one that cannot be asked under
// on_unavailable = "tempfail") is an error: the message stays on the
// server, nothing delivered. So is a failure to write the filtered copy.
func (fs *filters) run(ctx context.Context, m *deliver.Message, rcpts []string, p Progress, log *slog.Logger) (*filterOutcome, error) {
	if fs == nil {
		return &filterOutcome{m: m}, nil
	}
	log = orDiscard(log)
	env := &filter.Envelope{Sender: deliver.ReturnPath(m.Head()), Rcpts: rcpts, QueueID: queueID(m.UID), SpoolDir: fs.spoolDir}
	client, err := filter.TrustedReceived(m.Head(), fs.trust)
	if err != nil {
		// Told as "unknown", as Postfix tells a client without an
		// address: the filters judge the rest.
		log.Debug("filter: no trusted Received field; the filters get no client address", "err", err)
	}
	env.Client = client
	select {
	case fs.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("filters: %w", ctx.Err())
	}
	res, err := filter.Run(ctx, fs.steps, env, m, log)
	<-fs.sem
	if err != nil {
		return nil, err
	}
	if fv, ok := p.(filterVerdicts); ok {
		vs := make([]FilterVerdict, len(res.Verdicts))
		for i, v := range res.Verdicts {
			vs[i] = FilterVerdict{Filter: v.Filter, Action: v.Action.String(), Unavailable: v.Unavailable, Reply: v.Reply}
		}
		fv.Filtered(vs)
	}
	for _, v := range res.Verdicts {
		if v.Unavailable && v.Action == filter.Accept {
			log.Warn("filter unavailable; message delivered unfiltered (on_unavailable = \"accept\")", "filter", v.Filter, "reply", v.Reply)
		}
	}
	out := &filterOutcome{m: m, res: res}
	if res.Message != nil {
		out.m = res.Message
	}
	if res.Action == filter.Accept {
		return out, nil
	}
	last := res.Verdicts[len(res.Verdicts)-1]
	if res.Action == filter.TempFail {
		out.close()
		// Temporary: the message stays on the server, and the next
		// poll asks again.
		return nil, &deliver.Error{Target: "filter " + last.Filter,
			Reason: last.Reply}
	}
	reply := last.Reply
	if last.Quarantine != "" {
		reply = "quarantine: " + last.Quarantine
	}
	if reply == "" {
		reply = last.Action.String()
	}
	out.rejected, out.reason = last.Filter, fmt.Sprintf("rejected by %s: %s", last.Filter, reply)
	out.drop = fs.onReject[last.Filter] == rcfile.OnRejectDelete
	return out, nil
}

// noteFilterDeleted is the audit note of a message a filter rejected
// with on_reject = "delete".
const noteFilterDeleted = "deleted by filter "

// rejectedByFilter handles a message a filter rejected or discarded: with
// on_reject = "delete" it is done without a copy (logged at warning
// level and in the audit line); otherwise toPM makes the postmaster copy
// with the reason, under the usual contract.
func rejectedByFilter(o *filterOutcome, p Progress, log *slog.Logger, toPM func(reason string) error) error {
	if o.drop {
		orDiscard(log).Warn("filter rejected the message; deleted without a copy (on_reject = \"delete\")",
			"filter", o.rejected, "reason", o.reason)
		p.Copied(Copy{Note: noteFilterDeleted + o.rejected})
		return nil
	}
	if err := toPM(o.reason); err != nil {
		return err
	}
	orDiscard(log).Warn("filter rejected the message; delivered to the postmaster", "filter", o.rejected, "reason", o.reason)
	return nil
}

// queueID is the milter "i" macro for a message: its UID when that is a
// plain token (a UID is 1 to 70 printable characters, RFC 1939 §7),
// else nothing.
func queueID(uid string) string {
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return ""
		}
	}
	return uid
}
