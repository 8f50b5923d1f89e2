package deliver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Version is stamped into trace headers; cmd overrides it at link time.
var Version = "dev"

// Recipient is one local delivery of a message: a user of a multidrop
// domain, or the single owner of a single-drop account (User and Address
// may then be empty).
type Recipient struct {
	User    string // local user name, {user}
	Address string // the address that routed the message here, {address}
	Domain  string // its domain, {domain}
}

// Target is one destination (a Maildir, an MDA, an SMTP/LMTP server).
// Deliver returns one result per recipient, in order; nil means that copy is
// durably delivered (Maildir: file and directory fsynced; MDA: exit 0; SMTP:
// 2xx after the final dot). A non-nil result should be an *Error saying
// whether the failure is temporary or permanent.
//
// extra are header fields written in front of the message for every copy
// (e.g. X-Popfetch-Reason for the postmaster); targets add the Received:
// trace field themselves and, where one copy serves one recipient,
// Delivered-To.
type Target interface {
	Deliver(ctx context.Context, m *Message, sender string, rcpts []Recipient, extra []Field) []error
}

// Field is one header field popfetch adds. Value must already be safe: no
// CR or LF (use SafeValue on anything derived from the message or server).
type Field struct {
	Name, Value string
}

// SafeValue makes s fit for a header field value: CR, LF, NUL and other
// control characters become spaces, and it is cut to max bytes.
func SafeValue(s string, max int) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			b[i] = ' '
		}
	}
	if max < 0 {
		max = 0
	}
	if len(b) > max {
		// Cut at a rune boundary: a split UTF-8 sequence would leave an
		// invalid byte at the end of the field for every reader to trip on.
		n := max
		for n > 0 && n > max-utf8.UTFMax && !utf8.RuneStart(b[n]) {
			n--
		}
		if !utf8.RuneStart(b[n]) {
			n = max // not UTF-8 anyway: a plain byte cut
		}
		b = b[:n]
	}
	return string(b)
}

// Received returns popfetch's trace field for a copy of m (RFC 5321 §4.4
// style, as fetchmail writes it): the POP3 server it came from, the local
// host, the account and the UID, so an admin can find the source of any
// delivered message. for is the recipient address, or "".
func Received(m *Message, localHost, forAddr string) Field {
	var b strings.Builder
	fmt.Fprintf(&b, "from %s\r\n\tby %s with POP3 (popfetch %s)", host(m.Server), host(localHost), Version)
	fmt.Fprintf(&b, "\r\n\t(account %s, user %s, uid %s)", comment(m.Account), comment(m.User), comment(m.UID))
	if forAddr != "" {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", addrToken.Replace(SafeValue(forAddr, 320)))
	}
	t := m.Fetched
	if t.IsZero() {
		t = time.Now()
	}
	fmt.Fprintf(&b, ";\r\n\t%s", t.Format(time.RFC1123Z))
	return Field{Name: "Received", Value: b.String()}
}

// hostToken neutralises what would end or restructure the "from"/"by"
// clause of a Received field: a space would start a new token, parentheses
// a comment, ';' the date (RFC 5322 §3.6.7 received-token). Host names and
// address literals ("[2001:db8::1]") never contain these.
var hostToken = strings.NewReplacer(" ", "_", "\t", "_", "(", "_", ")", "_", ";", "_", `\`, "_", `"`, "_", "<", "_", ">", "_")

// addrToken does the same for the "for <...>" clause: an address with
// parentheses, angle brackets or ';' (a routing bug or a hostile header)
// must not open a comment that swallows the date, close the angle-addr
// early or look like the date separator to parsers that split on ';'. The
// exact address stays in Delivered-To.
var addrToken = strings.NewReplacer("(", "_", ")", "_", "<", "_", ">", "_", ";", "_")

// host makes a server or local host name fit for a Received clause.
func host(s string) string {
	s = hostToken.Replace(strings.TrimSpace(SafeValue(s, 255)))
	if s == "" {
		return "unknown"
	}
	return s
}

// comment quotes s for use inside an RFC 5322 comment.
func comment(s string) string {
	s = SafeValue(s, 200)
	r := strings.NewReplacer(`\`, `\\`, `(`, `\(`, `)`, `\)`)
	return r.Replace(s)
}

// Open returns the copy of m a target writes: the fields in order, then the
// message. With lf the copy uses bare LF line endings (Maildir, MDA: the Unix
// convention); otherwise every line ends in CRLF, and bare CR or LF inside
// the message are normalised to CRLF (SMTP smuggling, RFC 5321 §2.3.8).
func Open(m *Message, fields []Field, lf bool) io.Reader {
	var h bytes.Buffer
	for _, f := range fields {
		h.WriteString(f.Name)
		h.WriteString(": ")
		writeValue(&h, f.Value)
		h.WriteString("\r\n")
	}
	rs := []io.Reader{&h, bytes.NewReader(m.Raw)}
	// A final bare CR is already a line end for the eolReader; adding CRLF
	// after it would append an empty line to the message.
	if n := len(m.Raw); n > 0 && m.Raw[n-1] != '\n' && m.Raw[n-1] != '\r' {
		rs = append(rs, strings.NewReader("\r\n"))
	}
	return &eolReader{r: io.MultiReader(rs...), lf: lf}
}

// writeValue writes a field value, keeping every line break in it a fold:
// a break and the white space and breaks after it become CRLF and one tab,
// and a trailing break is dropped. Values are meant to be safe already
// (SafeValue), but a field built from, say, a server's reply text must
// never be able to start a header field of its own, nor hold an empty or
// blank continuation line, which some parsers take as the end of the header.
func writeValue(h *bytes.Buffer, v string) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\r' && c != '\n' {
			h.WriteByte(c)
			continue
		}
		for i+1 < len(v) && strings.IndexByte("\r\n \t", v[i+1]) >= 0 {
			i++
		}
		if i+1 < len(v) {
			h.WriteString("\r\n\t")
		}
	}
}

// eolReader rewrites line endings: CRLF, bare CR and bare LF all become LF
// (lf) or CRLF (!lf).
type eolReader struct {
	r       io.Reader
	lf      bool
	buf     [32 << 10]byte
	out     []byte
	pending []byte
	lastCR  bool // the previous chunk ended in CR: a following LF belongs to it
	err     error
}

func (e *eolReader) Read(p []byte) (int, error) {
	for len(e.pending) == 0 {
		if e.err != nil {
			return 0, e.err
		}
		n, err := e.r.Read(e.buf[:])
		e.out = e.out[:0]
		for _, c := range e.buf[:n] {
			switch {
			case c == '\n' && e.lastCR:
				e.lastCR = false // already emitted for the CR
			case c == '\r' || c == '\n':
				e.out = e.eol(e.out)
				e.lastCR = c == '\r'
			default:
				e.lastCR = false
				e.out = append(e.out, c)
			}
		}
		e.pending = e.out
		e.err = err
	}
	n := copy(p, e.pending)
	e.pending = e.pending[n:]
	return n, nil
}

func (e *eolReader) eol(b []byte) []byte {
	if e.lf {
		return append(b, '\n')
	}
	return append(b, '\r', '\n')
}
