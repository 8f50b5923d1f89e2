package logsafe

import (
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"<a@b.example>", 0, "<a@b.example>"},
		{"x\x1b[31mred\x1b[0m", 0, `x\x1b[31mred\x1b[0m`},
		{"a\rb\nc\td", 0, `a\rb\nc\td`},
		{`back\slash`, 0, `back\\slash`},
		{"del\x7f c1\u0085", 0, `del\x7f c1\x85`},
		{"rtl\u202eevil", 0, `rtl\u202eevil`},
		{"bad\xffutf8", 0, `bad\xffutf8`},
		{"naïve", 0, "naïve"},
		{"abcdef", 3, "abc…"},
		{"a\x1bcdef", 3, `a\x1bc…`},
	} {
		if got := Escape(tc.in, tc.max); got != tc.want {
			t.Errorf("Escape(%q, %d) = %q; want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

// Nothing Escape returns holds a control character, whatever it is given.
func FuzzEscape(f *testing.F) {
	f.Add("x\x1b]0;title\x07\r\n", 0)
	f.Add("\u202e\xff", 5)
	f.Fuzz(func(t *testing.T, s string, max int) {
		out := Escape(s, max%1000)
		for _, r := range out {
			if Unsafe(r) {
				t.Fatalf("Escape(%q) = %q holds %U", s, out, r)
			}
		}
		if !strings.Contains(s, `\`) && !needs(s) && max <= 0 && out != s {
			t.Fatalf("Escape(%q) changed plain text to %q", s, out)
		}
	})
}
