package deliver

import (
	"strings"
	"testing"
)

func TestDuplicateKey(t *testing.T) {
	const orig = "From: a@x\r\nDate: Mon, 1 Jan 2026 00:00:00 +0000\r\nSubject: hi\r\nTo: alice@example.com, sales@example.com\r\nMessage-ID: <m1@x>\r\n\r\nbody\r\n"
	key := DuplicateKey([]byte(orig))
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
		if got := DuplicateKey([]byte(tc.raw)); (got == key) != tc.same {
			t.Errorf("%s: same key = %v; want %v", tc.name, got == key, tc.same)
		}
	}
	if k := DuplicateKey([]byte("From: a@x\r\n\r\nbody\r\n")); k != "" {
		t.Errorf("no Message-ID: key %q; want none", k)
	}
}
