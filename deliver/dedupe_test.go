package deliver

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"
)

func dupKey(t *testing.T, raw string) string {
	t.Helper()
	k, err := DuplicateKey(&Message{Raw: []byte(raw)})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// oldDuplicateKey is DuplicateKey as it was over a message in memory: the
// streaming one must give the same keys.
func oldDuplicateKey(raw []byte) string {
	mid := MessageID(raw)
	if mid == "" {
		return ""
	}
	h := sha256.New()
	hdr, _ := readHeader(raw)
	for _, name := range duplicateFields {
		h.Write([]byte(name + ":"))
		v, _ := hdr.first(name)
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	body := raw
	if end := headerEnd(raw); end >= 0 {
		body = raw[end:]
	}
	h.Write(body)
	return mid + "\x00" + hex.EncodeToString(h.Sum(nil))
}

// TestDuplicateKeySpooled: a message in a spool file (its header too)
// gets the key the whole message in memory got.
func TestDuplicateKeySpooled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	r := rand.New(rand.NewSource(1))
	parts := []string{"From: a@x\r\n", "Message-ID: <m1@x>\r\n", "To: b@y\r\n", "\r\n", "\n", "body\r\n", "Subject: s\r\n", "\r", " fold\r\n", "x"}
	for i := 0; i < 300; i++ {
		var b strings.Builder
		b.WriteString(parts[1])
		for n := r.Intn(40); n > 0; n-- {
			b.WriteString(parts[r.Intn(len(parts))])
		}
		raw := []byte(b.String())
		s := fillSpool(t, dir, 1+r.Intn(40), raw, []int{1 + r.Intn(9)})
		got, err := DuplicateKey(&Message{Spool: s})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := oldDuplicateKey(raw); got != want || want == "" {
			t.Fatalf("%q: key %q; want %q", raw, got, want)
		}
	}
}

func TestDuplicateKey(t *testing.T) {
	const orig = "From: a@x\r\nDate: Mon, 1 Jan 2026 00:00:00 +0000\r\nSubject: hi\r\nTo: alice@example.com, sales@example.com\r\nMessage-ID: <m1@x>\r\n\r\nbody\r\n"
	key := dupKey(t, orig)
	if key == "" {
		t.Fatal("no key for a message with a Message-ID")
	}
	for _, tc := range []struct {
		name, raw string
		same      bool
	}{
		{"per-recipient copy", "Delivered-To: sales@example.com\r\nReceived: by mx; x\r\n" + orig, true},
		{"bare LF header end", strings.Replace(orig, "\r\n\r\n", "\r\n\n", 1), false},
		{"other body (forged Message-ID)", strings.Replace(orig, "body", "pay me", 1), false},
		{"other From", strings.Replace(orig, "From: a@x", "From: b@x", 1), false},
		{"other Subject", strings.Replace(orig, "Subject: hi", "Subject: [SPAM] hi", 1), false},
		{"other Date", strings.Replace(orig, "00:00:00", "00:00:01", 1), false},
		{"other Message-ID", strings.Replace(orig, "m1@x", "m2@x", 1), false},
	} {
		if got := dupKey(t, tc.raw); (got == key) != tc.same {
			t.Errorf("%s: same key = %v; want %v", tc.name, got == key, tc.same)
		}
	}
	if k := dupKey(t, "From: a@x\r\n\r\nbody\r\n"); k != "" {
		t.Errorf("no Message-ID: key %q; want none", k)
	}
}
