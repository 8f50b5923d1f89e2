package deliver

import "testing"

func TestAuditFields(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		mid, from string
	}{
		{"plain", "From: Ann Example <ann@example.com>\r\nMessage-ID: <1@example.com>\r\n\r\nb", "1@example.com", "ann@example.com"},
		{"return-path first", "Return-Path: <bounce@lists.example>\r\nFrom: ann@example.com\r\nMessage-Id: <2@x>\r\n\r\n", "2@x", "bounce@lists.example"},
		{"null return-path", "Return-Path: <>\r\nFrom: ann@example.com\r\n\r\n", "", "ann@example.com"},
		{"none", "Subject: x\r\n\r\nFrom: not@header\r\n", "", ""},
		{"folded", "From:\r\n  Ann <ann@example.com>\r\nMessage-ID:\r\n <3@x>\r\n\r\n", "3@x", "ann@example.com"},
		// Not an address and not a well-formed id: the raw values,
		// which the caller escapes.
		{"hostile", "From: \x1b]0;pwned\x07 evil\r\nMessage-ID: <a\x1b[2Jb@x>\r\n\r\n", "<a\x1b[2Jb@x>", "\x1b]0;pwned\x07 evil"},
		{"bare CR", "From: a\rb\r\nMessage-ID: x\ry\r\n\r\n", "x\ry", "a\rb"},
	} {
		for _, plain := range []bool{true, false} {
			mid, from := auditFields([]byte(tc.raw), plain)
			if mid != tc.mid || from != tc.from {
				t.Errorf("%s (plain %v): AuditFields = %q, %q; want %q, %q", tc.name, plain, mid, from, tc.mid, tc.from)
			}
		}
	}
}

// The shortcut for plain headers finds what reading the header finds,
// and nothing returned exceeds its bound.
func FuzzAuditFields(f *testing.F) {
	f.Add([]byte("From: Ann <ann@example.com>\r\nMessage-ID: <1@example.com>\r\n\r\nb"))
	f.Add([]byte("Return-Path: <a@b>\nFrom: x\n\tcontinued\nMessage-Id: <\x1b@x>\n\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > maxAuditHead {
			return
		}
		mid, from := auditFields(raw, true)
		mid2, from2 := auditFields(raw, false)
		if mid != mid2 || from != from2 {
			t.Fatalf("AuditFields(%q) = %q, %q; by the header reader %q, %q", raw, mid, from, mid2, from2)
		}
		if len(mid) > maxAuditValue || len(from) > maxAuditValue {
			t.Fatalf("AuditFields(%q) too long: %d, %d", raw, len(mid), len(from))
		}
	})
}
