package pop3

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/popfetch/popfetch/internal/logsafe"
	"github.com/popfetch/popfetch/uidl"
)

// maxMessages caps what a server may claim in STAT (fetchmail 5.9.10: "don't
// trust the message count"). Nothing is ever allocated from the claim itself.
const maxMessages = 1 << 20

// Entry is one message of a listing: its number in this session, its UID
// (UIDL) and its size (LIST).
type Entry struct {
	Num  int
	UID  string // UIDL
	Size int64  // LIST
}

// parseStat parses the text after "+OK " of a STAT reply: "nn mm ...".
// Server text in an error is rendered by quote (the session's Conn.quote).
func parseStat(b []byte, quote func([]byte) string) (count int, size int64, err error) {
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("%w: malformed STAT reply %s", ErrProtocol, quote(b))
	}
	c, err1 := strconv.Atoi(string(f[0]))
	s, err2 := strconv.ParseInt(string(f[1]), 10, 64)
	if err1 != nil || err2 != nil || c < 0 || s < 0 {
		return 0, 0, fmt.Errorf("%w: malformed STAT reply %s", ErrProtocol, quote(b))
	}
	if c > maxMessages {
		return 0, 0, fmt.Errorf("%w: STAT claims %d messages (limit %d)", ErrProtocol, c, maxMessages)
	}
	return c, s, nil
}

// parseListing parses the body of a multi-line UIDL (byUID=true) or LIST
// reply. Every message number must be within 1..count and appear exactly
// once (CVE-2001-1009): a listing that leaves out a message STAT counted
// would leave it unfetched without a word. Every UID must be valid (RFC
// 1939 §7, CVE-2005-2335). A UID may appear twice, against RFC 1939 §7:
// popa3d and solid-pop3d give identical messages one UID, and refusing the
// listing would block the whole mailbox; the session tells such messages
// apart by their identity (package fetch, reuse.go). A malformed line is
// a protocol error, never skipped: a skipped line could make popfetch
// believe a message is gone and forget it.
//
// Server text in an error is rendered by quote (the session's Conn.quote).
func parseListing(body []byte, count int, byUID bool, quote func([]byte) string) ([]Entry, error) {
	var out []Entry
	seenNum := make(map[int]bool)
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			continue
		}
		if len(out) >= count {
			return nil, fmt.Errorf("%w: listing has more lines than STAT's %d messages", ErrProtocol, count)
		}
		f := bytes.Fields(line)
		// RFC 1939 §5 LIST: "This memo makes no requirement on what
		// follows the message size in the scan listing"; §7 UIDL: "No
		// information follows the unique-id in the unique-id listing."
		if len(f) < 2 || byUID && len(f) != 2 {
			return nil, fmt.Errorf("%w: malformed listing line %s", ErrProtocol, quote(line))
		}
		n, err := strconv.Atoi(string(f[0]))
		if err != nil || n < 1 || n > count {
			return nil, fmt.Errorf("%w: message number %s out of range 1..%d", ErrProtocol, quote(f[0]), count)
		}
		if seenNum[n] {
			return nil, fmt.Errorf("%w: message number %d listed twice", ErrProtocol, n)
		}
		seenNum[n] = true
		e := Entry{Num: n}
		if byUID {
			e.UID = string(f[1])
			if !uidl.ValidUID(e.UID) {
				return nil, fmt.Errorf("%w: invalid UID %s for message %d (RFC 1939 §7: 1-70 chars in 0x21-0x7E)", ErrProtocol, quote(f[1]), n)
			}
		} else {
			s, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil || s < 0 {
				return nil, fmt.Errorf("%w: malformed size %s for message %d", ErrProtocol, quote(f[1]), n)
			}
			e.Size = s
		}
		out = append(out, e)
	}
	if len(out) != count {
		return nil, fmt.Errorf("%w: listing lists %d of STAT's %d messages", ErrProtocol, len(out), count)
	}
	return out, nil
}

// capabilities is the parsed CAPA reply (RFC 2449 §5).
type capabilities struct {
	known      bool // the server answered CAPA
	stls       bool
	user       bool
	uidl       bool
	pipelining bool
	respCodes  bool
	expire0    bool // EXPIRE 0, or an EXPIRE popfetch cannot read: retrieved messages may be deleted by the server on its own (see expireMayDelete)
	// loginDelay is in seconds, 0 = none. A "USER" after the value of
	// LOGIN-DELAY or EXPIRE (RFC 2449 §6.5, §6.7) needs no field: the CAPA
	// after login, which has the per-user value, is read in any case (see
	// capaAfterLogin).
	loginDelay int64
	sasl       []string
	impl       string
}

func parseCapa(body []byte) capabilities {
	c := capabilities{known: true}
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(strings.TrimSuffix(line, "\r"))
		if len(f) == 0 {
			continue
		}
		// Tags are ASCII (RFC 2449 §5); strings.ToUpper alone would also
		// turn "PıPELINING" into PIPELINING.
		tag := f[0]
		if strings.ContainsFunc(tag, func(r rune) bool { return r >= utf8.RuneSelf }) {
			continue
		}
		tag = strings.ToUpper(tag)
		if v, ok := strings.CutPrefix(tag, "EXPIRE"); ok {
			// "EXPIRE 0" (RFC 2449 §6.7), or run together as GNU
			// mailutils pop3d writes it: "EXPIRE0", "EXPIRENEVER".
			if v == "" && len(f) > 1 {
				v = f[1]
			}
			// Any EXPIRE line that may mean 0 counts: a server that
			// says it twice is trusted on the side that loses nothing.
			c.expire0 = c.expire0 || expireMayDelete(v)
			continue
		}
		switch tag {
		case "STLS":
			c.stls = true
		case "USER":
			c.user = true
		case "UIDL":
			c.uidl = true
		case "PIPELINING":
			c.pipelining = true
		case "RESP-CODES":
			c.respCodes = true
		case "LOGIN-DELAY":
			if len(f) > 1 {
				if n, err := strconv.ParseInt(f[1], 10, 64); err == nil && n > 0 && n < 1<<20 {
					c.loginDelay = n
				}
			}
		case "SASL":
			c.sasl = append([]string(nil), f[1:]...)
		case "IMPLEMENTATION":
			c.impl = sanitize(strings.Join(f[1:], " "), 80)
		}
	}
	return c
}

// expireMayDelete reports whether an EXPIRE value (RFC 2449 §6.7) allows
// the server to delete a message once it has been retrieved: "0" does,
// "NEVER" and a number of days do not. Anything else (no value, a
// negative number, a word popfetch does not know) is taken as 0: treating
// such a server as one that keeps mail would QUIT after a failed delivery
// and let it expunge the undelivered message.
func expireMayDelete(v string) bool {
	if strings.EqualFold(v, "NEVER") {
		return false
	}
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return true
	}
	return strings.TrimLeft(v, "0") == "" // 0, 00, …; an overlong number of days is still days
}

// respCode extracts an RFC 2449 §8 / RFC 3206 response code from -ERR text:
// "[IN-USE] locked" → "IN-USE".
func respCode(text string) string {
	if !strings.HasPrefix(text, "[") {
		return ""
	}
	end := strings.IndexByte(text, ']')
	if end < 0 || end > 64 {
		return ""
	}
	return strings.ToUpper(text[1:end])
}

// quote renders protocol bytes for an error or log: escaped, truncated.
// Logging raw server data crashed fetchmail (CVE-2008-2711, CVE-2021-36386).
// It masks nothing: it is for text read before any credential was sent;
// after that, Conn.quote.
func quote(b []byte) string {
	return strconv.Quote(sanitize(string(b), 120))
}

// quote is the package quote with the session's credentials masked first
// (see Conn.redact): a server may echo a credential in any reply, not only
// in -ERR.
func (c *Conn) quote(b []byte) string {
	return strconv.Quote(sanitize(c.redact(string(b)), 120))
}

// sanitize cuts s to max bytes and replaces the characters that must not
// reach a log or terminal (logsafe.Unsafe: controls, terminal escapes
// included, and bidirectional controls) with '?', so server data is safe
// to log. Its callers quote the result (strconv.Quote), so a '?' stands
// where logsafe.Escape would write an escape: one escape inside another
// would read as if the server had sent the backslash.
func sanitize(s string, max int) string {
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.Map(func(r rune) rune {
		if logsafe.Unsafe(r) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
