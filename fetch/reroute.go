package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/rcfile"
)

// ErrUnknownUser is returned by Rerouter.Check for a name that is not a
// user of the account.
var ErrUnknownUser = errors.New("not a user of this account")

// popfetchFields are the header fields popfetch writes on a postmaster
// copy for whoever reads the postmaster's mailbox. A rerouted copy drops
// them: they describe why the message did not reach its user, which is no
// longer true, and the user's filters must not take them for the
// message's own.
var popfetchFields = []string{"X-Popfetch-Reason", "X-Popfetch-Unrouted"}

// Rerouter delivers messages by hand to the users of one multidrop
// account (popfetch reroute): a message from the postmaster's Maildir goes
// to the user an admin names, through that user's configured destination,
// the very target a poll would deliver the user's copy to.
type Rerouter struct {
	a       *rcfile.Account
	md      *multidrop
	domains []string
	dirUsed bool // UseDirectory added the LDAP directory's users
}

// NewRerouter builds the delivery side of the multidrop account a, as a
// poll does (NewDispatcher: the same targets, aliases file and directory).
func NewRerouter(a *rcfile.Account) (*Rerouter, error) {
	if a.Multidrop == nil {
		return nil, fmt.Errorf("account %s is not a multidrop account: it has no users to reroute to", a.Name)
	}
	d, err := NewDispatcher(a)
	if err != nil {
		return nil, fmt.Errorf("account %s: %w", a.Name, err)
	}
	md, ok := d.(*multidrop)
	if !ok {
		return nil, fmt.Errorf("account %s: multidrop delivery is a %T", a.Name, d)
	}
	return &Rerouter{a: a, md: md, domains: a.Multidrop.LocalDomains}, nil
}

// Check reports whether a message may be rerouted to user: a user of the
// account's directory (deliver.Directory.HasUser: configured, or a system
// user when system_users is on), or with force any name that is valid as
// a user name (deliver.ValidUserName), which then gets the account's
// default destination. The error wraps ErrUnknownUser for a valid name
// the directory does not know.
func (r *Rerouter) Check(user string, force bool) error {
	if !deliver.ValidUserName(user) {
		return fmt.Errorf("account %s: %q is not a valid user name (no white space, control characters or '/', not starting with '.' or '-', at most 64 bytes)", r.a.Name, user)
	}
	if force || r.md.rules.Directory.HasUser(user) {
		return nil
	}
	return fmt.Errorf("account %s: %s: %w (a configured user, an alias target or, with system_users, a system user; --force delivers to the default destination anyway)", r.a.Name, user, ErrUnknownUser)
}

// UseDirectory loads the account's LDAP directory (multidrop ldap) once
// and adds its users and groups as a poll does (configured users win a
// conflict), so that Check knows a user only the directory has and the
// copy's Delivered-To names the user's directory address. NewRerouter
// does not: a reroute to a configured user must not need the directory
// server. An account without ldap needs nothing; an error wraps
// ErrDirectory, a temporary condition.
func (r *Rerouter) UseDirectory(ctx context.Context) error {
	if r.a.Multidrop.LDAP == nil || r.dirUsed {
		return nil
	}
	snap, err := (&Poller{}).CheckDirectory(ctx, r.a)
	if err != nil {
		return fmt.Errorf("account %s: %w", r.a.Name, err)
	}
	r.md.useDirectory(snap)
	r.dirUsed = true
	return nil
}

// Rerouted says where Deliver put a message.
type Rerouted struct {
	User    string
	Address string // in Delivered-To
	Target  string // the destination, for people: "maildir /srv/mail/joe"
}

// Deliver delivers raw, a whole message as read from a file, to user
// (see Check, which it calls with force) without popfetch's postmaster
// fields (X-Popfetch-Reason, X-Popfetch-Unrouted), through the target a
// poll would use for user. The target adds its Received field and a
// Delivered-To naming the user's address (Rerouter.recipient); the
// envelope sender is the message's Return-Path. nil means the copy is
// durable, exactly as for a poll; an error is temporary unless
// deliver.IsPermanent says otherwise. Nothing the message says chooses a
// path, a program or a recipient.
func (r *Rerouter) Deliver(ctx context.Context, raw []byte, user string, force bool, log *slog.Logger) (Rerouted, error) {
	if err := r.Check(user, force); err != nil {
		return Rerouted{}, err
	}
	rc := r.recipient(user)
	out := Rerouted{User: user, Address: rc.Address, Target: r.describe(rc)}
	m := &deliver.Message{
		Account: r.a.Name,
		Server:  r.a.Server,
		User:    r.a.Username,
		// Not a POP3 UID: the Received field says the copy was made by
		// hand, from a file.
		UID:     "none, rerouted by popfetch reroute",
		Fetched: time.Now(),
		Raw:     stripFields(raw, popfetchFields),
	}
	if _, err := deliverCopy(ctx, r.md.target(user), m, deliver.ReturnPath(m.Head()), rc, nil, nil); err != nil {
		return out, fmt.Errorf("account %s: reroute to %s: %w", r.a.Name, user, err)
	}
	orDiscard(log).Info("rerouted", "account", r.a.Name, "user", user, "rcpt", rc.Address, "target", out.Target)
	return out, nil
}

// recipient is user's deliver.Recipient: the first full address
// configured for the user, else the first configured local part, else
// the user name itself, at the first local domain.
func (r *Rerouter) recipient(user string) deliver.Recipient {
	addrs := r.md.rules.Directory.Addresses(user)
	addr := ""
	if i := slices.IndexFunc(addrs, func(a string) bool { return strings.Contains(a, "@") }); i >= 0 {
		addr = addrs[i]
	} else if dom := r.firstDomain(); dom != "" {
		local := user
		if len(addrs) > 0 {
			local = addrs[0]
		}
		addr = local + "@" + dom
	}
	rc := deliver.Recipient{User: user, Address: addr}
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		rc.Domain = addr[i+1:]
	}
	return rc
}

// firstDomain is the first local domain that is not a wildcard, else the
// parent of the first wildcard ("*.example.com": example.com), as routing
// does for a qvirtual recipient.
func (r *Rerouter) firstDomain() string {
	for _, d := range r.domains {
		if !strings.HasPrefix(d, "*.") {
			return d
		}
	}
	if len(r.domains) > 0 {
		return strings.TrimPrefix(r.domains[0], "*.")
	}
	return ""
}

// describe names the destination of rc's copy for a person: the user's own
// deliver block, else the account's, with {user} and {domain} filled in
// for reading (the target itself checks the values it substitutes).
func (r *Rerouter) describe(rc deliver.Recipient) string {
	d := &r.a.Deliver
	if _, own := r.md.users[rc.User]; own {
		for _, u := range r.a.Multidrop.Users {
			if u.Name == rc.User && u.Deliver != nil {
				d = u.Deliver
			}
		}
	}
	fill := strings.NewReplacer("{user}", rc.User, "{domain}", rc.Domain)
	switch {
	case d.Maildir != "":
		return "maildir " + fill.Replace(d.Maildir)
	case len(d.MDA) > 0:
		return "mda " + d.MDA[0]
	case d.SMTP != nil && d.SMTP.LMTP:
		return "lmtp " + d.SMTP.Server
	case d.SMTP != nil:
		return "smtp " + d.SMTP.Server
	}
	return "no destination"
}

// stripFields returns raw without the header fields named in names (case
// does not matter), each with its continuation lines; the body and every
// other line are left byte for byte. The header section is read as
// go-message's textproto.ReadHeader (the reader of package deliver) reads
// it: it ends at the first empty line, or at a line that is neither a
// field (a name of printable ASCII other than ':', possibly with white
// space around it, then ':') nor a continuation (a line starting with a
// space or tab); a first line starting with white space is malformed and
// ends it at once. Nothing from that point on is touched: a body line that
// looks like a field stays. Linear in len(raw).
func stripFields(raw []byte, names []string) []byte {
	out := make([]byte, 0, len(raw))
	dropping := false
	for i := 0; i < len(raw); {
		end := len(raw)
		if j := bytes.IndexByte(raw[i:], '\n'); j >= 0 {
			end = i + j + 1
		}
		line := raw[i:end]
		content := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		switch {
		case len(content) == 0:
			return append(out, raw[i:]...)
		case content[0] == ' ' || content[0] == '\t':
			if i == 0 {
				return append(out, raw...)
			}
			// A continuation of the field before it.
		default:
			name, ok := fieldName(content)
			if !ok {
				return append(out, raw[i:]...)
			}
			dropping = slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, name) })
		}
		if !dropping {
			out = append(out, line...)
		}
		i = end
	}
	return out
}

// fieldName returns the name of the field that line starts, trimmed of
// spaces and tabs, and false if line starts no field.
func fieldName(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return "", false
	}
	name := bytes.Trim(line[:i], " \t")
	for _, c := range name {
		if c < 33 || c > 126 {
			return "", false
		}
	}
	return string(name), true
}

// MaxSize bounds the message file Deliver may be given: the account's
// limit with room for the header fields popfetch added to the postmaster
// copy, else the largest message a poll accepts (pop3.MaxMessageSize).
func (r *Rerouter) MaxSize() int64 {
	if r.a.Limit > 0 {
		return min(r.a.Limit+1<<20, pop3.MaxMessageSize)
	}
	return pop3.MaxMessageSize
}
