package deliver

import (
	"bytes"
	"errors"
	"io"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

// readAll reads r, failing the test on error.
func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// crlfOnly reports the offset of the first bare CR or bare LF in s, or -1.
func crlfOnly(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			if i+1 >= len(s) || s[i+1] != '\n' {
				return i
			}
			i++
		case '\n':
			return i
		}
	}
	return -1
}

// breaks counts the line ends in s the way the eolReader sees them: CRLF,
// bare CR and bare LF are one each.
func breaks(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			n++
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
		case '\n':
			n++
		}
	}
	return n
}

func TestOpen(t *testing.T) {
	// 32 KB is the eolReader's read size: put a CR at its last byte.
	edge := strings.Repeat("a", 32<<10-1)
	tests := []struct {
		name   string
		raw    string
		fields []Field
		want   string // the LF form; the CRLF form is derived from it
	}{
		{"crlf", "A: b\r\n\r\nbody\r\n", nil, "A: b\n\nbody\n"},
		{"bare lf", "A: b\n\nbody\n", nil, "A: b\n\nbody\n"},
		{"bare cr", "A: b\r\rbody\r", nil, "A: b\n\nbody\n"},
		{"mixed", "a\r\nb\nc\rd\r\n", nil, "a\nb\nc\nd\n"},
		{"cr cr lf", "a\r\r\nb\r\n", nil, "a\n\nb\n"},
		{"lf cr", "a\n\rb\r\n", nil, "a\n\nb\n"},
		{"lf lf", "a\n\nb\n", nil, "a\n\nb\n"},
		{"no trailing newline", "A: b\r\n\r\nbody", nil, "A: b\n\nbody\n"},
		{"trailing cr", "A: b\r\n\r\nbody\r", nil, "A: b\n\nbody\n"},
		{"only newline", "\r\n", nil, "\n"},
		{"empty", "", nil, ""},
		{"empty with field", "", []Field{{"X", "y"}}, "X: y\n"},
		{"cr at chunk end", edge + "\r\nz\r\n", nil, edge + "\nz\n"},
		{"bare cr at chunk end", edge + "\rz\r\n", nil, edge + "\nz\n"},
		{"message starts with lf", "\nbody\r\n", []Field{{"X", "y"}}, "X: y\n\nbody\n"},
		{"fields in order", "S: s\r\n\r\nb\r\n",
			[]Field{{"X-Popfetch-Reason", "r"}, {"Received", "from a\r\n\tby b; date"}, {"Delivered-To", "j@x"}},
			"X-Popfetch-Reason: r\nReceived: from a\n\tby b; date\nDelivered-To: j@x\nS: s\n\nb\n"},
		{"field folded with space", "", []Field{{"A", "x\r\n y"}}, "A: x\n\ty\n"},
		{"field injection crlf", "", []Field{{"A", "x\r\nBcc: evil@x"}}, "A: x\n\tBcc: evil@x\n"},
		{"field injection bare lf", "", []Field{{"A", "x\nBcc: evil@x"}}, "A: x\n\tBcc: evil@x\n"},
		{"field injection bare cr", "", []Field{{"A", "x\rBcc: evil@x"}}, "A: x\n\tBcc: evil@x\n"},
		{"field blank line", "", []Field{{"A", "x\r\n\r\nbody"}}, "A: x\n\tbody\n"},
		{"field whitespace line", "", []Field{{"A", "x\r\n \r\n\tbody"}}, "A: x\n\tbody\n"},
		{"field trailing break", "", []Field{{"A", "x\r\n"}, {"B", "y\n\t "}}, "A: x\nB: y\n"},
		{"field empty", "", []Field{{"A", ""}}, "A: \n"},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data err", iotest.DataErrReader},
	}
	for _, tt := range tests {
		m := &Message{Raw: []byte(tt.raw)}
		for _, lf := range []bool{true, false} {
			want := tt.want
			if !lf {
				want = strings.ReplaceAll(tt.want, "\n", "\r\n")
			}
			// The consumer reading in small pieces.
			for _, rd := range readers {
				got := readAll(t, rd.wrap(Open(m, tt.fields, lf)))
				if got != want {
					t.Errorf("%s: Open(lf=%v) read %s = %q; want %q", tt.name, lf, rd.name, trunc(got), trunc(want))
				}
				if !lf {
					if i := crlfOnly(got); i >= 0 {
						t.Errorf("%s: Open(lf=false) read %s has a bare CR or LF at %d", tt.name, rd.name, i)
					}
				} else if strings.Contains(got, "\r") {
					t.Errorf("%s: Open(lf=true) read %s has a CR", tt.name, rd.name)
				}
			}
			// The consumer copying with io.Copy, which uses WriteTo.
			if got := copyAll(t, Open(m, tt.fields, lf)); got != want {
				t.Errorf("%s: Open(lf=%v) WriteTo = %q; want %q", tt.name, lf, trunc(got), trunc(want))
			}
			// The eolReader fed in small segments, so that a CRLF
			// straddles two of them.
			if tt.fields == nil {
				in := tt.raw
				if in != "" && !strings.HasSuffix(in, "\n") && !strings.HasSuffix(in, "\r") {
					in += "\r\n"
				}
				for _, size := range []int{1, 2, 3, 7} {
					var segs [][]byte
					for b := []byte(in); len(b) > 0; {
						n := min(size, len(b))
						segs = append(segs, b[:n])
						b = b[n:]
					}
					if got := readAll(t, &eolReader{segs: slices.Clone(segs), lf: lf}); got != want {
						t.Errorf("%s: eolReader(lf=%v) in %d-byte segments = %q; want %q", tt.name, lf, size, trunc(got), trunc(want))
					}
					if got := copyAll(t, &eolReader{segs: segs, lf: lf}); got != want {
						t.Errorf("%s: eolReader(lf=%v) WriteTo in %d-byte segments = %q; want %q", tt.name, lf, size, trunc(got), trunc(want))
					}
				}
			}
		}
	}
}

// trunc shortens long test strings in failure messages.
func trunc(s string) string {
	if len(s) > 80 {
		return s[:40] + "…" + s[len(s)-40:]
	}
	return s
}

// TestOpenReader runs the io.Reader conformance checks on the copy.
func TestOpenReader(t *testing.T) {
	m := &Message{Raw: []byte("A: b\r\n\r\nx\ry\nz")}
	for _, lf := range []bool{true, false} {
		want := []byte(readAll(t, Open(m, []Field{{"X", "y"}}, lf)))
		if err := iotest.TestReader(Open(m, []Field{{"X", "y"}}, lf), want); err != nil {
			t.Errorf("lf=%v: %v", lf, err)
		}
	}
}

// copyAll copies r with io.Copy into a plain writer, so that r's WriteTo
// does the work.
func copyAll(t *testing.T, r io.Reader) string {
	t.Helper()
	var b strings.Builder
	n, err := io.Copy(struct{ io.Writer }{&b}, r)
	if err != nil || n != int64(b.Len()) {
		t.Fatalf("io.Copy = %d, %v (wrote %d)", n, err, b.Len())
	}
	return b.String()
}

// A failing writer stops WriteTo with its error and the count written.
func TestOpenWriteError(t *testing.T) {
	m := &Message{Raw: bytes.Repeat([]byte("0123456789abcdef\r\n"), 10000)}
	r := Open(m, nil, true)
	// A partial Read first: WriteTo must start with what Read buffered.
	head := make([]byte, 5)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	w := &failWriter{left: 1000}
	n, err := io.Copy(w, r)
	if err != errFull || n != 1000 || string(head) != "01234" {
		t.Fatalf("io.Copy = %d, %v; want 1000, errFull", n, err)
	}
}

var errFull = errors.New("full")

type failWriter struct{ left int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errFull
	}
	w.left -= len(p)
	return len(p), nil
}

func FuzzOpen(f *testing.F) {
	for _, s := range []string{
		"", "\r", "\n", "\r\n", "\n\r", "\r\r\n", "a", "A: b\r\n\r\nbody\r\n",
		"A: b\n\nbody", "a\rb\nc\r\nd", ".\r\n", "x\r\n.\r\n",
	} {
		f.Add([]byte(s), "value")
	}
	f.Add([]byte("A: b\r\n\r\n"), "x\r\nBcc: evil")
	f.Add([]byte("A: b\r\n\r\n"), "x\r\n \r\n\r\ny")
	f.Fuzz(func(t *testing.T, raw []byte, value string) {
		m := &Message{Raw: raw}
		fields := []Field{{"X-Test", value}}
		lfOut := readAll(t, Open(m, fields, true))
		crlfOut := readAll(t, Open(m, fields, false))
		if strings.Contains(lfOut, "\r") {
			t.Fatalf("LF copy has a CR: %q", lfOut)
		}
		if i := crlfOnly(crlfOut); i >= 0 {
			t.Fatalf("CRLF copy has a bare CR or LF at %d: %q", i, crlfOut)
		}
		if strings.ReplaceAll(crlfOut, "\r\n", "\n") != lfOut {
			t.Fatalf("copies differ beyond line ends:\n%q\n%q", lfOut, crlfOut)
		}
		if got := copyAll(t, Open(m, fields, false)); got != crlfOut {
			t.Fatalf("WriteTo = %q; want %q", got, crlfOut)
		}
		// Reading in single bytes changes nothing.
		if got := readAll(t, iotest.OneByteReader(Open(m, fields, true))); got != lfOut {
			t.Fatalf("one-byte read = %q; want %q", got, lfOut)
		}

		// The header part: one field, continuation lines only, none blank.
		head := readAll(t, Open(&Message{}, fields, true))
		if !strings.HasPrefix(lfOut, head) {
			t.Fatalf("copy %q does not start with the fields %q", lfOut, head)
		}
		lines := strings.Split(strings.TrimSuffix(head, "\n"), "\n")
		if !strings.HasPrefix(lines[0], "X-Test: ") {
			t.Fatalf("first line %q", lines[0])
		}
		for _, l := range lines[1:] {
			if strings.Trim(l, " \t") == "" || (l[0] != ' ' && l[0] != '\t') {
				t.Fatalf("field line %q is not a fold; fields %q", l, head)
			}
		}

		// The body part: every line end of raw is one line end, text
		// unchanged, and a last line without one gets one.
		body := lfOut[len(head):]
		want := breaks(string(raw))
		if n := len(raw); n > 0 && raw[n-1] != '\r' && raw[n-1] != '\n' {
			want++
		}
		if got := strings.Count(body, "\n"); got != want {
			t.Fatalf("body has %d lines; want %d (raw %q)", got, want, raw)
		}
		strip := strings.NewReplacer("\r", "", "\n", "")
		if strip.Replace(body) != strip.Replace(string(raw)) {
			t.Fatalf("body text changed: %q from %q", body, raw)
		}
	})
}

func TestReceived(t *testing.T) {
	fetched := time.Date(2026, 11, 25, 18, 0, 0, 0, time.FixedZone("", 3600))
	tests := []struct {
		name            string
		m               Message
		localHost, rcpt string
		wantIn, wantNot []string
	}{
		{
			name:      "plain",
			m:         Message{Account: "work", Server: "pop.example.org", User: "joe", UID: "0001abc"},
			localHost: "mx.example.com", rcpt: "joe@example.com",
			wantIn: []string{
				"from pop.example.org\r\n\tby mx.example.com with POP3 (popfetch " + Version + ")",
				"\r\n\t(account work, user joe, uid 0001abc)",
				"\r\n\tfor <joe@example.com>;\r\n\tWed, 25 Nov 2026 18:00:00 +0100",
			},
		},
		{
			name:      "no recipient",
			m:         Message{Server: "pop.example.org"},
			localHost: "h",
			wantNot:   []string{"for <"},
		},
		{
			name:      "crlf everywhere",
			m:         Message{Account: "a\r\nBcc: x", Server: "pop\r\nX-Evil: 1", User: "u\r\nX-Evil: 2", UID: "1\nX-Evil: 3"},
			localHost: "h\r\nX-Evil: 4", rcpt: "j@x\r\nX-Evil: 5",
			wantNot: []string{"\r\nX-Evil", "\nX-Evil", "\r\nBcc"},
		},
		{
			name:      "parentheses",
			m:         Message{Account: "a) (b", Server: "pop(x)", User: `u\)`, UID: "((("},
			localHost: "h) evil (", rcpt: "j(x)@y>; evil",
			wantIn: []string{`(account a\) \(b, user u\\\), uid \(\(\()`, "from pop_x_\r\n", "by h__evil__ with", "for <j_x_@y__ evil>"},
		},
		{
			name:      "empty hosts",
			m:         Message{},
			localHost: " ",
			wantIn:    []string{"from unknown\r\n\tby unknown with"},
		},
		{
			name:      "ipv6 literal",
			m:         Message{Server: "[2001:db8::1]"},
			localHost: "h",
			wantIn:    []string{"from [2001:db8::1]\r\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m
			m.Fetched = fetched
			f := Received(&m, tt.localHost, tt.rcpt)
			if f.Name != "Received" {
				t.Errorf("Name = %q", f.Name)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(f.Value, s) {
					t.Errorf("Value %q lacks %q", f.Value, s)
				}
			}
			for _, s := range tt.wantNot {
				if strings.Contains(f.Value, s) {
					t.Errorf("Value %q contains %q", f.Value, s)
				}
			}
			checkReceived(t, f.Value, fetched)
		})
	}
}

// checkReceived checks the structure of a Received value whatever went
// into it: folded lines that each start with a tab, balanced comments, one
// ';' outside comments followed by the date, and a single field when parsed.
func checkReceived(t *testing.T, v string, when time.Time) {
	t.Helper()
	lines := strings.Split(v, "\r\n")
	if !strings.HasPrefix(lines[0], "from ") {
		t.Errorf("first line %q does not start with \"from \"", lines[0])
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "\t") || strings.TrimSpace(l) == "" {
			t.Errorf("folded line %q does not start with a tab or is blank", l)
		}
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			t.Errorf("line %q holds a bare CR or LF", l)
		}
	}
	depth, semis, last := 0, 0, -1
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				t.Fatalf("unbalanced ')' at %d in %q", i, v)
			}
		case c == ';' && depth == 0:
			semis++
			last = i
		}
	}
	if depth != 0 || semis != 1 {
		t.Fatalf("comment depth %d, %d ';' outside comments in %q", depth, semis, v)
	}
	date, err := time.Parse(time.RFC1123Z, strings.TrimSpace(v[last+1:]))
	if err != nil || !date.Equal(when) {
		t.Errorf("date after ';' = %v, %v; want %v", date, err, when)
	}
	msg, err := mail.ReadMessage(strings.NewReader("Received: " + v + "\r\n\r\n"))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if len(msg.Header) != 1 || len(msg.Header["Received"]) != 1 {
		t.Errorf("parsed header = %q; want one Received field", msg.Header)
	}
}

func TestReceivedZeroTime(t *testing.T) {
	before := time.Now().Truncate(time.Second)
	v := Received(&Message{Server: "s"}, "h", "").Value
	d, err := time.Parse(time.RFC1123Z, strings.TrimSpace(v[strings.LastIndexByte(v, ';')+1:]))
	if err != nil || d.Before(before) || d.After(time.Now().Add(time.Second)) {
		t.Errorf("date for zero Fetched = %v, %v; want about now", d, err)
	}
}

// TestReceivedInCopy checks the trace field as written into a copy.
func TestReceivedInCopy(t *testing.T) {
	m := &Message{Server: "pop(x)\r\n", Account: "a\r\nX: y", Raw: []byte("S: s\r\n\r\nb\r\n")}
	for _, lf := range []bool{true, false} {
		out := readAll(t, Open(m, []Field{Received(m, "h", "j@x")}, lf))
		msg, err := mail.ReadMessage(strings.NewReader(out))
		if err != nil {
			t.Fatalf("lf=%v: %v", lf, err)
		}
		if len(msg.Header) != 2 || len(msg.Header["Received"]) != 1 || msg.Header.Get("S") != "s" {
			t.Errorf("lf=%v: header = %q", lf, msg.Header)
		}
	}
}

func FuzzReceived(f *testing.F) {
	f.Add("acct", "pop.example.org", "joe", "0001", "mx", "joe@x")
	f.Add("a\r\n(", "p)\n;", `u\`, "((", "h; x", "j>;(@x")
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, account, server, user, uid, localHost, rcpt string) {
		m := &Message{Account: account, Server: server, User: user, UID: uid, Fetched: when}
		checkReceived(t, Received(m, localHost, rcpt).Value, when)
	})
}

func TestHeaderSafeValue(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 100, "plain"},
		{"a\r\nb", 100, "a  b"},
		{"a\x00b\x1bc\x7fd", 100, "a b c d"},
		{"tab\tkept", 100, "tab\tkept"},
		{"abcdef", 3, "abc"},
		{"abc", 3, "abc"},
		{"abc", 0, ""},
		{"abc", -1, ""},
		{"héllo", 2, "h"},                       // é is 2 bytes: not split
		{"héllo", 3, "hé"},                      // exactly after é
		{"a€", 3, "a"},                          // € is 3 bytes
		{"a😀b", 4, "a"},                         // 4-byte rune
		{"a😀b", 5, "a😀"},                        // whole rune fits
		{"\x80\x80\x80\x80\x80", 2, "\x80\x80"}, // not UTF-8: plain cut
		{"", 10, ""},
	}
	for _, tt := range tests {
		if got := SafeValue(tt.in, tt.max); got != tt.want {
			t.Errorf("SafeValue(%q, %d) = %q; want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func FuzzHeaderSafeValue(f *testing.F) {
	f.Add("a\r\nb", 3)
	f.Add("héllo", 2)
	f.Add("\x80abc", 1)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n %= 1000
		got := SafeValue(s, n)
		if len(got) > max(n, 0) {
			t.Fatalf("SafeValue(%q, %d) = %q: too long", s, n, got)
		}
		for i := 0; i < len(got); i++ {
			if c := got[i]; c < 0x20 && c != '\t' || c == 0x7f {
				t.Fatalf("SafeValue(%q, %d) = %q: control byte %#x", s, n, got, c)
			}
		}
		if !utf8.ValidString(s) {
			return
		}
		if !utf8.ValidString(got) {
			t.Fatalf("SafeValue(%q, %d) = %q: split a rune", s, n, got)
		}
		cleaned := strings.Map(func(r rune) rune {
			if r < 0x20 && r != '\t' || r == 0x7f {
				return ' '
			}
			return r
		}, s)
		// At most one rune (4 bytes) is dropped beyond the limit.
		if !strings.HasPrefix(cleaned, got) || len(got) < min(len(cleaned), max(n, 0))-utf8.UTFMax+1 {
			t.Fatalf("SafeValue(%q, %d) = %q: not the longest clean prefix", s, n, got)
		}
	})
}

// capWriter records the largest buffer capacity WriteTo hands it.
type capWriter struct {
	bytes.Buffer
	maxCap int
}

func (w *capWriter) Write(b []byte) (int, error) {
	w.maxCap = max(w.maxCap, cap(b))
	return w.Buffer.Write(b)
}

// TestOpenWriteToSmallBuffer: a copy of a small message is converted in
// a small buffer, not a 64 KiB one per copy in flight; the bytes are those
// Read gives, on both sides of the boundary and in both line-end modes.
func TestOpenWriteToSmallBuffer(t *testing.T) {
	// Bare LF line ends: a CRLF copy adds a byte per line.
	line := "0123456789 abcdefghij 0123456789\n"
	const small = 8 << 10 // eolSmall, spelt out so that the test ran before it existed
	for _, tc := range []struct {
		name    string
		size    int // bytes of body, about
		lf      bool
		wantMax int // largest buffer WriteTo may use
	}{
		{name: "3 KB to maildir", size: 3000, lf: true, wantMax: small},
		{name: "3 KB to smtp", size: 3000, lf: false, wantMax: small},
		{name: "just over, crlf", size: small / 2, lf: false, wantMax: 64 << 10},
		{name: "100 KB", size: 100 << 10, lf: true, wantMax: 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Repeat(line, tc.size/len(line)+1)
			m := &Message{Raw: []byte("Subject: x\r\n\r\n" + body)}
			fields := []Field{{Name: "Received", Value: "from x by y"}}
			want := readAll(t, Open(m, fields, tc.lf))
			var w capWriter
			if _, err := Open(m, fields, tc.lf).(io.WriterTo).WriteTo(&w); err != nil {
				t.Fatal(err)
			}
			if w.String() != want {
				t.Fatalf("WriteTo wrote %d bytes unlike Read's %d", w.Len(), len(want))
			}
			if w.maxCap > tc.wantMax {
				t.Errorf("WriteTo used a %d-byte buffer for a %d-byte copy, want at most %d", w.maxCap, len(want), tc.wantMax)
			}
		})
	}
}

// writeValueReference is writeValue a byte at a time, as it was written
// first: writeValue copies the runs between line breaks whole and must
// write the same bytes.
func writeValueReference(h *bytes.Buffer, v string) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\r' && c != '\n' {
			h.WriteByte(c)
			continue
		}
		for i+1 < len(v) && strings.IndexByte("\r\n \t", v[i+1]) >= 0 {
			i++
		}
		if i+1 < len(v) {
			h.WriteString("\r\n\t")
		}
	}
}

func FuzzWriteValue(f *testing.F) {
	for _, s := range []string{"", "a", "\r", "\n", "a\r\nb", "a\r\n", "\r\na", "a\n \r\n\tb", "x\r\nBcc: evil", "ab\rcd\ne \r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var got, want bytes.Buffer
		writeValue(&got, v)
		writeValueReference(&want, v)
		if got.String() != want.String() {
			t.Fatalf("writeValue(%q) = %q; want %q", v, got.String(), want.String())
		}
	})
}
