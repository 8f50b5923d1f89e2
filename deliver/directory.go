package deliver

import (
	"os/user"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/text/unicode/norm"
)

// Directory maps the addresses of a multidrop domain to local users. It is
// the whitelist of multidrop routing: an address that the Directory does not
// map is never delivered, whatever the message claims.
//
// A Directory is configured once (NewDirectory, LoadAliases, SetSystemUsers)
// and then only read; LookupAll is safe for concurrent use.
//
// Lookup order for a local part and a domain (first hit wins):
//  1. an explicit full address of a user ("joe@example.com"),
//  2. an explicit local part of a user ("joe", any local domain),
//  3. an alias from LoadAliases (alias names are case-insensitive, as in
//     sendmail's aliases(5)), expanding to one or more users,
//  4. a system user, when SetSystemUsers(true) was called.
type Directory struct {
	caseSensitive bool
	users         map[string]bool     // configured user names
	addrs         map[string][]string // user → its addresses as configured, in order (Addresses)
	byAddr        map[string]string   // "local@domain" → user
	byLocal       map[string]string   // "local" → user
	aliases       map[string]aliasExp // alias name (lower-case) → expansion
	ignored       []string            // from NewDirectory
	aliasIgnored  []string            // from the last LoadAliases

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
func (d *Directory) fold(local string) string {
	if !isASCII(local) {
		local = norm.NFC.String(local)
	}
	if d.caseSensitive {
		return local
	}
	return strings.ToLower(local)
}

// Ignored lists configuration entries that were skipped: invalid user
// names or addresses, addresses claimed twice, and alias targets that are
// pipes, files, :include: lists, remote addresses, unknown names, loops or
// too deep. The caller logs them once after loading.
func (d *Directory) Ignored() []string {
	return append(append([]string(nil), d.ignored...), d.aliasIgnored...)
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
	if d == nil || localPart == "" || hasUnsafe(localPart) {
		return nil
	}
	if dom, ok := NormalizeDomain(domain); ok {
		domain = dom
	} else {
		domain = strings.ToLower(domain)
	}
	key := d.fold(localPart)
	if u, ok := d.byAddr[key+"@"+domain]; ok {
		return []string{u}
	}
	if u, ok := d.byLocal[key]; ok {
		return []string{u}
	}
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

// HasUser reports whether name is a user of d: a configured user (the
// target of an alias is one of these or a system user), or a system user
// when SetSystemUsers(true) was called (the same uid range as LookupAll).
// It is what a message can reach, so `popfetch reroute` asks it before
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
