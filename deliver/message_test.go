package deliver

import (
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"
)

func TestReturnPath(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"Return-Path: <bounce@example.org>\r\nFrom: a@x\r\n\r\nbody", "bounce@example.org"},
		{"From: a@x\r\nReturn-Path:\r\n <folded@example.org>\r\n\r\n", "folded@example.org"},
		{"Return-Path: <>\r\n\r\n", ""},
		{"From: a@x\r\n\r\nReturn-Path: <in-body@example.org>\r\n", ""},
		{"Return-Path: <a@x>\r\nReturn-Path: <b@x>\r\n\r\n", "a@x"},
		{"Return-Path: not an address\r\n\r\n", ""},
		{"Return-Path: <" + strings.Repeat("a", 600) + "@x>\r\n\r\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := ReturnPath([]byte(tt.raw)); got != tt.want {
			t.Errorf("ReturnPath(%q) = %q; want %q", tt.raw, got, tt.want)
		}
	}
}

// returnPathFull is ReturnPath as it was before plainFirst: the whole
// header read by readHeader. FuzzReturnPath holds the two equal.
func returnPathFull(raw []byte) string {
	h, _ := readHeader(raw)
	v, ok := h.first("Return-Path")
	v = strings.TrimSpace(v)
	if !ok || v == "" || v == "<>" || len(v) > 512 {
		return ""
	}
	a, err := mail.ParseAddress(v)
	if err != nil {
		return ""
	}
	return a.Address
}

// returnPathSeeds are headers on both sides of every condition of
// plainFirst.
var returnPathSeeds = []string{
	"Return-Path: <bounce@example.org>\r\nFrom: a@x\r\n\r\nbody",
	"Received: from a\r\n\tby b; Wed, 25 Nov 2026 10:00:00 +0000\r\nreturn-PATH:<x@y>\r\n\r\n",
	"From: a@x\r\nReturn-Path:\r\n <folded@example.org>\r\n\r\n",
	"From: a@x\r\nReturn-Path: <a@x>\r\n <folded@example.org>\r\n\r\n",
	"Return-Path : <space@example.org>\r\n\r\n",
	" Return-Path: <a@x>\r\n\r\n",
	"X: a\rb\r\nReturn-Path: <a@x>\r\n\r\n",
	"Return-Path: <a@x>\r",
	"Return-Path: <a@x>\n\n",
	"Return-Path: <a@x>\r\n",
	"Return-Path: <a@x>",
	": empty\r\nReturn-Path: <a@x>\r\n\r\n",
	"garbage\r\nReturn-Path: <a@x>\r\n\r\n",
	"Caf\xc3\xa9: x\r\nReturn-Path: <a@x>\r\n\r\n",
	"From: a@x\r\n\r\nReturn-Path: <in-body@example.org>\r\n",
	"Return-Path: <\x00@x>\r\nX: y\r\n\r\n",
	"Return-Path: \x0b<a@x>\x0c\r\nX: y\r\n\r\n",
	"X-Long: " + strings.Repeat("a", MaxHeaderBytes-30) + "\r\nReturn-Path: <a@x>\r\nX: y\r\n\r\n",
	"X-Long: " + strings.Repeat("a", MaxHeaderBytes) + "\r\nReturn-Path: <a@x>\r\nX: y\r\n\r\n",
	"X-Long: " + strings.Repeat("a", MaxHeaderBytes) + "\r\n\r\n",
}

// TestReturnPathPlain checks that plainFirst decides the headers it is
// meant to (the fast path is taken) and leaves the others to readHeader,
// and that ReturnPath agrees with returnPathFull on each.
func TestReturnPathPlain(t *testing.T) {
	tests := []struct {
		raw  string
		sure bool
	}{
		{"Return-Path: <bounce@example.org>\r\nFrom: a@x\r\n\r\nbody", true},
		{"Received: from a\r\n\tby b\r\nreturn-PATH:<x@y>\r\n\r\n", true},
		{"From: a@x\r\n\r\nReturn-Path: <in-body@example.org>\r\n", true},
		{"Return-Path: <a@x>\n\n", true},
		{"From: a@x\r\nReturn-Path:\r\n <folded@example.org>\r\n\r\n", false},
		{"Return-Path : <space@example.org>\r\n\r\n", false},
		{" Return-Path: <a@x>\r\n\r\n", false},
		{"X: a\rb\r\nReturn-Path: <a@x>\r\n\r\n", false},
		{"Return-Path: <a@x>\r\n", false},
		{": empty\r\nReturn-Path: <a@x>\r\n\r\n", false},
		{"garbage\r\nReturn-Path: <a@x>\r\n\r\n", false},
		{"X-Long: " + strings.Repeat("a", MaxHeaderBytes) + "\r\nReturn-Path: <a@x>\r\nX: y\r\n\r\n", false},
	}
	for _, tt := range tests {
		_, _, sure := plainFirst([]byte(tt.raw), "return-path")
		if sure != tt.sure {
			t.Errorf("plainFirst(%.60q) sure = %v; want %v", tt.raw, sure, tt.sure)
		}
		if got, want := ReturnPath([]byte(tt.raw)), returnPathFull([]byte(tt.raw)); got != want {
			t.Errorf("ReturnPath(%.60q) = %q; the full header reader finds %q", tt.raw, got, want)
		}
	}
}

// FuzzReturnPath holds the fast path of ReturnPath (plainFirst) to the
// full header reader on any input.
func FuzzReturnPath(f *testing.F) {
	for _, s := range returnPathSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if got, want := ReturnPath(raw), returnPathFull(raw); got != want {
			t.Fatalf("ReturnPath(%q) = %q; the full header reader finds %q", raw, got, want)
		}
		// The field found is the one readHeader finds first.
		if v, ok, sure := plainFirst(raw, "return-path"); sure {
			h, _ := readHeader(raw)
			hv, hok := h.first("Return-Path")
			if ok != hok || strings.TrimSpace(v) != strings.TrimSpace(hv) {
				t.Fatalf("plainFirst(%q) = %q, %v; readHeader: %q, %v", raw, v, ok, hv, hok)
			}
		}
	})
}

// FuzzPlainAngleAddr holds plainAngleAddr to mail.ParseAddress wherever
// it decides.
func FuzzPlainAngleAddr(f *testing.F) {
	for _, s := range []string{"<bounce@example.org>", "<a.b+c=d_e-f@x.y>", "<.a@x>", "<a.@x>", "<a..b@x>",
		"<a@b@c>", "<@x>", "<a@>", "<a@[1.2.3.4]>", "<\"a b\"@x>", "<a@x> (c)", "x <a@x>", "<a@x", "<>", "<a@.x>", "<a@x.>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, ok := plainAngleAddr(v)
		if !ok {
			return
		}
		a, err := mail.ParseAddress(v)
		if err != nil || a.Address != got {
			t.Fatalf("plainAngleAddr(%q) = %q; mail.ParseAddress: %v, %v", v, got, a, err)
		}
	})
}

// TestReturnPathAllocs: the usual header and Return-Path cost one
// allocation (the field's value), not a parse of the whole header; it
// runs for every message.
func TestReturnPathAllocs(t *testing.T) {
	head := []byte("Return-Path: <news@example.net>\r\nDelivered-To: alice@example.com\r\nReceived: from a\r\n\tby b; Wed, 25 Nov 2026 10:00:00 +0000\r\nFrom: a@x\r\n\r\n")
	if got := ReturnPath(head); got != "news@example.net" {
		t.Fatalf("ReturnPath = %q", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { ReturnPath(head) }); allocs > 1 {
		t.Errorf("ReturnPath: %v allocations; want 1", allocs)
	}
}
