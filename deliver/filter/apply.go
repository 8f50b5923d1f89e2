package filter

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/popfetch/popfetch/deliver"
)

// Apply writes the filtered copy of m to w: the message a command filter
// returned, or m with v's header changes applied and its body replaced
// when a milter replaced it. Only the header is held in memory (at most
// MaxHeaderBytes); the body is copied in chunks. Line ends stay as they
// are (CRLF); a value a filter gave is folded with CRLF and a tab where
// it has a line break, so no change can start a field of its own or end
// the header.
func Apply(w io.Writer, m *deliver.Message, v *Verdict) error {
	if v.Message != nil {
		_, err := io.Copy(w, v.Message.Reader())
		return err
	}
	r := m.Reader()
	head, err := readHead(r, m.Size())
	if err != nil {
		return err
	}
	fields, end := splitHeader(head)
	out := make([]outField, len(fields))
	for i, f := range fields {
		out[i] = outField{name: f.Name, raw: f.Raw}
	}
	for _, c := range v.Changes {
		out = change(out, c)
	}
	var hb bytes.Buffer
	for _, f := range out {
		if !f.removed {
			hb.Write(f.raw)
		}
	}
	if _, err := w.Write(hb.Bytes()); err != nil {
		return err
	}
	if v.Body == nil {
		_, err = io.Copy(w, io.NewSectionReader(r, int64(end), m.Size()-int64(end)))
		return err
	}
	if _, err := io.WriteString(w, "\r\n"); err != nil {
		return err
	}
	_, err = io.Copy(w, v.Body.Reader())
	return err
}

// outField is a header field of the copy being built.
type outField struct {
	name    string
	raw     []byte
	removed bool
}

// change applies one change to the field list.
func change(fs []outField, c Change) []outField {
	if !validName(c.Name) {
		return fs
	}
	switch c.Kind {
	case AddHeader:
		return append(fs, newField(c.Name, c.Value))
	case InsertHeader:
		i := min(max(c.Index, 0), len(fs))
		return append(fs[:i], append([]outField{newField(c.Name, c.Value)}, fs[i:]...)...)
	case ChangeHeader, RemoveHeader:
		n := 0
		for i := range fs {
			if !strings.EqualFold(fs[i].name, c.Name) {
				continue
			}
			n++
			if n != c.Index {
				continue
			}
			if c.Kind == RemoveHeader {
				fs[i].removed = true
			} else if !fs[i].removed {
				fs[i] = newField(fs[i].name, c.Value)
			}
			return fs
		}
		if c.Kind == ChangeHeader {
			return append(fs, newField(c.Name, c.Value))
		}
	}
	return fs
}

// newField formats "Name: value" with CRLF line ends: every line break
// in the value (CR, LF or CRLF) becomes CRLF, a continuation line that
// does not start with white space gets a tab, blank continuation lines
// are dropped, and other control characters but tab become spaces.
func newField(name, value string) outField {
	var b bytes.Buffer
	b.Grow(len(name) + len(value) + 4)
	b.WriteString(name)
	b.WriteString(": ")
	// Control characters first, so that a line of nothing else counts as
	// blank below.
	vb := []byte(value)
	for i, c := range vb {
		if c < 0x20 && c != '\t' && c != '\r' && c != '\n' || c == 0x7f {
			vb[i] = ' '
		}
	}
	value = string(vb)
	value = strings.TrimLeft(value, " \t")
	lines := strings.FieldsFunc(value, func(r rune) bool { return r == '\r' || r == '\n' })
	first := true
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if !first {
			b.WriteString("\r\n")
			if l[0] != ' ' && l[0] != '\t' {
				b.WriteByte('\t')
			}
		}
		first = false
		b.WriteString(l)
	}
	b.WriteString("\r\n")
	return outField{name: name, raw: b.Bytes()}
}

// validName reports whether s is a field name (RFC 5322 §3.6.8 ftext, at
// most 200 bytes).
func validName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// describeChange is a change for logs and tests.
func (c Change) String() string {
	return fmt.Sprintf("%s %d %s: %q", c.Kind, c.Index, c.Name, c.Value)
}
