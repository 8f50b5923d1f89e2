package pop3test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// client is a minimal raw POP3 client: the tests check the server's bytes,
// so it must not interpret more than it has to.
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// testDeadline bounds every test read so that a server bug fails the test
// instead of hanging it.
const testDeadline = 5 * time.Second

func dial(t testing.TB, s *Server) *client {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatalf("Dial(%s) = %v", s.Addr(), err)
	}
	return newClient(t, c)
}

func newClient(t testing.TB, c net.Conn) *client {
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testDeadline))
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) send(lines ...string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		c.t.Fatalf("write %q: %v", lines, err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read line: got %q, %v", l, err)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends one command and returns the first line of the answer.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.line()
}

// want sends a command and fails unless the answer starts with prefix.
func (c *client) want(line, prefix string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("%s: got %q, want prefix %q", line, got, prefix)
	}
	return got
}

// body reads a multi-line body up to ".", unstuffed.
func (c *client) body() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if l == "." {
			return out
		}
		out = append(out, strings.TrimPrefix(l, "."))
	}
}

// multi sends a command, checks +OK and returns the unstuffed body.
func (c *client) multi(line string) []string {
	c.t.Helper()
	c.want(line, "+OK")
	return c.body()
}

func (c *client) login() {
	c.t.Helper()
	c.want("USER user", "+OK")
	c.want("PASS pass", "+OK")
}

// wantEOF fails unless the server closes the connection next.
func (c *client) wantEOF() {
	c.t.Helper()
	b, err := io.ReadAll(c.r)
	if err != nil || len(b) > 0 {
		c.t.Fatalf("after the drop: read %q, %v; want EOF", b, err)
	}
}

var (
	msgA = Message{UID: "uid-a", Data: []byte("Subject: a\r\n\r\n.hidden\r\n..two\r\nend\r\n")}
	msgB = Message{UID: "uid-b", Data: []byte("Subject: b\r\n\r\nbody b\r\n")}
)

func twoMessages() []Message { return []Message{msgA, msgB} }

func dump(t *testing.T, s *Server) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("transcript:\n%s", s.Transcript())
		}
	})
}

// greeted starts a server with o (its transcript logged if the test
// fails) and connects a client that has read the greeting.
func greeted(t *testing.T, o Options) (*Server, *client) {
	t.Helper()
	s := NewServer(t, o)
	dump(t, s)
	c := dial(t, s)
	c.line()
	return s, c
}

func TestNormalSession(t *testing.T) {
	t.Parallel()
	s := NewServer(t, Options{Messages: twoMessages()})
	dump(t, s)
	c := dial(t, s)
	if g := c.line(); g != "+OK pop3test ready" {
		t.Fatalf("greeting = %q", g)
	}
	capa := c.multi("CAPA")
	if want := []string{"USER", "UIDL", "TOP", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"}; !slices.Equal(capa, want) {
		t.Errorf("CAPA = %q; want %q", capa, want)
	}
	c.want("STAT", "-ERR")
	c.login()
	sizeA, sizeB := len(msgA.Data), len(msgB.Data)
	if got, want := c.cmd("STAT"), fmt.Sprintf("+OK 2 %d", sizeA+sizeB); got != want {
		t.Errorf("STAT = %q; want %q", got, want)
	}
	if got, want := c.multi("UIDL"), []string{"1 uid-a", "2 uid-b"}; !slices.Equal(got, want) {
		t.Errorf("UIDL = %q; want %q", got, want)
	}
	if got, want := c.cmd("UIDL 2"), "+OK 2 uid-b"; got != want {
		t.Errorf("UIDL 2 = %q; want %q", got, want)
	}
	// RFC 1939 §5: the exact size, counted with CRLF, before stuffing.
	if got, want := c.multi("LIST"), []string{fmt.Sprintf("1 %d", sizeA), fmt.Sprintf("2 %d", sizeB)}; !slices.Equal(got, want) {
		t.Errorf("LIST = %q; want %q", got, want)
	}
	if got, want := c.cmd("LIST 1"), fmt.Sprintf("+OK 1 %d", sizeA); got != want {
		t.Errorf("LIST 1 = %q; want %q", got, want)
	}
	for _, bad := range []string{"LIST 0", "LIST 3", "LIST -1", "LIST +1", "LIST x", "RETR 99999", "DELE", "TOP 1"} {
		c.want(bad, "-ERR")
	}

	// Read RETR raw to check the stuffing on the wire.
	c.want("RETR 1", "+OK")
	var wire []string
	for l := c.line(); l != "."; l = c.line() {
		wire = append(wire, l)
	}
	if want := []string{"Subject: a", "", "..hidden", "...two", "end"}; !slices.Equal(wire, want) {
		t.Errorf("RETR 1 on the wire = %q; want %q", wire, want)
	}
	if got, want := c.multi("TOP 1 1"), []string{"Subject: a", "", ".hidden"}; !slices.Equal(got, want) {
		t.Errorf("TOP 1 1 = %q; want %q", got, want)
	}
	if got, want := c.multi("TOP 2 0"), []string{"Subject: b", ""}; !slices.Equal(got, want) {
		t.Errorf("TOP 2 0 = %q; want %q", got, want)
	}

	c.want("DELE 1", "+OK")
	c.want("DELE 1", "-ERR")
	if got := c.cmd("RETR 1"); got != "-ERR message deleted" {
		t.Errorf("RETR of a deleted message = %q", got)
	}
	if got, want := c.multi("UIDL"), []string{"2 uid-b"}; !slices.Equal(got, want) {
		t.Errorf("UIDL after DELE = %q; want %q", got, want)
	}
	c.want("NOOP", "+OK")
	if n := len(s.Messages()); n != 2 {
		t.Errorf("before QUIT the mailbox has %d messages; want 2", n)
	}
	c.want("QUIT", "+OK")
	c.wantEOF()
	if got := s.Messages(); len(got) != 1 || got[0].UID != "uid-b" {
		t.Errorf("Messages() after QUIT = %v; want only uid-b", got)
	}
	if cmds := s.Commands(); !slices.Contains(cmds, "PASS pass") || cmds[len(cmds)-1] != "QUIT" {
		t.Errorf("Commands() = %q", cmds)
	}
	if tr := s.Transcript(); !strings.Contains(tr, "C: DELE 1\nS: +OK") || !strings.Contains(tr, "=== session 1") {
		t.Errorf("Transcript() = %s", tr)
	}
	if s.Sessions() != 1 {
		t.Errorf("Sessions() = %d; want 1", s.Sessions())
	}
}

func TestRSETAndBadPassword(t *testing.T) {
	t.Parallel()
	s, c := greeted(t, Options{Messages: twoMessages(), User: "joe", Pass: "s3cret with space"})
	c.want("PASS x", "-ERR")
	c.want("USER joe", "+OK")
	if got := c.cmd("PASS wrong"); got != "-ERR [AUTH] invalid credentials" {
		t.Fatalf("bad PASS = %q", got)
	}
	c.want("USER joe", "+OK")
	c.want("PASS s3cret with space", "+OK")
	c.want("DELE 2", "+OK")
	c.want("RSET", "+OK")
	c.want("QUIT", "+OK")
	c.wantEOF()
	if n := len(s.Messages()); n != 2 {
		t.Errorf("after RSET and QUIT the mailbox has %d messages; want 2", n)
	}
}

// RFC 1939 §6: no QUIT, no UPDATE state.
func TestDropWithoutQUITDeletesNothing(t *testing.T) {
	t.Parallel()
	s, c := greeted(t, Options{Messages: twoMessages()})
	c.login()
	c.want("DELE 1", "+OK")
	c.want("DELE 2", "+OK")
	c.c.Close()

	c2 := dial(t, s)
	c2.line()
	c2.login()
	if got := c2.cmd("STAT"); !strings.HasPrefix(got, "+OK 2 ") {
		t.Errorf("STAT in the next session = %q; want 2 messages", got)
	}
	if n := len(s.Messages()); n != 2 {
		t.Errorf("Messages() has %d; want 2", n)
	}
}

func TestPipelining(t *testing.T) {
	t.Parallel()
	_, c := greeted(t, Options{Messages: twoMessages()})
	// Everything in one write, before reading any answer (RFC 2449 §6.6).
	c.send("USER user", "PASS pass", "STAT", "UIDL 1", "RETR 2", "BOGUS", "LIST 2", "NOOP")
	want := []string{"+OK", "+OK", "+OK 2 ", "+OK 1 uid-a", "+OK", "-ERR", "+OK 2 ", "+OK"}
	for i, w := range want {
		got := c.line()
		if !strings.HasPrefix(got, w) {
			t.Fatalf("answer %d = %q; want prefix %q", i, got, w)
		}
		if i == 4 {
			if b := c.body(); !slices.Equal(b, []string{"Subject: b", "", "body b"}) {
				t.Fatalf("pipelined RETR 2 = %q", b)
			}
		}
	}
}

// RFC 2449 §4: 255 octets; a longer line is refused, the session goes on.
func TestLongCommandLine(t *testing.T) {
	t.Parallel()
	s, c := greeted(t, Options{})
	c.want("USER "+strings.Repeat("u", 248), "+OK") // 255 with CRLF
	c.want("USER "+strings.Repeat("u", 249), "-ERR")
	c.want("USER "+strings.Repeat("u", 10000), "-ERR")
	c.login()
	if cmds := s.Commands(); len(cmds[2]) != keepCommand {
		t.Errorf("recorded a 10005-byte line as %d bytes; want %d", len(cmds[2]), keepCommand)
	}
}

func TestNoUIDL(t *testing.T) {
	t.Parallel()
	_, c := greeted(t, Options{Messages: twoMessages(), NoUIDL: true})
	if capa := c.multi("CAPA"); slices.Contains(capa, "UIDL") {
		t.Errorf("CAPA = %q lists UIDL", capa)
	}
	c.login()
	c.want("UIDL", "-ERR")
	c.want("UIDL 1", "-ERR")
}

func TestNoTOP(t *testing.T) {
	t.Parallel()
	_, c := greeted(t, Options{Messages: twoMessages(), NoTOP: true})
	if capa := c.multi("CAPA"); slices.Contains(capa, "TOP") || !slices.Contains(capa, "UIDL") {
		t.Errorf("CAPA = %q; want UIDL without TOP", capa)
	}
	c.login()
	c.want("TOP 1 0", "-ERR")
	c.want("RETR 1", "+OK")
}

func tlsClient(t testing.TB, pool *x509.CertPool, conn net.Conn) *client {
	t.Helper()
	tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	tc.SetDeadline(time.Now().Add(testDeadline))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	return newClient(t, tc)
}

func TestSTLS(t *testing.T) {
	t.Parallel()
	_, cfg, pool := GenerateCert(t)
	_, c := greeted(t, Options{Messages: twoMessages(), TLS: cfg, STLS: true})
	if capa := c.multi("CAPA"); !slices.Contains(capa, "STLS") {
		t.Fatalf("CAPA = %q; want STLS", capa)
	}
	c.want("USER user", "+OK")
	c.want("STLS", "+OK")
	if n := c.r.Buffered(); n != 0 {
		t.Fatalf("%d bytes buffered after STLS +OK", n)
	}
	tc := tlsClient(t, pool, c.c)
	if capa := tc.multi("CAPA"); slices.Contains(capa, "STLS") {
		t.Errorf("CAPA over TLS = %q still lists STLS", capa)
	}
	tc.want("STLS", "-ERR")
	// RFC 2595 §4: the USER sent in plaintext does not carry over.
	tc.want("PASS pass", "-ERR")
	tc.login()
	tc.want("STAT", "+OK 2 ")
	tc.want("QUIT", "+OK")
	tc.wantEOF()
}

func TestSTLSNotOffered(t *testing.T) {
	t.Parallel()
	_, cfg, _ := GenerateCert(t)
	s := NewServer(t, Options{TLS: cfg})
	c := dial(t, s)
	c.line()
	c.want("STLS", "-ERR")
	if capa := c.multi("CAPA"); slices.Contains(capa, "STLS") {
		t.Errorf("CAPA = %q lists STLS", capa)
	}
}

func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	caPEM, cfg, _ := GenerateCert(t, "localhost")
	s := NewServer(t, Options{Messages: twoMessages(), TLS: cfg, Implicit: true})
	dump(t, s)

	// Verify through the CA file, as a client with ca_file would.
	pem, err := os.ReadFile(WriteCAFile(t, caPEM))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file holds no certificate")
	}
	tc, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("tls.Dial = %v", err)
	}
	c := newClient(t, tc)
	c.line()
	c.login()
	c.want("STAT", "+OK 2 ")

	// The certificate names only "localhost": a client checking another
	// name must fail.
	if _, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err == nil {
		t.Error("handshake for a name not in the certificate succeeded")
	}
}

func TestFaultGreeting(t *testing.T) {
	t.Parallel()
	s := NewServer(t, Options{Faults: []Fault{{Cmd: "GREETING", Session: 1, Action: Reply, Reply: "-ERR [SYS/TEMP] busy"}}})
	dump(t, s)
	c := dial(t, s)
	if g := c.line(); g != "-ERR [SYS/TEMP] busy" {
		t.Errorf("greeting of session 1 = %q", g)
	}
	c2 := dial(t, s)
	if g := c2.line(); g != "+OK pop3test ready" {
		t.Errorf("greeting of session 2 = %q", g)
	}
}

func TestFaultReplyListings(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("u", 200)
	s := NewServer(t, Options{Messages: twoMessages(), Faults: []Fault{
		{Cmd: "UIDL", Action: Reply, Reply: "+OK\r\n1 " + long + "\r\n.\r\n"},
		{Cmd: "LIST", Action: Reply, Reply: "+OK\n0 10\n-1 10\n99999 10\n1 5\n1 5\n."},
		{Cmd: "STAT", Action: Reply, Reply: "+OK 4294967296 1"},
		{Cmd: "PASS", Action: Reply, Reply: "-ERR [IN-USE] locked", N: 1},
	}})
	dump(t, s)
	c := dial(t, s)
	c.line()
	c.want("USER user", "+OK")
	if got := c.cmd("PASS pass"); got != "-ERR [IN-USE] locked" {
		t.Fatalf("PASS #1 = %q", got)
	}
	c.want("RETR 1", "-ERR") // the faulted PASS did not log in
	c.login()
	if got := c.multi("UIDL"); len(got) != 1 || got[0] != "1 "+long {
		t.Errorf("UIDL = %q", got)
	}
	if got, want := c.multi("LIST"), []string{"0 10", "-1 10", "99999 10", "1 5", "1 5"}; !slices.Equal(got, want) {
		t.Errorf("LIST = %q; want %q", got, want)
	}
	if got := c.cmd("STAT"); got != "+OK 4294967296 1" {
		t.Errorf("STAT = %q", got)
	}
}

// A Reply with -ERR leaves the command without effect: the DELE did not
// mark the message, so QUIT keeps it.
func TestFaultReplyDELEFails(t *testing.T) {
	t.Parallel()
	s, c := greeted(t, Options{Messages: twoMessages(), Faults: []Fault{{Cmd: "DELE", N: 1, Action: Reply, Reply: "-ERR DELE failed"}}})
	c.login()
	c.want("DELE 1", "-ERR DELE failed")
	c.want("DELE 2", "+OK")
	c.want("QUIT", "+OK")
	c.wantEOF()
	if got := s.Messages(); len(got) != 1 || got[0].UID != "uid-a" {
		t.Errorf("Messages() = %v; want only uid-a", got)
	}
}

func TestFaultSTLSInjection(t *testing.T) {
	t.Parallel()
	_, cfg, pool := GenerateCert(t)
	_, c := greeted(t, Options{TLS: cfg, STLS: true, Faults: []Fault{{Cmd: "STLS", Action: Reply, Reply: "+OK\r\n+OK injected"}}})
	c.want("STLS", "+OK")
	// The injected line arrives with the +OK, in plaintext: a careful
	// client sees bytes buffered here and aborts.
	if got := c.line(); got != "+OK injected" {
		t.Fatalf("after STLS +OK: %q", got)
	}
	// The server still starts TLS, so that a careless client proceeds and
	// a test can observe it reading the injected line as a TLS answer.
	tc := tlsClient(t, pool, c.c)
	tc.want("NOOP", "-ERR")
}

func TestFaultSTLSRefused(t *testing.T) {
	t.Parallel()
	_, cfg, _ := GenerateCert(t)
	s := NewServer(t, Options{TLS: cfg, STLS: true, Faults: []Fault{{Cmd: "STLS", Action: Reply, Reply: "-ERR [SYS/TEMP] no TLS today"}}})
	c := dial(t, s)
	c.line()
	c.want("STLS", "-ERR [SYS/TEMP]")
	c.want("USER user", "+OK") // still plaintext
}

func TestFaultDrop(t *testing.T) {
	t.Parallel()
	_, c := greeted(t, Options{Messages: twoMessages(), Faults: []Fault{{Cmd: "RETR", Action: Drop}}})
	c.login()
	c.send("RETR 1")
	c.wantEOF()
}

// QUIT dropped before its answer: no UPDATE, nothing removed.
func TestFaultDropQUIT(t *testing.T) {
	t.Parallel()
	s, c := greeted(t, Options{Messages: twoMessages(), Faults: []Fault{{Cmd: "QUIT", Action: Drop}}})
	c.login()
	c.want("DELE 1", "+OK")
	c.send("QUIT")
	c.wantEOF()
	if n := len(s.Messages()); n != 2 {
		t.Errorf("Messages() has %d; want 2", n)
	}
}

// The typical crash window: RETR answered, connection gone before DELE's
// answer.
func TestFaultDropAfter(t *testing.T) {
	t.Parallel()
	s, c := greeted(t, Options{Messages: twoMessages(), Faults: []Fault{{Cmd: "DELE", Action: DropAfter}}})
	c.login()
	c.multi("RETR 1")
	c.want("DELE 1", "+OK")
	c.wantEOF()
	if n := len(s.Messages()); n != 2 {
		t.Errorf("Messages() has %d; want 2", n)
	}
}

// Append: the normal answer, then the extra lines; the command takes
// effect. Skip: no answer, the command does not take effect, and the next
// command is answered as usual.
func TestFaultAppendAndSkip(t *testing.T) {
	t.Parallel()
	s := NewServer(t, Options{Messages: twoMessages(), Faults: []Fault{
		{Cmd: "DELE", N: 1, Action: Append, Reply: "-ERR stray\r\n+OK stray"},
		{Cmd: "DELE", N: 2, Action: Skip},
	}})
	dump(t, s)
	c := dial(t, s)
	c.line()
	c.login()
	c.want("DELE 1", "+OK")
	c.want("NOOP", "-ERR stray")
	if got := c.line(); got != "+OK stray" {
		t.Fatalf("second appended line = %q", got)
	}
	if got := c.line(); got != "+OK" {
		t.Fatalf("NOOP answer = %q", got)
	}
	c.send("DELE 2")
	c.want("STAT", "+OK 1 ") // DELE 2 skipped: unanswered, message 2 not marked
	c.want("QUIT", "+OK")
	if got := s.Messages(); len(got) != 1 || got[0].UID != msgB.UID {
		t.Fatalf("Messages() = %v; want only %s (DELE 1 took effect, the skipped DELE 2 did not)", got, msgB.UID)
	}
}

func TestFaultHang(t *testing.T) {
	t.Parallel()
	_, c := greeted(t, Options{Faults: []Fault{{Cmd: "CAPA", Action: Hang}}})
	c.send("CAPA")
	c.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := c.r.ReadByte()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read from a hanging server = %v; want a timeout", err)
	}
}

// Close ends a hanging session, and every other one, and waits for them.
func TestCloseEndsSessions(t *testing.T) {
	t.Parallel()
	_, cfg, _ := GenerateCert(t)
	s := NewServer(t, Options{TLS: cfg, STLS: true, Faults: []Fault{{Cmd: "NOOP", Action: Hang}}})
	hung := dial(t, s)
	hung.line()
	hung.send("NOOP")
	inTLS := dial(t, s) // will stall in the handshake: the client never starts it
	inTLS.line()
	inTLS.want("STLS", "+OK")
	idle := dial(t, s)
	idle.line()
	s.Close()
	for _, c := range []*client{hung, inTLS, idle} {
		c.wantEOF()
	}
	s.Close() // idempotent
}

func TestFaultTrickle(t *testing.T) {
	t.Parallel()
	s := NewServer(t, Options{Faults: []Fault{{Cmd: "GREETING", Action: Trickle}}})
	dump(t, s)
	c := dial(t, s)
	start := time.Now()
	var b [3]byte
	if _, err := io.ReadFull(c.r, b[:]); err != nil {
		t.Fatalf("read = %v", err)
	}
	// Three bytes take at least two intervals; only the lower bound is
	// safe to assert on a loaded machine.
	if el := time.Since(start); el < 2*trickleDelay-20*time.Millisecond {
		t.Errorf("3 bytes took %v; want at least %v", el, 2*trickleDelay)
	}
	if string(b[:]) != "+OK" {
		t.Errorf("got %q", b)
	}
}

func TestFaultEndlessLine(t *testing.T) {
	t.Parallel()
	_, c := greeted(t, Options{Faults: []Fault{{Cmd: "CAPA", Action: EndlessLine}}})
	c.send("CAPA")
	const want = 1<<20 + 1
	n, err := io.CopyN(io.Discard, readUntilLF{c.r}, want)
	if err != nil {
		t.Fatalf("read %d bytes without LF, then %v; want more than %d", n, err, want-1)
	}
}

// readUntilLF fails the read as soon as a line ends.
type readUntilLF struct{ r io.Reader }

func (r readUntilLF) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if i := bytes.IndexByte(p[:n], '\n'); i >= 0 {
		return i, errors.New("got an LF")
	}
	return n, err
}

func TestFaultEndlessMulti(t *testing.T) {
	t.Parallel()
	_, c := greeted(t, Options{Messages: twoMessages(), Faults: []Fault{{Cmd: "UIDL", Action: EndlessMulti}}})
	c.login()
	c.want("UIDL", "+OK")
	for i := range 50000 {
		if l := c.line(); l == "." || strings.HasPrefix(l, ".") {
			t.Fatalf("line %d = %q", i, l)
		}
	}
}

func TestFaultTruncate(t *testing.T) {
	t.Parallel()
	_, c := greeted(t, Options{Messages: twoMessages(), Faults: []Fault{{Cmd: "RETR", Action: Truncate}}})
	c.login()
	c.want("RETR 1", "+OK")
	rest, err := io.ReadAll(c.r)
	if err != nil {
		t.Fatalf("read = %v", err)
	}
	full := dotStuff(msgA.Data)
	if len(rest) == 0 || len(rest) >= len(full) || !bytes.HasPrefix(full, rest) {
		t.Errorf("truncated body = %q; want a proper prefix of %q", rest, full)
	}
}

func TestFaultCustom(t *testing.T) {
	t.Parallel()
	s := NewServer(t, Options{Messages: twoMessages(), Faults: []Fault{
		// A SASL exchange the server does not otherwise know.
		{Cmd: "AUTH", Action: Custom, Func: func(c *Conn) {
			c.WriteLine("+ Y2hhbGxlbmdl")
			if l, err := c.ReadLine(); err == nil && l == "*" {
				c.WriteLine("-ERR cancelled")
			}
		}},
		// The normal answer followed by garbage, then a drop.
		{Cmd: "RETR", Action: Custom, Func: func(c *Conn) {
			c.Write(c.Answer())
			c.Write([]byte("+OK stray\r\n"))
			c.Close()
		}},
		// "+OK" to STLS and then silence (CVE-2011-1947).
		{Cmd: "NOOP", Action: Custom, Func: func(c *Conn) {
			if c.Session() != 3 {
				c.WriteLine("+OK session 2")
				return
			}
			c.WriteLine("+OK")
			c.Hang()
		}},
	}})
	dump(t, s)
	c := dial(t, s)
	c.line()
	c.want("AUTH X", "+ Y2hhbGxlbmdl")
	c.want("*", "-ERR cancelled")
	c.login()
	if b := c.multi("RETR 2"); !slices.Equal(b, []string{"Subject: b", "", "body b"}) {
		t.Errorf("RETR 2 = %q", b)
	}
	if l := c.line(); l != "+OK stray" {
		t.Errorf("after RETR: %q", l)
	}
	c.wantEOF()

	c1 := dial(t, s) // session 2
	c1.line()
	c1.login()
	c1.want("NOOP", "+OK session 2")
	c1.want("NOOP", "+OK session 2")
	if cmds := s.Commands(); cmds[1] != "*" {
		t.Errorf("Commands() = %q; want the SASL line recorded", cmds)
	}

	c3 := dial(t, s) // session 3: +OK, then silence
	c3.line()
	c3.login()
	c3.want("NOOP", "+OK")
	c3.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var ne net.Error
	if _, err := c3.r.ReadByte(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read after Conn.Hang = %v; want a timeout", err)
	}
}

// N and Session pick one occurrence in one session.
func TestFaultSelection(t *testing.T) {
	t.Parallel()
	s := NewServer(t, Options{Messages: twoMessages(), Faults: []Fault{
		{Cmd: "retr", N: 2, Session: 2, Action: Drop},
		{Cmd: "NOOP", N: 2, Action: Reply, Reply: "+OK second"},
	}})
	dump(t, s)
	for session := 1; session <= 3; session++ {
		c := dial(t, s)
		c.line()
		c.login()
		c.multi("RETR 1")
		c.want("NOOP", "+OK")
		c.want("NOOP", "+OK second")
		c.want("NOOP", "+OK")
		if session == 2 {
			c.send("RETR 1")
			c.wantEOF()
			continue
		}
		c.multi("RETR 1")
		c.want("QUIT", "+OK")
	}
	if s.Sessions() != 3 {
		t.Errorf("Sessions() = %d; want 3", s.Sessions())
	}
}

func TestConcurrentSessions(t *testing.T) {
	t.Parallel()
	s := NewServer(t, Options{Messages: twoMessages()})
	dump(t, s)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			c, err := net.Dial("tcp", s.Addr())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testDeadline))
			r := bufio.NewReader(c)
			io.WriteString(c, "USER user\r\nPASS pass\r\nSTAT\r\nQUIT\r\n")
			var got []string
			for range 5 {
				l, err := r.ReadString('\n')
				if err != nil {
					errs <- err
					return
				}
				got = append(got, strings.TrimSpace(l))
			}
			if got[3] != fmt.Sprintf("+OK 2 %d", len(msgA.Data)+len(msgB.Data)) {
				errs <- fmt.Errorf("answers %q", got)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.Sessions() != n {
		t.Errorf("Sessions() = %d; want %d", s.Sessions(), n)
	}
}

// A session keeps the message numbers of its login; QUIT removes what it
// marked even if the mailbox was replaced meanwhile.
func TestSetMessagesDuringSession(t *testing.T) {
	t.Parallel()
	s, c := greeted(t, Options{Messages: twoMessages()})
	c.login()
	s.SetMessages([]Message{msgB, {UID: "uid-c", Data: []byte("x\r\n")}})
	if got := c.cmd("UIDL 1"); got != "+OK 1 uid-a" {
		t.Errorf("UIDL 1 = %q", got)
	}
	c.want("DELE 2", "+OK")
	c.want("QUIT", "+OK")
	c.wantEOF()
	if got := s.Messages(); len(got) != 2 || got[0].UID != "uid-b" || got[1].UID != "uid-c" {
		t.Errorf("Messages() = %v; want the replacement untouched", got)
	}
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{".", ".."},
		{"a\r\n.b\r\n..c\r\n", "a\r\n..b\r\n...c\r\n"},
		{"a.b\r\n", "a.b\r\n"},
	} {
		if got := string(dotStuff([]byte(tc.in))); got != tc.want {
			t.Errorf("dotStuff(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"+OK", "+OK\r\n"},
		{"+OK\r\n", "+OK\r\n"},
		{"+OK\n1 a\n.\n", "+OK\r\n1 a\r\n.\r\n"},
		{"", "\r\n"},
	} {
		if got := string(replyBytes(tc.in)); got != tc.want {
			t.Errorf("replyBytes(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
	if got := string(wireData([]byte("no crlf"))); got != "no crlf\r\n" {
		t.Errorf("wireData = %q", got)
	}
	if got := string(top([]byte("H: 1\r\n\r\nl1\r\nl2\r\n"), 5)); got != "H: 1\r\n\r\nl1\r\nl2\r\n" {
		t.Errorf("top = %q", got)
	}
	if got := string(top([]byte("\r\nl1\r\nl2\r\n"), 1)); got != "\r\nl1\r\n" {
		t.Errorf("top = %q", got)
	}
	if Custom.String() != "Custom" || Action(42).String() != "Action(42)" {
		t.Errorf("Action.String: %v %v", Custom, Action(42))
	}
}

func TestPipe(t *testing.T) {
	t.Parallel()
	s := NewServer(t, Options{Messages: twoMessages(), Faults: []Fault{{Cmd: "STAT", Action: Truncate}}})
	dump(t, s)
	c := newClient(t, s.Pipe())
	c.line()
	c.login()
	c.multi("RETR 1")
	c.send("STAT")
	b, err := io.ReadAll(c.r)
	if err != nil || string(b) != "+OK " {
		t.Errorf("truncated STAT = %q, %v; want %q", b, err, "+OK ")
	}
	if s.Sessions() != 1 {
		t.Errorf("Sessions() = %d; want 1", s.Sessions())
	}
	s.Close()
	if _, err := s.Pipe().Read(make([]byte, 1)); err == nil {
		t.Error("Pipe after Close: read succeeded")
	}
}

// A panicking Custom Func must not kill the test binary; Close reports it.
func TestPanicReportedByClose(t *testing.T) {
	t.Parallel()
	rec := &errRecorder{TB: t}
	s := NewServer(rec, Options{Faults: []Fault{{Cmd: "NOOP", Action: Custom, Func: func(*Conn) { panic("boom") }}}})
	c := dial(t, s)
	c.line()
	c.send("NOOP")
	c.wantEOF()
	s.Close()
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "boom") {
		t.Errorf("Close reported %q; want the panic", rec.errs)
	}
}

// errRecorder captures Errorf so that a test can expect an error.
type errRecorder struct {
	testing.TB
	errs []string
}

func (r *errRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// CheckPipelining counts commands sent ahead of an answer, and reports
// them through Close when PIPELINING was not advertised; a client that
// waits for each answer is never reported.
func TestCheckPipelining(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		capa      []string
		pipeline  bool
		wantPiped bool
		wantErr   bool
	}{
		{"one at a time, not advertised", []string{"USER", "UIDL"}, false, false, false},
		{"pipelined, not advertised", []string{"USER", "UIDL"}, true, true, true},
		{"pipelined, advertised", []string{"USER", "UIDL", "PIPELINING"}, true, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &errRecorder{TB: t}
			s := NewServer(rec, Options{Messages: twoMessages(), Capa: tt.capa, CheckPipelining: true})
			c := dial(t, s)
			c.line()
			c.login()
			if tt.pipeline {
				c.send("STAT", "NOOP", "DELE 1")
				for range 3 {
					c.line()
				}
			} else {
				c.want("STAT", "+OK")
				c.want("NOOP", "+OK")
				c.want("DELE 1", "+OK")
			}
			c.want("QUIT", "+OK")
			s.Close()
			if got := s.Pipelined() > 0; got != tt.wantPiped {
				t.Errorf("Pipelined() = %d; want > 0: %v", s.Pipelined(), tt.wantPiped)
			}
			if got := len(rec.errs) > 0; got != tt.wantErr {
				t.Errorf("Close reported %q; want an error: %v", rec.errs, tt.wantErr)
			}
			if tt.wantErr && !strings.Contains(rec.errs[0], "PIPELINING was not advertised") {
				t.Errorf("Close reported %q", rec.errs)
			}
		})
	}
}

// RewriteRetrieved changes, at a QUIT, exactly the messages that session
// retrieved and did not delete; a session without QUIT changes nothing.
func TestRewriteRetrieved(t *testing.T) {
	t.Parallel()
	mark := func(m Message) Message {
		m.Data = append([]byte("X-UID: 1\r\n"), m.Data...)
		return m
	}
	s, c := greeted(t, Options{Messages: append(twoMessages(), Message{UID: "c", Data: []byte("Subject: c\r\n\r\nc\r\n")}), RewriteRetrieved: mark})
	c.login()
	c.want("RETR 1", "+OK")
	c.body()
	c.want("RETR 2", "+OK")
	c.body()
	c.want("DELE 2", "+OK")
	c.want("QUIT", "+OK")
	got := s.Messages()
	if len(got) != 2 || got[0].UID != msgA.UID || string(got[0].Data) != "X-UID: 1\r\n"+string(msgA.Data) || string(got[1].Data) != "Subject: c\r\n\r\nc\r\n" {
		t.Fatalf("mailbox after QUIT = %q", got)
	}
}
