package pop3

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	gopop3 "github.com/knadh/go-pop3"
)

// The tests named TestGoPOP3Pins… pin what this package assumes about
// github.com/knadh/go-pop3 (v1.0.1 when written): each fails if an
// upgrade changes the behaviour that the code named in its comment relies
// on. Fix that code before changing the pin.

// scriptConn is a net.Conn that serves a script and records what go-pop3
// asks of it.
type scriptConn struct {
	r       io.Reader
	readErr error // returned once r is exhausted; default io.EOF
	maxRead int   // largest buffer Read was given
	reads   int   // bytes handed out
	written bytes.Buffer
	writes  int // Write calls
	wErr    error
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.maxRead = max(c.maxRead, len(p))
	n, err := c.r.Read(p)
	c.reads += n
	if err == io.EOF && c.readErr != nil {
		err = c.readErr
	}
	return n, err
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.writes++
	if c.wErr != nil {
		return 0, c.wErr
	}
	return c.written.Write(p)
}

func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// goPOP3 returns a go-pop3 connection that has read the greeting "+OK hi"
// from a conn serving the greeting and then script.
func goPOP3(t *testing.T, script string) (*gopop3.Conn, *scriptConn) {
	t.Helper()
	sc := &scriptConn{r: strings.NewReader("+OK hi\r\n" + script)}
	pc, err := gopop3.New(gopop3.Opt{Host: "h", Port: 1, Dialer: dialerFunc(func(string, string) (net.Conn, error) { return sc, nil })}).NewConn()
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	return pc, sc
}

// conn.go, guardConn: go-pop3's ReadOne reads until the first '\n' and asks
// the conn for nothing more, so a guard that hands it one line per Read
// leaves every byte after the status line in popfetch's reader (where
// readBody and the next reply find them, and waiting sees them), and
// go-pop3's buffer empty. A status line longer than go-pop3's buffer comes
// whole, in several Reads.
func TestGoPOP3PinsOneLine(t *testing.T) {
	long := "+OK " + strings.Repeat("x", 3*4096)
	sc := &scriptConn{r: strings.NewReader("+OK one\r\n" + long + "\r\nbody\r\n.\r\n")}
	g := newGuard(sc, sc, []byte("+OK hi\r\n"))
	pc, err := gopop3.New(gopop3.Opt{Host: "h", Port: 1, Dialer: dialerFunc(func(string, string) (net.Conn, error) { return g, nil })}).NewConn()
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	g.expect(lineBudget, time.Time{})
	if b, err := pc.ReadOne(); err != nil || string(b) != "one" {
		t.Fatalf("ReadOne = %q, %v", b, err)
	}
	next, _ := g.br.Peek(g.br.Buffered())
	if !strings.HasPrefix(long+"\r\nbody\r\n.\r\n", string(next)) || len(next) == 0 || g.lines != 2 {
		t.Fatalf("after ReadOne of a status line the guard holds %.20q…, %d lines taken; want the next line, untouched, and 2 lines", next, g.lines)
	}
	g.expect(lineBudget, time.Time{})
	if b, err := pc.ReadOne(); err != nil || string(b) != long[4:] {
		t.Fatalf("ReadOne of a %d-byte line = %d bytes, %v", len(long), len(b), err)
	}
	if line, err := g.br.ReadString('\n'); err != nil || line != "body\r\n" {
		t.Fatalf("after the second status line the guard's reader gives %q, %v; want the body's first line", line, err)
	}
}

// conn.go, readReply: go-pop3's ReadOne returns nil, nil for "+OK" and
// for an empty line alike (guardConn.emptyLine tells them apart), and the
// text after "+OK " otherwise; an unterminated line at EOF is an error.
func TestGoPOP3PinsStatusLines(t *testing.T) {
	for _, tt := range []struct {
		line string
		want []byte
	}{
		{"+OK\r\n", nil},
		{"\r\n", nil},
		{"\n", nil},
		{"+OK\n", nil},
		{"+OK 2 320\r\n", []byte("2 320")},
		{"+OK  two spaces\r\n", []byte(" two spaces")},
	} {
		pc, _ := goPOP3(t, tt.line)
		got, err := pc.ReadOne()
		if err != nil || !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("ReadOne(%q) = %q, %v; want %q, nil", tt.line, got, err, tt.want)
		}
	}
	pc, _ := goPOP3(t, "+OK no line end")
	if b, err := pc.ReadOne(); !errors.Is(err, io.EOF) {
		t.Errorf("ReadOne of an unterminated line at EOF = %q, %v; want io.EOF", b, err)
	}
}

// conn.go, readReply, and exchange.go, unknownResponse: go-pop3 turns
// "-ERR text" into errors.New(text) (a RespError), a bare "-ERR" into a
// fixed text, and any other line into "unknown response: LINE. Neither
// -ERR, nor +OK" (a protocol error, or a continuation line), with LINE
// exactly as sent less its line end.
func TestGoPOP3PinsErrorTexts(t *testing.T) {
	for _, tt := range []struct{ line, want string }{
		{"-ERR [IN-USE] locked", "[IN-USE] locked"},
		{"-ERR", "unknown error (no info specified in response)"},
		{"-ERR unknown response: x", "unknown response: x"}, // a server's own text: taken for a framing error (see readReply)
		{"HELLO", "unknown response: HELLO. Neither -ERR, nor +OK"},
		{"+OKAY", "unknown response: +OKAY. Neither -ERR, nor +OK"},
		{"-ERRx", "unknown response: -ERRx. Neither -ERR, nor +OK"},
		{"+ dGVzdA==", "unknown response: + dGVzdA==. Neither -ERR, nor +OK"},
		{"+", "unknown response: +. Neither -ERR, nor +OK"},
		{"+ a. Neither -ERR, nor +OK", "unknown response: + a. Neither -ERR, nor +OK. Neither -ERR, nor +OK"},
	} {
		pc, _ := goPOP3(t, tt.line+"\r\n")
		b, err := pc.ReadOne()
		if err == nil || err.Error() != tt.want || b != nil {
			t.Errorf("ReadOne(%q) = %q, %v; want error %q", tt.line, b, err, tt.want)
		}
	}
	// The parse this package makes of those texts.
	pc, _ := goPOP3(t, "+ a. Neither -ERR, nor +OK\r\n")
	_, err := pc.ReadOne()
	if line, ok := unknownResponse(err); !ok || string(line) != "+ a. Neither -ERR, nor +OK" {
		t.Errorf("unknownResponse(%v) = %q, %v", err, line, ok)
	}
}

// body.go, readBody, which must produce exactly what go-pop3's ReadAll
// did (FuzzReadRetrTo compares them): ReadAll consumes lines up to and
// including the "." line (CRLF or bare LF), removes one leading dot (RFC
// 1939 §3 byte-stuffing), and ends each line it returns with CRLF, so the
// count of LFs it returns is the count of lines it consumed less the "."
// line. A reply that ends before the "." line is an error with no data:
// such a message is never delivered.
func TestGoPOP3PinsMultiLine(t *testing.T) {
	pc, _ := goPOP3(t, "a\r\n..b\r\nc\n.x\r\n. \r\nd\r\r\n\r\n.\n+OK next\r\n")
	buf, err := pc.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	const want = "a\r\n.b\r\nc\r\nx\r\n \r\nd\r\r\n\r\n"
	if got := buf.String(); got != want {
		t.Fatalf("ReadAll = %q; want %q", got, want)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 7 {
		t.Fatalf("ReadAll returned %d LFs for 7 lines", n)
	}
	if b, err := pc.ReadOne(); err != nil || string(b) != "next" {
		t.Fatalf("ReadOne after ReadAll = %q, %v; want the next line", b, err)
	}
	pc, _ = goPOP3(t, "a\r\nb\r\n")
	if buf, err := pc.ReadAll(); !errors.Is(err, io.EOF) || buf != nil {
		t.Fatalf("ReadAll without the \".\" line = %v, %v; want nil, io.EOF", buf, err)
	}
}

// conn.go, readReply: an error from the conn (a deadline, the budget,
// EOF) comes out of ReadOne as it was, unwrapped, so that it is told apart
// from a -ERR (errors.Is and errors.As still work because it is the same
// value). ReadAll, which readBody stands in for, does the same.
func TestGoPOP3PinsReadErrors(t *testing.T) {
	for _, cerr := range []error{ErrBudget, os.ErrDeadlineExceeded, io.ErrUnexpectedEOF} {
		pc, sc := goPOP3(t, "+OK partial")
		sc.readErr = cerr
		if _, err := pc.ReadOne(); err != cerr {
			t.Errorf("ReadOne with conn error %v = %v; want it unchanged", cerr, err)
		}
		pc, sc = goPOP3(t, "line\r\npartial")
		sc.readErr = cerr
		if _, err := pc.ReadAll(); err != cerr {
			t.Errorf("ReadAll with conn error %v = %v; want it unchanged", cerr, err)
		}
	}
}

// conn.go, write: Send writes the line and CRLF to the conn in one Write
// before it returns (guardConn.Write holds the command back for
// Conn.flush), and returns the conn's write error.
func TestGoPOP3PinsSend(t *testing.T) {
	pc, sc := goPOP3(t, "")
	if err := pc.Send("RETR 1"); err != nil || sc.written.String() != "RETR 1\r\n" || sc.writes != 1 {
		t.Fatalf("Send = %v, wrote %q in %d Writes", err, sc.written.String(), sc.writes)
	}
	sc.wErr = os.ErrDeadlineExceeded
	if err := pc.Send("DELE 1"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Send with a failing conn = %v", err)
	}
}

// conn.go, Dial: NewConn dials through Opt.Dialer with "tcp" and
// "host:port", adds no TLS of its own when TLSEnabled is false, reads the
// greeting with ReadOne (one line: guardConn replays exactly that), and
// fails if the Dialer does.
func TestGoPOP3PinsNewConn(t *testing.T) {
	var network, addr string
	sc := &scriptConn{r: strings.NewReader("+OK hi\r\n+OK next\r\n")}
	pc, err := gopop3.New(gopop3.Opt{Host: "mail.example.org", Port: 995, Dialer: dialerFunc(func(n, a string) (net.Conn, error) {
		network, addr = n, a
		return sc, nil
	})}).NewConn()
	if err != nil || network != "tcp" || addr != "mail.example.org:995" {
		t.Fatalf("NewConn = %v; dialed %q %q", err, network, addr)
	}
	if b, err := pc.ReadOne(); err != nil || string(b) != "next" {
		t.Fatalf("ReadOne after NewConn = %q, %v; want the line after the greeting", b, err)
	}
	dialErr := errors.New("refused")
	if _, err := gopop3.New(gopop3.Opt{Host: "h", Port: 1, Dialer: dialerFunc(func(string, string) (net.Conn, error) { return nil, dialErr })}).NewConn(); err == nil {
		t.Fatal("NewConn with a failing Dialer succeeded")
	}
}
