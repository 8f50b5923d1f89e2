package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Received is what popfetch takes from the trusted Received: field: the
// client that handed the message to the provider, as the provider
// recorded it. Every string is checked to be a plain host name or an
// address literal (see cleanHost), so none can carry white space, a
// control character, a NUL or a leading '-' into a milter macro or a log.
type Received struct {
	Index      int        // 1-based position of the field from the top
	ClientIP   netip.Addr // invalid when the field names no address
	ClientName string     // the verified reverse name as the provider wrote it; "" when unknown
	Helo       string     // the HELO/EHLO name; "" when the field does not say
	By         string     // the host that wrote the field, lower case, no trailing dot
}

// Trust says which Received: field to trust: the one at Position from
// the top (1 is the topmost, the default), or, when By is set, the
// topmost one whose "by" host is By (case-insensitive, a trailing dot
// ignored) or, for "*.example.com", any host under example.com. Fields
// below the trusted one are written by whoever sent the message and
// prove nothing; so a field that says "by" By but cannot be parsed ends
// the search with no trusted field.
type Trust struct {
	Position int
	By       string
}

// Limits of the Received reader.
const (
	maxReceivedValue  = 4096 // a longer field is not parsed (but counted)
	maxReceivedFields = 200  // fields looked at from the top
)

// ErrNoReceived is returned by TrustedReceived when no field matches.
var ErrNoReceived = errors.New("no trusted Received field")

// TrustedReceived finds the trusted Received field in head (a message's
// header section, as deliver.Message.Head returns it) and parses it. The
// error wraps ErrNoReceived when there is no such field; a field that is
// there but names no client still returns what it does name.
func TrustedReceived(head []byte, t Trust) (Received, error) {
	fields, _ := splitHeader(head[:min(len(head), MaxHeaderBytes)])
	pos := t.Position
	if pos <= 0 {
		pos = 1
	}
	want := normHost(t.By)
	n := 0
	for _, f := range fields {
		if !strings.EqualFold(f.Name, "Received") {
			continue
		}
		n++
		if n > maxReceivedFields {
			break
		}
		if want == "" && n != pos {
			continue
		}
		v := f.unfolded()
		if len(v) > maxReceivedValue {
			if want == "" {
				return Received{Index: n}, fmt.Errorf("received field %d longer than %d bytes", n, maxReceivedValue)
			}
			if saysBy(v, want) {
				return Received{Index: n}, fmt.Errorf("%w: received field %d by %s is longer than %d bytes", ErrNoReceived, n, want, maxReceivedValue)
			}
			continue
		}
		r := ParseReceived(v)
		r.Index = n
		if want != "" && !hostMatches(r.By, want) {
			// The trusted host's own field, unparseable because the
			// sender's part of it (a HELO with '(' or ';') broke it,
			// ends the search: the fields below are the sender's, and
			// one forged "by" that host would be believed.
			if saysBy(v, want) {
				return Received{Index: n}, fmt.Errorf("%w: received field %d by %s cannot be parsed", ErrNoReceived, n, want)
			}
			continue
		}
		return r, nil
	}
	if want != "" {
		return Received{}, fmt.Errorf("%w: none by %s", ErrNoReceived, want)
	}
	return Received{}, fmt.Errorf("%w: %d Received fields, position %d wanted", ErrNoReceived, n, pos)
}

// saysBy reports whether the Received value v has the word "by" followed
// by a host that matches want, read as plain words: comments, quotes and
// the date's ';' ignored.
func saysBy(v, want string) bool {
	words := strings.FieldsFunc(v, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n' || r == '(' || r == ')' || r == ';' || r == '"'
	})
	for i := 0; i+1 < len(words); i++ {
		if strings.EqualFold(words[i], "by") && hostMatches(normHost(words[i+1]), want) {
			return true
		}
	}
	return false
}

// hostMatches reports whether host is want or, for "*.d", under d.
func hostMatches(host, want string) bool {
	if host == "" {
		return false
	}
	if d, ok := strings.CutPrefix(want, "*."); ok {
		return strings.HasSuffix(host, "."+d)
	}
	return host == want
}

func normHost(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// rtoken is one token of a Received value: a word, or a comment (the text
// inside the parentheses, nested comments flattened to their words).
type rtoken struct {
	text    string
	comment bool
}

// tokenize splits a Received value (before the ';' of the date) into words
// and comments (RFC 5322 §3.2.2: nested, with quoted-pairs). Quoted strings
// and angle addresses are words. Linear in len(v).
func tokenize(v string) []rtoken {
	var toks []rtoken
	var cur strings.Builder
	depth := 0
	flush := func(comment bool) {
		if cur.Len() > 0 {
			toks = append(toks, rtoken{text: cur.String(), comment: comment})
			cur.Reset()
		}
	}
	inQuote := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case depth > 0:
			switch c {
			case '\\':
				if i+1 < len(v) {
					i++
					cur.WriteByte(v[i])
				}
			case '(':
				depth++
				cur.WriteByte(' ')
			case ')':
				depth--
				if depth == 0 {
					flush(true)
				} else {
					cur.WriteByte(' ')
				}
			default:
				cur.WriteByte(c)
			}
		case inQuote:
			cur.WriteByte(c)
			if c == '\\' && i+1 < len(v) {
				i++
				cur.WriteByte(v[i])
			} else if c == '"' {
				inQuote = false
			}
		case c == '(':
			flush(false)
			depth = 1
		case c == '"':
			cur.WriteByte(c)
			inQuote = true
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			flush(false)
		case c == ';':
			flush(false)
			return toks // the date follows
		default:
			cur.WriteByte(c)
		}
	}
	flush(depth > 0)
	return toks
}

// ParseReceived parses one unfolded Received value (RFC 5321 §4.4
// Stamp, RFC 5322 §3.6.7) as the usual MTAs write it:
//
//	Postfix, Gmail: from HELO (RDNS [IP]) by HOST ...   ("unknown" RDNS: none)
//	Sendmail:       from HELO (ident@RDNS [IP] (may be forged)) by HOST ...
//	Exim:           from RDNS ([IP]:port helo=HELO) by HOST ... (Exim 4.96)
//	                from [IP] (port=N helo=HELO) by HOST ...
//	Exchange:       from HELO (IP) by HOST (IP) with Microsoft SMTP Server ...
//	qmail:          from RDNS (HELO name) (IP) by HOST with SMTP
//	dovecot-lmtp:   from LHLO ([IP]) by HOST with LMTP ...
//
// Anything it does not recognise is left empty; it never fails.
func ParseReceived(v string) Received {
	toks := tokenize(v)
	var r Received
	// The clauses: "from" and "by", each a word and the comments after it.
	exim := false
	for _, t := range toks {
		if t.comment && strings.HasPrefix(strings.ToLower(t.text), "exim ") {
			exim = true
		}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.comment || i+1 >= len(toks) || toks[i+1].comment {
			continue
		}
		switch strings.ToLower(t.text) {
		case "by":
			if r.By == "" {
				if h, ok := cleanHost(toks[i+1].text); ok {
					r.By = normHost(h)
				}
			}
			i++
		case "from":
			if r.Helo != "" || r.ClientIP.IsValid() {
				continue // a second "from" clause: keep the first
			}
			j := i + 2
			for j < len(toks) && toks[j].comment {
				j++
			}
			r.from(toks[i+1].text, toks[i+2:j], exim)
			i = j - 1
		}
	}
	return r
}

// from fills r from the from clause: its word and the comments after it.
func (r *Received) from(word string, comments []rtoken, exim bool) {
	var name, helo string
	var ip netip.Addr
	heloInComment := false
	forged := false
	for _, c := range comments {
		words := strings.Fields(c.text)
		for k := 0; k < len(words); k++ {
			w := words[k]
			lw := strings.ToLower(w)
			switch {
			case strings.HasPrefix(lw, "helo="):
				helo, heloInComment = w[5:], true
			case lw == "helo" && k+1 < len(words): // qmail "(HELO name)"
				k++
				helo, heloInComment = words[k], true
			case lw == "may" || lw == "forged" || lw == "be":
				forged = forged || lw == "forged"
			case strings.HasPrefix(lw, "port=") || strings.HasPrefix(lw, "ident="):
			default:
				if a, ok := parseLiteral(w); ok {
					if !ip.IsValid() {
						ip = a
					}
					continue
				}
				if name == "" && !ip.IsValid() {
					// "ident@rdns" (sendmail's RFC 1413 user) or "rdns".
					if at := strings.LastIndexByte(w, '@'); at >= 0 {
						w = w[at+1:]
					}
					name = w
				}
			}
		}
	}
	// The first word: the HELO name, except where the comment says the
	// HELO itself (Exim helo=, qmail HELO) or Exim wrote its verified
	// reverse name there (Exim omits helo= when it equals that name).
	switch {
	case heloInComment || exim:
		if a, ok := parseLiteral(word); ok {
			if !ip.IsValid() {
				ip = a
			}
		} else {
			name = word
		}
		if !heloInComment {
			helo = word
		}
	default:
		helo = word
	}
	if strings.EqualFold(name, "unknown") || forged {
		name = ""
	}
	if h, ok := cleanHost(name); ok && name != "" {
		if _, lit := parseLiteral(h); !lit {
			r.ClientName = strings.TrimSuffix(h, ".")
		}
	}
	if h, ok := cleanHost(helo); ok && !strings.EqualFold(h, "unknown") {
		r.Helo = h
	}
	r.ClientIP = ip
}

// parseLiteral parses an address as Received fields write it:
// "[192.0.2.1]", "[IPv6:2001:db8::1]", "[2001:db8::1]", either followed by
// ":port", or bare ("192.0.2.1", "2001:db8::1", Exchange's style).
func parseLiteral(w string) (netip.Addr, bool) {
	s := w
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		rest := s[end+1:]
		if rest != "" && (rest[0] != ':' || !allDigits(rest[1:])) {
			return netip.Addr{}, false
		}
		s = s[1:end]
		if len(s) > 5 && strings.EqualFold(s[:5], "ipv6:") {
			s = s[5:]
		}
	}
	if strings.IndexByte(s, '%') >= 0 { // no zones: not an address a provider records
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func allDigits(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// cleanHost accepts a host name or an address literal as a HELO or
// reverse name may be: 1 to 255 bytes of letters, digits, '.', '-', '_'
// (seen in real HELOs), or a bracketed literal of hex digits, '.', ':'
// and "IPv6:"; not starting with '-' or '.'. Anything else (white space,
// control characters, quotes, a leading '-') is refused, so a value taken
// from the message can never be more than one harmless token.
func cleanHost(s string) (string, bool) {
	if s == "" || len(s) > 255 || s[0] == '-' || s[0] == '.' {
		return "", false
	}
	if s[0] == '[' {
		if _, ok := parseLiteral(s); ok && !strings.Contains(s, "]:") {
			return s, true
		}
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", false
		}
	}
	return s, true
}
