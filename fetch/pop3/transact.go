package pop3

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode"
)

// The TRANSACTION state. Commands whose replies are read later (Send*)
// may be pipelined (RFC 2449 §6.6) when Pipelining says so; the caller
// reads each reply with the Read* method of its command, in command order,
// since replies come in command order. The Conn counts replies against
// commands: when none is due the server must have sent nothing, and
// whatever it sent anyway ends the session with ErrSurplus (see idle).
// Bounding the number of commands in flight, so that both directions of
// the connection can never fill at once (the write/write deadlock of RFC
// 2449 §6.6), is the caller's: it must read the replies to a window of
// commands before it sends the next.

// Broken returns the error that ended the session (replies out of step,
// an i/o error, a reply over its budget or past its deadline), or nil.
// Once it is set every method returns it and nothing more is sent.
func (c *Conn) Broken() error { return c.botched }

// Pipelining reports whether the server offers PIPELINING (RFC 2449 §6.6)
// in the capabilities that count (see capaAfterLogin).
func (c *Conn) Pipelining() bool {
	c.settle()
	return c.caps.pipelining
}

// Expire0 reports whether the server may delete retrieved messages on its
// own (RFC 2449 §6.7 EXPIRE 0, or an EXPIRE value that cannot be read),
// before or after login.
func (c *Conn) Expire0() bool {
	c.settle()
	return c.caps.expire0
}

// LoginDelay is the server's LOGIN-DELAY (RFC 2449 §6.5), 0 if none.
func (c *Conn) LoginDelay() time.Duration {
	c.settle()
	return time.Duration(c.caps.loginDelay) * time.Second
}

// Listing reads the maildrop's listing: STAT, then UIDL and LIST, in one
// write and one round trip with PIPELINING (their budgets are set as each
// reply is read, by which time STAT's count is known). If the CAPA after
// login is still due (see capaAfterLogin), it goes first, in the same
// write. It returns STAT's count (also with an error, once STAT was read)
// and, unless the count is 0, one Entry per message, with its UID and
// size, in UIDL's order.
func (c *Conn) Listing() (count int, list []Entry, err error) {
	capaFirst := c.capaDue
	c.capaDue = false
	pipelined := c.caps.pipelining
	if capaFirst {
		if err := c.send("CAPA"); err != nil {
			return 0, nil, fmt.Errorf("capa: %w", err)
		}
	}
	for _, verb := range []string{"STAT", "UIDL", "LIST"} {
		if err := c.send(verb); err != nil {
			return 0, nil, err
		}
		if !pipelined {
			break
		}
	}
	if capaFirst {
		if err := c.settleCapa(c.readCapa); err != nil {
			return 0, nil, err
		}
	}
	st, err := c.status("STAT", lineBudget, c.deadline())
	if err != nil {
		return 0, nil, err
	}
	count, _, err = parseStat(st, c.quote)
	if err != nil {
		return 0, nil, err
	}
	if count == 0 && !pipelined {
		return 0, nil, nil
	}
	// Each UIDL line is at most "nnnnnnn " + 70 + CRLF; a LIST line is
	// shorter, but may carry more after the size (RFC 1939 §5).
	uidlBudget := int64(count)*96 + lineBudget
	listBudget := int64(count)*128 + lineBudget
	if !pipelined {
		if err := c.send("UIDL"); err != nil {
			return count, nil, err
		}
	}
	body, err := c.reply("UIDL", uidlBudget)
	if err != nil {
		if IsERR(err) {
			return count, nil, fmt.Errorf("server does not support UIDL, which popfetch needs to know which messages are new: %w", err)
		}
		return count, nil, err
	}
	uids, err := parseListing(body, count, true, c.quote)
	if err != nil {
		return count, nil, fmt.Errorf("uidl: %w", err)
	}
	if !pipelined {
		if err := c.send("LIST"); err != nil {
			return count, nil, err
		}
	}
	body, err = c.reply("LIST", listBudget)
	if err != nil {
		return count, nil, err
	}
	sizes, err := parseListing(body, count, false, c.quote)
	if err != nil {
		return count, nil, fmt.Errorf("list: %w", err)
	}
	if count == 0 {
		return 0, nil, nil
	}
	size := make(map[int]int64, len(sizes))
	for _, e := range sizes {
		size[e.Num] = e.Size
	}
	for i, e := range uids {
		sz, ok := size[e.Num]
		if !ok {
			return count, nil, fmt.Errorf("%w: message %d in UIDL but not in LIST", ErrProtocol, e.Num)
		}
		uids[i].Size = sz
	}
	return count, uids, nil
}

// SendRetr sends "RETR n"; ReadRetrTo (or ReadRetr) reads its reply.
func (c *Conn) SendRetr(n int) error { return c.sendNum("RETR", n) }

// SendDele sends "DELE n"; ReadDele reads its reply.
func (c *Conn) SendDele(n int) error { return c.sendNum("DELE", n) }

// SendList sends "LIST n"; ReadListOf reads its reply.
func (c *Conn) SendList(n int) error { return c.sendNum("LIST", n) }

// SendStat sends "STAT"; ReadStat reads its reply.
func (c *Conn) SendStat() error { return c.send("STAT") }

// ReadDele reads the reply to a DELE: nil, a *RespError (the server
// refused; the message stays and the session goes on), or an error that
// ended the session.
func (c *Conn) ReadDele() error {
	_, err := c.status("DELE", lineBudget, c.deadline())
	return err
}

// ReadRetrTo reads the reply to the RETR of e and writes the message to w
// as it arrives, dot-unstuffed, every line ending in CRLF (see readBody),
// in writes of at most about 32 KiB: the message is never held whole. It
// returns the bytes written, and checks that the reply fits e.
//
// Any error ends the session. w may have received part of a message, or
// all of it, when an error is returned: the caller discards what it got.
// A message that LIST has just listed is not refused by a server whose
// replies are in step, so an -ERR (still a *RespError underneath) is taken
// as a sign that they are not, as is a reply that does not fit the
// message (ErrMismatch, see checkRetr). The reply is bounded by
// retrBudget and, status line and body together, by retrDeadline of e's
// LIST size. An error from w is returned wrapped with ErrSink, so that it
// is told apart from a fault of the server; it ends the session too, as
// the rest of the reply is left unread.
func (c *Conn) ReadRetrTo(e Entry, w io.Writer) (int64, error) {
	d := time.Now().Add(retrDeadline(c.timeout, e.Size))
	st, err := c.head("RETR", lineBudget, d)
	if err != nil {
		if IsERR(err) {
			err = c.outOfStep(fmt.Errorf("%w; a message LIST has just listed was refused, so the replies may be out of step: ending the session", err))
		}
		return 0, err
	}
	n, err := c.readBody("RETR", retrBudget(e.Size), d, w)
	if err != nil {
		return n, err
	}
	if err := c.replied("RETR", nil); err != nil {
		return n, err
	}
	// Another message's reply announces that message's size. A server
	// that merely announces a wrong one still sends what LIST counted.
	if octets, ok := retrOctets(st); ok && octets != e.Size && n != e.Size {
		return n, c.outOfStep(fmt.Errorf("%w (RETR %d announces %d octets, LIST said %d)", ErrMismatch, e.Num, octets, e.Size))
	}
	if err := checkReply(e, c.first, n, c.quote); err != nil {
		return n, c.outOfStep(err)
	}
	return n, nil
}

// ReadRetr is ReadRetrTo into memory: it returns the message whole.
func (c *Conn) ReadRetr(e Entry) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := c.ReadRetrTo(e, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadListOf reads the reply to "LIST n" sent for e, n being e.Num, and
// returns the size it gives. The reply, "+OK n size" (RFC 1939 §5), names
// the message, so it can be taken for no other reply: a -ERR or a reply
// that does not name e ends the session with ErrMismatch. The size is held
// only to the bounds a RETR reply is held to (checkRetr): GNU mailutils
// pop3d serving an mbox answers LIST n after RETR n with a size other than
// the one its listing gave (246 before, 364 after, for a message with a
// "From " line in its body).
func (c *Conn) ReadListOf(e Entry) (int64, error) {
	b, err := c.named("LIST")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	var size int64 = -1
	if len(f) >= 2 && len(f[1]) <= 18 && len(bytes.TrimLeft(f[1], "0123456789")) == 0 {
		size, _ = strconv.ParseInt(string(f[1]), 10, 64)
	}
	if len(f) < 2 || string(f[0]) != strconv.Itoa(e.Num) || size < 0 || size > retrBudget(e.Size) || e.Size > retrBudget(size) {
		return 0, c.outOfStep(fmt.Errorf("%w (LIST %d answered %s; want \"%d %d\")", ErrMismatch, e.Num, c.quote(b), e.Num, e.Size))
	}
	return size, nil
}

// ReadStat reads the reply to a STAT sent with SendStat, which names
// itself: "+OK count size", two numbers where a reply to DELE has words
// or nothing. Anything else ends the session with ErrMismatch.
func (c *Conn) ReadStat() error {
	b, err := c.named("STAT")
	if err != nil {
		return err
	}
	if _, _, err := parseStat(b, c.quote); err != nil {
		return c.outOfStep(fmt.Errorf("%w (STAT closing a round answered %s)", ErrMismatch, c.quote(b)))
	}
	return nil
}

// named reads the single-line reply to verb, a command whose reply names
// itself (ReadListOf, ReadStat), so that it can be taken for no other
// reply: if the server sent one reply too many, this read gets an earlier
// command's reply instead; if it skipped one, the command after got this
// one and runs into its deadline (or mistakes it likewise). A -ERR here
// is such a reply, as neither command is refused in step.
func (c *Conn) named(verb string) ([]byte, error) {
	b, err := c.status(verb, lineBudget, c.deadline())
	if err != nil && IsERR(err) {
		return nil, c.outOfStep(fmt.Errorf("%w (%s closing a round answered %v)", ErrMismatch, verb, err))
	}
	return b, err
}

// retrOctets reads the size a RETR status line announces ("+OK 120
// octets", RFC 1939 §7); ok is false if it announces none. Servers that
// announce one count it as they count LIST sizes (octets as stored with
// CRLF line ends, before dot-stuffing), so it must equal the LIST size: a
// different number is another message's reply, unless the message that
// follows has exactly the LIST size (see ReadRetrTo).
func retrOctets(st []byte) (n int64, ok bool) {
	// The first two fields as bytes.Fields splits them, without its
	// allocation: this runs for every message.
	rest := bytes.TrimLeftFunc(st, unicode.IsSpace)
	f0, rest := cutField(rest)
	f1, _ := cutField(bytes.TrimLeftFunc(rest, unicode.IsSpace))
	if len(f0) == 0 || len(f0) > 18 || len(bytes.TrimLeft(f0, "0123456789")) != 0 {
		return 0, false
	}
	if len(f1) > 0 && !octetPrefix(f1) {
		return 0, false // "+OK 2 messages follow", not a size
	}
	n, err := strconv.ParseInt(string(f0), 10, 64)
	return n, err == nil
}

// cutField returns b up to its first white space (unicode.IsSpace, as
// bytes.Fields), and the rest.
func cutField(b []byte) (field, rest []byte) {
	if i := bytes.IndexFunc(b, unicode.IsSpace); i >= 0 {
		return b[:i], b[i:]
	}
	return b, nil
}

// octetPrefix reports whether f begins with "octet" in any case, as
// bytes.HasPrefix(bytes.ToLower(f), "octet") does: no rune but the ASCII
// letters lowers to one of those.
func octetPrefix(f []byte) bool {
	const p = "octet"
	if len(f) < len(p) {
		return false
	}
	for i := range len(p) {
		if f[i]|0x20 != p[i] {
			return false
		}
	}
	return true
}

// checkRetr checks that a message read whole fits the entry it was asked
// for. A first line that is itself a POP3 status line is the real status
// line of this reply behind a surplus "+OK" the server sent before it (a
// message begins with a header field, RFC 5322 §2.1, and "+OK ..." is
// not one). The size must be within the bounds set for the reply: at most
// retrBudget of the LIST size, and the LIST size at most retrBudget of
// the size read. That is loose on purpose: servers whose LIST sizes are
// approximate are common enough that fetchmail only warns about a
// mismatch; within it, equal and near-equal sizes are not told apart,
// which is why the primary defence is that no reply may arrive when none
// is due (Conn.idle).
func checkRetr(e Entry, raw []byte, quote func([]byte) string) error {
	first, _, _ := bytes.Cut(raw, []byte("\r\n"))
	return checkReply(e, first, int64(len(raw)), quote)
}

// checkReply is checkRetr of a message of got octets whose first line
// begins with first, which holds at least 5 bytes of it unless the line is
// shorter (isStatusLine needs no more).
func checkReply(e Entry, first []byte, got int64, quote func([]byte) string) error {
	if isStatusLine(first) {
		return fmt.Errorf("%w (message %d begins with the status line %s)", ErrMismatch, e.Num, quote(first))
	}
	if got > retrBudget(e.Size) || e.Size > retrBudget(got) {
		return fmt.Errorf("%w (message %d has %d octets, LIST said %d)", ErrMismatch, e.Num, got, e.Size)
	}
	return nil
}

// isStatusLine reports whether line is a POP3 status line as go-pop3 reads
// one.
func isStatusLine(line []byte) bool {
	for _, p := range []string{"+OK", "-ERR"} {
		if rest, ok := bytes.CutPrefix(line, []byte(p)); ok && (len(rest) == 0 || rest[0] == ' ') {
			return true
		}
	}
	return false
}
