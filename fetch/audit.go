package fetch

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/internal/logsafe"
)

// Copy is where one copy of a message went, for the message's audit line
// (see session.audited). A Dispatcher reports each copy it made, or found
// made, through Progress.Copied.
type Copy struct {
	// User is the multidrop user the copy is for; "" for a single-drop
	// copy and the postmaster's.
	User string
	// Rcpt is the address that routed the copy to User (multidrop).
	Rcpt string
	// Postmaster: the copy went to the postmaster, for Reason (what
	// X-Popfetch-Reason says).
	Postmaster bool
	Reason     string
	// Note says why a copy has no receipt: it was not made now
	// (noteEarlier, noteDuplicate).
	Note string
	// Receipt is where the target put it (deliver.Receipt).
	deliver.Receipt
}

// The notes of copies not made by this delivery.
const (
	// A retry serves only the users an earlier poll did not.
	noteEarlier = "delivered by an earlier poll"
	// dedupe_message_id: the user has the message from another copy.
	noteDuplicate = "delivered from another copy of the message (dedupe_message_id)"
	// A filing rule with discard = true dropped the copy; the rule's
	// name follows.
	noteDiscarded = "discarded by rule "
)

// What happened on the server to a message delivered in this poll: the
// on_server value of its audit line.
const (
	onServerDeleted = "deleted"      // DELE answered +OK (removed when the session ends with QUIT)
	onServerKept    = "kept"         // keep: left on the server on purpose
	onServerRefused = "dele_refused" // the server answered DELE with -ERR; asked again next poll
	// Recorded, but DELE was not sent in this session (it ended first,
	// or the server kept refusing DELE of this UID): asked next poll.
	onServerNotDeleted = "not_deleted"
)

// Bounds of what an audit line quotes, in runes.
const (
	maxAuditHeader = 200 // Message-ID, sender
	maxAuditReply  = 200 // an SMTP/LMTP reply, a postmaster reason
)

// audit is what the audit line of one delivered message needs, kept from
// its delivery until the server's answer to its DELE (or until it is
// known that none is sent): a few short strings per message.
type audit struct {
	e               entry
	size            int64
	messageID, from string
	copies          []Copy
	filters         []FilterVerdict // the filters' verdicts, if any ran
}

// newAudit reads what the audit line of m, delivered as copies, needs;
// the header's fields only when the line will be written (logged).
func newAudit(e entry, m *deliver.Message, copies []Copy, logged bool) *audit {
	a := &audit{}
	a.fill(e, m, copies, logged)
	return a
}

// fill is newAudit into a (a part of a larger allocation: deliveryState).
func (a *audit) fill(e entry, m *deliver.Message, copies []Copy, logged bool) {
	*a = audit{e: e, size: m.Size(), copies: copies}
	if logged {
		a.messageID, a.from = deliver.AuditFields(m.Head())
	}
}

// auditLogged reports whether audited will write the audit lines.
func (s *session) auditLogged(ctx context.Context) bool {
	return !s.a.QuietMessages && s.log.Enabled(ctx, slog.LevelInfo)
}

// postmaster reports whether a copy of the message went to the postmaster.
func (a *audit) postmaster() bool {
	for _, c := range a.copies {
		if c.Postmaster {
			return true
		}
	}
	return false
}

// copiesAttr is the copies as one group, "copy", of a group per copy
// numbered from 1: copy.1.target, copy.1.dest, ... in text logs, the
// same path of objects in JSON. Every value that came from outside (a
// header, a server) is escaped (logsafe.Escape).
func copiesAttr(copies []Copy) slog.Attr {
	// Attrs, not args: slog.Group's ...any would box each attribute.
	groups := make([]slog.Attr, 0, len(copies))
	for i, c := range copies {
		as := make([]slog.Attr, 0, 4)
		if c.User != "" {
			as = append(as, slog.String("user", logsafe.Escape(c.User, maxAuditHeader)))
		}
		if c.Rcpt != "" {
			as = append(as, slog.String("rcpt", logsafe.Escape(c.Rcpt, maxAuditHeader)))
		}
		if c.Postmaster {
			as = append(as, slog.Bool("postmaster", true))
		}
		if c.Kind != "" {
			as = append(as, slog.String("target", c.Kind))
		}
		if c.Dest != "" {
			as = append(as, slog.String("dest", logsafe.Escape(c.Dest, 0)))
		}
		if c.Reply != "" {
			as = append(as, slog.String("reply", logsafe.Escape(c.Reply, maxAuditReply)))
		}
		if c.Reason != "" {
			as = append(as, slog.String("reason", logsafe.Escape(c.Reason, maxAuditReply)))
		}
		if c.Note != "" {
			as = append(as, slog.String("note", c.Note))
		}
		groups = append(groups, slog.GroupAttrs(strconv.Itoa(i+1), as...))
	}
	return slog.GroupAttrs("copy", groups...)
}

// filtersAttr is the filters' verdicts as one group, "filter", of a
// group per filter in the order they ran, numbered from 1:
// filter.1.name, filter.1.action, filter.1.unavailable (only when true),
// filter.1.reply (only when the filter said something: a reject's reply,
// why it could not be asked).
func filtersAttr(vs []FilterVerdict) slog.Attr {
	groups := make([]slog.Attr, 0, len(vs))
	for i, v := range vs {
		as := []slog.Attr{slog.String("name", logsafe.Escape(v.Filter, maxAuditHeader)), slog.String("action", v.Action)}
		if v.Unavailable {
			as = append(as, slog.Bool("unavailable", true))
		}
		if v.Reply != "" {
			as = append(as, slog.String("reply", logsafe.Escape(v.Reply, maxAuditReply)))
		}
		groups = append(groups, slog.GroupAttrs(strconv.Itoa(i+1), as...))
	}
	return slog.GroupAttrs("filter", groups...)
}

// audited writes the audit line of a message delivered in this poll,
// once what happened to it on the server is known (onServer), and
// forgets it; a message without a pending audit (one delivered before,
// deleted now) has none. A kept message counts in Result.Kept.
func (s *session) audited(e entry, onServer string) {
	a := s.pending[e.Num]
	if a == nil {
		return
	}
	delete(s.pending, e.Num)
	if onServer == onServerKept {
		s.res.Kept++
	}
	if !s.auditLogged(context.Background()) {
		// Nothing would be written (popfetch fetch logs at WARN):
		// building the line is a dozen allocations per message.
		return
	}
	attrs := []slog.Attr{slog.String("uid", e.UID), slog.Int("msgnum", e.Num),
		slog.String("message_id", logsafe.Escape(a.messageID, maxAuditHeader)),
		slog.String("from", logsafe.Escape(a.from, maxAuditHeader)),
		slog.Int64("size", a.size), copiesAttr(a.copies)}
	if len(a.filters) > 0 {
		attrs = append(attrs, filtersAttr(a.filters))
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "message delivered", append(attrs, slog.String("on_server", onServer))...)
}

// SummaryAttrs are the key-value pairs of a poll's summary line ("poll
// done"), which the session logs, or the daemon (Poller.NoPollLog).
// postmaster counts the delivered messages of which a copy went to the
// postmaster (also counted in delivered); elapsed is a time.Duration: a
// human unit in text logs, seconds in JSON logs (see cmd/popfetch).
func (r Result) SummaryAttrs() []any {
	return []any{"messages", r.Messages, "new", r.New, "delivered", r.Delivered, "postmaster", r.Postmaster,
		"deleted", r.Deleted, "kept", r.Kept, "skipped", r.Skipped, "failed", r.Failed, "given_up", r.GivenUp,
		"undeletable", r.Undeletable, "bytes", r.Bytes, "elapsed", r.Elapsed.Round(time.Millisecond)}
}
