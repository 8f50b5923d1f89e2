package pop3test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/popfetch/popfetch/internal/sockpeek"
)

// Message is one message in the fake mailbox.
type Message struct {
	UID string
	// Data is the message as the client should receive it after
	// unstuffing, with CRLF line endings. The server dot-stuffs it on the
	// wire and adds a final CRLF if Data lacks one. It is sent as given
	// otherwise, so tests can plant bare LF or CR.
	Data []byte
}

// Options configures a Server. The zero value is a server with an empty
// mailbox for "user"/"pass".
type Options struct {
	User, Pass string // default "user" and "pass"
	Messages   []Message
	// Capa is the list of CAPA tags. nil means USER, UIDL (unless NoUIDL),
	// TOP, PIPELINING, RESP-CODES, AUTH-RESP-CODE. "STLS" is appended while
	// STLS is enabled and the connection is not yet encrypted.
	Capa     []string
	TLS      *tls.Config // server side; see GenerateCert
	Implicit bool        // TLS from the first byte (POP3S); needs TLS
	STLS     bool        // offer STLS (RFC 2595); needs TLS
	NoUIDL   bool        // UIDL answers -ERR (it is optional, RFC 1939 §7)
	NoTOP    bool        // TOP answers -ERR (optional too) and is left out of the default Capa
	Greeting string      // default "+OK pop3test ready"
	Faults   []Fault
	// CheckPipelining makes the server look, before answering each
	// command, for a next one that the client sent without waiting for
	// the answer (RFC 2449 §6.6 pipelining). Each such command is counted
	// (see Pipelined); if Capa lacks PIPELINING it is also a protocol
	// violation, noted in the Transcript and reported as a test error by
	// Close. The look waits up to pipelineGrace for input, so this slows
	// every command down: use it in tests of a few commands.
	CheckPipelining bool
	// RewriteRetrieved, if set, is applied at the UPDATE of a session (a
	// QUIT after login) to each message the session retrieved (RETR +OK)
	// and did not delete, replacing it in the mailbox under the same UID:
	// mailutils pop3d serving an mbox rewrites a message read this way,
	// adding X-IMAPbase, X-UID and Status fields, so its LIST size grows
	// while it stays the same message.
	RewriteRetrieved func(Message) Message
	// ListSize, if set, is the size LIST gives for a message (in the
	// listing and for "LIST n") instead of its true one: a server that
	// lies about its sizes. STAT is not affected; RETR announces no size
	// ("+OK message follows").
	ListSize func(Message) int

	// APOP accepts APOP (RFC 1939 §7) and, unless Greeting is set, puts
	// the timestamp <1896.697170952@pop3test> in the greeting.
	APOP bool
	// ValidToken says whether an XOAUTH2 or OAUTHBEARER bearer token is
	// accepted; nil accepts none. Those mechanisms, like PLAIN and SCRAM,
	// are offered when Capa has a "SASL" line naming them (see auth.go).
	ValidToken func(token string) bool
	// OAuthError is the JSON of the error challenge to a rejected token;
	// "" is an invalid_token error (RFC 7628 §3.2.2).
	OAuthError string
	// XOAUTH2TwoLine refuses XOAUTH2 with an initial response on the
	// command line, as Microsoft documents its servers.
	XOAUTH2TwoLine bool
	// SCRAMBadSignature makes SCRAM end with a wrong server signature:
	// a server that cannot prove it knows the password.
	SCRAMBadSignature bool
}

// Fault changes the server's answer to the Nth occurrence of a command.
type Fault struct {
	// Cmd is the command verb, case-insensitive ("RETR", "DELE", "STLS",
	// "AUTH", any word the client sends), or "GREETING" for the greeting.
	Cmd string
	// N is the 1-based occurrence of Cmd within one session, counting every
	// time the client sends it, valid or not; 0 means every occurrence.
	N int
	// Session is the 1-based connection number (in accept order); 0 means
	// every session.
	Session int
	Action  Action
	// Reply is what the Reply action sends instead of the normal answer:
	// one or more lines separated by "\n" or "\r\n", each sent with CRLF.
	// It is not dot-stuffed or checked, so a test can send a malformed
	// listing; a multi-line answer must include its own "." line.
	Reply string
	// Func is called by the Custom action, on the session's goroutine,
	// instead of answering. The session reads the next command when Func
	// returns, unless Func called Conn.Close or Conn.Hang. Func must not
	// call t.Fatal (wrong goroutine); a panic is reported by Close.
	Func func(c *Conn)
}

// Action is what a Fault does.
type Action int

const (
	// Reply sends Fault.Reply instead of the normal answer. If Reply starts
	// with "+OK" the command also takes effect as it would have (a DELE
	// marks, PASS with good credentials logs in, QUIT expunges, and STLS
	// with Options.STLS starts TLS after the reply, so "+OK\r\n+OK
	// injected" tests response injection); otherwise it does not. QUIT
	// ends the session either way.
	Reply Action = iota
	// Drop closes the connection without answering.
	Drop
	// DropAfter sends the normal answer, then closes the connection.
	DropAfter
	// Hang stops answering but keeps the connection open until the client
	// closes it or the server is closed.
	Hang
	// Trickle sends the normal answer one byte every 200ms, then carries
	// on. It stops early if the client goes away.
	Trickle
	// EndlessLine sends "+OK " and then a line that never ends, until 64
	// MiB have been sent or the client goes away, then closes.
	EndlessLine
	// EndlessMulti sends "+OK" and then valid lines, never the terminating
	// ".", until 64 MiB have been sent or the client goes away, then closes.
	EndlessMulti
	// Truncate sends the first line of a multi-line answer and half of
	// the rest (for RETR: half the message, no terminator), or half of a
	// single-line answer without its CRLF, then closes.
	Truncate
	// Custom calls Fault.Func instead of answering.
	Custom
	// Append sends the normal answer (the command takes effect) followed,
	// in the same write, by Fault.Reply: lines no command asked for, as a
	// server that answers twice sends them.
	Append
	// Skip sends no answer at all (the command does not take effect) and
	// goes on reading commands: a server that loses one reply.
	Skip
)

var actionNames = [...]string{"Reply", "Drop", "DropAfter", "Hang", "Trickle", "EndlessLine", "EndlessMulti", "Truncate", "Custom", "Append", "Skip"}

func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

const (
	// maxCommand is the RFC 2449 §4 limit on a command line, CRLF
	// included.
	maxCommand = 255
	// keepCommand bounds how much of an over-long line is kept for
	// Commands and Transcript, so a hostile client cannot grow them.
	keepCommand = 512
	// endlessLimit stops the endless actions: far beyond any sane client
	// cap, yet finite so a client without a cap cannot run the test box
	// out of memory forever.
	endlessLimit = 64 << 20
	// trickleDelay is slow enough that any per-message deadline fires
	// long before a real answer completes.
	trickleDelay = 200 * time.Millisecond
	// pipelineGrace is how long CheckPipelining waits for a command the
	// client may have sent right behind the one being answered. A client
	// that pipelines writes its commands back to back, microseconds apart;
	// one that waits for each answer sends nothing while the server waits,
	// so the check has no false positives, only (unlikely) misses.
	pipelineGrace = 20 * time.Millisecond
)

// TB is the part of testing.TB this package uses; *testing.T,
// *testing.B and *testing.F satisfy it. It is an interface of its own, not
// testing.TB, so that importing this package does not link the testing
// package: popfetch demo runs this server in the shipped binary (Start,
// NewCert), which must carry no test code.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	TempDir() string
}

// Server is a fake POP3 server listening on 127.0.0.1.
type Server struct {
	t    TB
	opts Options
	ln   net.Listener
	done chan struct{} // closed by Close: releases Hang and Trickle
	wg   sync.WaitGroup
	once sync.Once

	mu       sync.Mutex
	mailbox  []entry
	nextID   uint64
	commands []string
	logs     []*strings.Builder // one per session
	conns    map[net.Conn]struct{}
	problems []string // panics of session goroutines and CheckPipelining violations, reported by Close
	piped    int      // commands that arrived before the previous answer (CheckPipelining)
	turns    int      // times a session waited for the client (Turns)
	logins   []string // mechanism of each successful login (Logins)
	tokens   []string // bearer tokens presented (Tokens)
}

// entry gives each message an identity, so a session's QUIT removes exactly
// the messages it saw even if SetMessages or another session changed the
// mailbox meanwhile.
type entry struct {
	id  uint64
	msg Message
}

// NewServer starts a server on 127.0.0.1:0. It serves any number of
// sequential and concurrent sessions and is closed by t.Cleanup.
func NewServer(t TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("pop3test: %v", err)
	}
	s.t = t
	t.Cleanup(s.Close)
	return s
}

// Start is NewServer for code that is not a test (popfetch demo): the
// caller must Close the server. Panics in sessions are then only logged
// in the transcript.
func Start(opts Options) (*Server, error) {
	if (opts.Implicit || opts.STLS) && opts.TLS == nil {
		return nil, errors.New("options Implicit and STLS need Options.TLS (see GenerateCert)")
	}
	if opts.User == "" {
		opts.User = "user"
	}
	if opts.Pass == "" {
		opts.Pass = "pass"
	}
	if opts.Greeting == "" {
		opts.Greeting = "+OK pop3test ready"
		if opts.APOP {
			opts.Greeting += " " + apopTimestamp
		}
	}
	if opts.Capa == nil {
		opts.Capa = []string{"USER", "UIDL", "TOP", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"}
		if opts.NoUIDL {
			opts.Capa = []string{"USER", "TOP", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"}
		}
		if opts.NoTOP {
			opts.Capa = slices.DeleteFunc(opts.Capa, func(c string) bool { return c == "TOP" })
		}
	}
	// Copy what the caller might mutate after the call.
	opts.Capa = append([]string(nil), opts.Capa...)
	opts.Faults = append([]Fault(nil), opts.Faults...)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &Server{
		opts:  opts,
		ln:    ln,
		done:  make(chan struct{}),
		conns: make(map[net.Conn]struct{}),
	}
	s.SetMessages(opts.Messages)
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.startLocked(c)
		s.mu.Unlock()
	}
}

// startLocked serves c as the next session; s.mu is held.
func (s *Server) startLocked(c net.Conn) {
	s.conns[c] = struct{}{}
	log := new(strings.Builder)
	s.logs = append(s.logs, log)
	ss := &session{s: s, num: len(s.logs), raw: c, conn: c, log: log, counts: make(map[string]int)}
	s.wg.Add(1)
	go ss.serve()
}

// Pipe returns the client end of a net.Pipe whose other end the server
// serves as the next session, for clients that take a dialer. A pipe has no
// buffer, so a client that writes a pipelined batch without reading
// deadlocks against an answering server: the write/write deadlock RFC 2449
// §6.6 warns about, here shown at once rather than only when TCP buffers
// fill up.
func (s *Server) Pipe() net.Conn {
	client, server := net.Pipe()
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		server.Close()
	default:
		s.startLocked(server)
	}
	return client
}

// Addr is the listening address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host is "127.0.0.1".
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the listening port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Messages returns a copy of the mailbox now. Only a successful QUIT
// removes messages (RFC 1939 §6).
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.mailbox))
	for i, e := range s.mailbox {
		out[i] = Message{UID: e.msg.UID, Data: append([]byte(nil), e.msg.Data...)}
	}
	return out
}

// SetMessages replaces the mailbox. Sessions already logged in keep the
// snapshot they took at login, as message numbers are fixed for a session.
func (s *Server) SetMessages(msgs []Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mailbox = s.mailbox[:0:0]
	for _, m := range msgs {
		s.nextID++
		s.mailbox = append(s.mailbox, entry{id: s.nextID, msg: Message{UID: m.UID, Data: append([]byte(nil), m.Data...)}})
	}
}

// Commands returns every command line received, in order, across sessions,
// exactly as received without the line ending (PASS arguments included).
// A line longer than 255 octets is kept only up to its first 512 bytes.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// Settled waits until no session is open, every command a client sent
// before it hung up recorded, and returns Commands. A client may hang up
// without reading its last reply (a QUIT that marked nothing for
// deletion), so a test that checks the commands of a session that just
// ended calls this rather than Commands. It fails the test after 10
// seconds.
func (s *Server) Settled() []string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		open := len(s.conns)
		s.mu.Unlock()
		if open == 0 {
			return s.Commands()
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("pop3test: %d sessions still open after 10s", open)
			return s.Commands()
		}
		time.Sleep(time.Millisecond)
	}
}

// SentCredentials reports whether a client sent a credential command
// (USER, PASS, APOP or AUTH) in any session: what a TLS gate that failed
// must never let through.
func (s *Server) SentCredentials() bool {
	for _, c := range s.Commands() {
		verb, _, _ := strings.Cut(c, " ")
		switch strings.ToUpper(verb) {
		case "USER", "PASS", "APOP", "AUTH":
			return true
		}
	}
	return false
}

// Eventually polls cond for up to 3 seconds: bytes written on loopback
// arrive within microseconds, but not synchronously, and a loaded test
// machine can be slow.
func Eventually(cond func() bool) bool {
	for range 300 {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// Transcript returns a readable log of every session: "C: " lines from the
// client, "S: " lines from the server, "-- " notes for faults and errors.
// Long answers are abbreviated. It is meant for t.Log on failure.
func (s *Server) Transcript() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for i, l := range s.logs {
		fmt.Fprintf(&b, "=== session %d\n%s", i+1, l.String())
	}
	return b.String()
}

// Sessions is the number of connections accepted so far.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.logs)
}

// Pipelined is the number of commands, across sessions, that the client
// sent before the previous command was answered. It is counted only with
// Options.CheckPipelining.
func (s *Server) Pipelined() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.piped
}

// Turns is the number of answers, across sessions, that the server sent
// with nothing more from the client waiting to be read (the greeting
// included, QUIT's answer not): the client's next command, if it sends
// one, comes after the answer, so each is a round trip of the session. A
// write of the client's arrives whole on loopback before the server
// answers the first command in it, so a pipelined round is one turn, and
// a client that waits for each answer makes one per command. It counts
// what plain sessions show; under TLS it may count fewer.
func (s *Server) Turns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.turns
}

// Close stops the listener, closes every connection and waits for the
// session goroutines to end. It is safe to call more than once. A panic in
// a session (say, in a Custom Func) and a CheckPipelining violation are
// reported here as test errors, as they cannot fail the test from the
// session's goroutine.
func (s *Server) Close() {
	s.once.Do(func() {
		s.ln.Close()
		s.mu.Lock()
		close(s.done)
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		for _, p := range s.problems {
			if s.t != nil {
				s.t.Errorf("pop3test: %s", p)
			}
		}
	})
}

// Conn is the connection handed to a Custom fault's Func.
type Conn struct {
	ss     *session
	answer []byte
	closed bool
}

// Session is the 1-based session number.
func (c *Conn) Session() int { return c.ss.num }

// Answer returns the bytes the server would have sent for this command
// without the fault, so a Func can send them altered or followed by
// something else.
func (c *Conn) Answer() []byte { return append([]byte(nil), c.answer...) }

// Write sends p unchanged.
func (c *Conn) Write(p []byte) (int, error) { return c.ss.write(p) }

// WriteLine sends line followed by CRLF.
func (c *Conn) WriteLine(line string) error {
	_, err := c.ss.write([]byte(line + "\r\n"))
	return err
}

// ReadLine reads the client's next line (for example a SASL response),
// without the line ending. It is recorded like a command.
func (c *Conn) ReadLine() (string, error) {
	line, _, err := c.ss.readLine()
	return line, err
}

// Hang blocks until the client closes the connection or the server is
// closed, discarding input, then ends the session: "+OK" to STLS followed
// by Hang is a server that goes silent before the TLS handshake.
func (c *Conn) Hang() {
	c.ss.hang()
	c.closed = true
}

// Close closes the connection (without a TLS close_notify: a drop) and
// ends the session once Func returns.
func (c *Conn) Close() error {
	c.closed = true
	return c.ss.raw.Close()
}

var errTooLong = errors.New("line too long")

type session struct {
	s    *Server
	num  int
	raw  net.Conn // the TCP connection, closed to drop
	conn net.Conn // raw, or the TLS connection on top of it
	r    *bufio.Reader
	tls  bool
	log  *strings.Builder

	user    string
	hasUser bool
	authed  bool
	msgs    []entry // snapshot taken at login
	deleted []bool
	read    map[int]bool // indexes into msgs retrieved (RewriteRetrieved)

	counts map[string]int
}

func (ss *session) serve() {
	defer ss.s.wg.Done()
	defer func() {
		v := recover()
		ss.raw.Close()
		ss.s.mu.Lock()
		defer ss.s.mu.Unlock()
		delete(ss.s.conns, ss.raw)
		if v != nil {
			// An unrecovered panic here would kill the whole test
			// binary; keep it for Close to report against the test.
			p := fmt.Sprintf("session %d panicked: %v\n%s", ss.num, v, debug.Stack())
			ss.s.problems = append(ss.s.problems, p)
			fmt.Fprintf(ss.log, "-- %s\n", p)
		}
	}()
	ss.r = bufio.NewReader(ss.conn)
	if ss.s.opts.Implicit {
		if !ss.startTLS() {
			return
		}
	}
	if !ss.respond("GREETING", answer{data: line(ss.s.opts.Greeting)}) {
		return
	}
	for {
		l, n, err := ss.readLine()
		if errors.Is(err, errTooLong) {
			// RFC 2449 §4: the limit is 255 octets; refuse the line but
			// keep the session, as a lenient real server would.
			ss.notef("command of %d octets refused", n)
			if _, err := ss.write(line("-ERR command line too long")); err != nil {
				return
			}
			continue
		}
		if err != nil {
			ss.notef("client: %v", err)
			return
		}
		verb, arg, _ := strings.Cut(l, " ")
		verb = strings.ToUpper(verb)
		if ss.s.opts.CheckPipelining {
			ss.checkPipelining(verb)
		}
		if !ss.respond(verb, ss.answer(verb, arg)) {
			return
		}
	}
}

// readLine reads one line, bounded, and records it. n is the full length
// including the line ending.
func (ss *session) readLine() (string, int, error) {
	var buf []byte
	n := 0
	for {
		frag, err := ss.r.ReadSlice('\n')
		n += len(frag)
		if room := keepCommand - len(buf); room > 0 {
			buf = append(buf, frag[:min(room, len(frag))]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return "", n, err // a partial line at EOF is not a command
		}
		break
	}
	l := strings.TrimSuffix(strings.TrimSuffix(string(buf), "\n"), "\r")
	ss.s.mu.Lock()
	ss.s.commands = append(ss.s.commands, l)
	fmt.Fprintf(ss.log, "C: %s\n", l)
	ss.s.mu.Unlock()
	if n > maxCommand {
		return l, n, errTooLong
	}
	return l, n, nil
}

// checkPipelining counts a command sent before verb was answered, and
// reports it as a violation unless the server advertised PIPELINING.
func (ss *session) checkPipelining(verb string) {
	if !ss.inputWaiting() {
		return
	}
	allowed := slices.ContainsFunc(ss.s.opts.Capa, func(c string) bool { return strings.EqualFold(c, "PIPELINING") })
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.piped++
	if !allowed {
		p := fmt.Sprintf("session %d: the client sent a command before %s was answered, but PIPELINING was not advertised (RFC 2449 §6.6)", ss.num, verb)
		ss.s.problems = append(ss.s.problems, p)
		fmt.Fprintf(ss.log, "-- %s\n", p)
	}
}

// inputWaiting reports whether the client has sent more, waiting up to
// pipelineGrace for it. A read timeout leaves both the bufio.Reader (Peek
// returns the error once) and a tls.Conn (a timeout is not sticky) usable.
func (ss *session) inputWaiting() bool {
	if ss.r.Buffered() > 0 {
		return true
	}
	ss.conn.SetReadDeadline(time.Now().Add(pipelineGrace))
	_, err := ss.r.Peek(1)
	ss.conn.SetReadDeadline(time.Time{})
	return err == nil
}

// write sends p and logs it, abbreviated.
func (ss *session) write(p []byte) (int, error) {
	ss.logServer(p)
	n, err := ss.conn.Write(p)
	if err != nil {
		ss.notef("write: %v", err)
	}
	return n, err
}

func (ss *session) logServer(p []byte) {
	const maxLines, maxLen = 8, 160
	lines := strings.SplitAfter(string(p), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	for i, l := range lines {
		if i == maxLines {
			fmt.Fprintf(ss.log, "S: [%d more lines]\n", len(lines)-i)
			break
		}
		l = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
		if len(l) > maxLen {
			l = fmt.Sprintf("%s[... %d bytes]", l[:maxLen], len(l))
		}
		fmt.Fprintf(ss.log, "S: %s\n", l)
	}
}

func (ss *session) notef(format string, args ...any) {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	fmt.Fprintf(ss.log, "-- "+format+"\n", args...)
}

// answer is the server's normal response to one command, split into what is
// sent and what it does, so that faults can send something else and decide
// whether the command took effect.
type answer struct {
	data   []byte
	multi  bool        // data is a status line plus a dot-terminated body
	commit func()      // the command's effect; run only if the client is told +OK
	after  func() bool // run after a +OK is sent (STLS handshake); false ends the session
	end    bool        // close after answering (QUIT)
	// exchange, if set, runs a SASL exchange (AUTH) before the answer
	// is sent and returns the real answer; false ends the session.
	exchange func() (answer, bool)
}

func line(s string) []byte { return []byte(s + "\r\n") }

func errAnswer(s string) answer { return answer{data: line("-ERR " + s)} }

func (ss *session) answer(verb, arg string) answer {
	args := strings.Fields(arg)
	switch verb {
	case "CAPA":
		b := []byte("+OK capability list follows\r\n")
		for _, c := range ss.s.opts.Capa {
			b = append(b, dotStuff([]byte(c+"\r\n"))...)
		}
		if ss.s.opts.STLS && !ss.tls {
			b = append(b, "STLS\r\n"...)
		}
		return answer{data: append(b, ".\r\n"...), multi: true}
	case "QUIT":
		a := answer{data: line("+OK pop3test signing off"), end: true}
		if ss.authed {
			// RFC 1939 §6: the UPDATE state happens only on QUIT.
			a.commit = ss.update
		}
		return a
	case "NOOP":
		if !ss.authed {
			return errAnswer("not logged in")
		}
		return answer{data: line("+OK")}
	}
	if !ss.authed {
		switch verb {
		case "USER":
			if len(args) != 1 {
				return errAnswer("USER needs one argument")
			}
			return answer{data: line("+OK send PASS"), commit: func() { ss.user, ss.hasUser = args[0], true }}
		case "PASS":
			if !ss.hasUser {
				return errAnswer("USER first")
			}
			// RFC 1939 §7: the password may contain spaces; it is
			// everything after "PASS ".
			if ss.user != ss.s.opts.User || arg != ss.s.opts.Pass {
				ss.hasUser = false
				return errAnswer("[AUTH] invalid credentials")
			}
			return ss.loggedIn("USER")
		case "APOP":
			return ss.apop(args)
		case "AUTH":
			return ss.auth(arg)
		case "STLS":
			switch {
			case !ss.s.opts.STLS:
				return errAnswer("STLS not supported")
			case ss.tls:
				return errAnswer("TLS already active")
			}
			return answer{data: line("+OK begin TLS negotiation"), after: ss.startTLS}
		case "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET":
			return errAnswer("not logged in")
		}
		return errAnswer("unknown command")
	}
	switch verb {
	case "STAT":
		n, size := 0, 0
		for i, e := range ss.msgs {
			if !ss.deleted[i] {
				n++
				size += len(wireData(e.msg.Data))
			}
		}
		return answer{data: line(fmt.Sprintf("+OK %d %d", n, size))}
	case "LIST", "UIDL":
		if verb == "UIDL" && ss.s.opts.NoUIDL {
			return errAnswer("UIDL not supported")
		}
		item := func(i int) string {
			if verb == "UIDL" {
				return fmt.Sprintf("%d %s", i+1, ss.msgs[i].msg.UID)
			}
			if f := ss.s.opts.ListSize; f != nil {
				return fmt.Sprintf("%d %d", i+1, f(ss.msgs[i].msg))
			}
			return fmt.Sprintf("%d %d", i+1, len(wireData(ss.msgs[i].msg.Data)))
		}
		switch len(args) {
		case 0:
			b := []byte("+OK listing follows\r\n")
			for i := range ss.msgs {
				if !ss.deleted[i] {
					b = append(b, item(i)+"\r\n"...)
				}
			}
			return answer{data: append(b, ".\r\n"...), multi: true}
		case 1:
			i, bad := ss.msgnum(args[0])
			if bad != nil {
				return *bad
			}
			return answer{data: line("+OK " + item(i))}
		}
		return errAnswer("too many arguments")
	case "RETR", "TOP":
		if verb == "TOP" && ss.s.opts.NoTOP {
			return errAnswer("TOP not supported")
		}
		if want := map[string]int{"RETR": 1, "TOP": 2}[verb]; len(args) != want {
			return errAnswer(fmt.Sprintf("%s needs %d argument(s)", verb, want))
		}
		i, bad := ss.msgnum(args[0])
		if bad != nil {
			return *bad
		}
		data := wireData(ss.msgs[i].msg.Data)
		status := fmt.Sprintf("+OK %d octets", len(data))
		if ss.s.opts.ListSize != nil {
			status = "+OK message follows"
		}
		if verb == "TOP" {
			k, err := strconv.Atoi(args[1])
			if err != nil || k < 0 {
				return errAnswer("invalid line count")
			}
			data = top(data, k)
			status = "+OK top of message follows"
		}
		b := append(line(status), dotStuff(data)...)
		a := answer{data: append(b, ".\r\n"...), multi: true}
		if verb == "RETR" {
			a.commit = func() {
				if ss.read == nil {
					ss.read = map[int]bool{}
				}
				ss.read[i] = true
			}
		}
		return a
	case "DELE":
		if len(args) != 1 {
			return errAnswer("DELE needs one argument")
		}
		i, bad := ss.msgnum(args[0])
		if bad != nil {
			return *bad
		}
		return answer{data: line(fmt.Sprintf("+OK message %d deleted", i+1)), commit: func() { ss.deleted[i] = true }}
	case "RSET":
		return answer{data: line("+OK"), commit: func() { clear(ss.deleted) }}
	case "STLS":
		// RFC 2595 §4: only in the AUTHORIZATION state.
		return errAnswer("STLS only before login")
	case "USER", "PASS":
		return errAnswer("already logged in")
	}
	return errAnswer("unknown command")
}

// msgnum parses a message number of this session; bad is the -ERR answer.
func (ss *session) msgnum(s string) (int, *answer) {
	n, err := strconv.Atoi(s)
	if err != nil || s[0] == '+' || s[0] == '-' || n < 1 || n > len(ss.msgs) {
		a := errAnswer("no such message")
		return 0, &a
	}
	if ss.deleted[n-1] {
		a := errAnswer("message deleted")
		return 0, &a
	}
	return n - 1, nil
}

// login fixes this session's view of the mailbox: message numbers are
// valid only within one session (RFC 1939 §3).
func (ss *session) login() {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.authed = true
	ss.msgs = append([]entry(nil), ss.s.mailbox...)
	ss.deleted = make([]bool, len(ss.msgs))
}

// update is the UPDATE state: remove the messages this session marked.
func (ss *session) update() {
	gone := make(map[uint64]bool)
	read := make(map[uint64]bool)
	for i, e := range ss.msgs {
		if ss.deleted[i] {
			gone[e.id] = true
		} else if ss.read[i] && ss.s.opts.RewriteRetrieved != nil {
			read[e.id] = true
		}
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	kept := ss.s.mailbox[:0:0]
	for _, e := range ss.s.mailbox {
		if read[e.id] {
			m := ss.s.opts.RewriteRetrieved(Message{UID: e.msg.UID, Data: append([]byte(nil), e.msg.Data...)})
			e.msg = Message{UID: m.UID, Data: m.Data}
		}
		if !gone[e.id] {
			kept = append(kept, e)
		}
	}
	ss.s.mailbox = kept
	fmt.Fprintf(ss.log, "-- UPDATE: %d message(s) removed\n", len(gone))
}

// startTLS runs the server side of the handshake on the current connection.
func (ss *session) startTLS() bool {
	if n := ss.r.Buffered(); n > 0 {
		// Plaintext pipelined after STLS must not be taken as sent over
		// TLS (the server-side STARTTLS injection of CVE-2011-0411):
		// discard it, as a fixed server does.
		ss.r.Discard(n)
		ss.notef("discarded %d plaintext bytes pipelined after STLS", n)
	}
	tc := tls.Server(ss.raw, ss.s.opts.TLS)
	if err := tc.Handshake(); err != nil {
		ss.notef("TLS handshake: %v", err)
		return false
	}
	ss.notef("TLS established (%s)", tls.VersionName(tc.ConnectionState().Version))
	ss.conn, ss.tls = tc, true
	ss.r = bufio.NewReader(tc)
	// RFC 2595 §4: what the client said before TLS does not count.
	ss.user, ss.hasUser = "", false
	return true
}

// fault finds the fault for this occurrence of verb; the first match in
// Options.Faults wins.
func (ss *session) fault(verb string) *Fault {
	ss.counts[verb]++
	n := ss.counts[verb]
	for i := range ss.s.opts.Faults {
		f := &ss.s.opts.Faults[i]
		if strings.EqualFold(f.Cmd, verb) && (f.N == 0 || f.N == n) && (f.Session == 0 || f.Session == ss.num) {
			return f
		}
	}
	return nil
}

// respond sends a's answer, or what a fault says instead. It reports
// whether the session goes on.
func (ss *session) respond(verb string, a answer) bool {
	if !a.end && ss.r.Buffered() == 0 && !sockpeek.Readable(ss.raw) {
		// The client has sent nothing beyond this command: whatever
		// it sends next, it sends after this answer (see Turns).
		ss.s.mu.Lock()
		ss.s.turns++
		ss.s.mu.Unlock()
	}
	f := ss.fault(verb)
	if f == nil {
		if a.exchange != nil {
			var goOn bool
			if a, goOn = a.exchange(); !goOn {
				return false
			}
		}
		return ss.ok(a, a.data)
	}
	ss.notef("fault: %s #%d → %v", verb, ss.counts[verb], f.Action)
	switch f.Action {
	case Reply:
		b := replyBytes(f.Reply)
		if strings.HasPrefix(f.Reply, "+OK") {
			return ss.ok(a, b)
		}
		if _, err := ss.write(b); err != nil {
			return false
		}
		return !a.end
	case Drop:
		return false
	case DropAfter:
		if a.commit != nil {
			a.commit()
		}
		ss.write(a.data)
		return false
	case Hang:
		ss.hang()
		return false
	case Trickle:
		if a.commit != nil {
			a.commit()
		}
		if !ss.trickle(a.data) {
			return false
		}
		return ss.finish(a)
	case EndlessLine:
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		ss.endless("+OK ", func([]byte) []byte { return chunk })
		return false
	case EndlessMulti:
		i := 0
		ss.endless("+OK endless listing follows\r\n", func(b []byte) []byte {
			b = b[:0]
			for len(b) < 32<<10 {
				i++
				b = fmt.Appendf(b, "%d pop3test-endless-%d\r\n", i, i)
			}
			return b
		})
		return false
	case Truncate:
		ss.write(truncated(a))
		return false
	case Append:
		return ss.ok(a, append(a.data[:len(a.data):len(a.data)], replyBytes(f.Reply)...))
	case Skip:
		return !a.end
	case Custom:
		c := &Conn{ss: ss, answer: a.data}
		if f.Func != nil {
			f.Func(c)
		}
		return !c.closed
	}
	panic(fmt.Sprintf("pop3test: unknown Action %d for %s", f.Action, verb))
}

// ok tells the client +OK with b: the command takes effect.
func (ss *session) ok(a answer, b []byte) bool {
	if a.commit != nil {
		a.commit()
	}
	if _, err := ss.write(b); err != nil {
		return false
	}
	return ss.finish(a)
}

func (ss *session) finish(a answer) bool {
	if a.after != nil && !a.after() {
		return false
	}
	if a.end {
		if tc, ok := ss.conn.(*tls.Conn); ok {
			// A clean end of a TLS session says so (close_notify),
			// unlike a drop, which just closes the TCP connection.
			tc.CloseWrite()
		}
		return false
	}
	return true
}

func (ss *session) hang() {
	// Reading (and discarding) notices a client that gives up, so the
	// goroutine ends then rather than at Close; Close also ends the read.
	ss.notef("hanging")
	io.Copy(io.Discard, ss.r)
}

// trickle sends p one byte every 200ms, stopping early when the client
// goes away or the server is closed.
func (ss *session) trickle(p []byte) bool {
	ss.logServer(p)
	for i := range p {
		if i > 0 {
			select {
			case <-ss.s.done:
				return false
			case <-time.After(trickleDelay):
			}
		}
		if _, err := ss.conn.Write(p[i : i+1]); err != nil {
			ss.notef("trickle stopped after %d of %d bytes: %v", i, len(p), err)
			return false
		}
	}
	return true
}

// endless writes head and then chunks from next until endlessLimit or a
// write error (the client went away, or Close).
func (ss *session) endless(head string, next func([]byte) []byte) {
	ss.notef("sending %q and endless data", head)
	if _, err := ss.conn.Write([]byte(head)); err != nil {
		return
	}
	var buf []byte
	for sent := len(head); sent < endlessLimit; {
		buf = next(buf)
		n, err := ss.conn.Write(buf)
		sent += n
		if err != nil {
			ss.notef("endless data stopped after %d bytes: %v", sent, err)
			return
		}
	}
	ss.notef("endless data reached the %d byte limit", endlessLimit)
}

// replyBytes turns a Reply into CRLF-terminated lines.
func replyBytes(r string) []byte {
	lines := strings.Split(r, "\n")
	if len(lines) > 1 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var b []byte
	for _, l := range lines {
		b = append(b, strings.TrimSuffix(l, "\r")+"\r\n"...)
	}
	return b
}

// truncated is the first line of a plus half of the rest, never including
// a multi-line terminator; for a single-line answer, half of the line
// without its CRLF.
func truncated(a answer) []byte {
	if !a.multi {
		return a.data[:(len(a.data)-2)/2]
	}
	i := strings.Index(string(a.data), "\n") + 1
	rest := a.data[i:]
	rest = rest[:len(rest)-len(".\r\n")]
	return append(a.data[:i:i], rest[:len(rest)/2]...)
}

// wireData is the message as the client receives it after unstuffing: a
// multi-line response always ends in CRLF before the "." line.
func wireData(d []byte) []byte {
	if len(d) > 0 && !strings.HasSuffix(string(d), "\r\n") {
		return append(d[:len(d):len(d)], '\r', '\n')
	}
	return d
}

// dotStuff doubles a leading "." on every line (RFC 1939 §3).
func dotStuff(d []byte) []byte {
	out := make([]byte, 0, len(d)+8)
	start := true
	for _, c := range d {
		if start && c == '.' {
			out = append(out, '.')
		}
		out = append(out, c)
		start = c == '\n'
	}
	return out
}

// top is the header, the blank line and the first k body lines of d (RFC
// 1939 §7 TOP).
func top(d []byte, k int) []byte {
	s := string(d)
	var body string
	switch {
	case strings.HasPrefix(s, "\r\n"):
		s, body = "\r\n", s[2:]
	default:
		i := strings.Index(s, "\r\n\r\n")
		if i < 0 {
			return d // all header
		}
		s, body = s[:i+4], s[i+4:]
	}
	for ; k > 0 && body != ""; k-- {
		l, rest, found := strings.Cut(body, "\r\n")
		if !found {
			s += l + "\r\n"
			break
		}
		s += l + "\r\n"
		body = rest
	}
	return []byte(s)
}
