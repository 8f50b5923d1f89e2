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
	var mh mail.Header
	mh.Set("Message-Id", v)
	id, err := mh.MessageID()
	if err != nil || id == "" || len(id) > 998 || hasUnsafe(id) || !utf8.ValidString(id) {
		return ""
	}
	return id
}
