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
