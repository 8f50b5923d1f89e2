package deliver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
)

// Message is one message fetched from a POP3 mailbox, spooled whole before
// any delivery starts (doc/design.md §2.1: never stream a RETR into a target,
// because a target that sees EOF would deliver a truncated message).
//
// The message is exactly as the server sent it after dot-unstuffing, with
// CRLF line endings, in Spool or, when Spool is nil, in Raw (a message
// read from a file, tests). It is never modified: targets that add headers
// (Received:, Delivered-To:) write them in front of it. Its readers (Size,
// Head, Reader, Open) serve either.
type Message struct {
	Account string    // rc file account name, for the trace header and errors
	Server  string    // POP3 server host name
	User    string    // POP3 user name
	UID     string    // the server's UIDL for this message
	Fetched time.Time // when popfetch finished reading it (began, for a message streamed into its Maildir: Maildir.Stream)
	Raw     []byte
	Spool   *Spool // when set, the message (Raw is unused)
	// Local: popfetch wrote the message itself (an alert). The targets
	// then add no Received: trace field, whose "with POP3 (account ...,
	// uid ...)" would claim a retrieval that never happened.
	Local bool

	// streamed is its Maildir copy written as it arrived (Maildir.Stream),
	// until a Prepare takes it or Close removes it.
	streamed *streamed
}

// Size returns the message's length in bytes.
func (m *Message) Size() int64 {
	if m.Spool != nil {
		return m.Spool.Len()
	}
	return int64(len(m.Raw))
}

// Head returns the message's header section as the header readers
// (RouteHeader, ReturnPath, MessageID) see it: up to and including the
// empty line that ends it, or the first MaxHeaderBytes+2 bytes. The
// caller must not change it.
func (m *Message) Head() []byte {
	if m.Spool != nil {
		return m.Spool.Head()
	}
	return headOf(m.Raw)
}

// Reader returns a reader of the whole message, independent of any
// other: copies may be read at once.
func (m *Message) Reader() *io.SectionReader {
	if m.Spool != nil {
		return m.Spool.Reader()
	}
	return io.NewSectionReader(bytes.NewReader(m.Raw), 0, int64(len(m.Raw)))
}

// WriteTo writes the whole message to w (io.WriterTo): a message held in
// memory in one Write, without the copy through a buffer that reading it
// costs; one in a spool file a pooled chunk at a time.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	if m.Spool != nil && m.Spool.closed {
		return 0, errSpoolClosed
	}
	mem, src, _ := m.source()
	if src == nil {
		n, err := w.Write(mem)
		if err == nil && n != len(mem) {
			// A Writer that takes less without saying why: as io.Copy
			// reports it, never as the message written.
			err = io.ErrShortWrite
		}
		return int64(n), err
	}
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	return io.CopyBuffer(w, m.Reader(), *bp)
}

// Close releases the spool, once every delivery of the message is over,
// and removes its streamed Maildir copy if no Prepare took it.
func (m *Message) Close() error {
	m.closeStreamed()
	if m.Spool != nil {
		return m.Spool.Close()
	}
	return nil
}

// lastByte returns the message's last byte, 0 if it is empty.
func (m *Message) lastByte() byte {
	if m.Spool != nil {
		return m.Spool.lastByte()
	}
	if n := len(m.Raw); n > 0 {
		return m.Raw[n-1]
	}
	return 0
}

// source returns the message as Open reads it: what is in memory, then
// size bytes of src (nil when all is in memory).
func (m *Message) source() (mem []byte, src io.ReaderAt, size int64) {
	if m.Spool == nil {
		return m.Raw, nil, 0
	}
	s := m.Spool
	if s.f == nil {
		return s.mem, nil, 0
	}
	return nil, s, s.n
}

// Error is a delivery failure with its classification. Targets return it
// (possibly wrapped) so the caller can tell a temporary failure (leave the
// message on the server, retry next poll) from a permanent one (hand it to
// the postmaster). An error that is not an *Error and has no Temporary
// method counts as temporary: no code path may DELE on an unclassified error.
type Error struct {
	Target    string // e.g. "maildir /home/a/Maildir", "mda /usr/bin/procmail", "lmtp unix:/run/lmtp"
	Permanent bool
	Reason    string // one line for X-Popfetch-Reason, e.g. "MDA exit 67", "SMTP 550 5.1.1 no such user"
	Err       error
}

// sameStep reports whether reason and err start with the same step
// ("open maildir: not a directory" and "open maildir: open /m: not a
// directory") and returns the rest of each.
func sameStep(reason, err string) (rrest, erest string, ok bool) {
	step, rrest, ok := strings.Cut(reason, ": ")
	if !ok || !strings.HasPrefix(err, step+": ") {
		return "", "", false
	}
	return rrest, err[len(step)+2:], true
}

// Error says the reason and the error once each, without what one of them
// repeats of the other, and never drops what only one of them says: the
// reason may carry the limit that ran out ("connect: timed out after
// 5m0s"), the error what the system said ("connect: read tcp ...: i/o
// timeout").
func (e *Error) Error() string {
	kind := "temporary"
	if e.Permanent {
		kind = "permanent"
	}
	if e.Err == nil {
		return fmt.Sprintf("%s: %s failure: %s", e.Target, kind, e.Reason)
	}
	err := e.Err.Error()
	if e.Reason == "" || strings.Contains(err, e.Reason) {
		return fmt.Sprintf("%s: %s failure: %s", e.Target, kind, err)
	}
	if strings.HasSuffix(e.Reason, err) {
		// "MDA input file: open /tmp/x: permission denied": the
		// reason names the step and quotes the whole error.
		return fmt.Sprintf("%s: %s failure: %s", e.Target, kind, e.Reason)
	}
	if rrest, erest, ok := sameStep(e.Reason, err); ok {
		if strings.Contains(erest, rrest) {
			// The error says all the reason does.
			return fmt.Sprintf("%s: %s failure: %s", e.Target, kind, err)
		}
		// The step once, then what each says.
		return fmt.Sprintf("%s: %s failure: %s: %s", e.Target, kind, e.Reason, erest)
	}
	// Both: the reason says at which step (e.g. "no reply to the final
	// dot", "MDA killed after 2m0s"), the error what the system said.
	return fmt.Sprintf("%s: %s failure: %s: %s", e.Target, kind, e.Reason, err)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether retrying later may succeed.
func (e *Error) Temporary() bool { return !e.Permanent }

// IsPermanent reports whether err is known to be a permanent failure. Unknown
// errors are temporary (the safe default: the message stays on the server).
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return !t.Temporary()
	}
	return false
}

// ReturnPath returns the address of the message's first Return-Path field,
// or "". The header is read by the same bounded reader routing uses, and
// the address parsed by go-message's parser; a value over 512 bytes is
// ignored: the envelope sender is never worth a long parse (doc/design.md
// §3.5). It is the default {sender} of an MDA and MAIL FROM of SMTP; it is
// never used to route.
//
// It runs once per message: a header of plain "Name: value" lines (with
// folded lines in other fields) is read by plainFirst without building
// the whole header; anything else by readHeader. Both find the same field
// (FuzzReturnPath).
func ReturnPath(raw []byte) string {
	v, ok, sure := plainFirst(raw, "return-path")
	if !sure {
		h, _ := readHeader(raw)
		v, ok = h.first("Return-Path")
	}
	return returnPathOf(v, ok)
}

// returnPathOf is ReturnPath of the value v of a Return-Path field, ok
// when there is one.
func returnPathOf(v string, ok bool) string {
	v = strings.TrimSpace(v)
	if !ok || v == "" || v == "<>" || len(v) > 512 {
		return ""
	}
	if a, ok := plainAngleAddr(v); ok {
		return a
	}
	a, err := mail.ParseAddress(v)
	if err != nil {
		return ""
	}
	return a.Address
}

// plainAngleAddr returns the address in v when v is "<local@domain>" with
// both parts dot-atoms of ASCII letters, digits and "+-_=" (no leading,
// trailing or double dot), the form nearly every Return-Path has: what
// mail.ParseAddress returns for it (FuzzPlainAngleAddr), without its
// allocations.
func plainAngleAddr(v string) (string, bool) {
	if len(v) < 5 || v[0] != '<' || v[len(v)-1] != '>' {
		return "", false
	}
	a := v[1 : len(v)-1]
	at := strings.IndexByte(a, '@')
	if at < 0 || !plainDotAtom(a[:at]) || !plainDotAtom(a[at+1:]) {
		return "", false
	}
	return a, true
}

// plainDotAtom reports whether s is a dot-atom (RFC 5322 §3.2.3) of ASCII
// letters, digits and "+-_=".
func plainDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '+', c == '-', c == '_', c == '=':
		case c == '.':
			if s[i-1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return true
}
