package pop3

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	gopop3 "github.com/knadh/go-pop3"
)

// scripted returns a Conn past its greeting whose server side is nc.
func scripted(t testing.TB, nc net.Conn, timeout time.Duration) *Conn {
	t.Helper()
	return scriptedGuard(t, newGuard(nc, nc, []byte("+OK hi\r\n")), timeout)
}

// scriptedGuard returns a Conn on g, which replays a greeting.
func scriptedGuard(t testing.TB, g *guardConn, timeout time.Duration) *Conn {
	t.Helper()
	pc, err := gopop3.New(gopop3.Opt{Host: "h", Port: 1, Dialer: dialerFunc(func(string, string) (net.Conn, error) { return g, nil })}).NewConn()
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	return &Conn{c: pc, g: g, timeout: timeout, lines: 1}
}

// scriptedRetr returns a Conn whose server sends script, with "RETR 1"
// sent.
func scriptedRetr(t testing.TB, nc net.Conn) *Conn {
	t.Helper()
	c := scripted(t, nc, 5*time.Second)
	if err := c.SendRetr(1); err != nil {
		t.Fatal(err)
	}
	return c
}

// oneByteConn is a scriptConn that hands out one byte per Read: a reply
// split one byte per TCP segment.
type oneByteConn struct{ scriptConn }

func (c *oneByteConn) Read(p []byte) (int, error) { return c.scriptConn.Read(p[:min(len(p), 1)]) }

// oldReadRetr is ReadRetr as it was before readBody replaced go-pop3's
// ReadAll, over a bare go-pop3 connection, for FuzzReadRetrTo to compare
// with: the status line by ReadOne, the body whole by ReadAll, then the
// same checks. body is what ReadAll returned, if it returned (read), also
// when a check failed. An empty status line, which the Conn told from
// "+OK" by the guard's line bookkeeping, is a protocol error here too.
func oldReadRetr(pc *gopop3.Conn, st []byte, e Entry) (body []byte, read bool, class string) {
	b, err := pc.ReadOne()
	switch {
	case err == nil && b == nil && len(bytes.TrimSuffix(st, []byte("\r"))) == 0:
		return nil, false, "protocol"
	case err == nil:
	case strings.HasPrefix(err.Error(), "unknown response:"):
		return nil, false, "protocol"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, false, "io"
	default:
		return nil, false, "-ERR"
	}
	buf, err := pc.ReadAll()
	if err != nil {
		return nil, false, "io"
	}
	raw := buf.Bytes()
	if n, ok := retrOctets(b); ok && n != e.Size && int64(len(raw)) != e.Size {
		return raw, true, "mismatch"
	}
	if err := checkRetr(e, raw, quote); err != nil {
		return raw, true, "mismatch"
	}
	return raw, true, "ok"
}

// retrClass is the kind of a ReadRetrTo error, as oldReadRetr names them.
func retrClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrSurplus):
		return "surplus"
	case errors.Is(err, ErrMismatch):
		return "mismatch"
	case errors.Is(err, ErrSink):
		return "sink"
	case IsERR(err):
		return "-ERR"
	case errors.Is(err, ErrBudget):
		return "budget"
	case errors.Is(err, ErrProtocol):
		return "protocol"
	}
	return "io"
}

// afterEnd is what follows the first "." line of body, and whether there
// is one.
func afterEnd(body []byte) ([]byte, bool) {
	for rest := body; len(rest) > 0; {
		line, tail, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			break
		}
		if bytes.Equal(line, []byte(".")) || bytes.Equal(line, []byte(".\r")) {
			return tail, true
		}
		rest = tail
	}
	return nil, false
}

// compareRetr reads one RETR reply, status line st and then wire, both
// through oldReadRetr and through ReadRetrTo, the latter also with the
// server's bytes one per Read, and fails unless they agree: the same bytes
// and the same kind of error. What would follow the reply is cut off (the
// rest of wire after its first "." line, all of it after a -ERR): it is a
// surplus, which the Conn looks for on the socket (TestReadRetrToSurplus).
func compareRetr(t *testing.T, st, wire []byte, size int64) {
	t.Helper()
	if rest, ok := afterEnd(wire); ok {
		wire = wire[:len(wire)-len(rest)]
	}
	e := Entry{Num: 1, UID: "u", Size: size}
	pc, _ := goPOP3(t, string(st)+"\r\n"+string(wire))
	want, read, class := oldReadRetr(pc, st, e)
	if class == "-ERR" {
		wire = nil
	}
	script := string(st) + "\r\n" + string(wire)
	for _, oneByte := range []bool{false, true} {
		var nc net.Conn = &scriptConn{r: strings.NewReader(script)}
		if oneByte {
			nc = &oneByteConn{scriptConn{r: strings.NewReader(script)}}
		}
		c := scriptedRetr(t, nc)
		var got bytes.Buffer
		n, err := c.ReadRetrTo(e, &got)
		if retrClass(err) != class {
			t.Fatalf("one byte per read %v: ReadRetrTo(%q) = %v (%s); the old ReadRetr: %s", oneByte, script, err, retrClass(err), class)
		}
		if n != int64(got.Len()) {
			t.Fatalf("ReadRetrTo returned %d, wrote %d bytes", n, got.Len())
		}
		if read && !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("one byte per read %v: ReadRetrTo(%q) wrote %q; the old ReadRetr read %q", oneByte, script, got.Bytes(), want)
		}
		if (err != nil) != (c.Broken() != nil) {
			t.Fatalf("ReadRetrTo = %v but Broken = %v: any error ends the session", err, c.Broken())
		}
		if err == nil && (c.lines != c.g.lines || c.due != 0) {
			t.Fatalf("after the reply: %d lines read as replies, %d taken, %d replies due", c.lines, c.g.lines, c.due)
		}
	}
	if class == "ok" {
		if raw, err := scriptedRetr(t, &scriptConn{r: strings.NewReader(script)}).ReadRetr(e); err != nil || !bytes.Equal(raw, want) {
			t.Fatalf("ReadRetr = %q, %v; want %q", raw, err, want)
		}
	}
}

// FuzzReadRetrTo: for any reply a server sends, ReadRetrTo writes exactly
// the bytes the old ReadRetr (go-pop3's ReadAll) returned and fails in
// the same way, whether the bytes come at once or one per read.
func FuzzReadRetrTo(f *testing.F) {
	f.Add([]byte("+OK 10 octets"), []byte("a\r\n..b\r\nc\n.x\r\n. \r\nd\r\r\n\r\n.\n"), int64(10))
	f.Add([]byte("+OK"), []byte("Subject: x\r\n\r\nbody\r\n.\r\n"), int64(20))
	f.Add([]byte("+OK 20 octets"), []byte("+OK 20 octets\r\nSubject: x\r\n.\r\n"), int64(20))
	f.Add([]byte("+OK"), []byte("last line.\r\n"), int64(12))
	f.Add([]byte("+OK"), []byte("a\r\n.\r\n+OK stray\r\n"), int64(3))
	f.Add([]byte("+OK"), []byte("bare\rcr\r\nno lf at the end"), int64(20))
	f.Add([]byte("-ERR no such message"), []byte(""), int64(5))
	f.Add([]byte(""), []byte("a\r\n.\r\n"), int64(3))
	f.Add([]byte("+OKAY"), []byte(".\r\n"), int64(0))
	f.Add([]byte("+OK 3 octets"), []byte(".\r\n"), int64(0))
	f.Fuzz(func(t *testing.T, st, wire []byte, size int64) {
		if bytes.IndexByte(st, '\n') >= 0 || size < 0 || size > MaxMessageSize {
			return
		}
		compareRetr(t, st, wire, size)
	})
}

// TestReadRetrToLines: the line shapes readBody must unstuff as ReadAll
// did, at the edges of its buffer too (a long line split where its "\r\n"
// is, or a bare CR), and the ends of a reply that are not one.
func TestReadRetrToLines(t *testing.T) {
	long := strings.Repeat("x", readBuf-1)
	for _, tt := range []struct {
		name string
		st   string
		wire string
		size int64
	}{
		{"CRLF", "+OK", "a\r\nb\r\n.\r\n", 6},
		{"bare LF", "+OK", "a\nb\n.\n", 6},
		{"bare CR", "+OK", "a\rb\r\n\r\r\n.\r\n", 9},
		{"stuffed dots", "+OK", "..\r\n...x\r\n.\r\r\n. \r\n.\r\n", 14},
		{"a lone dot inside a line", "+OK", "a . b\r\nc.\r\n.d\r\n.\r\n", 14},
		{"no line end at EOF", "+OK", "a\r\nb", 3},
		{"no final line at EOF", "+OK", "a\r\nb\r\n", 6},
		{"dot glued to the last line", "+OK", "a\r\nlast.\r\n", 9},
		{"dot glued, the next reply behind it", "+OK", "a\r\nlast.\r\n+OK 3 octets\r\nb\r\n.\r\n", 9},
		{"empty message", "+OK 0 octets", ".\r\n", 0},
		{"line of the buffer's size", "+OK", long + "\r\n.\r\n", int64(len(long)) + 2},
		{"CR at the buffer's edge, LF after", "+OK", long + "\r\n" + long + "x\r\n.\r\n", 2*int64(len(long)) + 5},
		{"CR at the buffer's edge, no LF after", "+OK", long + "x\rx\r\n.\r\n", int64(len(long)) + 5},
		{"CRCR at the buffer's edge", "+OK", long + "x\r\r\n.\r\n", int64(len(long)) + 4},
		{"dot at the start of a long line", "+OK", ".." + long + long + "\r\n.\r\n", 2*int64(len(long)) + 3},
		{"long line, stuffed dot after the edge", "+OK", long + "x" + ".\r\n..\r\n.\r\n", int64(len(long)) + 6},
		{"long first line, a status line", "+OK", "+OK " + long + long + "\r\n.\r\n", 2*int64(len(long)) + 6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			compareRetr(t, []byte(tt.st), []byte(tt.wire), tt.size)
		})
	}
}

// TestReadRetrToChecks: the checks of ReadRetr hold for ReadRetrTo: a
// reply that begins with a status line, or announces another size, does
// not fit its message; an -ERR to RETR ends the session; each ends it.
func TestReadRetrToChecks(t *testing.T) {
	for _, tt := range []struct {
		name  string
		reply string
		size  int64
		class string
	}{
		{"fits", "+OK 14 octets\r\nSubject: x\r\n\r\n.\r\n", 14, "ok"},
		{"status line first", "+OK\r\n+OK 14 octets\r\nSubject: x\r\n.\r\n", 14, "mismatch"},
		{"bare +OK first", "+OK\r\n+OK\r\nSubject: x\r\n.\r\n", 17, "mismatch"},
		{"-ERR first", "+OK\r\n-ERR stray\r\nSubject: x\r\n.\r\n", 25, "mismatch"},
		{"-ERR first, one line", "+OK\r\n-ERR\r\n.\r\n", 6, "mismatch"},
		{"+OKAY is a header, of sorts", "+OK\r\n+OKAY\r\n.\r\n", 7, "ok"},
		{"+OK: a header", "+OK\r\n+OK: x\r\n.\r\n", 8, "ok"},
		{"long status line first", "+OK\r\n+OK " + strings.Repeat("y", 4*firstMax) + "\r\n.\r\n", 4*firstMax + 6, "mismatch"},
		{"another message's size", "+OK 99 octets\r\nSubject: x\r\n\r\n.\r\n", 15, "mismatch"},
		{"a wrong size, LIST's length", "+OK 99 octets\r\nSubject: x\r\n\r\n.\r\n", 14, "ok"},
		{"far larger than LIST", "+OK\r\n" + strings.Repeat("x\r\n", 1<<20) + ".\r\n", 100, "budget"},
		{"refused", "-ERR no such message\r\n", 14, "-ERR"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := scriptedRetr(t, &scriptConn{r: strings.NewReader(tt.reply)})
			_, err := c.ReadRetrTo(Entry{Num: 1, UID: "u", Size: tt.size}, io.Discard)
			if retrClass(err) != tt.class || (err != nil) != (c.Broken() != nil) {
				t.Fatalf("ReadRetrTo = %v (%s), broken %v; want %s", err, retrClass(err), c.Broken(), tt.class)
			}
		})
	}
}

// TestReadRetrToBudget: a reply past retrBudget of its LIST size fails
// with ErrBudget as soon as the budget runs out, not at its deadline: a
// server that sends the budget's worth and then stalls, or one endless
// line, is stopped at once.
func TestReadRetrToBudget(t *testing.T) {
	const size = 100
	budget := retrBudget(size)
	// Lines of exactly the budget's bytes.
	lines := strings.Repeat(strings.Repeat("z", 98)+"\r\n", int(budget/100)) + strings.Repeat("z", int(budget%100)-2) + "\r\n"
	for _, tt := range []struct {
		name string
		body string
	}{
		{"lines, then a stall", lines},
		{"one endless line", strings.Repeat("z", int(budget)+1)},
		{"lines past the budget", lines + lines + ".\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			go func() {
				io.WriteString(server, "+OK\r\n"+tt.body)
				// then nothing: a stall until the test ends
			}()
			go io.Copy(io.Discard, server) // the RETR
			c := scripted(t, client, time.Minute)
			defer c.Close()
			c.SendRetr(1)
			start := time.Now()
			n, err := c.ReadRetrTo(Entry{Num: 1, UID: "u", Size: size}, io.Discard)
			if !errors.Is(err, ErrBudget) || c.Broken() == nil {
				t.Fatalf("ReadRetrTo = %d, %v; want ErrBudget, the session ended", n, err)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Fatalf("ErrBudget after %v: the budget must stop the reply, not the deadline", d)
			}
			if n > budget {
				t.Fatalf("%d bytes written for a budget of %d", n, budget)
			}
		})
	}
}

// TestReadRetrToDeadline: one deadline, retrDeadline of the LIST size,
// bounds the status line and the body together: a server that trickles
// a byte at a time is stopped then, however steadily it sends.
func TestReadRetrToDeadline(t *testing.T) {
	for _, tt := range []struct {
		name, head string
	}{
		{"stall in the status line", "+OK 5 oct"},
		{"stall in the body", "+OK\r\nSubject: x\r\n"},
		{"trickle", "+OK\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			done := make(chan struct{})
			defer close(done)
			go io.Copy(io.Discard, server)
			go func() {
				io.WriteString(server, tt.head)
				if tt.name != "trickle" {
					return
				}
				for {
					select {
					case <-done:
						return
					case <-time.After(20 * time.Millisecond):
						if _, err := server.Write([]byte("x")); err != nil {
							return
						}
					}
				}
			}()
			const timeout = 300 * time.Millisecond
			c := scripted(t, client, timeout)
			defer c.Close()
			c.SendRetr(1)
			start := time.Now()
			_, err := c.ReadRetrTo(Entry{Num: 1, UID: "u", Size: 10}, io.Discard)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || c.Broken() == nil {
				t.Fatalf("ReadRetrTo = %v; want a timeout that ends the session", err)
			}
			if d := time.Since(start); d < timeout || d > timeout+5*time.Second {
				t.Fatalf("timed out after %v; want about %v", d, retrDeadline(timeout, 10))
			}
		})
	}
}

// failWriter fails once it has taken n bytes; short writes instead of an
// error if short.
type failWriter struct {
	n     int
	short bool
	got   bytes.Buffer
}

var errDisk = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.got.Len()+len(p) <= w.n {
		return w.got.Write(p)
	}
	k := w.n - w.got.Len()
	w.got.Write(p[:k])
	if w.short {
		return k, nil
	}
	return k, errDisk
}

// TestReadRetrToSink: an error from w ends the session, is told apart
// from a fault of the server (ErrSink, not ErrProtocol), and nothing more
// is sent, as the rest of the reply was never read.
func TestReadRetrToSink(t *testing.T) {
	msg := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 4096) // 256 KiB
	for _, tt := range []struct {
		name string
		w    *failWriter
		want error
	}{
		{"error at once", &failWriter{n: 0}, errDisk},
		{"error part way", &failWriter{n: 100 << 10}, errDisk},
		{"short write", &failWriter{n: 100 << 10, short: true}, io.ErrShortWrite},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc := &scriptConn{r: strings.NewReader("+OK\r\n" + msg + ".\r\n")}
			c := scriptedRetr(t, sc)
			n, err := c.ReadRetrTo(Entry{Num: 1, UID: "u", Size: int64(len(msg))}, tt.w)
			if !errors.Is(err, ErrSink) || !errors.Is(err, tt.want) || errors.Is(err, ErrProtocol) || c.Broken() == nil {
				t.Fatalf("ReadRetrTo = %v (broken %v); want ErrSink wrapping %v, the session ended", err, c.Broken(), tt.want)
			}
			if n != int64(tt.w.got.Len()) || !strings.HasPrefix(msg, tt.w.got.String()) {
				t.Fatalf("ReadRetrTo = %d; the writer took %d bytes, a prefix of the message: %v", n, tt.w.got.Len(), strings.HasPrefix(msg, tt.w.got.String()))
			}
			sent := sc.written.Len()
			if err := c.SendDele(1); err == nil {
				t.Fatal("SendDele after a sink error succeeded")
			}
			if err := c.Quit(); err == nil || sc.written.Len() != sent {
				t.Fatalf("Quit = %v, %d bytes sent after the sink error", err, sc.written.Len()-sent)
			}
		})
	}
}

// TestReadRetrToStreams: the message reaches w while the server is still
// sending it: the first bytes of a message are written before its last
// ones have been sent.
func TestReadRetrToStreams(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	go io.Copy(io.Discard, server)
	chunk := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 2048) // 128 KiB
	got := make(chan struct{})
	go func() {
		io.WriteString(server, "+OK\r\n"+chunk)
		select {
		case <-got:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(server, chunk+".\r\n")
	}()
	c := scripted(t, client, 30*time.Second)
	defer c.Close()
	c.SendRetr(1)
	w := &notifyWriter{at: 64 << 10, c: got}
	start := time.Now()
	n, err := c.ReadRetrTo(Entry{Num: 1, UID: "u", Size: 2 * int64(len(chunk))}, w)
	if err != nil || n != 2*int64(len(chunk)) {
		t.Fatalf("ReadRetrTo = %d, %v", n, err)
	}
	if !w.notified || time.Since(start) > 5*time.Second {
		t.Fatal("the writer got nothing until the server had sent the whole message")
	}
	if w.maxWrite > readBuf+2 {
		t.Fatalf("a write of %d bytes; want at most about %d", w.maxWrite, readBuf)
	}
}

type notifyWriter struct {
	at       int
	n        int
	maxWrite int
	notified bool
	c        chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	w.maxWrite = max(w.maxWrite, len(p))
	if w.n >= w.at && !w.notified {
		w.notified = true
		close(w.c)
	}
	return len(p), nil
}

// stuffed is m as a server sends it in a multi-line reply: each line that
// begins with a dot gets another (RFC 1939 §3), and the "." line ends it.
func stuffed(m []byte) []byte {
	var b bytes.Buffer
	for _, l := range bytes.SplitAfter(m, []byte("\n")) {
		if len(l) > 0 && l[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(l)
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// TestReadRetrToMemory: reading a message does not take memory in
// proportion to its size: 16 MB read into io.Discard allocate less than
// two read buffers' worth.
func TestReadRetrToMemory(t *testing.T) {
	msg := []byte(strings.Repeat(".0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\nbare lf line\n", 200_000))
	sc := &scriptConn{r: bytes.NewReader(append([]byte("+OK\r\n"), stuffed(msg)...))}
	c := scriptedRetr(t, sc)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	n, err := c.ReadRetrTo(Entry{Num: 1, UID: "u", Size: int64(len(msg))}, io.Discard)
	runtime.ReadMemStats(&ms1)
	if want := int64(len(msg) + 200_000); err != nil || n != want {
		t.Fatalf("ReadRetrTo = %d, %v; want %d bytes (each bare LF made CRLF)", n, err, want)
	}
	if a := ms1.TotalAlloc - ms0.TotalAlloc; a > 2*readBuf+16<<10 {
		t.Fatalf("reading a %d-byte message allocated %d bytes", len(msg), a)
	}
}

// TestReadRetrToRound: replies to several RETRs sent in one write, read
// one after the other, in step, as a pipelined round reads them.
func TestReadRetrToRound(t *testing.T) {
	var script strings.Builder
	var list []Entry
	for i := 1; i <= 50; i++ {
		m := fmt.Sprintf("Subject: %d\r\n\r\n.dot %d\r\n", i, i)
		fmt.Fprintf(&script, "+OK %d octets\r\n%s.\r\n", len(m), strings.ReplaceAll(m, "\n.", "\n.."))
		list = append(list, Entry{Num: i, UID: fmt.Sprint(i), Size: int64(len(m))})
	}
	sc := &scriptConn{r: strings.NewReader(script.String())}
	c := scripted(t, sc, 5*time.Second)
	for _, e := range list {
		if err := c.SendRetr(e.Num); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range list {
		var b bytes.Buffer
		if _, err := c.ReadRetrTo(e, &b); err != nil || !strings.HasSuffix(b.String(), fmt.Sprintf(".dot %d\r\n", e.Num)) {
			t.Fatalf("message %d: %q, %v", e.Num, b.String(), err)
		}
	}
	if sc.writes != 1 || !strings.HasPrefix(sc.written.String(), "RETR 1\r\nRETR 2\r\n") {
		t.Fatalf("%d writes of %.30q…; want the round in one", sc.writes, sc.written.String())
	}
}
