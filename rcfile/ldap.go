package rcfile

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"

	"github.com/popfetch/popfetch/deliver"
)

// DefaultLDAPFilter is the ldap block's default filter: the enabled users
// of Active Directory (bit 2 of userAccountControl is ACCOUNTDISABLE;
// 1.2.840.113556.1.4.803 is AD's bitwise-AND matching rule). It is the
// same string as package deliver/ldapdir's DefaultFilter (a test keeps
// them equal), written out here so that the rc file parser does not
// depend on the LDAP client.
const DefaultLDAPFilter = "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"

// The ldap block's other defaults and bounds (man/popfetch.hcl.5).
const (
	defaultLDAPUserAttribute   = "sAMAccountName"
	defaultLDAPGroupFilter     = "(objectClass=group)"
	defaultLDAPMemberAttribute = "member"
	defaultLDAPRefresh         = 5 * time.Minute
	defaultLDAPGrace           = 24 * time.Hour
	defaultLDAPTimeout         = 30 * time.Second
	defaultLDAPMaxEntries      = 100_000
	maxLDAPEntries             = 10_000_000
	// maxLDAPGrace is 30 days: a copy older than that has missed every
	// joiner and leaver of a month, and an outage that long is no
	// longer "short".
	maxLDAPGrace = 30 * 24 * time.Hour
	// maxDN bounds bind_dn and base_dn; real ones are under 200 bytes.
	maxDN = 1024
	// maxFilter bounds a filter; hand-written ones are a few hundred bytes.
	maxFilter = 4096
	// maxFilterDepth bounds the nesting of & | ! in a filter.
	maxFilterDepth = 32
)

var defaultLDAPAddressAttributes = []string{"mail", "proxyAddresses"}

// ldapAttrRE is an attribute type (RFC 4512 §1.4, §2.5): a descriptor
// (a letter, then letters, digits and hyphens) or a numeric OID.
var ldapAttrRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)$`)
})

// ldapAttrDescRE is an attribute description as a filter may name it: an
// attribute type with options such as ";binary" (RFC 4512 §2.5).
var ldapAttrDescRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*$`)
})

// ldap validates a multidrop block's ldap block and applies its defaults.
func (p *parser) ldap(l *ldapHCL) *LDAP {
	out := &LDAP{
		Filter:            DefaultLDAPFilter,
		UserAttribute:     defaultLDAPUserAttribute,
		AddressAttributes: append([]string(nil), defaultLDAPAddressAttributes...),
		GroupFilter:       defaultLDAPGroupFilter,
		MemberAttribute:   defaultLDAPMemberAttribute,
		MaxEntries:        defaultLDAPMaxEntries,
		Range:             l.DefRange,
	}
	if v, ok := p.ldapRequired(l.URL, l.URLRange, l.DefRange, "url",
		`the directory server's url, e.g. url = "ldaps://dc1.example.com"`); ok {
		out.URL = p.ldapURL(v, l.URLRange)
	}
	if l.CAFile != nil {
		out.CAFile = p.optPath(*l.CAFile, l.CAFileRange)
	}

	pw := passwordAttrs{
		l.Password, l.PasswordRange, l.PasswordFile, l.PasswordFileRange,
		l.PasswordEnv, l.PasswordEnvRange, l.PasswordCommand, l.PasswordCommandRange,
	}
	switch {
	case l.BindDN != nil:
		out.BindDN = *l.BindDN
		p.bindDN(out.BindDN, l.BindDNRange)
		// A bind DN without a password would be an "unauthenticated
		// bind" (RFC 4513 §5.1.2), which servers answer with success
		// and anonymous rights: a directory that then looks empty.
		out.Password = p.passwordSource(pw, l.BindDNRange, false,
			"bind_dn is set, so the bind needs a password: set exactly one of password_file, password_env, password_command or password in this ldap block.")
	case isSet(l.BindDNRange) && p.reported(l.BindDNRange):
		// bind_dn failed to decode and was reported. (bind_dn = null
		// is absent, as in HCL generally.)
	case pw.set():
		rng := pw.InlineRange
		for _, r := range []hcl.Range{pw.FileRange, pw.EnvRange, pw.CommandRange} {
			if !isSet(rng) {
				rng = r
			}
		}
		p.errorf(rng, "Password without bind_dn",
			"A bind password needs bind_dn, the name to bind as; set bind_dn, or remove the password for an anonymous bind.")
	}

	if v, ok := p.ldapRequired(l.BaseDN, l.BaseDNRange, l.DefRange, "base_dn",
		`base_dn, where the search starts, e.g. base_dn = "DC=example,DC=com"`); ok {
		out.BaseDN = v
		if why := checkDN(out.BaseDN); why != "" {
			p.errorf(l.BaseDNRange, "Invalid base_dn",
				`base_dn %s; write the DN the search starts at, such as "DC=example,DC=com" or "ou=people,dc=example,dc=org".`, why)
		}
	}
	if l.Filter != nil {
		out.Filter = *l.Filter
		p.ldapFilter(out.Filter, l.FilterRange, "filter")
	}
	if l.UserAttribute != nil {
		out.UserAttribute = *l.UserAttribute
		p.ldapAttr(out.UserAttribute, l.UserAttributeRange, "user_attribute")
	}
	if l.AddressAttributes != nil {
		out.AddressAttributes = append([]string{}, *l.AddressAttributes...)
		if len(out.AddressAttributes) == 0 {
			p.errorf(l.AddressAttributesRange, "Invalid address_attributes",
				`address_attributes must name at least one attribute, e.g. ["mail"].`)
		}
		seen := map[string]bool{}
		for _, a := range out.AddressAttributes {
			if !p.ldapAttr(a, l.AddressAttributesRange, "address_attributes") {
				continue
			}
			// Attribute names are case-insensitive (RFC 4512 §2.5).
			if k := strings.ToLower(a); seen[k] {
				p.errorf(l.AddressAttributesRange, "Invalid address_attributes", "address_attributes lists %q twice.", a)
			} else {
				seen[k] = true
			}
		}
	}
	if l.Groups != nil {
		out.Groups = *l.Groups
	}
	// Like mda_timeout without mda: a group setting without groups = true
	// would be silently ignored, which hides a forgotten groups = true.
	for _, g := range []struct {
		set  bool
		rng  hcl.Range
		name string
	}{{l.GroupFilter != nil, l.GroupFilterRange, "group_filter"}, {l.MemberAttribute != nil, l.MemberAttributeRange, "member_attribute"}} {
		if g.set && !out.Groups {
			p.errorf(g.rng, "Option needs groups",
				"%s only applies with groups = true (group expansion); set groups = true or remove %s.", g.name, g.name)
		}
	}
	if l.GroupFilter != nil {
		out.GroupFilter = *l.GroupFilter
		p.ldapFilter(out.GroupFilter, l.GroupFilterRange, "group_filter")
	}
	if l.MemberAttribute != nil {
		out.MemberAttribute = *l.MemberAttribute
		p.ldapAttr(out.MemberAttribute, l.MemberAttributeRange, "member_attribute")
	}
	out.Refresh = p.duration(l.Refresh, l.RefreshRange, "refresh", defaultLDAPRefresh, time.Minute, 24*time.Hour)
	out.Grace = p.duration(l.Grace, l.GraceRange, "grace", defaultLDAPGrace, 0, maxLDAPGrace)
	out.Timeout = p.duration(l.Timeout, l.TimeoutRange, "timeout", defaultLDAPTimeout, time.Second, 10*time.Minute)
	if l.MaxEntries != nil {
		out.MaxEntries = *l.MaxEntries
		if out.MaxEntries < 1 || out.MaxEntries > maxLDAPEntries {
			p.errorf(l.MaxEntriesRange, "Invalid max_entries",
				"max_entries must be between 1 and %d, not %d.", maxLDAPEntries, out.MaxEntries)
		}
	}
	return out
}

// ldapRequired returns *v, reporting a missing attribute at the ldap
// block (what says what is needed), or a null one at itself. One that
// failed to decode was reported already.
func (p *parser) ldapRequired(v *string, rng, block hcl.Range, name, what string) (string, bool) {
	switch {
	case v != nil:
		return *v, true
	case !isSet(rng):
		p.errorf(block, "Missing "+name, "An ldap block needs %s.", what)
	case !p.reported(rng):
		p.errorf(rng, "Missing "+name, "%s must not be null.", name)
	}
	return "", false
}

// ldapURL checks url and returns it as scheme://host[:port]: ldaps
// (TLS from the first byte) or ldap (StartTLS, RFC 4513 §3, always
// required), and nothing an RFC 4516 LDAP URL may add (DN, attributes,
// scope, filter: base_dn and filter say that here). The URL is quoted in
// no message: a user:password@ part would be a secret.
func (p *parser) ldapURL(v string, rng hcl.Range) string {
	bad := func(why string) string {
		p.errorf(rng, "Invalid url",
			`url %s; write ldaps://HOST[:PORT] (TLS) or ldap://HOST[:PORT] (StartTLS, required), e.g. url = "ldaps://dc1.example.com".`, why)
		return v
	}
	if strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return bad("contains a control character")
	}
	if strings.HasPrefix(strings.ToLower(v), "ldapi:") {
		return bad("names a unix socket (ldapi), which popfetch does not use")
	}
	u, err := url.Parse(v)
	if err != nil {
		return bad("is not a valid URL")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "ldaps" && scheme != "ldap":
		return bad("must start with ldaps:// or ldap://")
	case u.Opaque != "":
		return bad("must start with ldaps:// or ldap://")
	case u.User != nil:
		return bad("must not contain a user name or password (use bind_dn and a password source)")
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return bad("has a path or query; set the DN to search in base_dn and the filter in filter")
	case u.Hostname() == "":
		return bad("names no host")
	}
	host := u.Hostname()
	if net.ParseIP(host) == nil {
		h, ok := deliver.NormalizeDomain(host)
		if !ok || len(h) > 253 || strings.ContainsAny(h, " /\\@[%") {
			return bad("names no valid host")
		}
		host = h
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad("has a port that is not between 1 and 65535")
		}
		return scheme + "://" + net.JoinHostPort(host, port)
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host
}

// bindDN checks bind_dn: a DN, or the two other names Active Directory
// accepts in a simple bind, a user principal name (popfetch@example.com)
// and a down-level logon name (EXAMPLE\popfetch).
func (p *parser) bindDN(v string, rng hcl.Range) {
	why := checkDNChars(v)
	switch {
	case why != "":
	case strings.Contains(v, "="):
		why = checkDN(v)
	case !strings.ContainsAny(v, "@\\"):
		why = fmt.Sprintf("%q is not a DN", v)
	}
	if why != "" {
		p.errorf(rng, "Invalid bind_dn",
			`bind_dn %s; write the DN to bind as, such as "CN=popfetch,OU=Service,DC=example,DC=com" (Active Directory also takes "popfetch@example.com"), or leave bind_dn out for an anonymous bind.`, why)
	}
}

// checkDNChars says why a DN or bind name cannot be one: empty, too
// long, or holding a control character. It returns "" if none applies.
func checkDNChars(v string) string {
	switch {
	case strings.TrimSpace(v) == "":
		return "is empty"
	case len(v) > maxDN:
		return fmt.Sprintf("is %d bytes long; at most %d are allowed", len(v), maxDN)
	case !utf8.ValidString(v):
		return "is not valid UTF-8"
	case strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return "contains a control character"
	}
	return ""
}

// checkDN checks a distinguished name in the string form of RFC 4514 §3:
// RDNs separated by ",", each one or more attributeTypeAndValue joined by
// "+", each an attribute type (a descriptor or a numeric OID), "=" and a
// value, either a string whose special characters (" + , ; < > \ and a
// leading # or space) are escaped as \c or \HH, or # and the hex of a
// BER-encoded string. Spaces around types and values are allowed, as
// LDAP clients (go-ldap's ParseDN, which the directory load runs) accept
// them. It is stricter than go-ldap where go-ldap accepts what RFC 4514
// does not (";" as a separator, an unescaped leading #), so that anything
// it accepts also loads. It returns "" for a DN, else why not.
func checkDN(v string) string {
	if why := checkDNChars(v); why != "" {
		return why
	}
	notDN := func(why string) string { return fmt.Sprintf("%q is not a DN (%s)", v, why) }
	rdn := 1
	for _, rd := range splitDN(v, ',') {
		for _, atv := range splitDN(rd, '+') {
			typ, val, ok := strings.Cut(atv, "=")
			typ = strings.Trim(typ, " ")
			switch {
			case strings.Trim(atv, " ") == "" && len(rd) == len(atv):
				return notDN(fmt.Sprintf("RDN %d is empty: a DN must not start or end with a comma or hold two in a row", rdn))
			case strings.Trim(atv, " ") == "":
				return notDN(fmt.Sprintf("RDN %d has an empty part around +", rdn))
			case !ok || !ldapAttrRE().MatchString(typ):
				return notDN(fmt.Sprintf("RDN %d must start with an attribute and =, as in DC=example", rdn))
			}
			if why := checkDNValue(val); why != "" {
				return notDN(fmt.Sprintf("the value of %s in RDN %d %s", typ, rdn, why))
			}
		}
		rdn++
	}
	return ""
}

// splitDN splits s at each sep that no backslash escapes.
func splitDN(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// checkDNValue checks an attribute value of a DN (RFC 4514 §3), with the
// spaces around it: "" if it is one, else why not.
func checkDNValue(v string) string {
	if strings.HasPrefix(v, "#") {
		b, err := hex.DecodeString(v[1:])
		if err != nil || !berString(b) {
			return "after # is not the hex of a BER-encoded string (such as #04024869)"
		}
		return ""
	}
	v = strings.TrimLeft(v, " ")
	// Trailing spaces go, unless escaped (an odd run of backslashes).
	for strings.HasSuffix(v, " ") {
		bs := len(v) - 1 - len(strings.TrimRight(v[:len(v)-1], "\\"))
		if bs%2 == 1 {
			break
		}
		v = v[:len(v)-1]
	}
	if strings.HasPrefix(v, "#") {
		return `starts with a # after a space (escape it as \#)`
	}
	var dec []byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && i+1 < len(v) && strings.IndexByte(` "#+,;<=>\\`, v[i+1]) >= 0:
			dec = append(dec, v[i+1])
			i++
		case c == '\\' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]):
			b, _ := hex.DecodeString(v[i+1 : i+3])
			dec = append(dec, b...)
			i += 2
		case c == '\\':
			return `has a \ that is not followed by a special character or two hex digits (write \\ for a backslash)`
		case strings.IndexByte(`";<>`, c) >= 0:
			return fmt.Sprintf(`has an unescaped %q (write it as \%c)`, c, c)
		default:
			dec = append(dec, c)
		}
	}
	if !utf8.Valid(dec) {
		return "is not UTF-8 once its \\HH escapes are decoded"
	}
	return ""
}

// berString reports whether b is one BER-encoded OCTET STRING or
// UTF8String (X.690 §8.7, §8.23) holding UTF-8, with a definite length
// in the fewest octets, and nothing after it: the #hex form of a DN
// value that RFC 4514 §2.4 writes for a string.
func berString(b []byte) bool {
	if len(b) < 2 || (b[0] != 0x04 && b[0] != 0x0c) {
		return false
	}
	n, rest := int(b[1]), b[2:]
	switch {
	case b[1] < 0x80:
	case b[1] == 0x81 && len(b) >= 3 && b[2] >= 0x80:
		n, rest = int(b[2]), b[3:]
	case b[1] == 0x82 && len(b) >= 4 && b[2] != 0:
		n, rest = int(b[2])<<8|int(b[3]), b[4:]
	default:
		return false
	}
	return n == len(rest) && utf8.Valid(rest)
}

// ldapAttr checks an attribute name setting; it says whether it is one.
func (p *parser) ldapAttr(v string, rng hcl.Range, name string) bool {
	if ldapAttrRE().MatchString(v) && len(v) <= 256 {
		return true
	}
	p.errorf(rng, "Invalid "+name,
		`%q is not an LDAP attribute name; %s takes a letter followed by letters, digits and hyphens (such as "mail" or "sAMAccountName"), or an OID.`, v, name)
	return false
}

// ldapFilter checks a filter setting with checkFilter.
func (p *parser) ldapFilter(v string, rng hcl.Range, name string) {
	if err := checkFilter(v); err != nil {
		p.errorf(rng, "Invalid "+name,
			`%s is not an LDAP search filter (RFC 4515): %v; write e.g. "(objectClass=person)" or "(&(objectClass=inetOrgPerson)(mail=*))".`, name, err)
	}
}

// checkFilter reports why s is not a search filter in the string form of
// RFC 4515 §3, or nil: parenthesised and balanced, & and | followed by
// one or more filters (RFC 4526's absolute true "(&)" and false "(|)"
// are refused: one reads every entry as a user, the other none), ! by one, each
// item an attribute description, an operator (= ~= >= <= or an
// extensible :rule:=) and a value whose (, ), \ and, outside =, * are
// escaped as \HH. It refuses what go-ldap's CompileFilter (which the LDAP
// client runs) refuses: a missing parenthesis or operator, a bad escape,
// invalid UTF-8 or U+FFFD; and also what go-ldap would send on with
// another meaning than the one written, such as an unescaped parenthesis
// in a value or an empty attribute name, which the server would then
// answer with an error or no entries at every refresh.
func checkFilter(s string) error {
	switch {
	case s == "":
		return errors.New("it is empty")
	case len(s) > maxFilter:
		return fmt.Errorf("it is %d bytes long; at most %d are allowed", len(s), maxFilter)
	case !utf8.ValidString(s):
		return errors.New("it is not valid UTF-8")
	case strings.ContainsRune(s, utf8.RuneError):
		// go-ldap's CompileFilter takes U+FFFD for a decoding error.
		return errors.New(`it contains U+FFFD (write it as \ef\bf\bd)`)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return fmt.Errorf("it contains a control character or line break at position %d", utf8.RuneCountInString(s[:i])+1)
	}
	f := filterParser{s: s}
	if err := f.filter(0); err != nil {
		return err
	}
	if f.pos < len(s) {
		return f.errorf("%q after the end of the filter (combine filters with (&...) or (|...))", s[f.pos:])
	}
	return nil
}

// filterParser is checkFilter's recursive descent over s.
type filterParser struct {
	s   string
	pos int // byte offset of the next character
}

// errorf reports a problem at the current position, counted in
// characters from 1 as an editor shows them.
func (f *filterParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at position %d: "+format, append([]any{utf8.RuneCountInString(f.s[:f.pos]) + 1}, args...)...)
}

func (f *filterParser) filter(depth int) error {
	if depth > maxFilterDepth {
		return f.errorf("filters are nested more than %d deep", maxFilterDepth)
	}
	if f.pos >= len(f.s) {
		return f.errorf("the filter ends where a ( is needed")
	}
	if f.s[f.pos] != '(' {
		return f.errorf("expected (, found %q", f.s[f.pos:f.pos+1])
	}
	f.pos++
	if f.pos >= len(f.s) {
		return f.errorf("the filter ends after (")
	}
	switch f.s[f.pos] {
	case '&', '|':
		op := f.s[f.pos]
		f.pos++
		n := 0
		for f.pos < len(f.s) && f.s[f.pos] == '(' {
			if err := f.filter(depth + 1); err != nil {
				return err
			}
			n++
		}
		if n == 0 && f.pos < len(f.s) && f.s[f.pos] == ')' {
			// RFC 4526's absolute true and false: (&) reads every
			// entry under base_dn as a user, (|) none, and servers
			// without the extension refuse both.
			f.pos--
			if op == '&' {
				return f.errorf("(&) with no filter inside matches every entry (write the filters to combine inside it)")
			}
			return f.errorf("(|) with no filter inside matches nothing (write the filters to combine inside it)")
		}
	case '!':
		f.pos++
		if err := f.filter(depth + 1); err != nil {
			return err
		}
	default:
		if err := f.item(); err != nil {
			return err
		}
	}
	if f.pos >= len(f.s) {
		return f.errorf("a ) is missing at the end")
	}
	if f.s[f.pos] != ')' {
		return f.errorf("expected ), found %q", f.s[f.pos:f.pos+1])
	}
	f.pos++
	return nil
}

// item checks attr op value up to the next ")".
func (f *filterParser) item() error {
	start := f.pos
	end := strings.IndexAny(f.s[start:], "()")
	if end < 0 {
		f.pos = len(f.s)
		return f.errorf("a ) is missing at the end")
	}
	end += start
	if f.s[end] == '(' {
		f.pos = end
		return f.errorf(`( inside a value must be written \28`)
	}
	item := f.s[start:end]
	eq := strings.IndexByte(item, '=')
	if eq < 0 {
		return f.errorf("%q has no = (write attribute=value)", item)
	}
	left, value := item[:eq], item[eq+1:]
	star := false
	switch {
	case strings.HasSuffix(left, "~"), strings.HasSuffix(left, ">"), strings.HasSuffix(left, "<"):
		if err := f.attrDesc(left[:len(left)-1], start); err != nil {
			return err
		}
	case strings.HasSuffix(left, ":"):
		if err := f.extensible(left[:len(left)-1], start); err != nil {
			return err
		}
	default:
		if err := f.attrDesc(left, start); err != nil {
			return err
		}
		star = true // presence (attr=*) and substrings
	}
	if err := f.value(value, start+eq+1, star); err != nil {
		return err
	}
	f.pos = end
	return nil
}

// attrDesc checks the attribute description a that starts at byte at.
func (f *filterParser) attrDesc(a string, at int) error {
	if ldapAttrDescRE().MatchString(a) {
		return nil
	}
	f.pos = at
	if a == "" {
		return f.errorf("an attribute name is missing before the operator")
	}
	return f.errorf("%q is not an attribute name", a)
}

// extensible checks the part of an extensible match before ":=":
// attr[:dn][:rule] or [:dn]:rule (RFC 4515 §3).
func (f *filterParser) extensible(left string, at int) error {
	parts := strings.Split(left, ":")
	attr, rest := parts[0], parts[1:]
	if len(rest) > 0 && strings.EqualFold(rest[0], "dn") {
		rest = rest[1:]
	}
	if len(rest) > 1 {
		f.pos = at
		return f.errorf("%q is not attr[:dn][:rule]:=value", left+":=")
	}
	if len(rest) == 1 && !ldapAttrRE().MatchString(rest[0]) {
		f.pos = at
		return f.errorf("%q is not a matching rule (a name or an OID)", rest[0])
	}
	if attr == "" {
		if len(rest) == 0 {
			f.pos = at
			return f.errorf("an extensible match needs an attribute or a matching rule before :=")
		}
		return nil
	}
	return f.attrDesc(attr, at)
}

// value checks an assertion value that starts at byte at: every \ starts
// a \HH escape, and * is allowed only where star says (after a plain =).
func (f *filterParser) value(v string, at int, star bool) error {
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if i+2 >= len(v) || !isHex(v[i+1]) || !isHex(v[i+2]) {
				f.pos = at + i
				return f.errorf(`\ must start an escape of two hex digits, such as \2a for * or \5c for \`)
			}
			i += 2
		case '*':
			if !star {
				f.pos = at + i
				return f.errorf(`* is only a wildcard after =; write \2a for a literal *`)
			}
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
