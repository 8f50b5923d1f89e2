package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// fakeClock is the progress display's clock in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// screen plays out as a terminal would: "\r" returns to the line's start,
// ESC [ K erases to its end, "\n" starts the next line, anything else is
// written over what is there. It returns the lines, the last one being
// where the cursor is. Any other escape sequence fails the test.
func screen(t *testing.T, out string) []string {
	t.Helper()
	lines := [][]rune{nil}
	col := 0
	rs := []rune(out)
	for i := 0; i < len(rs); i++ {
		cur := &lines[len(lines)-1]
		switch r := rs[i]; r {
		case '\r':
			col = 0
		case '\n':
			lines = append(lines, nil)
			col = 0
		case 0x1b:
			if i+2 >= len(rs) || rs[i+1] != '[' || rs[i+2] != 'K' {
				t.Fatalf("unexpected escape sequence at %d in %q", i, out)
			}
			i += 2
			if col < len(*cur) {
				*cur = (*cur)[:col]
			}
		default:
			for len(*cur) <= col {
				*cur = append(*cur, ' ')
			}
			(*cur)[col] = r
			col++
		}
	}
	var s []string
	for _, l := range lines {
		s = append(s, string(l))
	}
	return s
}

// TestProgressLineText: what the line says, from the counters and the
// clock: messages and bytes done of the total, the average rate since the
// first account started, the ETA the rate gives; totals for several
// accounts; a name's control characters escaped; cut to the width.
func TestProgressLineText(t *testing.T) {
	type call struct {
		start string // account to Start with msgs/bytes
		msgs  int
		bytes int64
		done  string // account to mark one message of bytes done
		end   string
		after time.Duration
	}
	for _, tt := range []struct {
		name  string
		width int
		calls []call
		want  string
	}{
		{"nothing", 80, nil, ""},
		{"started", 80, []call{{start: "home", msgs: 4, bytes: 4096}}, "home: 0/4 messages, 0 B/4.0 KiB"},
		{"rate and eta", 80, []call{
			{start: "home", msgs: 4, bytes: 4096},
			{after: 2 * time.Second, done: "home", bytes: 1024},
		}, "home: 1/4 messages, 1.0 KiB/4.0 KiB, 512 B/s, ETA 6s"},
		{"all bytes done", 80, []call{
			{start: "home", msgs: 1, bytes: 3 << 20},
			{after: 3 * time.Second, done: "home", bytes: 3 << 20},
		}, "home: 1/1 messages, 3.0 MiB/3.0 MiB, 1.0 MiB/s"},
		{"two accounts", 80, []call{
			{start: "a", msgs: 2, bytes: 2000},
			{after: time.Second, start: "b", msgs: 3, bytes: 6000},
			{after: time.Second, done: "b", bytes: 2000},
		}, "2 accounts: 1/5 messages, 2.0 KiB/7.8 KiB, 1000 B/s, ETA 6s"},
		{"one of two ended", 80, []call{
			{start: "a", msgs: 2, bytes: 2000},
			{start: "b", msgs: 3, bytes: 6000},
			{end: "a"},
		}, "b: 0/3 messages, 0 B/5.9 KiB"},
		{"all ended", 80, []call{
			{start: "a", msgs: 2, bytes: 2000},
			{end: "a"},
		}, ""},
		{"escaped name", 80, []call{{start: "evil\x1b]0;pwned\x07\r", msgs: 1, bytes: 10}}, "evil??: 0/1 messages, 0 B/10 B"},
		{"cut to width", 20, []call{{start: "home", msgs: 4, bytes: 4096}}, "home: 0/4 messages,"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1e9, 0)}
			p := newProgressLine(io.Discard, clk.now, func() int { return tt.width })
			for _, c := range tt.calls {
				clk.add(c.after)
				switch {
				case c.start != "":
					p.Start(c.start, c.msgs, c.bytes)
				case c.done != "":
					p.Done(c.done, c.bytes)
				case c.end != "":
					p.End(c.end)
				}
			}
			if got := p.text(); got != tt.want {
				t.Errorf("text = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestProgressLineDraws: the line is drawn with "\r" and erased to its
// end, drawn again only when it changed, erased when the last account
// ends, and close leaves the terminal clean.
func TestProgressLineDraws(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	var out bytes.Buffer
	p := newProgressLine(&out, clk.now, func() int { return 80 })
	p.draw()
	if out.Len() != 0 {
		t.Fatalf("nothing polled: wrote %q", out.String())
	}
	p.Start("home", 2, 2048)
	p.draw()
	clk.add(time.Second)
	p.Done("home", 1024)
	p.draw()
	p.draw() // unchanged: nothing written
	want := "\rhome: 0/2 messages, 0 B/2.0 KiB\x1b[K" + "\rhome: 1/2 messages, 1.0 KiB/2.0 KiB, 1.0 KiB/s, ETA 1s\x1b[K"
	if out.String() != want {
		t.Fatalf("wrote %q; want %q", out.String(), want)
	}
	out.Reset()
	p.End("home")
	p.draw()
	p.close()
	if out.String() != clearLine {
		t.Fatalf("after the end wrote %q; want one %q", out.String(), clearLine)
	}

	out.Reset()
	p = newProgressLine(&out, clk.now, func() int { return 80 })
	p.Start("home", 2, 2048)
	p.draw()
	p.close()
	if s := screen(t, out.String()); len(s) != 1 || s[0] != "" {
		t.Fatalf("close with the line shown left %q on the screen; want it clean", s)
	}
}

// TestProgressWriterInterleaves: a log line written while the progress is
// shown erases it, and the progress is drawn again on the next line; a
// line written in pieces is not broken by a draw.
func TestProgressWriterInterleaves(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	var out bytes.Buffer
	p := newProgressLine(&out, clk.now, func() int { return 80 })
	w := p.writer(&out)
	p.Start("home", 2, 2048)
	p.draw()
	io.WriteString(w, "level=WARN msg=one\n")
	io.WriteString(w, "level=WARN ")
	p.Done("home", 1024)
	p.draw() // waits for the line's end
	io.WriteString(w, "msg=two\n")
	p.draw()
	got := screen(t, out.String())
	want := []string{"level=WARN msg=one", "level=WARN msg=two", "home: 1/2 messages, 1.0 KiB/2.0 KiB"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("screen %q; want %q (written %q)", got, want, out.String())
	}
	p.close()
	if got := screen(t, out.String()); got[len(got)-1] != "" {
		t.Fatalf("after close the last line is %q; want it clean", got[len(got)-1])
	}
}

// TestProgressWithConcurrentLog: slog handlers writing through the display
// while polls report and the display draws on its own clock: every line on
// the screen is a whole log line, and nothing is left after close.
func TestProgressWithConcurrentLog(t *testing.T) {
	var out syncBuffer
	p := newProgressLine(&out, time.Now, func() int { return 80 })
	p.run()
	log := slog.New(slog.NewTextHandler(p.writer(&out), nil))
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acct := fmt.Sprintf("acct%d", g)
			p.Start(acct, 50, 50*1000)
			for i := range 50 {
				p.Done(acct, 1000)
				log.Warn("a log line", "account", acct, "i", i)
				time.Sleep(3 * time.Millisecond)
			}
			p.End(acct)
		}()
	}
	wg.Wait()
	p.close()
	lines := screen(t, out.String())
	whole := regexp.MustCompile(`^time=\S+ level=WARN msg="a log line" account=acct\d i=\d+$`)
	for i, l := range lines[:len(lines)-1] {
		if !whole.MatchString(l) {
			t.Errorf("screen line %d %q is not a whole log line", i, l)
		}
	}
	if n := len(lines) - 1; n != 150 {
		t.Errorf("%d log lines on the screen; want 150", n)
	}
	if last := lines[len(lines)-1]; last != "" {
		t.Errorf("last line %q after close; want it clean", last)
	}
	if !strings.Contains(out.String(), "messages") {
		t.Errorf("the progress was never drawn in %q", out.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// slowRetr makes each RETR answer after d, so that a fetch lasts long
// enough to be drawn.
func slowRetr(d time.Duration) pop3test.Fault {
	return pop3test.Fault{Cmd: "RETR", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
		time.Sleep(d)
		c.Write(c.Answer())
	}}
}

// progressRC is an rc file for one account on a server with n messages,
// each RETR taking slow.
func progressRC(t *testing.T, n int, slow time.Duration) string {
	t.Helper()
	var m []pop3test.Message
	for i := range n {
		m = append(m, pop3test.Message{UID: fmt.Sprint("u", i), Data: []byte(fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", i, strings.Repeat("x", 2000)))})
	}
	opts := pop3test.Options{Messages: m}
	if slow > 0 {
		opts.Faults = []pop3test.Fault{slowRetr(slow)}
	}
	srv := pop3test.NewServer(t, opts)
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{name: "home", port: srv.Port(), user: "user", pass: "pass",
		maildir: filepath.Join(dir, "Maildir")}))
	return rc
}

// TestFetchProgressOnlyOnTerminal: `popfetch fetch` draws its progress on
// stderr only if stderr is a terminal and --quiet is not given; otherwise
// not one escape sequence is written.
func TestFetchProgressOnlyOnTerminal(t *testing.T) {
	for _, tt := range []struct {
		name     string
		terminal bool
		args     []string
		drawn    bool
	}{
		{"terminal", true, nil, true},
		{"terminal quiet", true, []string{"--quiet"}, false},
		{"terminal -q", true, []string{"-q"}, false},
		{"not a terminal", false, nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rc := progressRC(t, 3, 150*time.Millisecond)
			var out, errb bytes.Buffer
			g := &globals{stdout: &out, stderr: &errb, logFormat: "text",
				isTerminal: func(w io.Writer) bool { return tt.terminal && w == io.Writer(&errb) }}
			code := g.command(context.Background(), "fetch", append([]string{"-f", rc}, tt.args...))
			if code != exitOK || !strings.Contains(out.String(), "home: 3 new, 3 delivered") {
				t.Fatalf("fetch = %d\n%s%s", code, out.String(), errb.String())
			}
			drawn := strings.Contains(errb.String(), "home: ") && strings.Contains(errb.String(), "/3 messages")
			if drawn != tt.drawn {
				t.Errorf("progress drawn = %v; want %v (stderr %q)", drawn, tt.drawn, errb.String())
			}
			if !tt.drawn && strings.ContainsAny(errb.String()+out.String(), "\x1b\r") {
				t.Errorf("escape or CR written without the display: stdout %q stderr %q", out.String(), errb.String())
			}
			if tt.drawn {
				if s := screen(t, errb.String()); s[len(s)-1] != "" {
					t.Errorf("the terminal is left with %q", s)
				}
			}
		})
	}
}

// TestFetchProgressPty runs the popfetch binary with stdout and stderr on a
// pseudo-terminal, and with stderr on a pipe: on the terminal the progress
// is drawn and the screen ends with the summary line and a clean line
// below it; on the pipe not one escape sequence is written.
func TestFetchProgressPty(t *testing.T) {
	rc := progressRC(t, 4, 200*time.Millisecond)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(popfetchBin, "-f", rc, "fetch")
	cmd.Stdout, cmd.Stderr = tty, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		io.Copy(&out, ptmx) // ends with EIO once the child has gone
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("popfetch fetch: %v\n%q", err, out.String())
	}
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal's output did not end")
	}
	raw := out.String()
	if !strings.Contains(raw, "home: 0/4 messages") || !strings.Contains(raw, "\x1b[K") {
		t.Errorf("no progress drawn on the terminal: %q", raw)
	}
	// Above the summary there may be the rc file's warnings; no line
	// left on the screen is the progress's, or has a piece of it.
	lines := screen(t, raw)
	n := len(lines)
	if n < 2 || !strings.HasPrefix(lines[n-2], "home: 4 new, 4 delivered, 4 deleted") || lines[n-1] != "" {
		t.Errorf("screen at the end %q; want the summary line and a clean line below (written %q)", lines, raw)
	}
	for _, l := range lines {
		if strings.Contains(l, "messages") {
			t.Errorf("progress left on the screen: %q", l)
		}
	}

	// The same fetch (its messages again, on a new server) with stderr
	// on a pipe.
	rc = progressRC(t, 2, 0)
	cmd = exec.Command(popfetchBin, "-f", rc, "fetch")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("popfetch fetch: %v\n%s", err, stderr.String())
	}
	if strings.ContainsAny(stdout.String()+stderr.String(), "\x1b\r") || !strings.Contains(stdout.String(), "home: 2 new") {
		t.Errorf("stderr not a terminal: stdout %q stderr %q; want the summary and no escape sequence", stdout.String(), stderr.String())
	}
}
