package deliver

import (
	"os/user"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Directory maps the addresses of a multidrop domain to local users. It is
// the whitelist of multidrop routing: an address that the Directory does not
// map is never delivered, whatever the message claims.
//
// A Directory is configured once (NewDirectory, LoadAliases, SetSystemUsers,
// SetLearned) and then only read; LookupAll is safe for concurrent use.
//
// Lookup order for a local part and a domain (first hit wins):
//  1. an explicit full address of a user ("joe@example.com"),
//  2. an explicit local part of a user ("joe", any local domain),
//  3. a group address from AddGroup (full addresses only), expanding to
//     its members,
//  4. a learned full address (SetLearned: a route the administrator
//     taught with popfetch reroute --learn),
//  5. an alias from LoadAliases (alias names are case-insensitive, as in
//     sendmail's aliases(5)), expanding to one or more users,
//  6. a system user, when SetSystemUsers(true) was called.
//
// Learned addresses may lie outside the local domains (a mailing list's
// address, an old address of a person); LearnedAddress and LearnedListID
// answer for those.
type Directory struct {
	caseSensitive bool
	users         map[string]bool     // configured user names
	addrs         map[string][]string // user → its addresses as configured, in order (Addresses)
	byAddr        map[string]string   // "local@domain" → user
	byLocal       map[string]string   // "local" → user
	groups        map[string][]string // "local@domain" → member users (AddGroup)
	aliases       map[string]aliasExp // alias name (lower-case) → expansion
	ignored       []string            // from NewDirectory
	aliasIgnored  []string            // from the last LoadAliases

	learnedAddr    map[string]string // folded "local@domain" → user (SetLearned)
	learnedList    map[string]string // List-Id identifier (lower-case) → user
	learnedIgnored []string          // from the last SetLearned

	systemUsers bool
	// lookupUID finds a system account; a field so tests need not depend on
	// the accounts of the machine they run on.
	lookupUID func(name string) (uid uint64, ok bool)
	mu        sync.Mutex
	sysCache  map[string]bool
}

// aliasExp is an alias resolved at load time: the configured users it
// reaches, and the names that matched nothing configured and may still be
// system users (checked at lookup time, so SetSystemUsers can come after
// LoadAliases).
type aliasExp struct {
	users []string
	sys   []string
}

// Limits on system-user lookups. An attacker picks the local parts that get
// looked up, so the NSS lookup results are cached, and the cache is bounded.
const (
	maxSysCache   = 4096
	maxSystemName = 32
	// System users are accounts with 1000 <= uid < 60000: the Debian/
	// useradd range of ordinary users. Below 1000 are root and daemon
	// accounts (mail to "daemon@" or "root@" must not land in their
	// spools), and 60000-65535 is reserved (65534 is nobody).
	minSystemUID = 1000
	maxSystemUID = 60000
)

// NewDirectory builds a Directory from user → addresses. An address is a
// full address ("joe@example.com": that domain only) or a bare local part
// ("joe": every local domain). The user name itself is not an address unless
// it is listed. With caseSensitive false (the default of RFC 5321 §2.4 in
// practice, and of the rc file), local parts match case-insensitively;
// domains always do.
//
// An address claimed by two users goes to the first user in name order (so
// the result does not depend on map order) and the conflict is reported by
// Ignored.
func NewDirectory(users map[string][]string, caseSensitive bool) *Directory {
	d := &Directory{
		caseSensitive: caseSensitive,
		users:         make(map[string]bool, len(users)),
		addrs:         make(map[string][]string, len(users)),
		byAddr:        make(map[string]string),
		byLocal:       make(map[string]string),
		groups:        make(map[string][]string),
		aliases:       make(map[string]aliasExp),
		lookupUID:     lookupSystemUID,
		sysCache:      make(map[string]bool),
	}
	names := make([]string, 0, len(users))
	for name := range users {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !safeToken(name) {
			d.ignored = append(d.ignored, "user "+strconv.Quote(name)+": invalid user name")
			continue
		}
		d.users[name] = true
		for _, a := range users[name] {
			d.addAddress(name, a)
		}
	}
	return d
}

func (d *Directory) addAddress(name, a string) {
	a = strings.TrimSpace(a)
	if !safeToken(a) {
		d.ignored = append(d.ignored, "user "+name+": invalid address "+strconv.Quote(a))
		return
	}
	if foldsToASCII(a) {
		d.ignored = append(d.ignored, "user "+name+": address "+strconv.Quote(a)+
			" has a non-ASCII character that folds into ASCII (such as KELVIN SIGN into k): it could take another mailbox's mail")
		return
	}
	m, key, canon := d.byLocal, d.fold(a), a
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		dom, ok := NormalizeDomain(a[i+1:])
		if i == 0 || !ok {
			d.ignored = append(d.ignored, "user "+name+": invalid address "+strconv.Quote(a))
			return
		}
		m, key, canon = d.byAddr, d.fold(a[:i])+"@"+dom, a[:i]+"@"+dom
	}
	if prev, dup := m[key]; dup && prev != name {
		d.ignored = append(d.ignored, "address "+a+" of user "+name+" already belongs to "+prev)
		return
	}
	m[key] = name
	d.addrs[name] = append(d.addrs[name], canon)
}

// safeToken reports whether s can be a user name or a configured address:
// non-empty, valid UTF-8, no whitespace or control characters (which could
// otherwise reach a path, an argv element or an RCPT command).
func safeToken(s string) bool {
	return s != "" && len(s) <= 320 && !hasUnsafe(s)
}

// fold is the key form of a local part: NFC for UTF-8 local parts (RFC
// 6532 §3.1, so a decomposed "jörg" in the configuration matches the
// composed one in mail), lower-case unless case-sensitive.
//
// A local part holding a non-ASCII rune that NFC or case folding turns
// into ASCII (KELVIN SIGN U+212A is K under NFC and k lower-cased;
// U+0130 lower-cases to i) keeps its exact bytes behind a NUL, which no
// configured key holds (safeToken): "\u212Aaren" must not reach karen.
// The Directory refuses such addresses when they are added, so these
// keys match nothing.
func (d *Directory) fold(local string) string {
	if foldsToASCII(local) {
		return "\x00" + local
	}
	if !isASCII(local) {
		local = norm.NFC.String(local)
	}
	if d.caseSensitive {
		return local
	}
	return strings.ToLower(local)
}

// foldsToASCII reports whether s holds a non-ASCII rune that NFC or
// lower-casing (what fold does) turns into ASCII: such a local part would
// share its key with an ASCII one of another user. Letters that only
// upper-case into ASCII (dotless ı) fold to themselves and stay allowed.
func foldsToASCII(s string) bool {
	for _, r := range s {
		if r < utf8.RuneSelf {
			continue
		}
		for _, c := range norm.NFC.String(string(r)) {
			if c < utf8.RuneSelf || unicode.ToLower(c) < utf8.RuneSelf {
				return true
			}
		}
	}
	return false
}

// Ignored lists configuration entries that were skipped: invalid user
// names or addresses, addresses claimed twice, and alias targets that are
// pipes, files, :include: lists, remote addresses, unknown names, loops or
// too deep. The caller logs them once after loading.
func (d *Directory) Ignored() []string {
	out := append(append([]string(nil), d.ignored...), d.aliasIgnored...)
	out = append(out, d.learnedIgnored...)
	return append(out, d.learnedUnknown()...)
}

// SetSystemUsers makes a local part that names a system account (os/user)
// and is not otherwise mapped a user of its own name, like sendmail's local
// mailer. Only names matching [a-z_][a-z0-9_.-]* of at most 32 bytes and
// accounts with 1000 <= uid < 60000 qualify: root, daemons and nobody never
// receive multidrop mail this way (map them explicitly if wanted).
func (d *Directory) SetSystemUsers(on bool) {
	d.mu.Lock()
	d.systemUsers = on
	d.mu.Unlock()
}

// LookupAll returns every user that localPart@domain reaches, in alias
// order, without duplicates; nil if none. domain is compared
// case-insensitively; localPart according to the Directory's case
// sensitivity.
func (d *Directory) LookupAll(localPart, domain string) []string {
	us, _ := d.lookupAll(localPart, domain)
	return us
}

// lookupAll is LookupAll; learned reports that a learned route answered.
func (d *Directory) lookupAll(localPart, domain string) (users []string, learned bool) {
	if d == nil || localPart == "" || hasUnsafe(localPart) {
		return nil, false
	}
	if dom, ok := NormalizeDomain(domain); ok {
		domain = dom
	} else {
		domain = strings.ToLower(domain)
	}
	key := d.fold(localPart)
	if u, ok := d.byAddr[key+"@"+domain]; ok {
		return []string{u}, false
	}
	if u, ok := d.byLocal[key]; ok {
		return []string{u}, false
	}
	if g, ok := d.groups[key+"@"+domain]; ok {
		return append([]string(nil), g...), false
	}
	if u, ok := d.learnedAddr[key+"@"+domain]; ok && d.knownUser(u) {
		return []string{u}, true
	}
	return d.lookupAliasOrSystem(localPart, key), false
}

func (d *Directory) lookupAliasOrSystem(localPart, key string) []string {
	if a, ok := d.aliases[strings.ToLower(localPart)]; ok {
		out := append([]string(nil), a.users...)
		for _, s := range a.sys {
			if d.systemUser(s) && !contains(out, s) {
				out = append(out, s)
			}
		}
		if len(out) > 0 {
			return out
		}
		return nil
	}
	if d.systemUser(key) {
		return []string{key}
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// systemUser reports whether name is an ordinary system account (see
// SetSystemUsers), caching the answer.
func (d *Directory) systemUser(name string) bool {
	d.mu.Lock()
	on := d.systemUsers
	v, cached := d.sysCache[name]
	d.mu.Unlock()
	if !on || !validSystemName(name) {
		return false
	}
	if cached {
		return v
	}
	uid, ok := d.lookupUID(name)
	v = ok && uid >= minSystemUID && uid < maxSystemUID
	d.mu.Lock()
	if len(d.sysCache) < maxSysCache {
		d.sysCache[name] = v
	}
	d.mu.Unlock()
	return v
}

// validSystemName is the portable user name syntax ([a-z_][a-z0-9_.-]*, at
// most 32 bytes, as useradd(8) accepts by default). Anything else, such as
// "../x", a quoted local part or an upper-case name, is never looked up in
// the system database.
func validSystemName(s string) bool {
	if s == "" || len(s) > maxSystemName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func lookupSystemUID(name string) (uint64, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, false
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, false
	}
	return uid, true
}

// AddUsers adds the users of an external directory (an LDAP snapshot) to
// a Directory built by NewDirectory, naming them source in Ignored. The
// configured users win: an address already mapped, also through a
// configured bare local part, stays with its user and the conflict is
// noted; a name that is also a configured user keeps that user (and its
// deliver block, which the caller keys by name) and gains the addresses.
// Only full addresses count ("joe@example.com"): a directory maps
// mailboxes, not local parts of every domain. Call it before AddGroup and
// before the Directory is used.
func (d *Directory) AddUsers(users map[string][]string, source string) {
	names := make([]string, 0, len(users))
	for name := range users {
		names = append(names, name)
	}
	sort.Strings(names)
	// The bare local parts mapped so far are the configured ones: a
	// directory's full address must not take mail that a configured
	// local part already receives.
	configured := make(map[string]string, len(d.byLocal))
	for k, v := range d.byLocal {
		configured[k] = v
	}
	for _, name := range names {
		if !safeToken(name) {
			d.ignored = append(d.ignored, source+" user "+strconv.Quote(name)+": invalid user name")
			continue
		}
		d.users[name] = true
		for _, a := range users[name] {
			a = strings.TrimSpace(a)
			i := strings.LastIndexByte(a, '@')
			if i <= 0 || !safeToken(a) {
				d.ignored = append(d.ignored, source+" user "+name+": invalid address "+strconv.Quote(a))
				continue
			}
			if prev, ok := configured[d.fold(a[:i])]; ok && prev != name {
				d.ignored = append(d.ignored, source+" address "+a+" of user "+name+" already belongs to "+prev)
				continue
			}
			n := len(d.ignored)
			d.addAddress(name, a)
			for j := n; j < len(d.ignored); j++ {
				d.ignored[j] = source + " " + d.ignored[j]
			}
		}
	}
}

// AddGroup makes the full address addr deliver to users, like an alias
// that resolves to them, looked up after the users' own addresses: an
// address that a user has keeps going to that user. Members must be users
// of the Directory already (NewDirectory, AddUsers); others are skipped
// and noted with source in Ignored, as is a group left with no member.
func (d *Directory) AddGroup(addr string, users []string, source string) {
	addr = strings.TrimSpace(addr)
	i := strings.LastIndexByte(addr, '@')
	dom, ok := "", false
	if i > 0 && safeToken(addr) {
		dom, ok = NormalizeDomain(addr[i+1:])
	}
	if !ok {
		d.ignored = append(d.ignored, source+" group: invalid address "+strconv.Quote(addr))
		return
	}
	key := d.fold(addr[:i]) + "@" + dom
	if u, ok := d.byAddr[key]; ok {
		d.ignored = append(d.ignored, source+" group address "+addr+" already belongs to user "+u)
		return
	}
	if u, ok := d.byLocal[d.fold(addr[:i])]; ok {
		d.ignored = append(d.ignored, source+" group address "+addr+" already belongs to user "+u)
		return
	}
	if foldsToASCII(addr) {
		d.ignored = append(d.ignored, source+" group address "+strconv.Quote(addr)+
			" has a non-ASCII character that folds into ASCII (such as KELVIN SIGN into k): it could take another mailbox's mail")
		return
	}
	members := append([]string(nil), d.groups[key]...)
	// A set, not a scan of members: a group of 100000 members (an "all
	// staff" list) is merged at every poll.
	seen := make(map[string]bool, len(members)+len(users))
	for _, u := range members {
		seen[u] = true
	}
	for _, u := range users {
		switch {
		case !d.users[u]:
			d.ignored = append(d.ignored, source+" group "+addr+": member "+strconv.Quote(u)+" is not a user")
		case !seen[u]:
			seen[u] = true
			members = append(members, u)
		}
	}
	if len(members) == 0 {
		d.ignored = append(d.ignored, source+" group "+addr+": no member is a user")
		return
	}
	d.groups[key] = members
}

// HasUser reports whether name is a user that mail can be delivered to:
// configured (NewDirectory), added (AddUsers), or a system user when
// SetSystemUsers(true) was called. An alias reaches only such users. It is
// what a message can reach, so `popfetch reroute` asks it before
// delivering to a user named on its command line.
func (d *Directory) HasUser(name string) bool {
	if d == nil || !safeToken(name) {
		return false
	}
	return d.users[name] || d.systemUser(name)
}

// Addresses returns the addresses configured for user, in configuration
// order: full addresses with their domain normalised (NormalizeDomain),
// bare local parts as written. Nil for a system user or a user without
// addresses.
func (d *Directory) Addresses(user string) []string {
	if d == nil {
		return nil
	}
	return append([]string(nil), d.addrs[user]...)
}

// ValidUserName reports whether name can be a user name anywhere popfetch
// substitutes one: what NewDirectory accepts (no white space or control
// characters) and what a {user} placeholder accepts as one path component
// (not empty, at most 64 bytes, no '/', not starting with '.' or '-').
func ValidUserName(name string) bool {
	return safeToken(name) && validComponent(name) == nil
}
