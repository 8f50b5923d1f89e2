package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	gopop3 "github.com/knadh/go-pop3"

	"github.com/popfetch/popfetch/internal/redact"
	"github.com/popfetch/popfetch/internal/sockpeek"
)

// Limits on what a server may send. RFC 1939 §3 caps a response line at 512
// octets; servers exceed it in practice (long greetings), so single-line
// replies get more room, but never unbounded (CVE-2003-0792).
const (
	lineBudget = 16 << 10 // one status line
	// readBuf is the size of the session's one read buffer (guardConn.br)
	// and, about, of the buffer a multi-line reply is unstuffed into
	// (readBody): the most of a reply held at once, whatever its size.
	readBuf = 32 << 10
	// sendBuf bounds the commands held back for one write (see
	// Conn.write): a window of commands larger than any round of the
	// caller's still goes out, in several writes.
	sendBuf = 32 << 10
	// cipherBuf is the read-ahead under TLS (cipherConn): crypto/tls reads
	// one record per read(2), and servers write records of 8 KiB or
	// less (Dovecot's), where a plain session reads readBuf at once.
	cipherBuf = 64 << 10
)

// cipherConn is the TCP connection under a tls.Conn, read through a buffer:
// crypto/tls asks the connection for one record at a time (its
// readFromUntil), so without it a session under TLS made a read(2), and
// often an epoll wait, per record: four times the system calls of a plain
// session on the same messages. The buffer holds ciphertext only, read
// after the handshake began, so nothing a server sent in plain text before
// STLS can reach it (connect checks that none is left); what it holds
// counts as sent by the server in guardConn.waiting. Deadlines and Close
// are the TCP connection's; a timeout leaves the buffer usable.
type cipherConn struct {
	net.Conn
	br    *bufio.Reader // over cipherSource{c}
	reads int           // reads of the TCP connection (tests count them)
}

func (c *cipherConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// cipherSource is the TCP side of cipherConn.br.
type cipherSource struct{ c *cipherConn }

func (s cipherSource) Read(p []byte) (int, error) {
	s.c.reads++
	return s.c.Conn.Read(p)
}

// TLSMode is how a connection gets its TLS: the values of the rc file's
// tls setting.
type TLSMode string

const (
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (POP3S, RFC 8314)
	TLSStartTLS TLSMode = "starttls" // STLS after CAPA (RFC 2595), required: never plaintext
	TLSNone     TLSMode = "none"     // plaintext
)

// Options are the connection settings of one session.
type Options struct {
	Host        string
	Port        int
	TLS         TLSMode
	RootCAs     *x509.CertPool // nil = the system roots
	Fingerprint string         // hex SHA-256 of the server's SPKI; "" = none
	// CheckName: with a Fingerprint, the certificate must also name Host
	// (without one the name is always checked, with the chain).
	CheckName bool
	// Timeout bounds the connect, the TLS handshake and each reply; a
	// RETR gets more by its size (retrDeadline). 0 = 60 s.
	Timeout time.Duration
	// TrustPipelining takes PIPELINING announced before login (RFC 2449
	// §6.6) to hold after it too, so that the CAPA after login (see
	// capaAfterLogin) goes out in one write with Listing's STAT, UIDL
	// and LIST instead of a round trip of its own. RFC 2449 does not let
	// a server withdraw PIPELINING at login (§5: what is announced before
	// login is announced after it; §6.6: PIPELINING does not differ
	// between the states), but a server may break that: Conn.Pipelining
	// after Listing tells whether it did, and a caller that saw it should
	// not set this for that server again.
	TrustPipelining bool
}

// guardConn is the net.Conn go-pop3 reads from and writes to. go-pop3 reads
// lines with an unbounded ReadBytes and has no deadlines, and its
// multi-line reader holds a whole reply in memory, so the session's reading
// is popfetch's: one bufio.Reader over the socket (br), from which go-pop3
// gets at most one line per Read, up to and including the next '\n', and
// so never holds more than the status line it is reading
// (TestGoPOP3PinsOneLine). The body of a multi-line reply never passes
// through go-pop3: Conn.readBody reads it from br.
//
// Every limit lives here: a byte budget for the reply being read (an
// endless line or a never-ending multi-line reply fails when the budget
// runs out) and the deadline for it. The budget counts the bytes taken
// from br, and br takes from the socket no more than the budget leaves
// (source), so a reply past its budget fails at once rather than at its
// deadline.
//
// Commands are held back (Write) and sent by Conn.flush in one write
// before the next reply is read: a pipelined round is one write(2).
//
// It also notes which lines go-pop3 read were empty. go-pop3 reads an
// empty line as a bare "+OK" (its parseResp returns nil, nil for both);
// the conn asks, by line number, which of the two a status line was.
type guardConn struct {
	net.Conn
	// raw is the TCP connection under Conn (Conn itself without TLS):
	// where waiting tells whether the server has sent more; cipher is
	// the buffer between raw and a tls.Conn (nil without TLS).
	raw    net.Conn
	cipher *cipherConn
	br     *bufio.Reader // over source{g}: the session's only read-ahead
	budget int64         // bytes the reply being read may still take from br
	pre    []byte        // the greeting, already read and checked, replayed to go-pop3
	out    []byte        // commands written by go-pop3 and not yet sent (flush)
	writes int           // writes of commands to the connection (tests count them)

	lines   uint64 // complete lines taken from br so far
	lineLen int    // bytes of the current line so far, capped at 2
	lineCR  bool   // the current line starts with '\r'
	// empty[n%len] tells whether line n was empty ("\n" or "\r\n").
	// Conn asks about the line go-pop3 has just read, the last one taken.
	empty [64]bool
}

func newGuard(c, raw net.Conn, pre []byte) *guardConn {
	g := &guardConn{Conn: c, raw: raw, pre: pre}
	g.br = bufio.NewReaderSize(source{g}, readBuf)
	return g
}

// source is the socket side of guardConn.br: it reads no more than the
// reply's budget leaves, counting what br holds already.
type source struct{ g *guardConn }

func (s source) Read(p []byte) (int, error) {
	g := s.g
	room := g.budget - int64(g.br.Buffered())
	if room <= 0 {
		return 0, ErrBudget
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	return g.Conn.Read(p)
}

// Read gives go-pop3 the greeting, then at most one line of br per call.
// Errors of the connection (a deadline, EOF) come back unchanged.
func (g *guardConn) Read(p []byte) (int, error) {
	if len(g.pre) > 0 {
		n := copy(p, g.pre)
		g.pre = g.pre[n:]
		g.scan(p[:n])
		return n, nil
	}
	if len(g.out) > 0 {
		// Conn.flush sends commands before any reply is read; a
		// reply awaited with its command unsent would never come.
		return 0, errUnsent
	}
	if g.budget <= 0 {
		return 0, ErrBudget
	}
	if int64(len(p)) > g.budget {
		p = p[:g.budget]
	}
	if g.br.Buffered() == 0 {
		if _, err := g.br.Peek(1); err != nil {
			return 0, err
		}
	}
	b, _ := g.br.Peek(g.br.Buffered())
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	}
	n := copy(p, b)
	g.br.Discard(n)
	g.budget -= int64(n)
	g.scan(p[:n])
	return n, nil
}

// errUnsent is a bug: a reply read while commands wait to be sent.
var errUnsent = errors.New("pop3: reply read before its command was sent")

// Write holds back a command go-pop3 sends (its Send writes each command
// whole, in one Write: TestGoPOP3PinsSend) for Conn.flush.
func (g *guardConn) Write(p []byte) (int, error) {
	g.out = append(g.out, p...)
	return len(p), nil
}

// flush sends the commands held back, in one write, by a write deadline of
// timeout from now.
func (g *guardConn) flush(timeout time.Duration) error {
	if len(g.out) == 0 {
		return nil
	}
	g.Conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := g.Conn.Write(g.out)
	g.writes++
	g.out = g.out[:0]
	return err
}

// scan notes the line ends in p, the next bytes go-pop3 takes.
func (g *guardConn) scan(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			g.extend(p)
			return
		}
		g.extend(p[:i])
		g.empty[g.lines%uint64(len(g.empty))] = g.lineLen == 0 || g.lineLen == 1 && g.lineCR
		g.lines++
		g.lineLen, g.lineCR = 0, false
		p = p[i+1:]
	}
}

func (g *guardConn) extend(b []byte) {
	if len(b) == 0 {
		return
	}
	if g.lineLen == 0 {
		g.lineCR = b[0] == '\r'
	}
	g.lineLen = min(g.lineLen+len(b), 2)
}

// emptyLine reports whether line n (0 = the greeting) was an empty line.
func (g *guardConn) emptyLine(n uint64) bool {
	if n >= g.lines || g.lines-n > uint64(len(g.empty)) {
		// Not a line this guard has seen recently: the caller's count
		// is off, which only a bug can cause. Refusing is the safe side.
		return true
	}
	return g.empty[n%uint64(len(g.empty))]
}

// tlsPeek bounds the read that tells, when the socket holds bytes while no
// reply is due, whether they are application data or a TLS post-handshake
// message (a session ticket), which is not a reply.
const tlsPeek = 20 * time.Millisecond

// waiting reports whether the server has sent bytes that nobody has read
// yet, without waiting for any: what br holds, a look at the socket
// (sockpeek.Readable), and under TLS a short read to tell data from TLS
// housekeeping. It is called only when no reply is due, so any such byte
// is one too many; a byte read here is not given back, as the session ends
// on it.
func (g *guardConn) waiting() bool {
	if g.br.Buffered() > 0 {
		return true
	}
	var b [1]byte
	if g.raw != g.Conn {
		// crypto/tls keeps what it decrypted beyond the bytes asked for,
		// and whole records it received: with a deadline already past,
		// Read returns from those or times out at once (a timeout does
		// not break a tls.Conn).
		g.Conn.SetReadDeadline(time.Unix(1, 0))
		if n, _ := g.Conn.Read(b[:]); n > 0 {
			return true
		}
	}
	// An expired read deadline would make the look fail; the next reply
	// sets its own (expect).
	g.raw.SetReadDeadline(time.Time{})
	if !sockpeek.Readable(g.raw) && (g.cipher == nil || g.cipher.br.Buffered() == 0) {
		return false
	}
	if g.raw == g.Conn {
		return true
	}
	g.Conn.SetReadDeadline(time.Now().Add(tlsPeek))
	n, _ := g.Conn.Read(b[:])
	return n > 0
}

// expect sets the limits for reading the next reply: at most max bytes, by
// the deadline.
func (g *guardConn) expect(max int64, deadline time.Time) {
	g.budget = max
	g.Conn.SetDeadline(deadline)
}

// Conn is one POP3 session: go-pop3 for the wire, plus popfetch's bounds
// and reply bookkeeping. It is not safe for concurrent use.
type Conn struct {
	c       *gopop3.Conn
	g       *guardConn
	caps    capabilities
	timeout time.Duration
	stopCtx func() bool
	botched error // set after a desync or i/o error: no further commands
	// lines is the number of lines read from the stream as replies, by
	// go-pop3 or readBody, so that the next status line is line number
	// lines (see emptyLine).
	lines uint64
	// queued is the verb of the first command held back for the next
	// write (see flush), "" if none is: a failed write names it.
	queued string
	// unstuffed is readBody's output buffer, kept for the session;
	// first holds the start of the last RETR reply's first line (see
	// ReadRetrTo).
	unstuffed, first []byte
	// due is the number of commands sent whose reply has not been read
	// in full. Replies come in command order (RFC 1939 §3, RFC 2449
	// §6.6), so when due is 0 the server has nothing to say, and
	// anything it has said anyway (see idle) means its replies and
	// popfetch's commands are out of step: every later reply would be
	// taken for the answer to the wrong command.
	due int
	// cont: the last reply read was a continuation (see Exchange); the
	// command's reply is still due, after the client's next line.
	cont bool
	// capaDue: the CAPA after login is still to be sent (see
	// capaAfterLogin); trustPipelining is Options.TrustPipelining.
	capaDue, trustPipelining bool
	// quit is how far a QUIT sent with SendQuit has got; quitErr is
	// what ReadQuit returned.
	quit    quitState
	quitErr error
	// greeting is the server's greeting line without its CRLF: APOP
	// takes its timestamp from it.
	greeting []byte
	// mech is how the session logged in (see Authenticate).
	mech Mechanism
	// fellBack is the SCRAM mechanism auto tried before mech (see FellBack).
	fellBack Mechanism
	// secrets is every credential this session sent or holds (see
	// remember); server text is masked with them (see redact).
	secrets []string
	// host and port are Options.Host and Port, which OAUTHBEARER names
	// in its response (RFC 7628 §3.1).
	host string
	port int
}

// quitState is how far a pipelined QUIT has got (see SendQuit).
type quitState uint8

const (
	quitNone quitState = iota
	quitSent
	quitRead
)

// outOfStep ends the session for err (wrapping ErrSurplus or ErrMismatch).
func (c *Conn) outOfStep(err error) error {
	if c.botched == nil {
		c.botched = err
	}
	return c.botched
}

// idle checks, when no reply is due, that the server has sent nothing: no
// line or part of one taken from the guard's reader and not read as a
// reply (the guard counts the lines taken, c.lines those read), nothing
// in the reader, and nothing on the socket. when says where in the
// dialogue the check is, for the error.
func (c *Conn) idle(when string) error {
	if c.botched != nil {
		return c.botched
	}
	g := c.g
	switch {
	case g.lines != c.lines:
		return c.outOfStep(fmt.Errorf("%w (%d line(s) %s)", ErrSurplus, int64(g.lines-c.lines), when))
	case g.lineLen > 0:
		return c.outOfStep(fmt.Errorf("%w (part of a line %s)", ErrSurplus, when))
	case g.br.Buffered() > 0:
		b, _ := g.br.Peek(g.br.Buffered())
		if n := bytes.Count(b, []byte("\n")); n > 0 {
			return c.outOfStep(fmt.Errorf("%w (%d line(s) %s)", ErrSurplus, n, when))
		}
		return c.outOfStep(fmt.Errorf("%w (part of a line %s)", ErrSurplus, when))
	case g.waiting():
		return c.outOfStep(fmt.Errorf("%w (data %s)", ErrSurplus, when))
	}
	return nil
}

// replied notes that the reply to verb has been read in full; err is the
// reply's own -ERR or nil. With no further reply due, the server must have
// fallen silent.
func (c *Conn) replied(verb string, err error) error {
	c.due--
	if c.due == 0 && verb != "QUIT" {
		if e := c.idle("after the reply to " + verb); e != nil {
			return e
		}
	}
	return err
}

// Dial connects, passes the TLS gate and returns a session in the
// AUTHORIZATION state with the capabilities read over the final transport.
// No credential byte is sent here. Cancelling ctx closes the connection
// (without QUIT) at any time until Close or Quit.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	var g *guardConn
	var dialErr error
	var greeting []byte
	d := dialerFunc(func(network, addr string) (net.Conn, error) {
		g, dialErr = connect(ctx, network, addr, o)
		if dialErr != nil {
			return nil, dialErr
		}
		greeting = bytes.TrimRight(bytes.Clone(g.pre), "\r\n")
		return g, nil
	})
	cl := gopop3.New(gopop3.Opt{Host: o.Host, Port: o.Port, Dialer: d})
	pc, err := cl.NewConn()
	if err != nil {
		if dialErr != nil {
			return nil, dialErr
		}
		if g != nil {
			g.Close()
		}
		return nil, fmt.Errorf("greeting: %w", err)
	}
	c := &Conn{c: pc, g: g, timeout: o.Timeout, lines: 1, greeting: greeting, host: o.Host, port: o.Port, trustPipelining: o.TrustPipelining} // the greeting
	stop := context.AfterFunc(ctx, func() { g.Close() })
	c.stopCtx = stop
	// RFC 2595 §4: after STLS the client MUST discard cached capabilities
	// and SHOULD re-issue CAPA; connect's pre-TLS CAPA is thrown away.
	if err := c.capa(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// capa (re)reads the server's capabilities. A server without CAPA (it is
// optional, RFC 2449) answers -ERR and keeps what was known.
func (c *Conn) capa() error {
	if err := c.send("CAPA"); err != nil {
		return fmt.Errorf("capa: %w", err)
	}
	return c.readCapa()
}

// readCapa reads the reply to a CAPA sent before.
func (c *Conn) readCapa() error {
	body, err := c.reply("CAPA", lineBudget*4)
	switch {
	case err == nil:
		c.caps = parseCapa(body)
	case !IsERR(err):
		return fmt.Errorf("capa: %w", err)
	}
	return nil
}

type dialerFunc func(network, addr string) (net.Conn, error)

func (f dialerFunc) Dial(network, addr string) (net.Conn, error) { return f(network, addr) }

// connect dials, reads and checks the greeting, and applies the TLS policy:
// implicit TLS from the first byte, or CAPA + STLS before anything else.
// It returns a guardConn that replays the greeting to go-pop3.
func connect(ctx context.Context, network, addr string, o Options) (*guardConn, error) {
	dctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var nd net.Dialer
	raw, err := nd.DialContext(dctx, network, addr)
	if err != nil {
		return nil, &dialError{addr: addr, err: err}
	}
	fail := func(err error) (*guardConn, error) {
		raw.Close()
		return nil, err
	}
	var c net.Conn = raw
	var cipher *cipherConn
	if o.TLS == TLSImplicit {
		tc, cc, err := handshake(dctx, raw, o)
		if err != nil {
			return fail(err)
		}
		c, cipher = tc, cc
	}
	c.SetDeadline(time.Now().Add(o.Timeout))
	br := bufio.NewReaderSize(&io.LimitedReader{R: c, N: lineBudget * 8}, 1024)
	greeting, err := readLine(br)
	if err != nil {
		return fail(greetingError(err, o))
	}
	if !bytes.HasPrefix(greeting, []byte("+OK")) {
		// A malformed greeting while TLS is required must close the
		// connection (mutt GHSA-346p-qx4x-g348).
		return fail(fmt.Errorf("%w: server greeting %s", ErrProtocol, quote(greeting)))
	}
	if br.Buffered() > 0 {
		// Only the greeting is replayed to go-pop3: more would be
		// dropped here, or, arriving later, taken for a reply.
		return fail(fmt.Errorf("%w (after the greeting)", ErrSurplus))
	}
	pre := append(bytes.Clone(greeting), '\r', '\n')
	if o.TLS == TLSStartTLS {
		st, err := command(c, br, "CAPA")
		if err != nil {
			return fail(err)
		}
		stls := false
		if bytes.HasPrefix(st, []byte("+OK")) {
			body, err := readMulti(br, lineBudget*4)
			if err != nil {
				return fail(fmt.Errorf("capa: %w", err))
			}
			stls = parseCapa(body).stls
		}
		if br.Buffered() > 0 {
			return fail(fmt.Errorf("%w (after the reply to CAPA)", ErrSurplus))
		}
		if !stls {
			return fail(fmt.Errorf("%w: tls = \"starttls\" but the server does not offer STLS (refusing to continue in plaintext)", ErrTLS))
		}
		st, err = command(c, br, "STLS")
		if err != nil {
			return fail(err)
		}
		if !bytes.HasPrefix(st, []byte("+OK")) {
			return fail(fmt.Errorf("%w: server refused STLS: %s", ErrTLS, quote(st)))
		}
		// STARTTLS response injection (CVE-2020-14954, CVE-2021-22947):
		// anything after the +OK was sent in plaintext by an attacker.
		if br.Buffered() > 0 {
			return fail(fmt.Errorf("%w: server sent data after the STLS reply (possible response injection)", ErrTLS))
		}
		tc, cc, err := handshake(dctx, raw, o)
		if err != nil {
			return fail(err)
		}
		c, cipher = tc, cc
	}
	// greeting is a slice of br's buffer, which the CAPA and STLS reads
	// above overwrote whenever the greeting was the longer (an APOP
	// timestamp makes it so): replay a copy taken before them.
	g := newGuard(c, raw, pre)
	g.cipher = cipher
	return g, nil
}

// handshake runs the TLS client handshake on raw, read through a
// cipherConn, which it returns with the tls.Conn.
func handshake(ctx context.Context, raw net.Conn, o Options) (*tls.Conn, *cipherConn, error) {
	cfg := &tls.Config{
		ServerName: o.Host,
		RootCAs:    o.RootCAs,
		MinVersion: tls.VersionTLS12, // RFC 8996
	}
	if o.Fingerprint != "" {
		// A pin replaces chain verification: self-signed certificates are
		// the usual reason to pin. The pin itself is the trust anchor;
		// the name is checked too only if asked (CheckName).
		cfg.InsecureSkipVerify = true
		want := o.Fingerprint
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: no server certificate", ErrTLS)
			}
			leaf := cs.PeerCertificates[0]
			if got := SPKIFingerprint(leaf); got != want {
				return fmt.Errorf("%w: server key fingerprint sha256:%s does not match tls_fingerprint sha256:%s", ErrTLS, got, want)
			}
			if o.CheckName {
				if err := leaf.VerifyHostname(o.Host); err != nil {
					return fmt.Errorf("%w: the server key matches tls_fingerprint, but the certificate is not for %s (it is for %s) and tls_check_name = true", ErrTLS, o.Host, certNames(leaf))
				}
			}
			return nil
		}
	}
	cc := &cipherConn{Conn: raw}
	cc.br = bufio.NewReaderSize(cipherSource{cc}, cipherBuf)
	first := &firstBytes{Conn: cc}
	tc := tls.Client(first, cfg)
	hctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, nil, handshakeError(err, first.b, o)
	}
	return tc, cc, nil
}

// command sends cmd, before go-pop3 takes the connection over, and reads
// its status line; an error names the command.
func command(w io.Writer, br *bufio.Reader, cmd string) ([]byte, error) {
	if _, err := io.WriteString(w, cmd+"\r\n"); err != nil {
		return nil, fmt.Errorf("%s: %w", strings.ToLower(cmd), err)
	}
	st, err := readLine(br)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", strings.ToLower(cmd), err)
	}
	return st, nil
}

// readLine reads one CRLF- or LF-terminated line from a reader that is
// itself bounded.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: line too long", ErrProtocol)
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

func readMulti(br *bufio.Reader, max int) ([]byte, error) {
	var out []byte
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(line, []byte(".")) {
			return out, nil
		}
		if len(out)+len(line) > max {
			return nil, fmt.Errorf("%w: reply too long", ErrProtocol)
		}
		out = append(append(out, line...), '\n')
	}
}

// send writes one command. The verb alone is logged, so PASS never is.
func (c *Conn) send(verb string, args ...any) error {
	if c.capaDue {
		// The capabilities after login come first (capaAfterLogin),
		// unless the session is ending anyway.
		if verb == "QUIT" {
			c.capaDue = false
		} else if err := c.settle(); err != nil {
			return err
		}
	}
	line := verb
	for _, a := range args {
		line += " " + fmt.Sprint(a)
	}
	return c.sendLine(verb, line)
}

// sendNum sends "verb n", without send's formatting: package fetch sends
// RETR, LIST and DELE for each message.
func (c *Conn) sendNum(verb string, n int) error {
	if c.capaDue {
		return c.send(verb, n)
	}
	var b [32]byte
	return c.sendLine(verb, string(strconv.AppendInt(append(append(b[:0], verb...), ' '), int64(n), 10)))
}

// sendLine writes line, a command whose verb is verb.
func (c *Conn) sendLine(verb, line string) error {
	if err := c.write(verb, line); err != nil {
		return err
	}
	c.due++
	return nil
}

// write writes one line for verb: a command, or a client's response within
// an exchange (see Exchange). Errors name the verb only, never the line.
// The line is held back and goes out with the others held back in one
// write, when the next reply is read (flush), or once sendBuf bytes are
// held.
func (c *Conn) write(verb, line string) error {
	if c.botched != nil {
		return c.botched
	}
	if c.quit != quitNone {
		return fmt.Errorf("%s: %w", verb, errQuitSent)
	}
	if c.due == 0 || c.cont {
		// Whatever arrived since the last reply (or continuation)
		// arrived unasked.
		if err := c.idle("before " + verb); err != nil {
			return err
		}
	}
	if len(c.g.out) == 0 {
		c.queued = verb
	}
	if err := c.c.Send(line); err != nil {
		c.botched = fmt.Errorf("%s: %w", verb, err)
		return c.botched
	}
	if len(c.g.out) >= sendBuf {
		return c.flush()
	}
	return nil
}

// flush sends the commands held back (see write), in one write, by the
// Conn's timeout. A session that has ended sends nothing, and one whose
// write fails has ended: whether the server got the commands is unknown.
func (c *Conn) flush() error {
	if c.botched != nil {
		c.g.out = c.g.out[:0]
		return c.botched
	}
	if err := c.g.flush(c.timeout); err != nil {
		c.botched = fmt.Errorf("%s: %w", c.queued, err)
		return c.botched
	}
	return nil
}

// deadline is when a reply to a command sent now must have arrived.
func (c *Conn) deadline() time.Time { return time.Now().Add(c.timeout) }

// status reads the single-line reply to verb (see readStatus).
func (c *Conn) status(verb string, budget int64, deadline time.Time) ([]byte, error) {
	b, err := c.readStatus(verb, budget, deadline)
	if c.botched != nil {
		return nil, c.botched
	}
	if err := c.replied(verb, err); err != nil {
		return nil, err
	}
	return b, nil
}

// head reads the status line of the multi-line reply to verb (see
// readStatus); the body follows unless it is an -ERR.
func (c *Conn) head(verb string, budget int64, deadline time.Time) ([]byte, error) {
	b, err := c.readStatus(verb, budget, deadline)
	if err != nil && c.botched == nil {
		return nil, c.replied(verb, err) // an -ERR is the whole reply
	}
	return b, err
}

// readStatus reads the status line of the reply to verb within the given
// budget, by the deadline. An -ERR becomes a *RespError; an i/o or budget
// error botches the session. go-pop3 maps "-ERR text" to errors.New(text);
// anything else it returns is an i/o or framing failure
// (TestGoPOP3PinsErrorTexts, TestGoPOP3PinsReadErrors).
func (c *Conn) readStatus(verb string, budget int64, deadline time.Time) ([]byte, error) {
	b, _, err := c.readReply(verb, budget, deadline, false)
	return b, err
}

// readReply is readStatus that, if cont, also takes a continuation line
// ("+ text" or "+", RFC 5034 §4) and returns its text with cont true.
func (c *Conn) readReply(verb string, budget int64, deadline time.Time, cont bool) (_ []byte, isCont bool, _ error) {
	if err := c.flush(); err != nil {
		return nil, false, err
	}
	c.g.expect(budget, deadline)
	b, err := c.c.ReadOne()
	n := c.lines
	c.lines++
	if err == nil {
		if b == nil && c.g.emptyLine(n) {
			// go-pop3 returns nil, nil for "+OK" and for an empty
			// line alike; only the first is a success
			// (TestGoPOP3PinsStatusLines).
			c.botched = fmt.Errorf("%s: %w: empty status line", verb, ErrProtocol)
			return nil, false, c.botched
		}
		return b, false, nil
	}
	if ne := new(net.Error); errors.As(err, ne) || errors.Is(err, io.EOF) || errors.Is(err, ErrBudget) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		c.botched = fmt.Errorf("%s: %w", verb, err)
		return nil, false, c.botched
	}
	if strings.HasPrefix(err.Error(), "unknown response:") {
		if line, ok := unknownResponse(err); ok && cont {
			if text, ok := continuation(line); ok {
				return text, true, nil
			}
		}
		c.botched = fmt.Errorf("%s: %w: %s", verb, ErrProtocol, sanitize(c.redact(err.Error()), 160))
		return nil, false, c.botched
	}
	// The code from the server's own text: masking must not change
	// how the reply is classified.
	code := respCode(sanitize(err.Error(), 200))
	return nil, false, &RespError{Cmd: verb, Code: code, Text: sanitize(c.redact(err.Error()), 200)}
}

// body reads the rest of a multi-line reply whole (see readBody) by the
// deadline, which is the status line's: one bound for the whole reply.
func (c *Conn) body(verb string, budget int64, deadline time.Time) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := c.readBody(verb, budget, deadline, &buf); err != nil {
		return nil, err
	}
	if err := c.replied(verb, nil); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// cmd sends a command and reads its whole reply.
func (c *Conn) cmd(verb string, multi bool, budget int64, args ...any) ([]byte, error) {
	if err := c.send(verb, args...); err != nil {
		return nil, err
	}
	if !multi {
		return c.status(verb, lineBudget, c.deadline())
	}
	return c.reply(verb, budget)
}

// reply reads a whole multi-line reply to a command sent before.
func (c *Conn) reply(verb string, budget int64) ([]byte, error) {
	d := c.deadline()
	if _, err := c.head(verb, lineBudget, d); err != nil {
		return nil, err
	}
	return c.body(verb, budget, d)
}

// Login sends USER/PASS and re-reads the capabilities (see
// capaAfterLogin). The password is never logged or put in an error. A
// refusal wraps ErrAuth, ErrInUse, ErrLoginDelay or ErrLoginRefused, or is
// a -ERR with [SYS/TEMP] (see classifyLogin).
func (c *Conn) Login(user, pass string) error {
	if c.botched != nil {
		return c.botched
	}
	// Pipelined only where a PASS sent after a refused USER reaches no
	// one but the server: over TLS or to a loopback peer, and to a server
	// that lists USER (RFC 2449 §6.8). Dovecot refuses USER on a
	// connection without TLS by default (and leaves USER out of CAPA
	// there): the PASS sent with it would cross the network in the clear.
	if c.caps.pipelining && c.caps.user && (c.g.raw != c.g.Conn || peerLoopback(c.g.raw.RemoteAddr())) {
		return c.loginPipelined(user, pass)
	}
	if _, err := c.cmd("USER", false, 0, user); err != nil {
		return classifyLogin(err)
	}
	c.remember(pass)
	if _, err := c.cmd("PASS", false, 0, pass); err != nil {
		return classifyLogin(err)
	}
	return c.capaAfterLogin()
}

// loginPipelined is Login for a server that announced PIPELINING before
// login (RFC 2449 §6.6): USER and PASS go out in one write, one round trip
// instead of two (only over TLS or to a loopback peer: see Login). The
// password goes to the same server that would get it
// after a +OK to USER, which every server that does not want to tell
// which users exist sends anyway, so the pipelining gives it to no one
// new. A USER refused is the error even though PASS was sent: the reply
// to PASS, due all the same, is read and dropped (a server answers a PASS
// without a USER with -ERR), so that the replies stay in step.
func (c *Conn) loginPipelined(user, pass string) error {
	if err := c.send("USER", user); err != nil {
		return err
	}
	c.remember(pass)
	if err := c.send("PASS", pass); err != nil {
		return err
	}
	_, uerr := c.status("USER", lineBudget, c.deadline())
	if uerr != nil && !IsERR(uerr) {
		return uerr
	}
	_, perr := c.status("PASS", lineBudget, c.deadline())
	switch {
	case uerr != nil && perr != nil && !IsERR(perr):
		// USER refused and the connection ended before PASS was
		// answered (a server that hangs up on an unknown user): the
		// refusal is what went wrong, as it is without pipelining.
		return classifyLogin(uerr)
	case perr != nil && !IsERR(perr):
		return perr
	case uerr != nil:
		if perr == nil {
			// +OK to PASS after -ERR to USER: a server out of
			// step, or one that logs in whom it just refused.
			return c.outOfStep(fmt.Errorf("%w (PASS accepted after USER was refused: %v)", ErrMismatch, uerr))
		}
		return classifyLogin(uerr)
	case perr != nil:
		return classifyLogin(perr)
	}
	return c.capaAfterLogin()
}

// capaAfterLogin re-reads the capabilities in the TRANSACTION state. RFC
// 2449 §5 lets them differ from those announced before login, and not
// only where "LOGIN-DELAY n USER" or "EXPIRE n USER" says so: a server may
// announce EXPIRE 0 or PIPELINING only to a logged-in user. The reply
// after login decides what the session uses (PIPELINING, LOGIN-DELAY),
// except that EXPIRE 0 sticks once either reply said it: taking a server
// for one that keeps retrieved mail when it may not would QUIT after a
// failed delivery and let it expunge the message. A server that answers
// -ERR here keeps what it said before login.
//
// With Options.TrustPipelining and PIPELINING announced before login, the
// CAPA is only noted as due (capaDue): Listing sends it with its own
// commands, and anything else that needs the capabilities or sends a
// command first reads them with a round trip of their own (settle).
func (c *Conn) capaAfterLogin() error {
	if c.trustPipelining && c.caps.pipelining {
		c.capaDue = true
		return nil
	}
	return c.settleCapa(c.capa)
}

// settleCapa applies the CAPA after login that read reads (see
// capaAfterLogin).
func (c *Conn) settleCapa(read func() error) error {
	c.capaDue = false
	pre := c.caps
	if err := read(); err != nil {
		return err
	}
	c.caps.expire0 = c.caps.expire0 || pre.expire0
	return nil
}

// settle reads the capabilities after login now if their CAPA is still
// due (see capaAfterLogin). An i/o error ends the session, and the next
// command returns it; until then the capabilities before login stand.
func (c *Conn) settle() error {
	if !c.capaDue {
		return nil
	}
	return c.settleCapa(c.capa)
}

// classifyLogin maps a failed USER/PASS to the sentinels the scheduler acts
// on (RFC 2449 §8.1, RFC 3206).
func classifyLogin(err error) error {
	var re *RespError
	if !errors.As(err, &re) {
		return err
	}
	switch re.Code {
	case "AUTH":
		// RFC 3206 §4: the credentials themselves. Retrying them is
		// what locks accounts: hold until the operator acts.
		return fmt.Errorf("%w: %v", ErrAuth, err)
	case "IN-USE":
		return fmt.Errorf("%w: %v", ErrInUse, err)
	case "LOGIN-DELAY":
		return fmt.Errorf("%w: %v", ErrLoginDelay, err)
	case "SYS/TEMP":
		return err
	}
	// No code (every -ERR of a server without RESP-CODES), [SYS/PERM] or
	// a code popfetch does not know: perhaps a wrong password, perhaps
	// the mailbox (solid-pop3d answers PASS "-ERR message is damaged").
	// Not a reason to stop for good, nor to retry every poll.
	return fmt.Errorf("%w (the server gave no [AUTH] code, so the cause may be the credentials or the mailbox): %v", ErrLoginRefused, err)
}

// Quit ends the session; the server enters UPDATE and removes the messages
// marked with DELE (RFC 1939 §6). A Conn out of step sends no QUIT. After
// SendQuit it sends nothing: it reads QUIT's reply if ReadQuit has not,
// and returns what ReadQuit returned.
func (c *Conn) Quit() error {
	defer c.Close()
	if c.quit == quitSent {
		c.ReadQuit()
	}
	if c.quit == quitRead {
		return c.quitErr
	}
	_, err := c.cmd("QUIT", false, 0)
	return err
}

// SendQuit sends QUIT with the commands held back for the next write (see
// write), so that its reply follows theirs without a round trip of its
// own; ReadQuit reads it, in command order, and Quit after it only
// closes. Nothing can be sent after it. The caller sends it only once it
// knows that the session will send no other command, and that the UPDATE
// it starts removes nothing that must stay (RFC 1939 §6: the messages
// marked with DELE; RFC 2449 §6.7: with EXPIRE 0, those retrieved).
func (c *Conn) SendQuit() error {
	if c.quit != quitNone {
		return fmt.Errorf("QUIT: %w", errQuitSent)
	}
	c.capaDue = false // the session ends: no capabilities needed
	if err := c.sendLine("QUIT", "QUIT"); err != nil {
		return err
	}
	c.quit = quitSent
	return nil
}

// ReadQuit reads the reply to the QUIT sent with SendQuit: nil, a
// *RespError (RFC 1939 §6: some marked messages not removed), or an error
// that ended the session. The reply ends the dialogue, so the server must
// then have sent nothing more (see idle); its closing the connection is
// not more.
func (c *Conn) ReadQuit() error {
	if c.quit != quitSent {
		return fmt.Errorf("QUIT: %w", errQuitSent)
	}
	c.quit = quitRead
	_, err := c.status("QUIT", lineBudget, c.deadline())
	if err == nil || IsERR(err) {
		if e := c.idle("after the reply to QUIT"); e != nil {
			err = e
		}
	}
	c.quitErr = err
	return err
}

// errQuitSent is a bug of the caller: a command after SendQuit, a second
// SendQuit, or ReadQuit without one.
var errQuitSent = errors.New("pop3: command out of order with QUIT")

// Close drops the connection without QUIT: the server must not remove any
// message (RFC 1939 §6). It may be called more than once.
func (c *Conn) Close() {
	if c.stopCtx != nil {
		c.stopCtx()
	}
	c.g.Close()
}

// MaxMessageSize bounds one message: the server's LIST size, from which a
// RETR reply's budget and deadline follow, is trusted only up to
// MaxMessageSize, and the caller leaves a message claiming more on the
// server, as it does one over the account's limit. Documented in
// popfetch.hcl(5) under limit.
const MaxMessageSize = 1 << 30 // bytes

const (
	// maxReplyBytes caps what a RETR reply may send: the largest message
	// plus room for dot-stuffing and CRLF line ends.
	maxReplyBytes = MaxMessageSize + MaxMessageSize/8
	minRate       = 32 << 10 // bytes/s that any link popfetch supports sustains
)

// clampSize bounds a LIST size to 0..MaxMessageSize, so the arithmetic
// below cannot overflow whatever a server claims.
func clampSize(size int64) int64 {
	return min(max(size, 0), MaxMessageSize)
}

// retrBudget bounds a RETR reply: twice the LIST size plus 1 MiB, so that a
// server whose LIST undercounts (dot-stuffing, bare LF sent as CRLF, a size
// that is simply wrong) still gets the message through, and never more than
// maxReplyBytes.
func retrBudget(size int64) int64 {
	return min(2*clampSize(size)+1<<20, maxReplyBytes)
}

// retrDeadline bounds a RETR as a whole, status line and body together, not
// only per read: a server trickling a byte a second must not keep a poll
// alive (slowloris). It is the account's timeout plus one second per
// minRate bytes of the LIST size: at most timeout + 9.1 h for the largest
// message.
func retrDeadline(timeout time.Duration, size int64) time.Duration {
	return timeout + time.Duration(clampSize(size)/minRate)*time.Second
}

// remember records credentials the session sends (a PASS argument, the
// base64 of a SASL response, an APOP digest) or holds (the password, an
// access token). A server that quotes the offending command line in its
// -ERR would otherwise put them in an error, and so in the log, the
// journal and `popfetch status`; redact masks them in every server text
// that goes into an error. This is the one place that does so.
func (c *Conn) remember(secrets ...string) {
	for _, s := range secrets {
		if s != "" && !slices.Contains(c.secrets, s) {
			c.secrets = append(c.secrets, s)
		}
	}
}

// redact masks the session's credentials (see remember) in server text,
// before it is cut to length: a secret cut in two would leave half of it.
func (c *Conn) redact(text string) string {
	return redact.Secrets(text, c.secrets...)
}
