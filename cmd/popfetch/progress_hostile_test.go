package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProgressPipedStdout: stderr a terminal, stdout a pipe: the
// summary lines written through the progress writer reach stdout without
// any escape sequence or carriage return; those go to stderr only.
func TestProgressPipedStdout(t *testing.T) {
	var term, pipe bytes.Buffer
	p := newProgressLine(&term, time.Now, func() int { return 80 })
	stdout := p.writer(&pipe)
	stderr := p.writer(&term)
	p.Start("isp", 10, 1000)
	p.draw()
	fmt.Fprintln(stdout, "isp: 10 new, 10 delivered, 10 deleted (1s)")
	fmt.Fprint(stdout, "partial ")
	p.Done("isp", 100)
	p.draw()
	fmt.Fprintln(stdout, "line")
	fmt.Fprintln(stderr, "a log line")
	p.End("isp")
	p.draw()
	p.close()
	if s := pipe.String(); strings.ContainsAny(s, "\x1b\r") {
		t.Errorf("escape in the piped stdout: %q", s)
	}
	if pipe.String() != "isp: 10 new, 10 delivered, 10 deleted (1s)\npartial line\n" {
		t.Errorf("stdout = %q", pipe.String())
	}
}

// cols is the width of s on a terminal, counting East Asian wide and
// fullwidth characters as two columns (UAX #11), the common ranges.
func cols(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r >= 0x1100 && r <= 0x115f, r >= 0x2e80 && r <= 0xa4cf, r >= 0xac00 && r <= 0xd7a3,
			r >= 0xf900 && r <= 0xfaff, r >= 0xfe30 && r <= 0xfe4f, r >= 0xff00 && r <= 0xff60, r >= 0x1f300 && r <= 0x1faff:
			n += 2
		default:
			n++
		}
	}
	return n
}

// TestProgressWidth: the line never reaches the terminal's last
// column (it would wrap, and "\r" would redraw only the second half),
// for tiny widths, long account names and wide characters.
func TestProgressWidth(t *testing.T) {
	for _, tt := range []struct {
		name  string
		width int
	}{
		{"isp", 0}, {"isp", 1}, {"isp", 2},
		{strings.Repeat("a", 5000), 80},
		{strings.Repeat("日本語", 40), 40},
		{strings.Repeat("📬", 50), 40},
		{"e\u0301" + strings.Repeat("x", 100), 20},
	} {
		p := newProgressLine(&bytes.Buffer{}, time.Now, func() int { return tt.width })
		p.Start(tt.name, 5, 5000)
		s := p.text()
		if s == "" {
			t.Errorf("width %d: empty line", tt.width)
			continue
		}
		if w := max(tt.width, 2); cols(s) >= w {
			t.Errorf("name %.20q width %d: line takes %d columns: %q", tt.name, tt.width, cols(s), s)
		}
	}
}

// TestProgressConcurrent: many accounts starting, finishing and
// logging at once (run with -race).
func TestProgressConcurrent(t *testing.T) {
	var term lockedWriter
	p := newProgressLine(&term, time.Now, func() int { return 60 })
	p.run()
	w := p.writer(&term)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("acct%d", i)
			p.Start(name, 20, 20000)
			for range 20 {
				p.Done(name, 1000)
				fmt.Fprintf(w, "%s: log\n", name)
			}
			p.End(name)
		}()
	}
	wg.Wait()
	p.close()
	if s := term.String(); !strings.HasSuffix(s, "\n") && !strings.HasSuffix(s, clearLine) {
		t.Errorf("terminal left with a progress line: %q", s[max(0, len(s)-100):])
	}
}

type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProgressCutsNameFirst: a long or wide account name is cut, with
// "…", before the counts are.
func TestProgressCutsNameFirst(t *testing.T) {
	for _, name := range []string{strings.Repeat("a", 5000), strings.Repeat("日本語", 40), strings.Repeat("📬", 50)} {
		p := newProgressLine(&bytes.Buffer{}, time.Now, func() int { return 50 })
		p.Start(name, 5, 5000)
		s := p.text()
		if !strings.HasSuffix(s, "…: 0/5 messages, 0 B/4.9 KiB") || cols(s) >= 50 {
			t.Errorf("%.10q: %q (%d columns)", name, s, cols(s))
		}
	}
}
