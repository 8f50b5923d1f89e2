package deliver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"

	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// hookLog records ResultFunc calls, and what exists at each call.
type hookLog struct {
	mu    sync.Mutex
	calls []string // "i:ok" or "i:err"
	seen  []int    // copies present when the call was made
	count func() int
}

func (h *hookLog) hook(i int, err error, _ Receipt) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := fmt.Sprintf("%d:ok", i)
	if err != nil {
		s = fmt.Sprintf("%d:err", i)
	}
	h.calls = append(h.calls, s)
	if h.count != nil {
		h.seen = append(h.seen, h.count())
	}
}

func countFiles(t *testing.T, pattern string) func() int {
	return func() int {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Error(err)
		}
		return len(m)
	}
}

// A Maildir and an MDA report each recipient's result as soon as its copy
// is made, before the next copy exists: a caller that records in the hook
// leaves at most the copy in flight unrecorded when it is killed.
func TestResultHookPerCopy(t *testing.T) {
	rcpts := []Recipient{{User: "ann", Address: "ann@x", Domain: "x"}, {User: "-bad"}, {User: "bob", Address: "bob@x", Domain: "x"}}
	dir := t.TempDir()
	md := NewMaildir(filepath.Join(dir, "{user}"), MaildirOptions{LocalHost: "mx.local"})
	stub := delivertest.NewMDA(t)
	mda, _ := newTestMDA(t, stub.Argv("{user}"), MDAOptions{})
	for _, tc := range []struct {
		name  string
		tg    Target
		count func() int
	}{
		{"maildir", md, countFiles(t, filepath.Join(dir, "*", "new", "*"))},
		{"mda", mda, func() int { return stub.Total(t) }},
	} {
		h := &hookLog{count: tc.count}
		errs := DeliverReporting(context.Background(), tc.tg, smtpMsg("Subject: x\r\n\r\nb\r\n"), "", rcpts, nil, h.hook)
		if errs[0] != nil || errs[1] == nil || errs[2] != nil {
			t.Fatalf("%s: Deliver = %v", tc.name, errs)
		}
		if got := strings.Join(h.calls, " "); got != "0:ok 1:err 2:ok" {
			t.Errorf("%s: hook calls %q; want each result once, in order", tc.name, got)
		}
		if fmt.Sprint(h.seen) != "[1 1 2]" {
			t.Errorf("%s: copies present at each hook call %v; want [1 1 2] (reported as made)", tc.name, h.seen)
		}
	}
}

// A cancelled ctx stops a Maildir or MDA before the next copy: the caller
// cancels when it cannot record a copy.
func TestResultHookCancelStops(t *testing.T) {
	rcpts := []Recipient{{User: "ann"}, {User: "bob"}, {User: "cy"}}
	dir := t.TempDir()
	md := NewMaildir(filepath.Join(dir, "{user}"), MaildirOptions{LocalHost: "mx.local"})
	stub := delivertest.NewMDA(t)
	mda, _ := newTestMDA(t, stub.Argv("{user}"), MDAOptions{})
	for name, tg := range map[string]Target{"maildir": md, "mda": mda} {
		ctx, cancel := context.WithCancel(context.Background())
		errs := DeliverReporting(ctx, tg, smtpMsg("Subject: x\r\n\r\nb\r\n"), "", rcpts, nil, func(i int, err error, _ Receipt) { cancel() })
		if errs[0] != nil || errs[1] == nil || errs[2] == nil || IsPermanent(errs[1]) {
			t.Errorf("%s: Deliver = %v; want the first only, the rest temporary", name, errs)
		}
	}
	if n := countFiles(t, filepath.Join(dir, "*", "new", "*"))(); n != 1 {
		t.Errorf("maildir: %d copies; want 1", n)
	}
	if n := stub.Total(t); n != 1 {
		t.Errorf("mda: %d copies; want 1", n)
	}
}

// LMTP: each recipient's 250 that names it (as dovecot's do) is reported
// as it arrives, before the server sends the next reply (which it does
// here only once the previous one was reported, or after a second), so a
// popfetch killed in the middle of a long transaction does not serve the
// users already confirmed again. Multi-line replies and replies split
// across reads count once; a failure is reported at the end.
func TestLMTPResultsAsTheyArrive(t *testing.T) {
	reported := make(chan int, 10)
	var late []string
	addr := smtpRaw(t, func(c net.Conn, r *bufio.Reader) {
		rawDialogue(c, r, 4)
		rawReadData(r)
		for k, reply := range []string{"250 2.0.0 <a@x> ok\r\n", "250-2.0.0 <b@x>\r\n250 2.0.0 ok", "\r\n550 5.1.1 <c@x> no\r\n", "250 2.0.0 <d@x> ok\r\n"} {
			io.WriteString(c, reply)
			// b's reply is split (complete with the third write); c fails.
			want, ok := map[int]int{0: 0, 2: 1, 3: 3}[k]
			if !ok {
				continue
			}
			select {
			case i := <-reported:
				if i != want {
					late = append(late, fmt.Sprintf("reported %d after reply %d", i, k))
				}
			case <-time.After(10 * time.Second):
				late = append(late, fmt.Sprintf("reply %d", k))
			}
		}
		rawCmd(c, r, "221 bye")
	})
	d := NewSMTP(SMTPOptions{Addr: addr, LMTP: true, Timeout: 4 * time.Second})
	h := &hookLog{}
	hook := func(i int, err error, _ Receipt) {
		h.hook(i, err, Receipt{})
		if err == nil {
			reported <- i
		}
	}
	rcpts := []Recipient{{Address: "a@x"}, {Address: "b@x"}, {Address: "c@x"}, {Address: "d@x"}}
	errs := d.DeliverReporting(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", rcpts, nil, hook)
	checkResults(t, errs, "", "", "perm:LMTP 550", "")
	if late != nil {
		t.Errorf("not reported before the next reply: %v", late)
	}
	if got := strings.Join(h.calls, " "); got != "0:ok 1:ok 3:ok 2:err" {
		t.Errorf("hook calls %q; want the 250s as they came, the failure at the end", got)
	}
}

// LMTP: replies that name no recipient are reported once every reply is
// in and nothing follows them (a stray reply among them would shift every
// later reply onto the wrong recipient, which only the count at the end
// shows), and before QUIT. Multi-line replies and replies split across
// reads count once.
func TestLMTPUnnamedResultsAfterLastReply(t *testing.T) {
	var reportedEarly bool
	var h hookLog
	quitAnswered := make(chan struct{})
	addr := smtpRaw(t, func(c net.Conn, r *bufio.Reader) {
		rawDialogue(c, r, 4)
		rawReadData(r)
		for _, reply := range []string{"250 2.0.0 ok\r\n", "250-2.0.0 Saved\r\n250 2.0.0 ok", "\r\n550 5.1.1 no\r\n"} {
			io.WriteString(c, reply)
			time.Sleep(50 * time.Millisecond)
		}
		h.mu.Lock()
		reportedEarly = len(h.calls) > 0
		h.mu.Unlock()
		io.WriteString(c, "250 2.0.0 ok\r\n")
		r.ReadString('\n') // QUIT
		time.Sleep(500 * time.Millisecond)
		close(quitAnswered)
		io.WriteString(c, "221 bye\r\n")
	})
	d := NewSMTP(SMTPOptions{Addr: addr, LMTP: true, Timeout: 4 * time.Second})
	var atHook []bool
	hook := func(i int, err error, _ Receipt) {
		h.hook(i, err, Receipt{})
		select {
		case <-quitAnswered:
			atHook = append(atHook, true)
		default:
			atHook = append(atHook, false)
		}
	}
	rcpts := []Recipient{{Address: "a@x"}, {Address: "b@x"}, {Address: "c@x"}, {Address: "d@x"}}
	errs := d.DeliverReporting(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", rcpts, nil, hook)
	checkResults(t, errs, "", "", "perm:LMTP 550", "")
	if reportedEarly {
		t.Errorf("results reported before the last reply")
	}
	if got := strings.Join(h.calls, " "); got != "0:ok 1:ok 2:err 3:ok" {
		t.Errorf("hook calls %q; want every result once", got)
	}
	for _, late := range atHook {
		if late {
			t.Errorf("results reported after QUIT was answered")
		}
	}
}

// replyTapRef reads replies as go-smtp does: net/textproto's ReadResponse
// over a 2000-byte line limit, and returns their codes until the first
// failure that is not a reply.
func replyTapRef(chunks [][]byte) []int {
	r := textproto.NewReader(bufio.NewReader(&limitRef{chunks: chunks, n: 1}))
	var codes []int
	for {
		code, _, err := r.ReadResponse(250)
		var te *textproto.Error
		if err != nil && !errors.As(err, &te) {
			return codes
		}
		codes = append(codes, code)
	}
}

// limitRef replays chunks, one per Read, failing a chunk whole as
// go-smtp's lineLimitReader does.
type limitRef struct {
	chunks [][]byte
	n      int
}

func (l *limitRef) Read(p []byte) (int, error) {
	if len(l.chunks) == 0 {
		return 0, io.EOF
	}
	c := l.chunks[0]
	if len(c) > len(p) {
		l.chunks[0] = c[len(p):]
		c = c[:len(p)]
	} else {
		l.chunks = l.chunks[1:]
	}
	for _, b := range c {
		if b == '\n' {
			l.n = 0
		}
		l.n++
		if l.n > tapLineLimit {
			return 0, errors.New("line too long")
		}
	}
	return copy(p, c), nil
}

// FuzzReplyTap: every reply the tap reports as 250 is a 250 for
// net/textproto too, at the same position.
func FuzzReplyTap(f *testing.F) {
	f.Add([]byte("250 ok\r\n250-a\r\n250 b\r\n550 no\r\n"), uint8(3))
	f.Add([]byte("250-a\r\n550 x\r\n250 b\r\n250 c\n"), uint8(1))
	f.Add([]byte("abc-x\r\n250 ok\r\n"), uint8(0))
	f.Add([]byte("250 "+strings.Repeat("x", 2100)+"\r\n250 ok\r\n"), uint8(7))
	f.Add([]byte("250 ok\r\n"+strings.Repeat("y", 1990)+"\r\n250 ok\r\n"), uint8(200))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var chunks [][]byte
		for rest := data; len(rest) > 0; {
			n := min(len(rest), int(step)+1)
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		var got []int
		tap := &replyTap{lineLen: 1, onReply: func(k, code int, _ string) {
			if k != len(got) {
				t.Fatalf("reply %d reported after %d", k, len(got))
			}
			got = append(got, code)
		}}
		// The tap sees what the connection returns, which (with a
		// bufio.Reader's 4096-byte reads) is one chunk per Read.
		var bufChunks [][]byte
		for _, c := range chunks {
			tap.feed(c)
			bufChunks = append(bufChunks, bytes.Clone(c))
		}
		want := replyTapRef(bufChunks)
		for k, code := range got {
			if code == 250 && (k >= len(want) || want[k] != 250) {
				t.Fatalf("tap reported 250 for reply %d; textproto read %v (tap %v)", k, want, got)
			}
		}
	})
}

// SMTP reports its transaction's result before QUIT, which a slow server
// may take seconds to answer: the copies are durable at the final reply.
func TestSMTPResultBeforeQuit(t *testing.T) {
	quitAnswered := make(chan time.Time, 1)
	addr := smtpRaw(t, func(c net.Conn, r *bufio.Reader) {
		rawDialogue(c, r, 2)
		rawReadData(r)
		io.WriteString(c, "250 queued\r\n")
		r.ReadString('\n') // QUIT
		time.Sleep(time.Second)
		quitAnswered <- time.Now()
		io.WriteString(c, "221 bye\r\n")
	})
	d := NewSMTP(SMTPOptions{Addr: addr, Timeout: 4 * time.Second})
	var reported []time.Time
	hook := func(i int, err error, _ Receipt) { reported = append(reported, time.Now()) }
	errs := d.DeliverReporting(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{Address: "a@x"}, {Address: "b@x"}}, nil, hook)
	checkResults(t, errs, "", "")
	q := <-quitAnswered
	if len(reported) != 2 || !reported[1].Before(q) {
		t.Errorf("results reported at %v; QUIT answered at %v; want both before", reported, q)
	}
}
