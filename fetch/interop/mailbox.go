package interop

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// maildir is a Maildir owned by the mail user.
type maildir struct {
	dir      string
	uid, gid int
}

var (
	nameMu  sync.Mutex
	nameSeq int
	lastT   time.Time
)

// nextName returns a unique Maildir file name whose time stamp grows with
// every call, so that servers that order new/ by name see Put order.
func nextName() string {
	nameMu.Lock()
	defer nameMu.Unlock()
	now := time.Now().Truncate(time.Microsecond)
	if !now.After(lastT) {
		now = lastT.Add(time.Microsecond)
	}
	lastT = now
	nameSeq++
	return fmt.Sprintf("%d.M%06dP%dQ%d.popfetch-interop", now.Unix(), now.Nanosecond()/1000, os.Getpid(), nameSeq)
}

func (m *maildir) put(t testing.TB, msgs ...[]byte) {
	t.Helper()
	for _, msg := range msgs {
		name := nextName()
		tmp := filepath.Join(m.dir, "tmp", name)
		if err := os.WriteFile(tmp, msg, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(tmp, m.uid, m.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(m.dir, "new", name)); err != nil {
			t.Fatal(err)
		}
	}
}

func (m *maildir) stored(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(m.dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(m.dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

func (m *maildir) count(t testing.TB) int {
	t.Helper()
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(m.dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") && e.Type().IsRegular() {
				n++
			}
		}
	}
	return n
}

// mbox is a Unix mbox spool file owned by the mail user.
type mbox struct {
	path     string
	uid, gid int
}

// mboxFrom is the separator line written before each message.
const mboxFrom = "From popfetch-interop@example.net Thu Jan  1 00:00:00 2026\n"

// MboxStored returns msg as an mbox spool stores it and the server serves
// it: LF line ends, a final line end, and every line that starts with
// "From " or ">From " quoted with one more ">" (mboxrd).
func MboxStored(msg []byte) []byte {
	lines := bytes.SplitAfter(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), []byte("\n"))
	var b bytes.Buffer
	for _, l := range lines {
		if len(l) == 0 {
			continue
		}
		if bytes.HasPrefix(bytes.TrimLeft(l, ">"), []byte("From ")) {
			b.WriteByte('>')
		}
		b.Write(l)
	}
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func (m *mbox) put(t testing.TB, msgs ...[]byte) {
	t.Helper()
	f, err := os.OpenFile(m.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Chown(m.uid, m.gid); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, msg := range msgs {
		b.WriteString(mboxFrom)
		b.Write(MboxStored(msg))
		b.WriteByte('\n') // the blank line that ends a message in an mbox
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// stored splits the spool at its separator lines: a "From " line at the
// start of the file or after an empty line.
func (m *mbox) stored(t testing.TB) [][]byte {
	t.Helper()
	b, err := os.ReadFile(m.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	prevEmpty := true
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if prevEmpty && bytes.HasPrefix(l, []byte("From ")) {
			out = append(out, nil)
		} else if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], l...)
		}
		prevEmpty = string(l) == "\n"
	}
	return out
}

func (m *mbox) count(t testing.TB) int {
	t.Helper()
	return len(m.stored(t))
}
