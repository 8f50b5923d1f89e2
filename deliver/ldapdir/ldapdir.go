// Package ldapdir reads the users of a multidrop domain and their
// addresses from an LDAP or Active Directory server: one bind and one
// paged, bounded search per load, over verified TLS. It only reads; when
// to load again, and what to do while the server cannot be reached, is the
// caller's (package fetch) decision.
//
// Every error Load returns names the server's URL and never the password.
// Errors wrapping ErrConfig are mistakes in the Config (retrying cannot
// help); every other error (connection, TLS, bind refused, search failed,
// time or size exceeded) is a condition of the server or the network, a
// temporary one for the caller. A directory that yields no users is not
// an error here.
package ldapdir

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/popfetch/popfetch/internal/redact"
)

// Config is what one load needs. The zero value of a field means the
// default its comment names.
type Config struct {
	URL      string         // ldaps://host[:port], or ldap://host[:port] with StartTLS (required)
	RootCAs  *x509.CertPool // nil = the system roots
	BindDN   string         // "" = anonymous bind
	Password string         // the bind password (already resolved)
	BaseDN   string
	Filter   string // default DefaultFilter
	// UserAttribute holds the user name; the value is lower-cased.
	// Default "sAMAccountName".
	UserAttribute     string
	AddressAttributes []string // default "mail", "proxyAddresses"
	Groups            bool
	GroupFilter       string        // default "(objectClass=group)"
	MemberAttribute   string        // default "member"
	Timeout           time.Duration // the whole load; default 30s
	MaxEntries        int           // default 100000
	// MaxBytes bounds what the server may send in one load (all of the
	// connection's bytes, TLS included); default 64 MiB. With
	// MaxLoadValues and the bounds of one message (MaxMessageBytes) it
	// bounds the memory a load can take, hostile server or not, to a few
	// hundred MiB at worst; a directory of 100000 users is some 30 MB.
	MaxBytes int64
}

// DefaultFilter selects the enabled users of Active Directory (bit 2 of
// userAccountControl is ACCOUNTDISABLE; 1.2.840.113556.1.4.803 is the
// bitwise-AND matching rule, which OpenLDAP implements too).
const DefaultFilter = "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"

// Defaults of the Config fields.
const (
	DefaultUserAttribute   = "sAMAccountName"
	DefaultGroupFilter     = "(objectClass=group)"
	DefaultMemberAttribute = "member"
	DefaultTimeout         = 30 * time.Second
	DefaultMaxEntries      = 100000
	DefaultMaxBytes        = 64 << 20
)

// DefaultAddressAttributes are the attributes read for addresses by default.
var DefaultAddressAttributes = []string{"mail", "proxyAddresses"}

// Limits of one entry. A value longer than these, or an entry with more
// values, is skipped (the rest of the entry still counts) and noted.
const (
	MaxValueLen       = 1024 // a user name or an address
	MaxDNLen          = 4096 // a member DN
	MaxValuesPerEntry = 1000 // address values of one entry
	MaxNestingDepth   = 5    // groups in groups
	MaxAttrNameLen    = 256  // an attribute name in the Config (the rc file checks the same)
	MaxSkipped        = 100  // Snapshot.Skipped lines, plus one "and N more"
	pageSize          = 500
)

// Snapshot is one load's result.
type Snapshot struct {
	// Users maps a user name (lower-cased) to its addresses, as the
	// directory spells them (full addresses; proxyAddresses without the
	// smtp: prefix). A user without a usable address maps to an empty list.
	Users map[string][]string
	// Groups maps a group's address to the user names of its members
	// (only with Config.Groups), sorted, nested groups expanded.
	Groups  map[string][]string
	Entries int      // entries read, users and groups
	Skipped []string // entries or values ignored, and why (bounded)
	Loaded  time.Time
}

// ErrConfig marks an error in the Config itself: retrying cannot help.
var ErrConfig = errors.New("ldap directory: bad configuration")

// ErrTooManyEntries is wrapped when the directory holds more entries than
// Config.MaxEntries: a load is all or nothing, never silently cut short.
var ErrTooManyEntries = errors.New("more entries than max_entries")

// Load binds and reads the directory once.
func Load(ctx context.Context, c Config) (*Snapshot, error) {
	c = c.withDefaults()
	target, host, err := checkURL(c.URL)
	if err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, target.display, err)
	}
	snap, err := load(ctx, c, target, host)
	if err != nil {
		return nil, redactPassword(fmt.Errorf("ldap directory %s: %w", target.display, err), c.Password)
	}
	return snap, nil
}

func (c Config) withDefaults() Config {
	if c.Filter == "" {
		c.Filter = DefaultFilter
	}
	if c.UserAttribute == "" {
		c.UserAttribute = DefaultUserAttribute
	}
	if len(c.AddressAttributes) == 0 {
		c.AddressAttributes = DefaultAddressAttributes
	}
	if c.GroupFilter == "" {
		c.GroupFilter = DefaultGroupFilter
	}
	if c.MemberAttribute == "" {
		c.MemberAttribute = DefaultMemberAttribute
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	return c
}

func (c Config) check() error {
	// RFC 4513 section 5.1.2: a name with an empty password is an
	// unauthenticated bind, which servers may accept without checking
	// anything. A missing password must not turn into that.
	if c.BindDN != "" && c.Password == "" {
		return fmt.Errorf("bind_dn %q without a password (that would be an unauthenticated bind, RFC 4513 section 5.1.2)", c.BindDN)
	}
	if c.BindDN == "" && c.Password != "" {
		return errors.New("a password without bind_dn")
	}
	// Active Directory also takes a user principal name
	// ("popfetch@example.com") or a down-level logon name
	// ("EXAMPLE\\popfetch") as the name of a simple bind: only a name
	// with "=" in it is meant as a DN, and only that is checked as one.
	if strings.Contains(c.BindDN, "=") {
		if _, err := ldap.ParseDN(c.BindDN); err != nil {
			return fmt.Errorf("bind_dn %q: %w", c.BindDN, err)
		}
	}
	if _, err := ldap.ParseDN(c.BaseDN); err != nil {
		return fmt.Errorf("base_dn %q: %w", c.BaseDN, err)
	}
	for _, f := range []string{c.Filter, c.GroupFilter} {
		if _, err := ldap.CompileFilter(f); err != nil {
			return fmt.Errorf("filter %q: %w", f, err)
		}
	}
	for _, a := range append([]string{c.UserAttribute, c.MemberAttribute}, c.AddressAttributes...) {
		if !validAttrName(a) {
			return fmt.Errorf("attribute name %q", a)
		}
	}
	return nil
}

// validAttrName accepts an attribute description's type (RFC 4512
// section 2.5: a keystring or a numeric OID), no options, of at most
// MaxAttrNameLen bytes.
func validAttrName(a string) bool {
	if a == "" || len(a) > MaxAttrNameLen {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

type target struct {
	display string // scheme://host:port, for messages
	tls     bool   // ldaps
	addr    string // host:port
}

// checkURL accepts ldaps://host[:port] and ldap://host[:port], optionally
// with a trailing "/": no user info, DN, attributes or filter in the URL
// (RFC 4516 allows them; the Config has fields for what is meant).
func checkURL(raw string) (target, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's error quotes the input; a URL holds no password here
		// (user info is refused below), but keep the message short.
		return target{}, "", fmt.Errorf("%w: url %q: not a URL", ErrConfig, raw)
	}
	var t target
	switch u.Scheme {
	case "ldaps":
		t.tls = true
	case "ldap":
	default:
		return target{}, "", fmt.Errorf("%w: url %q: the scheme must be ldaps:// or ldap:// (with StartTLS)", ErrConfig, u.Redacted())
	}
	if u.User != nil {
		return target{}, "", fmt.Errorf("%w: url %q: user info in the URL (use bind_dn and the password settings)", ErrConfig, u.Redacted())
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return target{}, "", fmt.Errorf("%w: url %q: only scheme://host[:port] (base_dn and filter are settings of their own)", ErrConfig, raw)
	}
	host := u.Hostname()
	if host == "" {
		return target{}, "", fmt.Errorf("%w: url %q: no host", ErrConfig, raw)
	}
	port := u.Port()
	if port == "" {
		port = "389"
		if t.tls {
			port = "636"
		}
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return target{}, "", fmt.Errorf("%w: url %q: bad port", ErrConfig, raw)
	}
	t.addr = net.JoinHostPort(host, port)
	t.display = u.Scheme + "://" + t.addr
	return t, host, nil
}

// load does the network part; its errors are wrapped by Load.
func load(ctx context.Context, c Config, t target, host string) (*Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer raw.Close()
	// One deadline for every read and write of the load, and the
	// connection closed at once when ctx ends (early or at the
	// deadline): no step of the load can wait past Timeout, whatever
	// the server sends or does not send. The byte budget bounds what a
	// server can make us read.
	raw.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	bc := &budgetConn{Conn: raw, left: c.MaxBytes}

	tlsConfig := &tls.Config{
		ServerName: host,
		RootCAs:    c.RootCAs,
		MinVersion: tls.VersionTLS12,
	}
	if !t.tls {
		// StartTLS is required: there is no fall-back to a plain bind.
		// Unbuffered: the TLS handshake's bytes follow the reply.
		if err := newClient(bc, false).startTLS(); err != nil {
			return nil, fmt.Errorf("StartTLS: %w", ctxErr(ctx, err))
		}
	}
	tc := tls.Client(bc, tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		if !t.tls {
			return nil, fmt.Errorf("StartTLS: TLS: %w", ctxErr(ctx, err))
		}
		return nil, fmt.Errorf("TLS: %w", ctxErr(ctx, err))
	}
	if !tc.ConnectionState().HandshakeComplete {
		return nil, errors.New("TLS: no TLS session")
	}
	cl := newClient(tc, true)

	if c.BindDN == "" {
		err = cl.bind("", "")
	} else {
		err = cl.bind(c.BindDN, c.Password)
	}
	if err != nil {
		if c.BindDN == "" {
			return nil, fmt.Errorf("anonymous bind: %w", ctxErr(ctx, err))
		}
		return nil, fmt.Errorf("bind as %q: %w", c.BindDN, ctxErr(ctx, err))
	}

	r := &reader{c: c, notes: &notes{}, userDNs: map[string]string{}, owner: map[string]string{}}
	s := &searcher{cl: cl, ctx: ctx, deadline: deadline, c: c}
	snap := &Snapshot{Users: map[string][]string{}}
	attrs := append([]string{c.UserAttribute}, c.AddressAttributes...)
	err = s.search(c.Filter, attrs, "", &r.entries, func(e *ldap.Entry) error {
		r.user(e, snap)
		return r.tooMany()
	})
	if err != nil {
		return nil, fmt.Errorf("search %q under %q: %w", c.Filter, c.BaseDN, ctxErr(ctx, err))
	}
	if c.Groups {
		var groups []*group
		gattrs := append(slices.Clone(c.AddressAttributes), c.MemberAttribute)
		err := s.search(c.GroupFilter, gattrs, c.MemberAttribute, &r.entries, func(e *ldap.Entry) error {
			groups = append(groups, r.group(e))
			return r.tooMany()
		})
		if err != nil {
			return nil, fmt.Errorf("group search %q under %q: %w", c.GroupFilter, c.BaseDN, ctxErr(ctx, err))
		}
		for _, g := range groups {
			if g.nextRange < 0 || g.incomplete {
				continue
			}
			if err := s.ranges(r, g); err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("group %s: %w", quoteDN(g.dn), ctxErr(ctx, err))
				}
				r.notes.add("%s: reading the ranges of %s failed (%v): the group is not routed", quoteDN(g.dn), c.MemberAttribute, err)
				g.incomplete = true
			}
		}
		snap.Groups = map[string][]string{}
		r.groups(groups, snap)
	}
	snap.Entries = r.entries
	snap.Skipped = r.notes.list()
	snap.Loaded = time.Now()
	return snap, nil
}

// ctxErr prefers the context's reason: a deadline reached, or a
// cancelled ctx, shows as a read error or a closed connection. The
// connection's deadline is ctx's, so a read can time out a moment before
// ctx reports it, and on a loaded machine ctx's timer can run late by
// more than any short wait: once the deadline has passed, or the
// connection's own deadline fired, the reason is the deadline.
func ctxErr(ctx context.Context, err error) error {
	ce := ctx.Err()
	if ce == nil {
		if d, ok := ctx.Deadline(); ok && (!time.Now().Before(d) || errors.Is(err, os.ErrDeadlineExceeded)) {
			ce = context.DeadlineExceeded
		} else if ok && time.Until(d) < 50*time.Millisecond {
			select {
			case <-ctx.Done():
				ce = ctx.Err()
			case <-time.After(time.Until(d) + 10*time.Millisecond):
				ce = ctx.Err()
			}
		}
	}
	if ce != nil && !errors.Is(err, ce) {
		return fmt.Errorf("%w (%v)", ce, err)
	}
	return err
}

type searcher struct {
	cl       *client
	ctx      context.Context
	deadline time.Time
	c        Config
}

func (s *searcher) timeLimit() int {
	return max(1, int(math.Ceil(time.Until(s.deadline).Seconds())))
}

// search runs one paged search (RFC 2696) under BaseDN and hands every
// entry to fn as it arrives, counting them into *count; more than
// MaxEntries in all is an error. Each page is a request of its own, so a
// server's size limit for unpaged searches does not cut the result.
// ranged names an attribute whose range options are kept.
func (s *searcher) search(filter string, attrs []string, ranged string, count *int, fn func(*ldap.Entry) error) error {
	paging := ldap.NewControlPaging(pageSize)
	keep := keepAttrs(attrs, ranged)
	for {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		f, err := ldap.CompileFilter(filter)
		if err != nil {
			return err
		}
		req := searchReq{base: s.c.BaseDN, scope: ldap.ScopeWholeSubtree, filter: f, attrs: attrs,
			timeLimit: s.timeLimit(), controls: []ldap.Control{paging}}
		controls, err := s.cl.search(req, keep, func(e *ldap.Entry) error {
			*count++
			if *count > s.c.MaxEntries {
				return fmt.Errorf("%w (%d)", ErrTooManyEntries, s.c.MaxEntries)
			}
			return fn(e)
		})
		if err != nil {
			return err
		}
		pc, _ := ldap.FindControl(controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if pc == nil || len(pc.Cookie) == 0 {
			return nil
		}
		paging.SetCookie(pc.Cookie)
	}
}

// ranges reads the rest of g's members from g.nextRange on, by range
// retrieval (Active Directory: a base search of the group asking for
// "member;range=1500-*", answered with "member;range=1500-2999", or
// "member;range=3000-*" for the last range). The members of one group
// are bounded by MaxEntries.
func (s *searcher) ranges(r *reader, g *group) error {
	attr := s.c.MemberAttribute
	for g.nextRange >= 0 {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		f, err := ldap.CompileFilter("(objectClass=*)")
		if err != nil {
			return err
		}
		start := g.nextRange
		want := fmt.Sprintf("%s;range=%d-*", attr, start)
		req := searchReq{base: g.dn, scope: ldap.ScopeBaseObject, filter: f, attrs: []string{want}, timeLimit: s.timeLimit()}
		got := false
		_, err = s.cl.search(req, keepAttrs(nil, attr), func(e *ldap.Entry) error {
			if got {
				return errors.New("more than one entry for a base search")
			}
			got = true
			r.members(g, e, start)
			return r.tooMany()
		})
		if err != nil {
			return err
		}
		if g.incomplete {
			return nil // noted
		}
		if !got || g.nextRange == start {
			return fmt.Errorf("no %s range starting at value %d in the reply", attr, start)
		}
	}
	return nil
}

// budgetConn fails reads past its byte budget.
type budgetConn struct {
	net.Conn
	left int64 // atomic
}

var errBudget = errors.New("the server sent more than max_bytes")

func (b *budgetConn) Read(p []byte) (int, error) {
	left := atomic.LoadInt64(&b.left)
	if left <= 0 {
		return 0, errBudget
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.Conn.Read(p)
	atomic.AddInt64(&b.left, -int64(n))
	return n, err
}

// redactPassword masks the password in err's text (as given, as Go would
// quote it, and a cut-off echo of it: package internal/redact) while
// keeping err for errors.Is and errors.As. A server's diagnostic message
// may quote the request it refused.
func redactPassword(err error, password string) error {
	if err == nil || password == "" {
		return err
	}
	return redacted{err: err, password: password}
}

type redacted struct {
	err      error
	password string
}

func (r redacted) Error() string {
	q := strconv.Quote(r.password)
	return redact.Secrets(r.err.Error(), r.password, q[1:len(q)-1])
}

func (r redacted) Unwrap() error { return r.err }

// notes collects Snapshot.Skipped, bounded.
type notes struct {
	lines []string
	more  int
}

func (n *notes) add(format string, args ...any) {
	if len(n.lines) >= MaxSkipped {
		n.more++
		return
	}
	n.lines = append(n.lines, fmt.Sprintf(format, args...))
}

func (n *notes) list() []string {
	if n.more > 0 {
		return append(n.lines, fmt.Sprintf("and %d more", n.more))
	}
	return n.lines
}

type reader struct {
	c       Config
	notes   *notes
	entries int
	values  int               // addresses and member DNs kept
	userDNs map[string]string // normalised DN -> user name
	owner   map[string]string // lower-cased address -> `user "x"` or `group "dn"`
}

// MaxLoadValues bounds the addresses and member DNs one load keeps, in
// all: each costs some 100 bytes of memory whatever its length, and a few
// bytes on the wire. More is an error, like more entries than MaxEntries.
// A variable for tests.
var MaxLoadValues = 1 << 20

// ErrTooManyValues is wrapped when a load would keep more than
// MaxLoadValues addresses and member DNs.
var ErrTooManyValues = errors.New("more address and member values than a load may hold")

func (r *reader) tooMany() error {
	if r.values > MaxLoadValues {
		return fmt.Errorf("%w (%d)", ErrTooManyValues, MaxLoadValues)
	}
	return nil
}

// user adds one user entry to snap.Users, in the order the server
// returns them: the first of two entries with the same name wins.
func (r *reader) user(e *ldap.Entry, snap *Snapshot) {
	vals := e.GetEqualFoldAttributeValues(r.c.UserAttribute)
	if len(vals) == 0 {
		r.notes.add("%s: no %s, skipped", quoteDN(e.DN), r.c.UserAttribute)
		return
	}
	if len(vals) > 1 {
		r.notes.add("%s: %d values of %s, skipped (which one is the user is ambiguous)", quoteDN(e.DN), len(vals), r.c.UserAttribute)
		return
	}
	name, err := UserName(vals[0])
	if err != nil {
		r.notes.add("%s: %s %s, skipped", quoteDN(e.DN), r.c.UserAttribute, err)
		return
	}
	if _, dup := snap.Users[name]; dup {
		r.notes.add("%s: user name %q taken by an earlier entry, skipped", quoteDN(e.DN), name)
		return
	}
	var addrs []string
	for _, a := range r.addresses(e) {
		key := strings.ToLower(a)
		if o, taken := r.owner[key]; taken {
			r.notes.add("%s: address %q belongs to %s already, skipped", quoteDN(e.DN), a, o)
			continue
		}
		r.owner[key] = fmt.Sprintf("user %q", name)
		addrs = append(addrs, a)
	}
	if addrs == nil {
		addrs = []string{}
	}
	snap.Users[name] = addrs
	if key, ok := normDN(e.DN); ok {
		r.userDNs[key] = name
	}
}

// addresses returns e's usable addresses, in AddressAttributes order,
// without duplicates (case-insensitive); what is unusable is noted.
func (r *reader) addresses(e *ldap.Entry) []string {
	var out []string
	seen := map[string]bool{}
	n := 0
	for _, attr := range r.c.AddressAttributes {
		proxy := strings.EqualFold(attr, "proxyAddresses")
		for _, v := range e.GetEqualFoldAttributeValues(attr) {
			n++
			if n > MaxValuesPerEntry {
				r.notes.add("%s: more than %d address values, the rest skipped", quoteDN(e.DN), MaxValuesPerEntry)
				return out
			}
			var a string
			var err error
			if proxy {
				var ok bool
				a, ok, err = ProxyAddress(v)
				if err == nil && !ok {
					continue // X500:, SIP:, X400: ...: not mail
				}
			} else {
				a, err = Address(v)
			}
			if err != nil {
				r.notes.add("%s: %s value %s, skipped", quoteDN(e.DN), attr, err)
				continue
			}
			if k := strings.ToLower(a); !seen[k] {
				seen[k] = true
				r.values++
				out = append(out, a)
			}
		}
	}
	return out
}

type group struct {
	dn      string
	addrs   []string
	members []string // normalised DNs
	// nextRange is the first member value still to be read by range
	// retrieval, -1 when all are read.
	nextRange int
	// incomplete: not every member is known (a value or a range could
	// not be read, or more than MaxEntries members): the group must not
	// route to the part that is known, nor count in groups holding it.
	incomplete bool
}

// group reduces a group entry to its addresses and member DNs.
func (r *reader) group(e *ldap.Entry) *group {
	g := &group{dn: e.DN, addrs: r.addresses(e), nextRange: -1}
	r.members(g, e, 0)
	return g
}

// members adds the members in e (the plain attribute, or the range of it
// starting at value start) to g, and sets g.nextRange from the range
// read. Active Directory returns at most 1500 (MaxValRange) values of a
// large attribute, as "member;range=0-1499", and wants the rest asked
// for range by range; the last range ends in "*".
func (r *reader) members(g *group, e *ldap.Entry, start int) {
	attr := r.c.MemberAttribute
	prefix := strings.ToLower(attr) + ";range="
	for _, a := range e.Attributes {
		name := strings.ToLower(a.Name)
		switch {
		case name == strings.ToLower(attr):
			r.addMembers(g, a.Values)
			g.nextRange = -1
		case strings.HasPrefix(name, prefix):
			lo, hi, ok := strings.Cut(name[len(prefix):], "-")
			from, err1 := strconv.Atoi(lo)
			to, err2 := strconv.Atoi(hi)
			if !ok || err1 != nil || from != start || hi != "*" && (err2 != nil || to < from || to >= math.MaxInt32) {
				r.notes.add("%s: %s range %q unexpected (want one from %d): the group is not routed", quoteDN(g.dn), attr, a.Name, start)
				g.incomplete = true
				return
			}
			if hi != "*" && len(a.Values) == 0 {
				// Each range must bring values, or a server could make
				// the ranges go on for good.
				r.notes.add("%s: %s range %q is empty: the group is not routed", quoteDN(g.dn), attr, a.Name)
				g.incomplete = true
				return
			}
			r.addMembers(g, a.Values)
			if hi == "*" {
				g.nextRange = -1
			} else {
				g.nextRange = to + 1
			}
		}
	}
}

func (r *reader) addMembers(g *group, vals []string) {
	for _, v := range vals {
		if len(g.members) >= r.c.MaxEntries {
			if !g.incomplete {
				r.notes.add("%s: more than %d members: the group is not routed", quoteDN(g.dn), r.c.MaxEntries)
			}
			g.incomplete = true
			return
		}
		if len(v) > MaxDNLen {
			r.notes.add("%s: a %s value of %d bytes: the group is not routed", quoteDN(g.dn), r.c.MemberAttribute, len(v))
			g.incomplete = true
			continue
		}
		key, ok := normDN(v)
		if !ok {
			r.notes.add("%s: %s %q is not a DN: the group is not routed", quoteDN(g.dn), r.c.MemberAttribute, v)
			g.incomplete = true
			continue
		}
		r.values++
		g.members = append(g.members, key)
	}
}

// maxExpandSteps bounds the work of expanding nested groups in one load
// (member values visited, over all groups), and with it the size of
// Snapshot.Groups (a user is listed at most once per step): 4M steps are
// well under a second, and at most 64 MiB of member lists. Groups past
// the budget are left out and noted.
var maxExpandSteps = 1 << 22 // a variable for tests

// groups fills snap.Groups: every address of a group maps to the users
// it holds, directly or through groups in it (up to MaxNestingDepth). A
// group whose members are not all known is left out: its mail goes to
// the postmaster rather than to a part of the group.
func (r *reader) groups(list []*group, snap *Snapshot) {
	byDN := map[string]*group{}
	var order []*group
	for _, g := range list {
		key, ok := normDN(g.dn)
		if !ok {
			continue
		}
		if _, dup := byDN[key]; dup {
			continue
		}
		byDN[key] = g
		order = append(order, g)
	}
	budget := maxExpandSteps
	for _, g := range order {
		if len(g.addrs) == 0 {
			continue // nothing to route to it; its members still count in groups holding it
		}
		set, ok := r.expand(g, byDN, &budget)
		if !ok {
			continue
		}
		if len(set) == 0 {
			r.notes.add("%s: no member is a loaded user, skipped", quoteDN(g.dn))
			continue
		}
		members := make([]string, 0, len(set))
		for u := range set {
			members = append(members, u)
		}
		sort.Strings(members)
		for _, a := range g.addrs {
			key := strings.ToLower(a)
			if o, taken := r.owner[key]; taken {
				r.notes.add("%s: address %q belongs to %s already, skipped", quoteDN(g.dn), a, o)
				continue
			}
			r.owner[key] = "group " + quoteDN(g.dn)
			snap.Groups[a] = members
		}
	}
}

// expand returns the users in root, through nested groups level by level
// (breadth first, each group once: a group in itself, directly or not,
// adds nothing more, and the work is linear in the member values
// reached). ok is false, with a note, when the members are not all
// known: a group in it incomplete, nested deeper than MaxNestingDepth,
// or the load's expansion budget spent.
func (r *reader) expand(root *group, byDN map[string]*group, budget *int) (set map[string]bool, ok bool) {
	set = map[string]bool{}
	seen := map[*group]bool{root: true}
	level := []*group{root}
	for depth := 0; len(level) > 0; depth++ {
		var next []*group
		for _, g := range level {
			if g.incomplete {
				if g != root { // root's own reason is noted already
					r.notes.add("%s: holds group %s whose members are not all known: not routed", quoteDN(root.dn), quoteDN(g.dn))
				}
				return nil, false
			}
			for _, m := range g.members {
				if *budget--; *budget < 0 {
					r.notes.add("%s: nested groups too large to expand (more than %d member values in all): not routed", quoteDN(root.dn), maxExpandSteps)
					return nil, false
				}
				if u, ok := r.userDNs[m]; ok {
					set[u] = true
					continue
				}
				sub, ok := byDN[m]
				if !ok || seen[sub] {
					continue
				}
				if depth+1 > MaxNestingDepth {
					r.notes.add("%s: groups nested deeper than %d (%s): not routed", quoteDN(root.dn), MaxNestingDepth, quoteDN(sub.dn))
					return nil, false
				}
				seen[sub] = true
				next = append(next, sub)
			}
		}
		level = next
	}
	return set, true
}

// normDN is the comparison key of a DN: attribute types and values
// case-folded, escapes resolved (ldap.ParseDN), so that member values
// written in another case or escaping match the entry's own DN.
func normDN(dn string) (string, bool) {
	d, err := ldap.ParseDN(dn)
	if err != nil || len(d.RDNs) == 0 {
		return "", false
	}
	var b strings.Builder
	for i, rdn := range d.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		parts := make([]string, 0, len(rdn.Attributes))
		for _, a := range rdn.Attributes {
			parts = append(parts, ldap.EscapeDN(strings.ToLower(a.Type))+"="+ldap.EscapeDN(strings.ToLower(a.Value)))
		}
		sort.Strings(parts)
		b.WriteString(strings.Join(parts, "+"))
	}
	return b.String(), true
}

func quoteDN(dn string) string {
	if len(dn) > 200 {
		dn = dn[:200] + "…"
	}
	return strconv.Quote(dn)
}
