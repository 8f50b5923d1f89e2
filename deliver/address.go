package deliver

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"
	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// The RFC 5322 address parser of routing (one parser: the Directory and
// the rc file use its NormalizeDomain too). Addresses are parsed in two
// steps. splitList, this file's own single left-to-right scan (no
// recursion, linear in the header size, CVE-2002-1365), cuts a header
// value into one piece per mailbox: net/mail (which go-message's
// mail.ParseAddressList wraps) rejects a whole list for one bad address,
// so it cannot do that step without losing the good ones. Each piece then
// goes to go-message's mail.ParseAddress first, the common RFC 5322
// parser, which FuzzAddressParsers holds the own parser to; the addr-spec
// it returns is split at its last '@' and checked like any other
// (parseLocal, NormalizeDomain: length, unsafe characters, NFC, IDNA).
// The own parser (parseMailboxOwn) stays as the fallback for what
// net/mail rejects but the spec requires us to route
// ("joe(comment)@example.com" after splitList's comment removal,
// obs-route "<@relay:joe@example.com>", "joe@example.com."), for quoted
// local parts (net/mail returns them unquoted, so `"joe@x"@example.com`
// would come back as joe@x@example.com and split at the wrong '@'), for
// group syntax (splitList's job: net/mail would accept a nested group), and
// for pieces over maxGoParse bytes, so net/mail's quadratic and
// recursive-descent DoS history (CVE-2025-61725, CVE-2026-39820,
// CVE-2026-42499) cannot cost more than a bounded amount per piece.

// stripComments replaces every RFC 5322 §3.2.2 comment (nested, with
// quoted-pairs) by a space; quoted strings are kept. Linear time.
func stripComments(s string) string {
	var b strings.Builder
	var q commentQuote
	for i := 0; i < len(s); i++ {
		if j, ok := q.step(s, i, &b); ok {
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// commentQuote follows RFC 5322 §3.2.2 comments (nested, with
// quoted-pairs) and §3.2.4 quoted strings through a byte scan, for
// stripComments and splitList: a comment is replaced by one space, a
// quoted string is kept as it is.
type commentQuote struct {
	depth   int // comment nesting
	inQuote bool
}

// step takes s[i] if it is inside or opens a comment or a quoted string,
// writing what is kept to b, and returns the index of the last byte it
// used; ok is false, and nothing is written, for any other byte.
func (q *commentQuote) step(s string, i int, b *strings.Builder) (last int, ok bool) {
	c := s[i]
	switch {
	case q.depth > 0:
		switch c {
		case '\\':
			i++
		case '(':
			q.depth++
		case ')':
			q.depth--
			if q.depth == 0 {
				b.WriteByte(' ')
			}
		}
	case q.inQuote:
		b.WriteByte(c)
		if c == '\\' && i+1 < len(s) {
			i++
			b.WriteByte(s[i])
		} else if c == '"' {
			q.inQuote = false
		}
	case c == '(':
		q.depth = 1
	case c == '"':
		q.inQuote = true
		b.WriteByte(c)
	default:
		return i, false
	}
	return i, true
}

// open reports an unterminated comment or quoted string.
func (q *commentQuote) open() bool { return q.depth > 0 || q.inQuote }

// splitList splits an RFC 5322 §3.4 address-list into one string per
// mailbox, in one pass: commas outside quotes, comments, domain literals
// and angle brackets separate mailboxes; "name:" opens a group whose members
// are returned and ";" closes it; comments are replaced by a space (so no
// address is ever taken from a comment). bad marks a piece that is
// syntactically broken (unterminated quote, comment, literal or angle
// address). emit returns false to stop (the recipient cap). Splitting at
// this level means one bad address costs only itself.
func splitList(s string, emit func(piece string, bad bool) bool) {
	var b strings.Builder
	var q commentQuote
	inLit, inAngle, inGroup := false, false, false
	flush := func(bad bool) bool {
		p := b.String()
		b.Reset()
		return emit(p, bad)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if inLit {
			// A domain literal (RFC 5322 §3.4.1) holds no comment or
			// quoted string.
			b.WriteByte(c)
			if c == ']' {
				inLit = false
			}
			continue
		}
		if j, ok := q.step(s, i, &b); ok {
			i = j
			continue
		}
		switch c {
		case '[':
			inLit = true
			b.WriteByte(c)
		case '<':
			inAngle = true
			b.WriteByte(c)
		case '>':
			inAngle = false
			b.WriteByte(c)
		case ',':
			if inAngle {
				b.WriteByte(c)
			} else if !flush(false) {
				return
			}
		case ':':
			if !inAngle && !inGroup {
				// RFC 5322 §3.4 group: the display name
				// before ':' is discarded, members follow.
				b.Reset()
				inGroup = true
			} else {
				b.WriteByte(c)
			}
		case ';':
			if !inAngle && inGroup {
				inGroup = false
				if !flush(false) {
					return
				}
			} else {
				b.WriteByte(c)
			}
		default:
			b.WriteByte(c)
		}
	}
	flush(q.open() || inLit || inAngle)
}

// addr is one parsed mailbox.
type addr struct {
	local  string // canonical local part: dot-atom, or a quoted-string with quotes
	domain string // lower-case A-label, or a domain literal "[...]"
	quoted bool
	empty  bool // nothing there (an empty group, a trailing comma)
}

// String is the canonical address, safe for RCPT, argv and Delivered-To:
// no whitespace or control characters.
func (a addr) String() string { return a.local + "@" + a.domain }

// parseMailbox parses one piece from splitList: an addr-spec, or an
// angle-addr with an ignored display name in front (RFC 5322 §3.4). The
// display name is never looked at, so `"admin@example.com" <eve@evil.test>`
// yields eve@evil.test only. go-message's parser is tried first, this
// file's own parser is the fallback (see the top of this file).
func parseMailbox(p string) (addr, bool) {
	p = trimWSP(p)
	if p == "" {
		return addr{empty: true}, true
	}
	for i := 0; i < len(p); i++ {
		// A bare CR, LF or NUL has no place in a header value (RFC 5322
		// §2.2, §3.5); such an address is rejected, not cleaned up, so
		// that CR/LF can never reach RCPT, argv or a path.
		if c := p[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return addr{}, false
		}
	}
	if a, ok, used := parseMailboxGo(p); used {
		return a, ok
	}
	return parseMailboxOwn(p)
}

// parseMailboxGo parses p with go-message's mail.ParseAddress. used is
// false when the own parser must decide instead: p is too long, has group
// syntax or a quoted local part, or go-message rejects it. When used, ok
// says whether the addr-spec passed the same local-part and domain checks
// the own parser applies.
func parseMailboxGo(p string) (a addr, ok, used bool) {
	if len(p) > maxGoParse || strings.IndexByte(p, ':') >= 0 {
		// ':' is a group (splitList already opened the only one
		// allowed; net/mail would accept a nested one) or an
		// obs-route, which net/mail rejects anyway.
		return addr{}, false, false
	}
	spec := p
	if lt := indexUnquoted(p, '<'); lt >= 0 {
		spec = p[lt:]
	}
	if strings.IndexByte(spec, '"') >= 0 {
		// net/mail returns a quoted local part unquoted: "joe@x"@y
		// would come back as joe@x@y.
		return addr{}, false, false
	}
	ma, err := mail.ParseAddress(p)
	if err != nil {
		return addr{}, false, false
	}
	at := strings.LastIndexByte(ma.Address, '@')
	if at <= 0 {
		return addr{}, false, false
	}
	local, quoted, ok := parseLocal(ma.Address[:at])
	if !ok {
		return addr{}, false, true
	}
	dom, ok := NormalizeDomain(ma.Address[at+1:])
	if !ok {
		return addr{}, false, true
	}
	return addr{local: local, domain: dom, quoted: quoted}, true, true
}

// parseMailboxOwn is this file's own parser for one piece (control
// characters already rejected by parseMailbox). An obs-route (§4.4,
// "<@relay:joe@x>") is dropped in favour of the final addr-spec.
func parseMailboxOwn(p string) (addr, bool) {
	spec := p
	if lt := indexUnquoted(p, '<'); lt >= 0 {
		rest := p[lt+1:]
		gt := indexUnquoted(rest, '>')
		if gt < 0 || trimWSP(rest[gt+1:]) != "" {
			return addr{}, false
		}
		spec = trimWSP(rest[:gt])
		if strings.HasPrefix(spec, "@") {
			colon := indexUnquoted(spec, ':')
			if colon < 0 {
				return addr{}, false
			}
			spec = trimWSP(spec[colon+1:])
		}
		if spec == "" {
			return addr{}, false // "<>" is a null reverse-path, not a recipient
		}
	}
	at := lastAt(spec)
	if at <= 0 || at == len(spec)-1 {
		// "joe", "joe@", "@example.com": no bare local parts (a
		// bare name could mean any domain).
		return addr{}, false
	}
	local, quoted, ok := parseLocal(spec[:at])
	if !ok {
		return addr{}, false
	}
	dom, ok := NormalizeDomain(trimWSP(spec[at+1:]))
	if !ok {
		return addr{}, false
	}
	return addr{local: local, domain: dom, quoted: quoted}, true
}

// trimWSP trims RFC 5234 WSP (space and tab) only; strings.TrimSpace would
// also eat CR, LF and Unicode spaces that must make an address invalid.
func trimWSP(s string) string { return strings.Trim(s, " \t") }

// indexUnquoted returns the index of the first c outside double quotes.
func indexUnquoted(s string, c byte) int {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch {
		case inQuote && s[i] == '\\':
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case !inQuote && s[i] == c:
			return i
		}
	}
	return -1
}

// lastAt returns the index of the last '@' outside quotes and domain
// literals: the local part may be `"joe@other"`, and the split is at the
// last unquoted '@' (RFC 5322 §3.4.1: a quoted local part may hold '@').
func lastAt(s string) int {
	at := -1
	inQuote, inLit := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case inLit:
			if c == ']' {
				inLit = false
			}
		case c == '"':
			inQuote = true
		case c == '[':
			inLit = true
		case c == '@':
			at = i
		}
	}
	return at
}

// parseLocal parses a local part (comments already removed): dot-atom,
// quoted-string, or obs-local-part (words joined by dots, RFC 5322 §4.4).
// The result is canonical: the unquoted form when the content is a valid
// dot-atom (a quoted "joe" is the same mailbox as joe, §3.4.1), otherwise
// the quoted-string, which then matches only an explicit mapping.
// Encoded-words are not decoded (RFC 2047 §5 forbids them in an addr-spec),
// so "=?utf-8?q?root?=" stays that literal atom. Local parts with
// whitespace or control characters, invalid UTF-8, or more than 64 octets
// (RFC 5321 §4.5.3.1.1) are rejected: they could never be safe in a path,
// an argv element or an RCPT command. UTF-8 (RFC 6532) is NFC-normalised.
func parseLocal(s string) (string, bool, bool) {
	s = trimWSP(s)
	if s == "" || len(s) > 4*maxLocalPart {
		return "", false, false
	}
	var content strings.Builder
	quotedAny := false
	word := false // a word was just read; expect '.' or end
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '.':
			if !word {
				return "", false, false // ".x", "a..b"
			}
			content.WriteByte('.')
			word = false
			i++
		case word:
			return "", false, false // two words without a dot: "john doe"
		case c == '"':
			quotedAny = true
			i++
			closed := false
			for i < len(s) {
				c = s[i]
				if c == '\\' && i+1 < len(s) {
					content.WriteByte(s[i+1])
					i += 2
					continue
				}
				i++
				if c == '"' {
					closed = true
					break
				}
				content.WriteByte(c)
			}
			if !closed {
				return "", false, false
			}
			word = true
		case isAtext(c):
			for i < len(s) && isAtext(s[i]) {
				content.WriteByte(s[i])
				i++
			}
			word = true
		default:
			return "", false, false
		}
	}
	if !word {
		return "", false, false // trailing dot
	}
	local := content.String()
	if !utf8.ValidString(local) || hasUnsafe(local) {
		return "", false, false
	}
	if !isASCII(local) && !foldsToASCII(local) {
		// A local part with a rune that NFC or case folding turns into
		// ASCII (KELVIN SIGN → K) stays as written: it must not become
		// another mailbox's ASCII name (see Directory.fold).
		local = norm.NFC.String(local)
	}
	quoted := quotedAny && !isDotAtom(local)
	if quoted {
		local = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(local) + `"`
	}
	if len(local) > maxLocalPart || local == `""` {
		return "", false, false
	}
	return local, quoted, true
}

// isAtext reports RFC 5322 §3.2.3 atext, plus UTF-8 bytes (RFC 6532 §3.2).
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isDotAtom(s string) bool {
	if s == "" {
		return false
	}
	prevDot := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if prevDot {
				return false
			}
			prevDot = true
			continue
		}
		if !isAtext(c) {
			return false
		}
		prevDot = false
	}
	return !prevDot
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// hasUnsafe reports whether s has whitespace or control characters
// (including NUL, CR, LF and their Unicode relatives) or invalid UTF-8:
// such a string must never reach a Recipient field.
func hasUnsafe(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) ||
			unicode.Is(unicode.Cf, r) {
			return true
		}
	}
	return false
}

// idnaProfile maps a domain for comparison the way a resolver would
// (UTS #46 lookup mapping, bidi rule), so bücher.example and
// xn--bcher-kva.example compare equal and a homograph such as exаmple.com
// (Cyrillic а) becomes a different A-label. It is the only IDNA profile in
// popfetch: the rc file's validation normalises configured domains and
// host names through NormalizeDomain too.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.ValidateLabels(true), idna.StrictDomainName(true))

// NormalizeDomain returns the comparison form of a domain: lower-case
// A-labels without a trailing dot (RFC 5321 §2.3.5 names are absolute),
// or a domain literal as written, lower-cased. ok is false for anything
// invalid, including an invalid IDN, an empty label, a label over 63
// octets or a name over 255 (RFC 5321 §4.5.3.1.2): such an address
// matches nothing. It is the one normalisation of mail domains: routing
// applies it to header addresses and to Rules.LocalDomains, the Directory
// to its addresses, and the rc file's validation to local_domains, user
// addresses and the server name, so that what is configured compares
// equal to what routing computes.
func NormalizeDomain(d string) (string, bool) {
	if d == "" || len(d) > 4*maxDomain {
		return "", false
	}
	if d[0] == '[' {
		if len(d) < 3 || d[len(d)-1] != ']' || hasUnsafe(d) || strings.ContainsAny(d[1:len(d)-1], `[]\`) {
			return "", false
		}
		return strings.ToLower(d), true
	}
	d = strings.TrimSuffix(d, ".")
	if d == "" || hasUnsafe(d) || !utf8.ValidString(d) {
		return "", false
	}
	a := strings.ToLower(d)
	if !isASCII(d) || strings.Contains(a, "xn--") {
		// UTS #46 leaves lower-case LDH labels unchanged, so only
		// U-labels and A-labels (whose Punycode must be valid) need
		// the IDNA mapping; this keeps 10^5 plain addresses cheap.
		var err error
		a, err = idnaProfile.ToASCII(d)
		if err != nil || a == "" {
			return "", false
		}
		a = strings.ToLower(a)
	}
	if len(a) > maxDomain {
		return "", false
	}
	for _, l := range strings.Split(a, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", false
			}
		}
	}
	return a, true
}
