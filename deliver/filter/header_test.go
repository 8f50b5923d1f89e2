package filter

import (
	"bytes"
	"testing"
)

func TestSplitHeader(t *testing.T) {
	tests := []struct {
		in    string
		names []string
		end   int
	}{
		{"A: 1\r\nB: 2\r\n folded\r\n\r\nbody", []string{"A", "B"}, 21},
		{"A: 1\nB: 2\n\nbody", []string{"A", "B"}, 10},
		{"A: 1\r\nnot a field\r\nB: 2\r\n", []string{"A"}, 6},
		{" leading continuation\r\n", nil, 0},
		{"A: no line end", nil, 0},
		{"", nil, 0},
		{"X-Spaced Name: v\r\n", nil, 0},
	}
	for _, tt := range tests {
		fs, end := splitHeader([]byte(tt.in))
		var names []string
		for _, f := range fs {
			names = append(names, f.Name)
		}
		if end != tt.end || len(names) != len(tt.names) {
			t.Errorf("%q: got %v %d, want %v %d", tt.in, names, end, tt.names, tt.end)
			continue
		}
		for i := range names {
			if names[i] != tt.names[i] {
				t.Errorf("%q: got %v, want %v", tt.in, names, tt.names)
			}
		}
	}
}

// FuzzSplitHeader: the fields are exactly b[:end], in order, each a
// whole field.
func FuzzSplitHeader(f *testing.F) {
	f.Add([]byte("A: 1\r\nB: 2\r\n folded\r\n\r\nbody"))
	f.Add([]byte("A:\n\t\n \nB:x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, end := splitHeader(b)
		var cat []byte
		for _, fl := range fs {
			if !isFieldStart(fl.Raw) || !bytes.HasSuffix(fl.Raw, []byte("\n")) {
				t.Fatalf("field %q", fl.Raw)
			}
			cat = append(cat, fl.Raw...)
			_ = fl.unfolded()
		}
		if !bytes.Equal(cat, b[:end]) {
			t.Fatalf("fields %q != b[:%d] %q", cat, end, b[:end])
		}
	})
}

// FuzzNewField: whatever value a filter sends, the field written is one
// field: "Name: " first, CRLF only at line ends, every further line a
// continuation with something on it.
func FuzzNewField(f *testing.F) {
	f.Add("a\nb\r\n\r\nc")
	f.Add("\r\nX-Injected: yes\r\n\r\nbody")
	f.Add(" \t\x00\x7f\r")
	f.Fuzz(func(t *testing.T, v string) {
		raw := newField("X-Test", v).raw
		if !bytes.HasPrefix(raw, []byte("X-Test: ")) || !bytes.HasSuffix(raw, []byte("\r\n")) {
			t.Fatalf("%q", raw)
		}
		lines := bytes.Split(raw[:len(raw)-2], []byte("\r\n"))
		for i, l := range lines {
			if bytes.ContainsAny(l, "\r\n\x00") {
				t.Fatalf("line %q of %q", l, raw)
			}
			if i > 0 && (len(bytes.TrimSpace(l)) == 0 || (l[0] != ' ' && l[0] != '\t')) {
				t.Fatalf("line %q of %q is not a continuation", l, raw)
			}
		}
		fs, end := splitHeader(append(raw, "\r\nbody"...))
		if len(fs) != 1 || end != len(raw) {
			t.Fatalf("%q reads back as %d fields", raw, len(fs))
		}
	})
}
