package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/rcfile"
)

// postmasterKey is the progress record of a message handed to the
// postmaster; user keys are "u:" + user name.
const postmasterKey = "postmaster"

// multidrop routes each message of a domain mailbox to its local users
// (deliver.RouteHeader) and delivers one copy per user, resuming after a
// partial failure with only the users not yet served.
type multidrop struct {
	rules      *deliver.Rules
	def        deliver.Target            // the account's deliver block ({user} template)
	users      map[string]deliver.Target // users with a deliver block of their own
	postmaster deliver.Target
	dedupe     bool
	// delivered remembers (user, Message-ID) pairs delivered in this poll
	// for dedupe_message_id; a Dispatcher is built per poll, and its
	// deliveries run concurrently.
	mu        sync.Mutex
	delivered map[string]bool
}

func newMultidrop(a *rcfile.Account, def, pm deliver.Target, host string) (Dispatcher, error) {
	md := a.Multidrop
	users := map[string][]string{}
	d := &multidrop{def: def, postmaster: pm, dedupe: md.DedupeMessageID, users: map[string]deliver.Target{}, delivered: map[string]bool{}}
	for _, u := range md.Users {
		users[u.Name] = u.Addresses
		if u.Deliver != nil {
			t, err := newTarget(u.Deliver, host)
			if err != nil {
				return nil, fmt.Errorf("user %s: %w", u.Name, err)
			}
			d.users[u.Name] = t
		}
	}
	dir := deliver.NewDirectory(users, md.CaseSensitive)
	if md.AliasesFile != "" {
		// Checked at each poll on the descriptor read, not only when the
		// rc file was loaded: whoever can change the aliases chooses who
		// receives the mail.
		f, err := rcfile.OpenTrusted(md.AliasesFile)
		if err != nil {
			return nil, fmt.Errorf("aliases_file: %w", err)
		}
		err = dir.ReadAliases(f, md.AliasesFile)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("aliases_file: %w", err)
		}
	}
	dir.SetSystemUsers(md.SystemUsers)
	ignore := append([]string(nil), md.EnvelopeIgnore...)
	if strings.Contains(a.Username, "@") {
		// The catch-all mailbox's own address: a Postfix virtual
		// catch-all stamps it as Delivered-To on every message, and
		// taken for a recipient it would send all mail to the
		// postmaster as an unknown user.
		ignore = append(ignore, a.Username)
	}
	d.rules = &deliver.Rules{
		LocalDomains:    md.LocalDomains,
		EnvelopeHeader:  md.EnvelopeHeader,
		EnvelopeCount:   md.EnvelopeCount,
		EnvelopeIgnore:  ignore,
		ReceivedBy:      md.ReceivedBy,
		FallbackHeaders: md.FallbackHeaders,
		DetailDelimiter: md.DetailDelimiter,
		CaseSensitive:   md.CaseSensitive,
		QVirtual:        md.QVirtual,
		Directory:       dir,
	}
	return d, nil
}

func (d *multidrop) target(user string) deliver.Target {
	if t, ok := d.users[user]; ok {
		return t
	}
	return d.def
}

// Dispatch delivers m to every routed user. It returns nil when every user
// has a durable copy and the postmaster has one if it needs one;
// otherwise an error, and the message stays on the server. The postmaster
// gets one copy, with every reason in X-Popfetch-Reason, when the route
// found no user, when it is partial (deliver.Route.Partial: unknown users,
// unparseable addresses, caps, loops), or when a user's delivery failed
// permanently (MDA exit 67, SMTP 550). A temporary failure of any user
// keeps the message for the next poll, which serves only the users whose
// progress is not yet recorded; the postmaster copy waits for that poll
// too, so that its reason covers every user and it is made only once.
func (d *multidrop) Dispatch(ctx context.Context, m *deliver.Message, p Progress) error {
	rt := deliver.RouteHeader(m.Raw, d.rules)
	log := logFrom(ctx)
	sender := deliver.ReturnPath(m.Raw)
	if len(rt.Rcpts) == 0 {
		log.Warn("multidrop: no local recipient; message goes to the postmaster", "via", rt.Via, "reason", rt.Reason)
		return d.toPostmaster(ctx, m, sender, p, rt.Reason)
	}
	mid := ""
	if d.dedupe {
		mid = deliver.MessageID(m.Raw)
	}
	// Group the users by target so an LMTP target gets one transaction
	// with one RCPT per user.
	type group struct {
		t     deliver.Target
		rcpts []deliver.Recipient
	}
	var groups []*group
	byTarget := map[deliver.Target]*group{}
	for _, r := range rt.Rcpts {
		if p.Done("u:" + r.User) {
			continue
		}
		// Claimed before delivery, not marked after it: copies of one
		// message are delivered concurrently, and both would pass a
		// check made before either finished.
		if mid != "" && !d.claim(r.User, mid) {
			continue
		}
		t := d.target(r.User)
		g := byTarget[t]
		if g == nil {
			g = &group{t: t}
			byTarget[t] = g
			groups = append(groups, g)
		}
		g.rcpts = append(g.rcpts, r)
	}
	var temp []error
	var perm []string
	for _, g := range groups {
		errs := g.t.Deliver(ctx, m, sender, g.rcpts, nil)
		for i, err := range errs {
			r := g.rcpts[i]
			if err != nil && mid != "" {
				d.release(r.User, mid)
			}
			switch {
			case err == nil:
				if err := p.Record("u:" + r.User); err != nil {
					// The copy exists but its record does not: the
					// message stays, and the retry duplicates this one
					// copy rather than losing anyone's.
					temp = append(temp, fmt.Errorf("record delivery to %s: %w", r.User, err))
					continue
				}
			case deliver.IsPermanent(err):
				perm = append(perm, fmt.Sprintf("%s: %s", r.User, reasonOf(err)))
			default:
				temp = append(temp, fmt.Errorf("user %s: %w", r.User, err))
			}
		}
	}
	if len(temp) > 0 {
		return errors.Join(temp...)
	}
	var reasons []string
	if rt.Partial() {
		reasons = append(reasons, "partly routed (to "+someUsers(rt.Rcpts)+"); not routed: "+rt.Reason)
	}
	if len(perm) > 0 {
		reasons = append(reasons, "delivery failed for "+strings.Join(perm, "; "))
	}
	switch {
	case len(reasons) == 0:
		// A decision, not news: one Info line per poll is the rule (fetch/doc.go).
		log.Debug("multidrop: routed", "via", rt.Via, "users", len(rt.Rcpts))
		return nil
	case len(perm) == 0 && d.postmaster == nil:
		// The users have their copies. Keeping the message on the
		// server for the unrouted rest would fetch it again every poll
		// and never resolve; the warning is the trace (popfetch.hcl(5),
		// postmaster).
		log.Warn("multidrop: partly routed and no postmaster configured; the unrouted part is only in this log",
			"via", rt.Via, "users", len(rt.Rcpts), "reason", rt.Reason)
		return nil
	}
	log.Warn("multidrop: partly routed or partly failed; a copy goes to the postmaster",
		"via", rt.Via, "users", len(rt.Rcpts), "reason", strings.Join(reasons, "; "))
	return d.toPostmaster(ctx, m, sender, p, strings.Join(reasons, "; "))
}

// someUsers names the first few users of a route for X-Popfetch-Reason.
func someUsers(rs []deliver.Recipient) string {
	const max = 5
	var names []string
	for _, r := range rs[:min(len(rs), max)] {
		names = append(names, r.User)
	}
	s := strings.Join(names, ", ")
	if len(rs) > max {
		s += fmt.Sprintf(" and %d more", len(rs)-max)
	}
	return s
}

type logKey struct{}

// withLog returns ctx carrying the logger of one message's delivery
// (account, uid, msgnum already attached), for what a Dispatcher decides.
func withLog(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, logKey{}, log)
}

func logFrom(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(logKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// claim reserves (user, Message-ID) for one delivery in this poll; false
// means another copy has it.
func (d *multidrop) claim(user, mid string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := user + "\x00" + mid
	if d.delivered[k] {
		return false
	}
	d.delivered[k] = true
	return true
}

// release gives a claim back after a failed delivery, so that another copy
// may be delivered.
func (d *multidrop) release(user, mid string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.delivered, user+"\x00"+mid)
}

func (d *multidrop) toPostmaster(ctx context.Context, m *deliver.Message, sender string, p Progress, reason string) error {
	if p.Done(postmasterKey) {
		return nil
	}
	if d.postmaster == nil {
		return fmt.Errorf("%s; no postmaster configured, so the message stays on the server", reason)
	}
	errs := d.postmaster.Deliver(ctx, m, sender, []deliver.Recipient{{User: "postmaster"}},
		[]deliver.Field{{Name: "X-Popfetch-Reason", Value: deliver.SafeValue(reason, 500)}})
	if errs[0] != nil {
		return fmt.Errorf("%s; postmaster delivery failed: %w", reason, errs[0])
	}
	return p.Record(postmasterKey)
}
