package deliver

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// streamMsg writes raw into a spool in pieces of growing size, through a
// Maildir copy begun with Stream, as the session does.
func streamMsg(t testing.TB, d *Maildir, rc Recipient, raw []byte, piece int, spoolDir string) *Message {
	t.Helper()
	sp := NewSpool(spoolDir, 1)
	m := &Message{Account: "acct", Server: "pop.example.com", User: "u", UID: "uid1", Fetched: time.Unix(1700000000, 0), Spool: sp}
	w := d.Stream(context.Background(), m, rc, nil)
	if w == nil {
		t.Fatal("Stream began no copy")
	}
	step := piece%8192 + 1
	for p := raw; len(p) > 0; {
		n := min(step, len(p))
		if _, err := sp.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		w.Write(p[:n])
		p = p[n:]
		step = step*5%8191 + 1
	}
	return m
}

func tmpNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// FuzzStream: the copy written as the message arrives, in pieces of any
// size, is the one Prepare takes, and holds exactly what Prepare writes
// from the spool (Open with the same fields); its name carries its size.
func FuzzStream(f *testing.F) {
	for _, s := range []string{
		"", "\r", "\n", "\r\n", "x", "x\r", "A: b\r\n\r\nbody\r\n", "a\rb\nc\r\nd\r\r\n",
		"A: b\r\n\r\n" + strings.Repeat("line of the body\r\n", 9000),
	} {
		f.Add([]byte(s), uint16(1))
		f.Add([]byte(s), uint16(5000))
	}
	root := f.TempDir()
	spools := f.TempDir()
	n := 0
	f.Fuzz(func(t *testing.T, raw []byte, piece uint16) {
		n++
		dir := filepath.Join(root, "m"+strings.Repeat("x", n%3), "Maildir"+string(rune('a'+n%26)))
		d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
		defer d.Close()
		rc := Recipient{User: "u"}
		m := streamMsg(t, d, rc, raw, int(piece), spools)
		defer m.Close()
		streamed := filepath.Base(m.tmpNameOf())
		p, err := d.Prepare(context.Background(), m, "", rc, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.tmpName != streamed {
			t.Fatalf("Prepare wrote %s; the streamed copy was %s", p.tmpName, streamed)
		}
		if err := p.Commit(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p.Path())
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(Open(m, []Field{Received(m, "h", "")}, true))
		if string(got) != string(want) {
			t.Fatalf("streamed copy:\n%q\nwant\n%q", trim(string(got)), trim(string(want)))
		}
		if !strings.HasSuffix(p.Path(), ",S="+strconv.Itoa(len(want))) {
			t.Fatalf("name %s for %d bytes", p.Path(), len(want))
		}
		if names := tmpNames(t, dir); len(names) != 0 {
			t.Fatalf("tmp/ holds %v", names)
		}
		os.Remove(p.Path())
	})
}

// TestStreamNotTaken: a streamed copy that is not the copy Prepare is
// asked for (another recipient, other fields, another Maildir, a message
// not written to it whole) is not used: Prepare writes the copy from the
// spool, and the streamed file is gone once the message is closed, as is
// one nobody asked for (a failed RETR, a round out of step).
func TestStreamNotTaken(t *testing.T) {
	raw := []byte("Subject: s\r\n\r\n" + strings.Repeat("body line\r\n", 1000))
	rc := Recipient{User: "u"}
	tests := []struct {
		name    string
		prepare func(t *testing.T, d, other *Maildir, m *Message) *Prepared // nil: no Prepare
		cut     bool                                                        // the spool gets a byte the copy did not
	}{
		{"never prepared", nil, false},
		{"other recipient", func(t *testing.T, d, _ *Maildir, m *Message) *Prepared {
			return mustPrepare(t, d, m, Recipient{User: "v", Address: "v@example.com"}, nil)
		}, false},
		{"other fields", func(t *testing.T, d, _ *Maildir, m *Message) *Prepared {
			return mustPrepare(t, d, m, rc, []Field{{"X-A", "b"}})
		}, false},
		{"other Maildir", func(t *testing.T, _, other *Maildir, m *Message) *Prepared {
			return mustPrepare(t, other, m, rc, nil)
		}, false},
		{"not written whole", func(t *testing.T, d, _ *Maildir, m *Message) *Prepared {
			return mustPrepare(t, d, m, rc, nil)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "Maildir")
			d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
			defer d.Close()
			other := NewMaildir(filepath.Join(t.TempDir(), "Other"), MaildirOptions{LocalHost: "h"})
			defer other.Close()
			m := streamMsg(t, d, rc, raw, 100, t.TempDir())
			if tt.cut {
				m.Spool.Write([]byte("x")) // the spool holds a byte the copy lacks
			}
			streamed := filepath.Base(m.tmpNameOf())
			if names := tmpNames(t, dir); len(names) != 1 || names[0] != streamed {
				t.Fatalf("tmp/ holds %v; want the streamed copy %s", names, streamed)
			}
			if tt.prepare != nil {
				p := tt.prepare(t, d, other, m)
				if p.tmpName == streamed {
					t.Fatal("Prepare took the streamed copy")
				}
				p.Abort()
			}
			m.Close()
			if names := tmpNames(t, dir); len(names) != 0 {
				t.Fatalf("tmp/ holds %v after Close", names)
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "new")); len(ents) != 0 {
				t.Fatalf("new/ holds %v", ents)
			}
		})
	}
}

func mustPrepare(t *testing.T, d *Maildir, m *Message, rc Recipient, extra []Field) *Prepared {
	t.Helper()
	p, err := d.Prepare(context.Background(), m, "", rc, extra)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
