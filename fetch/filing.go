package fetch

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/rules"
	"github.com/popfetch/popfetch/rcfile"
)

// filing applies one list of filing rules (an account's, or a multidrop
// user's) to the copies of a poll: it decides by the copy's header
// (rules.Set.Eval) and holds the targets the decisions send copies to.
// A nil *filing has no rules. It is safe for concurrent use.
type filing struct {
	set     *rules.Set
	targets []deliver.Target // by rule index: a deliver action's target, else nil
	host    string

	mu      sync.Mutex
	folders map[folderKey]deliver.Target // folder actions' Maildirs, built on first use
}

// folderKey names the Maildir of a folder action: the folder of the
// destination the copy would have gone to.
type folderKey struct {
	dest   *rcfile.Destination
	folder string
}

// newFiling compiles rs (checked by the rc file already) and builds the
// targets of their deliver actions; nil when there are no rules.
func newFiling(rs []rcfile.Rule, host string) (*filing, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	specs := make([]rules.Spec, len(rs))
	for i, r := range rs {
		specs[i] = r.Spec
	}
	set, err := rules.Compile(specs)
	if err != nil {
		return nil, err
	}
	f := &filing{set: set, targets: make([]deliver.Target, len(rs)), host: host}
	for i, r := range rs {
		if r.Spec.Action.Kind != rules.Deliver {
			continue
		}
		if r.Deliver == nil {
			return nil, fmt.Errorf("rule %q: deliver action without a destination", r.Spec.Name)
		}
		t, err := newTarget(r.Deliver, host)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("rule %q: %w", r.Spec.Name, err)
		}
		f.targets[i] = t
	}
	return f, nil
}

// decide evaluates the rules on m's header.
func (f *filing) decide(m *deliver.Message) (rules.Decision, bool) {
	if f == nil {
		return rules.Decision{}, false
	}
	return f.set.Eval(m.Head())
}

// target is where decision d sends a copy that would have gone to dest
// (through def): a deliver action's target, or for a folder action the
// Maildir of dest with d's folder. ok is false for the actions that
// deliver nowhere here (postmaster, discard), and for a folder action
// whose dest is no Maildir (the rc file refuses that).
func (f *filing) target(d rules.Decision, dest *rcfile.Destination) (deliver.Target, bool) {
	switch d.Action.Kind {
	case rules.Deliver:
		if d.Index < len(f.targets) && f.targets[d.Index] != nil {
			return f.targets[d.Index], true
		}
	case rules.Folder:
		if dest == nil || dest.Maildir == "" {
			return nil, false
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		k := folderKey{dest, d.Action.Folder}
		t := f.folders[k]
		if t == nil {
			t = deliver.NewMaildir(dest.Maildir, deliver.MaildirOptions{LocalHost: f.host, Folder: d.Action.Folder})
			if f.folders == nil {
				f.folders = map[folderKey]deliver.Target{}
			}
			f.folders[k] = t
		}
		return t, true
	}
	return nil, false
}

// allMaildir reports whether every target f may deliver to is a Maildir
// (folder actions always are).
func (f *filing) allMaildir() bool {
	if f == nil {
		return true
	}
	for _, t := range f.targets {
		if t != nil && !isMaildir(t) {
			return false
		}
	}
	return true
}

// Close releases the targets' resources.
func (f *filing) Close() error {
	if f == nil {
		return nil
	}
	for _, t := range f.targets {
		closeTargets(t)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.folders {
		closeTargets(t)
	}
	return nil
}

// logDecision logs what a rule decided for a copy: a discard at warning
// level, as the only way popfetch drops a copy on purpose must always
// leave a trace; the other actions at debug level (the copy is delivered
// and counted as usual).
func logDecision(log *slog.Logger, d rules.Decision, rcpt string) {
	attrs := []any{"rule", d.Rule, "action", d.Action.Kind.String(), "field", d.Field, "value", d.Value}
	if rcpt != "" {
		attrs = append(attrs, "rcpt", rcpt)
	}
	switch d.Action.Kind {
	case rules.Discard:
		orDiscard(log).Warn("rule discarded the copy; it counts as delivered", attrs...)
	case rules.Folder:
		orDiscard(log).Debug("rule filed the copy", append(attrs, "folder", d.Action.Folder)...)
	default:
		orDiscard(log).Debug("rule decided where the copy goes", attrs...)
	}
}

// ruleReason is the postmaster reason of a postmaster action.
func ruleReason(d rules.Decision) string {
	return fmt.Sprintf("rule %s: %s", d.Rule, d.Action.Reason)
}

// userFiling is the filing rules of a multidrop account: each user's own,
// evaluated first, then the account's, on the user's copy.
type userFiling struct {
	account *filing
	users   map[string]*filing             // users with rules of their own
	dests   map[string]*rcfile.Destination // users with a deliver block of their own
	def     *rcfile.Destination            // the account's deliver block
}

// newUserFiling builds a's filing rules for its multidrop users; nil when
// neither the account nor a user has any.
func newUserFiling(a *rcfile.Account, host string) (*userFiling, error) {
	uf := &userFiling{users: map[string]*filing{}, dests: map[string]*rcfile.Destination{}, def: &a.Deliver}
	var err error
	if uf.account, err = newFiling(a.Rules, host); err != nil {
		return nil, err
	}
	for _, u := range a.Multidrop.Users {
		if u.Deliver != nil {
			uf.dests[u.Name] = u.Deliver
		}
		f, err := newFiling(u.Rules, host)
		if err != nil {
			uf.Close()
			return nil, fmt.Errorf("user %s: %w", u.Name, err)
		}
		if f != nil {
			uf.users[u.Name] = f
		}
	}
	if uf.account == nil && len(uf.users) == 0 {
		return nil, nil
	}
	return uf, nil
}

func (uf *userFiling) Close() error {
	if uf == nil {
		return nil
	}
	uf.account.Close()
	for _, f := range uf.users {
		f.Close()
	}
	return nil
}

func (uf *userFiling) allMaildir() bool {
	if uf == nil {
		return true
	}
	for _, f := range uf.users {
		if !f.allMaildir() {
			return false
		}
	}
	return uf.account.allMaildir()
}

// apply decides, by the rules, where each user's copy of m goes. It
// returns the users still to deliver to, and for those a rule sends
// elsewhere (a folder, another destination) their target. A discarded
// copy is recorded as the user's delivery (p.Record) and logged; a
// postmaster action counts as the user's permanent failure with the
// rule's reason, so that the message's one postmaster copy carries it
// (the usual contract: the message leaves the server only once that copy
// is durable). The claims of both are settled here.
func (uf *userFiling) apply(d *multidrop, m *deliver.Message, p Progress, rcpts []deliver.Recipient, o *outcome) ([]deliver.Recipient, map[string]deliver.Target) {
	if uf == nil || len(rcpts) == 0 {
		return rcpts, nil
	}
	var keep []deliver.Recipient
	var to map[string]deliver.Target
	acct, acctOK := uf.account.decide(m)
	for _, r := range rcpts {
		f, dec, ok := uf.users[r.User], rules.Decision{}, false
		if dec, ok = f.decide(m); !ok {
			f, dec, ok = uf.account, acct, acctOK
		}
		if !ok {
			keep = append(keep, r)
			continue
		}
		logDecision(o.log, dec, r.Address)
		switch dec.Action.Kind {
		case rules.Discard:
			if c := d.claimOf(r.User, o); c != nil {
				d.settle(c, true)
			}
			if err := p.Record("u:" + r.User); err != nil {
				o.temp = append(o.temp, fmt.Errorf("record the discarded copy for %s: %w", r.User, err))
				continue
			}
			p.Copied(Copy{User: r.User, Rcpt: r.Address, Note: noteDiscarded + dec.Rule})
			continue
		case rules.Postmaster:
			if c := d.claimOf(r.User, o); c != nil {
				d.settle(c, false)
			}
			o.perm = append(o.perm, fmt.Sprintf("%s: %s", r.User, ruleReason(dec)))
			o.permAddrs = append(o.permAddrs, r.Address)
			continue
		}
		dest := uf.def
		if own, ok := uf.dests[r.User]; ok {
			dest = own
		}
		t, ok := f.target(dec, dest)
		if !ok {
			// The rc file refuses such a rule; the message waits.
			o.temp = append(o.temp, fmt.Errorf("user %s: rule %q: no target to %s to", r.User, dec.Rule, dec.Action.Kind))
			if c := d.claimOf(r.User, o); c != nil {
				d.settle(c, false)
			}
			continue
		}
		if to == nil {
			to = map[string]deliver.Target{}
		}
		to[r.User] = t
		keep = append(keep, r)
	}
	return keep, to
}
