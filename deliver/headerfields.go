package deliver

import (
	"bufio"
	"bytes"
	stdtextproto "net/textproto"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// The header reader: routing (RouteHeader), the envelope sender
// (ReturnPath), the Message-ID and the fields of DuplicateKey all read a
// message's header through readHeader, so they agree on where the header
// ends and what a field holds:
//
//   - the header ends at the first empty line (CRLF or bare LF), or at a
//     line that is neither a field nor a continuation (what follows is
//     body, as in Postfix's cleanup(8));
//   - at most MaxHeaderBytes are read; the field the limit falls into is
//     dropped, never used cut short, and the caller is told (truncated);
//   - fields are unfolded (RFC 5322 §2.2.3), their names canonical
//     (net/textproto.CanonicalMIMEHeaderKey), their values trimmed of
//     surrounding white space; go-message's textproto does the reading;
//   - every field is kept, duplicates included, in header order. Routing
//     reads all of them (the order matters: only the topmost envelope
//     fields are trusted); a reader that wants one value takes the first
//     (header.first): the topmost Return-Path is the one the final
//     delivery wrote, and RFC 5322 §3.6 allows one Message-ID, From, Date,
//     Subject, To and Cc, so a second one is not the author's.
//
// Each reader applies its own bound on the value it parses (ReturnPath
// 512 bytes, MessageID 998) on top of MaxHeaderBytes.

// field is one unfolded header field.
type field struct {
	key   string // canonical (textproto.CanonicalMIMEHeaderKey)
	value string
}

// header is the fields of one header section, in order.
type header []field

// first returns the value of the first field named key (canonical form),
// and whether there is one.
func (h header) first(key string) (string, bool) {
	for _, f := range h {
		if f.key == key {
			return f.value, true
		}
	}
	return "", false
}

// readHeader returns the header fields of raw in order, reading at most
// MaxHeaderBytes and stopping at the first empty line. A line that is
// neither a field nor a continuation ends the header, as in Postfix's
// cleanup(8): what follows is body. truncated reports that the cap cut the
// header; the field the cap fell into is dropped rather than used cut short
// ("alice@example.com.evil" cut to "alice@example.com" must not route).
func readHeader(raw []byte) (fs header, truncated bool) {
	sec := raw
	if end := headerEnd(raw); end >= 0 {
		sec = raw[:end]
	}
	if len(sec) > MaxHeaderBytes {
		truncated = true
		sec = sec[:MaxHeaderBytes]
		// Cut back to the start of the last field (a line not starting
		// with whitespace), dropping it and its continuations.
		i := bytes.LastIndexByte(sec, '\n')
		for i >= 0 {
			if i+1 < len(sec) && sec[i+1] != ' ' && sec[i+1] != '\t' {
				break
			}
			i = bytes.LastIndexByte(sec[:i], '\n')
		}
		sec = sec[:i+1]
	}
	if len(sec) == 0 {
		return nil, truncated
	}
	br := bufio.NewReaderSize(bytes.NewReader(sec), 4096)
	h, _ := textproto.ReadHeader(br) // fields before a malformed line are kept
	for it := h.Fields(); it.Next(); {
		fs = append(fs, field{key: it.Key(), value: it.Value()})
	}
	return fs, truncated
}

// plainFirst is header.first on readHeader(raw) for the common header of
// plain lines, without building the header: it returns the value of the
// first field named name (lower case, letters and '-'), before the
// trimming readHeader does (callers trim), and sure=true, when every line
// up to and including that field is one readHeader reads the plain way:
// it ends in LF or CRLF and holds no other CR; it is a continuation (it
// starts with a space or tab, and is not the first line) or "Name:"
// with a non-empty name of printable ASCII without white space; the field
// itself is one line, followed by one that is not a continuation, and ends
// within MaxHeaderBytes (so the cap cannot drop it). Reaching the empty
// line that ends the header on such lines means no such field. Anything
// else returns sure=false, and the caller reads the header with
// readHeader.
func plainFirst(raw []byte, name string) (value string, ok, sure bool) {
	for i := 0; i < len(raw); {
		rest := raw[i:]
		n := bytes.IndexByte(rest, '\n')
		if n < 0 {
			return "", false, false // no line end: the cap or a header without body
		}
		line := rest[:n]
		if n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			return "", false, false
		}
		next := i + n + 1
		if len(line) == 0 {
			return "", false, true // the end of the header
		}
		if line[0] == ' ' || line[0] == '\t' {
			if i == 0 {
				return "", false, false
			}
			i = next
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return "", false, false
		}
		for _, c := range line[:colon] {
			if c < 33 || c > 126 {
				return "", false, false
			}
		}
		if colon == len(name) && asciiEqualFold(line[:colon], name) {
			if next >= len(raw) || raw[next] == ' ' || raw[next] == '\t' || next >= MaxHeaderBytes {
				return "", false, false // folded, or near the cap
			}
			return string(line[colon+1:]), true, true
		}
		i = next
	}
	return "", false, false
}

// asciiEqualFold reports whether b is lower, ignoring ASCII case; lower
// is lower case.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// headerEnd returns the offset of the empty line that ends the header in
// raw (CRLF or bare LF), or -1. It looks no further than MaxHeaderBytes+2.
func headerEnd(raw []byte) int {
	limit := raw
	if len(limit) > MaxHeaderBytes+2 {
		limit = limit[:MaxHeaderBytes+2]
	}
	i := 0
	for i <= len(limit) {
		line := limit[i:]
		if len(line) == 0 {
			return -1
		}
		if line[0] == '\n' || (line[0] == '\r' && len(line) > 1 && line[1] == '\n') {
			return i
		}
		j := bytes.IndexByte(line, '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
	}
	return -1
}

// canonical is the header key form go-message's ReadHeader produces.
func canonical(k string) string {
	return stdtextproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k))
}

// MessageID returns the Message-ID of the header section of raw without
// angle brackets (RFC 5322 §3.6.4), or "" if there is none or it is
// malformed or unsafe (whitespace, control characters, over 998 bytes).
func MessageID(raw []byte) string {
	h, _ := readHeader(raw)
	v, ok := h.first("Message-Id")
	if !ok {
		return ""
	}
	return messageIDOf(v)
}

// messageIDOf is MessageID of a Message-ID field's value v.
func messageIDOf(v string) string {
	var mh mail.Header
	mh.Set("Message-Id", v)
	id, err := mh.MessageID()
	if err != nil || id == "" || len(id) > 998 || hasUnsafe(id) || !utf8.ValidString(id) {
		return ""
	}
	return id
}

// maxAuditValue bounds what AuditFields returns of a field, in bytes:
// RFC 5322 §2.1.1's line length.
const maxAuditValue = 998

// maxAuditHead is how much of a header that is not plain AuditFields
// reads.
const maxAuditHead = 64 << 10

// AuditFields returns what a message's audit line names it by: its
// Message-ID as the header gives it (the first Message-ID field, without
// the angle brackets of a well-formed one, else its raw value), and its
// sender's address only, with no display name: the envelope sender
// (ReturnPath), else the address of the first From field, else that
// field's raw value. Either is "" when the header has no such field, and
// is cut to 998 bytes. Neither is escaped: they are what the sender
// wrote, and a caller that logs them escapes them.
//
// It runs once per message delivered, whatever its header, and the audit
// line is worth no second full read of a huge one: a header of plain
// lines is read without building it (plainFirst), any other only in its
// first maxAuditHead bytes, where a real header has these fields.
func AuditFields(raw []byte) (messageID, from string) {
	return auditFields(raw, true)
}

// auditFields is AuditFields; plain=false skips plainFirst (the fuzz test
// compares the two ways).
func auditFields(raw []byte, plain bool) (messageID, from string) {
	mid, midOK, sure := plainFirst(raw, "message-id")
	fv, fromOK, fsure := plainFirst(raw, "from")
	rp, rpOK, rsure := plainFirst(raw, "return-path")
	if !plain || !sure || !fsure || !rsure {
		h, _ := readHeader(raw[:min(len(raw), maxAuditHead)])
		mid, midOK = h.first("Message-Id")
		fv, fromOK = h.first("From")
		rp, rpOK = h.first("Return-Path")
	}
	if midOK {
		messageID = strings.TrimSpace(mid)
		if id := messageIDOf(messageID); id != "" {
			messageID = id
		}
	}
	if from = returnPathOf(rp, rpOK); from == "" && fromOK {
		from = strings.TrimSpace(fv)
		if len(from) <= maxAuditValue {
			if as, err := mail.ParseAddressList(from); err == nil && len(as) > 0 {
				from = as[0].Address
			}
		}
	}
	return cutBytes(messageID, maxAuditValue), cutBytes(from, maxAuditValue)
}

// cutBytes cuts s to at most max bytes at a rune boundary, into a string
// of its own: a caller may keep it long after the header it was cut from
// (up to MaxHeaderBytes) is gone.
func cutBytes(s string, max int) string {
	if len(s) > max {
		n := max
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return strings.Clone(s)
}

// HeaderFields returns the fields of raw's header section as the header
// readers see them (see readHeader): in order, duplicates kept, unfolded,
// names canonical, values trimmed; truncated reports that MaxHeaderBytes
// cut the header. Filing rules (package deliver/rules) read it, so that
// they agree with routing on what a field holds.
func HeaderFields(raw []byte) (fields []Field, truncated bool) {
	h, truncated := readHeader(raw)
	fields = make([]Field, len(h))
	for i, f := range h {
		fields[i] = Field{Name: f.key, Value: f.value}
	}
	return fields, truncated
}

// CanonicalFieldName is a header field name as HeaderFields spells it.
func CanonicalFieldName(name string) string { return canonical(name) }
