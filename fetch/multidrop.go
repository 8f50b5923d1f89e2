package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/internal/trust"
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
	filing     *userFiling // the account's and users' filing rules, nil for none
	filters    *filters    // the account's filters, nil for none
	// claims holds the (user, deliver.DuplicateKey) pairs of this poll for
	// dedupe_message_id; a Dispatcher is built per poll, and its
	// deliveries run concurrently.
	mu     sync.Mutex
	claims map[string]*claim

	// reload, when set (an account with an ldap directory), reloads the
	// directory for a message with unknown local-domain addresses and
	// returns a new routing Directory, or nil when it did not (too soon,
	// or the load failed): a user added in the directory then gets mail
	// before the next timed refresh rather than the postmaster. reloadMu
	// serialises reloads, so a concurrent message waits for the new
	// Directory instead of routing without it.
	reload   func(ctx context.Context, log *slog.Logger) *deliver.Directory
	reloadMu sync.Mutex
}

// Close releases the targets' resources once the poll is over.
func (d *multidrop) Close() error {
	closeTargets(d.def)
	for _, t := range d.users {
		closeTargets(t)
	}
	closeTargets(d.postmaster)
	d.filing.Close()
	return nil
}

func (d *multidrop) allMaildir() bool {
	if !isMaildir(d.def) || !isMaildir(d.postmaster) || !d.filing.allMaildir() {
		return false
	}
	for _, t := range d.users {
		if !isMaildir(t) {
			return false
		}
	}
	return true
}

// routing returns the Rules messages route with now.
func (d *multidrop) routing() *deliver.Rules {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rules
}

// route routes m, reloading the directory once (d.reload) when the route
// has unknown local-domain addresses, and routing again with it.
func (d *multidrop) route(ctx context.Context, m *deliver.Message, log *slog.Logger) deliver.Route {
	rules := d.routing()
	rt := deliver.RouteHeader(m.Head(), rules)
	if len(rt.Unknown) == 0 || d.reload == nil {
		return rt
	}
	d.reloadMu.Lock()
	if cur := d.routing(); cur == rules {
		if dir := d.reload(ctx, log); dir != nil {
			nr := *rules
			nr.Directory = dir
			d.mu.Lock()
			d.rules = &nr
			d.mu.Unlock()
		}
	}
	d.reloadMu.Unlock()
	if cur := d.routing(); cur != rules {
		rt = deliver.RouteHeader(m.Head(), cur)
	}
	return rt
}

func newMultidrop(a *rcfile.Account, def, pm deliver.Target, host string) (Dispatcher, error) {
	md := a.Multidrop
	d := &multidrop{def: def, postmaster: pm, dedupe: md.DedupeMessageID, users: map[string]deliver.Target{}, claims: map[string]*claim{}}
	for _, u := range md.Users {
		if u.Deliver != nil {
			t, err := newTarget(u.Deliver, host)
			if err != nil {
				return nil, fmt.Errorf("user %s: %w", u.Name, err)
			}
			d.users[u.Name] = t
		}
	}
	var err error
	if d.filing, err = newUserFiling(a, host); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	dir, err := newRoutingDirectory(a)
	if err != nil {
		return nil, err
	}
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

// newRoutingDirectory builds account a's Directory from its rc file
// settings: the users, the aliases file, system users and the learned
// routes; an ldap directory is merged in afterwards (useDirectory).
func newRoutingDirectory(a *rcfile.Account) (*deliver.Directory, error) {
	md := a.Multidrop
	users := map[string][]string{}
	for _, u := range md.Users {
		users[u.Name] = u.Addresses
	}
	dir := deliver.NewDirectory(users, md.CaseSensitive)
	if md.AliasesFile != "" {
		// Checked at each poll on the descriptor read, not only when the
		// rc file was loaded: whoever can change the aliases chooses who
		// receives the mail.
		f, err := trust.OpenTrusted(md.AliasesFile)
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
	if err := loadLearned(a, dir); err != nil {
		return nil, err
	}
	return dir, nil
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
//
// Each user's copy is recorded as soon as it is durable (see deliverUsers),
// so a popfetch killed in the middle of a message to many users delivers
// again only the copies that were in flight.
func (d *multidrop) Dispatch(ctx context.Context, m *deliver.Message, p Progress, log *slog.Logger) error {
	log = orDiscard(log)
	rt := d.route(ctx, m, log)
	sender := deliver.ReturnPath(m.Head())
	if len(rt.Rcpts) == 0 {
		log.Warn("multidrop: no local recipient; message goes to the postmaster", "via", rt.Via, "reason", rt.Reason)
		return d.toPostmaster(ctx, m, sender, p, rt.Reason, rt.Unknown)
	}
	// The filters, after routing (each routed user is a recipient they
	// are told) and before the filing rules, which see their fields. A
	// retry after some users got their copies asks them again (a
	// filter's answer may have changed; the users served are not served
	// again).
	rcptAddrs := make([]string, len(rt.Rcpts))
	for i, r := range rt.Rcpts {
		rcptAddrs[i] = r.Address
	}
	fo, err := d.filters.run(ctx, m, rcptAddrs, p, log)
	if err != nil {
		return err
	}
	defer fo.close()
	if fo.rejected != "" {
		return rejectedByFilter(fo, p, log, func(reason string) error {
			return d.toPostmaster(ctx, fo.m, sender, p, reason, nil)
		})
	}
	// The duplicate key is of the message as fetched: two copies of it
	// are the same message whatever a filter stamped on each.
	fetched := m
	m = fo.m
	key := ""
	if d.dedupe {
		var err error
		if key, err = deliver.DuplicateKey(fetched); err != nil {
			return fmt.Errorf("dedupe_message_id: %w", err)
		}
	}
	o := &outcome{log: log}
	var own []deliver.Recipient
	var waits []waiting
	for _, r := range rt.Rcpts {
		if p.Done("u:" + r.User) {
			p.Copied(Copy{User: r.User, Rcpt: r.Address, Note: noteEarlier})
			continue
		}
		// Claimed before delivery, not marked after it: copies of one
		// message are delivered concurrently, and both would pass a
		// check made before either finished.
		if key != "" {
			c, mine := d.claim(r.User, key)
			if !mine {
				waits = append(waits, waiting{r, c})
				continue
			}
			o.claims = append(o.claims, c)
		}
		own = append(own, r)
	}
	d.deliverUsers(ctx, m, sender, p, own, o)
	// A user whose copy another copy of this message claimed is settled
	// only once that copy is durable: if it failed (even permanently, on
	// its way to the postmaster), this copy is delivered after all. Waiting
	// only here, after this copy's own claims are settled, cannot deadlock.
	for len(waits) > 0 {
		var again []deliver.Recipient
		var still []waiting
		for _, w := range waits {
			select {
			case <-w.c.done:
			case <-ctx.Done():
				o.temp = append(o.temp, fmt.Errorf("user %s: waiting for another copy of the message: %w", w.r.User, ctx.Err()))
				continue
			}
			if w.c.delivered {
				// Recorded for this copy too, so a retry of it does not
				// deliver to the user again.
				if err := p.Record("u:" + w.r.User); err != nil {
					o.temp = append(o.temp, fmt.Errorf("record delivery to %s: %w", w.r.User, err))
				} else {
					p.Copied(Copy{User: w.r.User, Rcpt: w.r.Address, Note: noteDuplicate})
				}
				continue
			}
			c, mine := d.claim(w.r.User, key)
			if !mine {
				still = append(still, waiting{w.r, c})
				continue
			}
			o.claims = append(o.claims, c)
			again = append(again, w.r)
		}
		d.deliverUsers(ctx, m, sender, p, again, o)
		waits = still
	}
	if len(o.temp) > 0 {
		return errors.Join(o.temp...)
	}
	perm := o.perm
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
	return d.toPostmaster(ctx, m, sender, p, strings.Join(reasons, "; "), append(append([]string(nil), rt.Unknown...), o.permAddrs...))
}

// outcome collects what the deliveries of one message came to.
type outcome struct {
	temp   []error
	perm   []string // "user: reason"
	claims []*claim // this copy's dedupe claims, settled as each delivery ends

	// permAddrs are the addresses of the users in perm, for
	// X-Popfetch-Unrouted.
	permAddrs []string
	log       *slog.Logger // the message's, for the filing rules' decisions
}

// waiting is a user whose copy another copy of the message claimed.
type waiting struct {
	r deliver.Recipient
	c *claim
}

// deliverUsers delivers m to rcpts, grouped by target so an LMTP target
// gets one transaction with one RCPT per user, and records each user's
// copy as soon as the target reports it durable (deliver.DeliverReporting):
// per copy for a Maildir or an MDA, per reply for LMTP replies that name
// their recipient, else per transaction for SMTP/LMTP, not when the whole
// group returns. A record that fails stops the group (its ctx is
// cancelled): a copy that could not be recorded would only be delivered
// again by the retry.
func (d *multidrop) deliverUsers(ctx context.Context, m *deliver.Message, sender string, p Progress, rcpts []deliver.Recipient, o *outcome) {
	type group struct {
		t     deliver.Target
		rcpts []deliver.Recipient
	}
	var groups []*group
	byTarget := map[deliver.Target]*group{}
	rcpts, filed := d.filing.apply(d, m, p, rcpts, o)
	for _, r := range rcpts {
		t := d.target(r.User)
		if ft, ok := filed[r.User]; ok {
			t = ft
		}
		g := byTarget[t]
		if g == nil {
			g = &group{t: t}
			byTarget[t] = g
			groups = append(groups, g)
		}
		g.rcpts = append(g.rcpts, r)
	}
	// Whatever happens (a panic in a target), no claim stays unsettled:
	// another copy waits for it.
	defer func() {
		for _, c := range o.claims {
			d.settle(c, false)
		}
	}()
	for _, g := range groups {
		gctx, stop := context.WithCancelCause(ctx)
		reported := make([]bool, len(g.rcpts))
		recErr := make([]error, len(g.rcpts))
		hook := func(i int, err error, rc deliver.Receipt) {
			if i < 0 || i >= len(g.rcpts) || reported[i] {
				return
			}
			reported[i] = true
			r := g.rcpts[i]
			if c := d.claimOf(r.User, o); c != nil {
				d.settle(c, err == nil)
			}
			if err != nil {
				return
			}
			if rerr := p.Record("u:" + r.User); rerr != nil {
				recErr[i] = rerr
				stop(rerr)
				return
			}
			p.Copied(Copy{User: r.User, Rcpt: r.Address, Receipt: rc})
		}
		errs := deliver.DeliverReporting(gctx, g.t, m, sender, g.rcpts, nil, hook)
		stop(nil)
		for i, err := range errs {
			hook(i, err, deliver.Receipt{}) // a target that reports nothing early
			r := g.rcpts[i]
			switch {
			case err == nil && recErr[i] != nil:
				// The copy exists but its record does not: the
				// message stays, and the retry duplicates this one
				// copy rather than losing anyone's.
				o.temp = append(o.temp, fmt.Errorf("record delivery to %s: %w", r.User, recErr[i]))
			case err == nil:
			case deliver.IsPermanent(err):
				o.perm = append(o.perm, fmt.Sprintf("%s: %s", r.User, reasonOf(err)))
				o.permAddrs = append(o.permAddrs, r.Address)
			default:
				o.temp = append(o.temp, fmt.Errorf("user %s: %w", r.User, err))
			}
		}
	}
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

// orDiscard returns log, or a logger that discards everything if log is
// nil.
func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// claim is one (user, message) pair of dedupe_message_id: the first copy
// of a message to reach a user claims it, and the others wait until the
// claim is settled (done closed): delivered, or failed and given up.
type claim struct {
	user      string
	key       string
	done      chan struct{}
	delivered bool
}

// claim reserves (user, key) for one delivery in this poll; false means
// another copy has it, and the returned claim is that copy's.
func (d *multidrop) claim(user, key string) (*claim, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := user + "\x00" + key
	if c := d.claims[k]; c != nil {
		return c, false
	}
	c := &claim{user: user, key: key, done: make(chan struct{})}
	d.claims[k] = c
	return c, true
}

// claimOf returns this copy's claim for user, if it holds one.
func (d *multidrop) claimOf(user string, o *outcome) *claim {
	for _, c := range o.claims {
		if c.user == user {
			return c
		}
	}
	return nil
}

// settle ends a claim once: delivered keeps it (later copies of the
// message skip the user), a failure gives it back so that another copy
// may be delivered.
func (d *multidrop) settle(c *claim, delivered bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	c.delivered = delivered
	if k := c.user + "\x00" + c.key; !delivered && d.claims[k] == c {
		delete(d.claims, k)
	}
	close(c.done)
}

// toPostmaster makes the message's one postmaster copy (see the function
// toPostmaster), unless its progress has it already, and records it.
// Without intent: the record is its progress entry, as for the users.
func (d *multidrop) toPostmaster(ctx context.Context, m *deliver.Message, sender string, p Progress, reason string, unrouted []string) error {
	if p.Done(postmasterKey) {
		p.Copied(Copy{Postmaster: true, Note: noteEarlier})
		return nil
	}
	why, rc, err := toPostmaster(ctx, d.postmaster, m, sender, errors.New(reason), unrouted, nil)
	if err != nil {
		return err
	}
	if err := p.Record(postmasterKey); err != nil {
		return err
	}
	p.Copied(Copy{Postmaster: true, Reason: why, Receipt: rc})
	return nil
}
