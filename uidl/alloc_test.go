package uidl

import (
	"strings"
	"testing"
)

// TestRecordAllocs: a record is formatted in the store's own buffer, and
// an intent path that needs no escaping is not copied; one is written for
// every message.
func TestRecordAllocs(t *testing.T) {
	s := mustOpen(t, journalPath(t))
	defer s.Close()
	id := Identity{Size: 3000, Digest: strings.Repeat("0123456789abcdef", 4)}
	path := "/home/alice/Maildir/new/1700000000.M1P2Q3.host,S=3000"
	if err := s.IntendIdentity("uid-1", path, id); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := s.IntendIdentity("uid-1", path, id); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("IntendIdentity again: %v allocations per record; want none", allocs)
	}
}

// oldEscapeIntent is escapeIntent as it was before its path without a
// copy.
func oldEscapeIntent(p string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x21 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func FuzzEscapeIntent(f *testing.F) {
	for _, s := range []string{"", "/a/new/1.M1,S=3", "/a b/%/\x00", "\xff/caf\xc3\xa9", "%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := escapeIntent(p)
		if want := oldEscapeIntent(p); got != want {
			t.Fatalf("escapeIntent(%q) = %q; was %q", p, got, want)
		}
		if back := unescapeIntent(got); back != p {
			t.Fatalf("unescapeIntent(escapeIntent(%q)) = %q", p, back)
		}
	})
}
