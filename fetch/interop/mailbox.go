package interop

import (
	"bytes"
	"os"
	"testing"
)

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

func (m *mbox) Put(t testing.TB, msgs ...[]byte) {
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

// Messages splits the spool at its separator lines: a "From " line at the
// start of the file or after an empty line.
func (m *mbox) Messages(t testing.TB) [][]byte {
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

func (m *mbox) Count(t testing.TB) int {
	t.Helper()
	return len(m.Messages(t))
}
