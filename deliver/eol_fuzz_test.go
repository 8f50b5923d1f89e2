package deliver

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// eolReference is what Open writes after the fields for a message raw:
// every CRLF, bare CR and bare LF becomes one line end (LF when lf, else
// CRLF), and a message whose last byte is no line end gets one.
func eolReference(raw string, lf bool) string {
	s := strings.ReplaceAll(raw, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	if !lf {
		s = strings.ReplaceAll(s, "\n", "\r\n")
	}
	return s
}

// FuzzOpenReference holds Open's line-end conversion, from memory and
// from a spool file (read a chunk at a time), equal to eolReference, by
// Read and by WriteTo: its search for the next line end may take no
// shortcut that changes a byte.
func FuzzOpenReference(f *testing.F) {
	for _, s := range []string{
		"", "\r", "\n", "\r\n", "\n\r", "\r\r\n", "\r\n\n", "a\nb\rc\r\nd",
		"A: b\r\n\r\nbody\r\n", "x\r", "x\n\n\r\r", strings.Repeat("ab\r\n", 40000),
		strings.Repeat("a", 65535) + "\r\n" + strings.Repeat("b\n", 10),
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, raw []byte) {
		sp := NewSpool(dir, 1) // a file for anything over one byte
		defer sp.Close()
		if _, err := sp.Write(raw); err != nil {
			t.Fatal(err)
		}
		for _, m := range []*Message{{Raw: raw}, {Spool: sp}} {
			for _, lf := range []bool{true, false} {
				want := eolReference(string(raw), lf)
				fields := "X-A: b\n"
				if !lf {
					fields = "X-A: b\r\n"
				}
				if got := readAll(t, Open(m, []Field{{"X-A", "b"}}, lf)); got != fields+want {
					t.Fatalf("lf=%v spool=%v Read:\n got %q\nwant %q", lf, m.Spool != nil, trim(got), trim(fields+want))
				}
				if got := copyAll(t, Open(m, []Field{{"X-A", "b"}}, lf)); got != fields+want {
					t.Fatalf("lf=%v spool=%v WriteTo:\n got %q\nwant %q", lf, m.Spool != nil, trim(got), trim(fields+want))
				}
			}
		}
	})
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:100] + "..." + s[len(s)-100:]
	}
	return s
}

// BenchmarkOpenLF is the Maildir copy's conversion of a large message
// from its spool file.
func BenchmarkOpenLF(b *testing.B) {
	line := []byte("alpha beta gamma .dot ..two From here xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n")
	raw := bytes.Repeat(line, (8<<20)/len(line))
	sp := NewSpool(b.TempDir(), 1)
	defer sp.Close()
	sp.Write(raw)
	m := &Message{Spool: sp}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := io.Copy(io.Discard, Open(m, nil, true)); err != nil {
			b.Fatal(err)
		}
	}
}
