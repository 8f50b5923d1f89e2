package deliver

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
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
// durably delivered (Maildir: file and directory fsynced; MDA: exit 0;
// SMTP/LMTP: 250 after the final dot, read in step). A non-nil result should be an *Error saying
// whether the failure is temporary or permanent. A Reporter can also
// report each result as soon as it is final (DeliverReporting).
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
	if len(s) <= max && !hasControl(s) {
		return s // the usual case, without copying
	}
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

// hasControl reports whether s holds a byte SafeValue replaces.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

// Received returns popfetch's trace field for a copy of m (RFC 5321 §4.4
// style, as fetchmail writes it): the POP3 server it came from, the local
// host, the account and the UID, so an admin can find the source of any
// delivered message. for is the recipient address, or "".
func Received(m *Message, localHost, forAddr string) Field {
	// Built with one allocation for the result (plus what the parts
	// need): it is made for every copy.
	from, by := host(m.Server), host(localHost)
	acct, user, uid := comment(m.Account), comment(m.User), comment(m.UID)
	var rcpt string
	if forAddr != "" {
		rcpt = addrToken.Replace(SafeValue(forAddr, 320))
	}
	t := m.Fetched
	if t.IsZero() {
		t = time.Now()
	}
	var b strings.Builder
	b.Grow(len(from) + len(by) + len(Version) + len(acct) + len(user) + len(uid) + len(rcpt) + 128)
	for _, s := range []string{"from ", from, "\r\n\tby ", by, " with POP3 (popfetch ", Version,
		")\r\n\t(account ", acct, ", user ", user, ", uid ", uid, ")"} {
		b.WriteString(s)
	}
	if forAddr != "" {
		b.WriteString("\r\n\tfor <")
		b.WriteString(rcpt)
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	var date [40]byte
	b.Write(t.AppendFormat(date[:0], time.RFC1123Z))
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

// commentQuoter quotes what would end or nest an RFC 5322 comment. One
// for the package: a Replacer is built on first use and safe for
// concurrent use, and building one per call showed in profiles.
var commentQuoter = strings.NewReplacer(`\`, `\\`, `(`, `\(`, `)`, `\)`)

// comment quotes s for use inside an RFC 5322 comment.
func comment(s string) string {
	return commentQuoter.Replace(SafeValue(s, 200))
}

// Open returns the copy of m a target writes: the fields in order, then the
// message. With lf the copy uses bare LF line endings (Maildir, MDA: the Unix
// convention); otherwise every line ends in CRLF, and bare CR or LF inside
// the message are normalised to CRLF (SMTP smuggling, RFC 5321 §2.3.8).
// A message in a spool file is read from it in bounded chunks, so a copy
// costs the same memory whatever the message's size; a read error of the
// spool is the copy's error.
func Open(m *Message, fields []Field, lf bool) io.Reader {
	var h bytes.Buffer
	n := 0
	for _, f := range fields {
		n += len(f.Name) + len(": ") + len(f.Value) + len("\r\n")
	}
	h.Grow(n) // once: only a value with line breaks in it can outgrow it
	for _, f := range fields {
		h.WriteString(f.Name)
		h.WriteString(": ")
		writeValue(&h, f.Value)
		h.WriteString("\r\n")
	}
	mem, src, size := m.source()
	e := &eolReader{src: src, end: size, lf: lf}
	e.first = [2][]byte{h.Bytes(), mem}
	e.segs = e.first[:]
	// A final bare CR is already a line end for the eolReader; adding CRLF
	// after it would append an empty line to the message.
	if m.Size() > 0 {
		if c := m.lastByte(); c != '\n' && c != '\r' {
			e.tail = []byte("\r\n")
		}
	}
	return e
}

// writeValue writes a field value, keeping every line break in it a fold:
// a break and the white space and breaks after it become CRLF and one tab,
// and a trailing break is dropped. Values are meant to be safe already
// (SafeValue), but a field built from, say, a server's reply text must
// never be able to start a header field of its own, nor hold an empty or
// blank continuation line, which some parsers take as the end of the header.
func writeValue(h *bytes.Buffer, v string) {
	for i := 0; i < len(v); i++ {
		if j := strings.IndexAny(v[i:], "\r\n"); j != 0 {
			// The run up to the next break (or the end) as it is.
			if j < 0 {
				j = len(v) - i
			}
			h.WriteString(v[i : i+j])
			i += j - 1
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
// (lf) or CRLF (!lf). It converts straight from the message in memory, a
// run of bytes between line ends at a time, and reads a message in a spool
// file a chunk at a time (a pooled buffer). WriteTo (what io.Copy and
// os/exec use) needs no buffer of its own beyond a pooled one.
type eolReader struct {
	segs     [][]byte    // what is left to convert, in order
	first    [2][]byte   // segs' array at first (Open): no allocation of its own
	one      [1][]byte   // segs' array for a chunk or the tail
	src      io.ReaderAt // then bytes [off, end) of src, nil once read
	off, end int64
	tail     []byte  // then this
	chunk    *[]byte // the buffer src is read into (from chunkBufs)
	err      error   // reading src failed
	lf       bool
	lastCR   bool   // the last segment consumed ended in CR: an LF opening the next belongs to it
	buf      []byte // Read's buffer, allocated on first use
	out      []byte // converted bytes Read has not returned yet
}

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// more makes sure segs holds something to convert, reading the next chunk
// of src when it is empty; false means the input is used up (or a read
// failed: err).
func (e *eolReader) more() bool {
	for len(e.segs) == 0 {
		switch {
		case e.src != nil && e.off < e.end:
			if e.chunk == nil {
				e.chunk = chunkBufs.Get().(*[]byte)
			}
			b := *e.chunk
			if rest := e.end - e.off; rest < int64(len(b)) {
				b = b[:rest]
			}
			n, err := e.src.ReadAt(b, e.off)
			if n < len(b) {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				e.err, e.src = err, nil
				return false
			}
			e.off += int64(n)
			e.one[0] = b
			e.segs = e.one[:]
		case e.src != nil:
			// Nothing references the chunk any more.
			e.src = nil
			chunkBufs.Put(e.chunk)
			e.chunk = nil
		case e.tail != nil:
			e.one[0] = e.tail
			e.segs = e.one[:]
			e.tail = nil
		default:
			return false
		}
	}
	return true
}

// convert appends converted bytes to dst until it holds max bytes or the
// input is used up. dst must have room for max+2 bytes (a line end).
func (e *eolReader) convert(dst []byte, max int) []byte {
	for len(dst) < max && e.more() {
		s := e.segs[0]
		if len(s) > 0 && e.lastCR {
			e.lastCR = false
			if s[0] == '\n' {
				s = s[1:]
			}
		}
		if len(s) == 0 {
			e.segs = e.segs[1:]
			continue
		}
		i := e.lineEnd(s)
		if room := max - len(dst); i > room {
			dst = append(dst, s[:room]...)
			e.segs[0] = s[room:]
			continue
		}
		dst = append(dst, s[:i]...)
		if i < len(s) {
			if e.lf {
				dst = append(dst, '\n')
			} else {
				dst = append(dst, '\r', '\n')
			}
			if s[i] == '\r' {
				if i+1 == len(s) {
					e.lastCR = true // an LF may open the next segment
				} else if s[i+1] == '\n' {
					i++
				}
			}
			i++
		}
		e.segs[0] = s[i:]
	}
	return dst
}

// lineEnd returns the index of the first byte in s that convert must
// rewrite, len(s) if none. For the LF copy that is the first CR: a bare LF
// is already what it writes, so one IndexByte (vectorised) finds it where
// bytes.IndexAny with a set of two bytes goes byte by byte (a quarter of
// the CPU of a 50 MB delivery). The CRLF copy rewrites bare LFs too.
func (e *eolReader) lineEnd(s []byte) int {
	if e.lf {
		if i := bytes.IndexByte(s, '\r'); i >= 0 {
			return i
		}
		return len(s)
	}
	i := bytes.IndexByte(s, '\n')
	if i < 0 {
		i = len(s)
	}
	if j := bytes.IndexByte(s[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

func (e *eolReader) Read(p []byte) (int, error) {
	for len(e.out) == 0 {
		if !e.more() {
			if e.err != nil {
				return 0, e.err
			}
			return 0, io.EOF
		}
		if e.buf == nil {
			e.buf = make([]byte, 0, 32<<10)
		}
		e.out = e.convert(e.buf[:0], cap(e.buf)-2)
	}
	n := copy(p, e.out)
	e.out = e.out[n:]
	return n, nil
}

var eolBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// eolSmallBufs serve a copy that fits in one: most messages are a few
// kilobytes, and a 64 KiB buffer for each of the copies in flight at
// once is most of a session's heap.
const eolSmall = 8 << 10

var eolSmallBufs = sync.Pool{New: func() any { b := make([]byte, 0, eolSmall); return &b }}

// left is at least the number of bytes the rest of the copy converts to.
func (e *eolReader) left() int64 {
	n := int64(len(e.tail))
	for _, s := range e.segs {
		n += int64(len(s))
	}
	if e.src != nil {
		n += e.end - e.off
	}
	if !e.lf {
		n *= 2 // every bare LF may become CRLF
	}
	return n + 2
}

// WriteTo writes the rest of the copy to w.
func (e *eolReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	write := func(b []byte) error {
		n, err := w.Write(b)
		total += int64(n)
		return err
	}
	if len(e.out) > 0 {
		if err := write(e.out); err != nil {
			return total, err
		}
		e.out = nil
	}
	pool := &eolBufs
	if e.left() <= eolSmall {
		pool = &eolSmallBufs
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	for e.more() {
		b := e.convert((*bp)[:0], cap(*bp)-2)
		if len(b) == 0 {
			continue
		}
		if err := write(b); err != nil {
			return total, err
		}
	}
	return total, e.err
}
