package fetch

import (
	"bytes"
	"strings"
	"testing"
)

const digestBase = "Received: from a by b; Fri, 4 Dec 2026 10:00:00 +0000\r\nFrom: a@example.com\r\nTo: b@example.com\r\nSubject: hello world\r\nDate: Fri, 4 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nbody\r\n"

func TestHeaderDigest(t *testing.T) {
	base := headerDigest([]byte(digestBase))
	if len(base) != 32 {
		t.Fatalf("digest %q: want 32 hex digits", base)
	}
	tests := []struct {
		name string
		raw  string
		same bool
	}{
		{"top reply (header and blank line)", "Received: from a by b; Fri, 4 Dec 2026 10:00:00 +0000\r\nFrom: a@example.com\r\nTo: b@example.com\r\nSubject: hello world\r\nDate: Fri, 4 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n", true},
		{"bare LF", "Received: from a by b; Fri, 4 Dec 2026 10:00:00 +0000\nFrom: a@example.com\nTo: b@example.com\nSubject: hello world\nDate: Fri, 4 Dec 2026 10:00:00 +0000\nMessage-ID: <1@example.com>\n\nbody\n", true},
		{"folded and spaced", "Received: from a by b;\r\n\tFri, 4 Dec 2026 10:00:00 +0000\r\nfrom:  a@example.com\r\nTO: b@example.com\r\nSubject: hello\r\n   world \r\nDate: Fri, 4 Dec 2026 10:00:00 +0000\r\nMessage-Id: <1@example.com>\r\n\r\nbody\r\n", true},
		{"other body", digestBase + "more\r\n", true},
		{"status added by an mbox server", "Status: RO\r\nX-UIDL: 77\r\n" + digestBase, true},
		{"folded right after the colon", replace(digestBase, "Subject: hello world", "Subject:\r\n hello\r\n\tworld  "), true},
		{"mbox fields added (dovecot, mailutils, qpopper, Mozilla)", replace(digestBase, "\r\n\r\n", "\r\nX-IMAPbase: 1764840000 3\r\nX-IMAP: 1 2\r\nX-UID: 1\r\nX-Keywords: $label1\r\n\tjunk\r\nStatus: RO\r\nX-Status: A\r\nContent-Length: 6\r\nLines: 1\r\nX-UIDL: abc\r\nX-Mozilla-Status: 0001\r\nX-Mozilla-Status2: 00000000\r\nX-Mozilla-Keys: \r\n\r\n"), true},
		{"mbox field rewritten", "Status: O\r\n" + digestBase, true},
		{"later duplicate field", "Subject: hello world\r\n" + digestBase[:len(digestBase)-8] + "Subject: other\r\n\r\nbody\r\n", false},
		{"Delivered-To added", "Delivered-To: a@example.com\r\n" + digestBase, false},
		{"X-Original-To added", "X-Original-To: a@example.com\r\n" + digestBase, false},
		{"Envelope-To added", "Envelope-To: a@example.com\r\n" + digestBase, false},
		{"any other field added", replace(digestBase, "\r\n\r\n", "\r\nX-Spam-Score: 1\r\n\r\n"), false},
		{"field order", "From: a@example.com\r\nReceived: from a by b; Fri, 4 Dec 2026 10:00:00 +0000\r\n" + strings.SplitN(digestBase, "\r\n", 3)[2], false},
		{"line that is not a field", "garbage line\r\n" + digestBase, false},
		{"no separator", strings.TrimSuffix(digestBase, "\r\nbody\r\n"), false},
		{"header after the blank line", digestBase + "Subject: other\r\n", true},
		{"other message-id", replace(digestBase, "<1@", "<2@"), false},
		{"other date", replace(digestBase, "10:00:00 +0000\r\nM", "10:00:01 +0000\r\nM"), false},
		{"other from", replace(digestBase, "From: a@", "From: c@"), false},
		{"other subject", replace(digestBase, "hello world", "hello there"), false},
		{"other received", replace(digestBase, "from a by b", "from x by b"), false},
		{"empty subject vs none", replace(digestBase, "Subject: hello world\r\n", "Subject:\r\n"), false},
		{"no subject", replace(digestBase, "Subject: hello world\r\n", ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := headerDigest([]byte(tt.raw)) == base; got != tt.same {
				t.Fatalf("digest equal = %v; want %v", got, tt.same)
			}
		})
	}
	if headerDigest([]byte("Subject:\r\n\r\n")) == headerDigest([]byte("\r\nSubject:\r\n")) {
		t.Fatal("an empty Subject and a headerless message digest alike")
	}
}

// Messages without a header/body separator are identified by their whole
// content (line ends aside): two such messages never share an identity.
func TestIdentityNoSeparator(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"alert: disk full on host-a\r\n", "alert: power failure in rack 7\r\n", false},
		{"backup of host-a failed\r\n", "backup of host-b ok\r\n", false},
		{"Subject: a\r\nline two\r\n", "Subject: a\r\nline 2\r\n", false},
		{"Status: RO\r\nx\r\n", "Status: O\r\nx\r\n", false}, // no header to rewrite: all of it counts
		{"no newline at the end", "no newline at the end!", false},
		{"a\r\nb\r\n", "a\nb\n", true},
	}
	for _, tt := range tests {
		ia, ib := identityOf(1, []byte(tt.a)), identityOf(1, []byte(tt.b))
		if (ia.Digest == ib.Digest) != tt.same {
			t.Errorf("%q and %q: same identity = %v; want %v", tt.a, tt.b, ia.Digest == ib.Digest, tt.same)
		}
	}
}

func replace(s, old, new string) string {
	return string(bytes.Replace([]byte(s), []byte(old), []byte(new), 1))
}

// topOf is what `TOP n 0` returns for raw: the header section and the
// blank line (the whole message if it has no blank line).
func topOf(raw []byte) []byte {
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			break
		}
		line := bytes.TrimSuffix(raw[i:i+j], []byte("\r"))
		i += j + 1
		if len(line) == 0 {
			return raw[:i]
		}
	}
	return raw
}

// FuzzHeaderDigest: the digest never panics, is 32 hex digits, and is the
// same from the whole message as from its TOP reply.
func FuzzHeaderDigest(f *testing.F) {
	f.Add([]byte(digestBase))
	f.Add([]byte("\r\n"))
	f.Add([]byte("Subject: a\r\n b\r\n\tc\r\n\r\nx"))
	f.Add([]byte("From x Fri Dec 4\nSubject : y\n\nbody"))
	f.Add([]byte(" leading continuation\r\nDate:\r\n"))
	f.Add([]byte("Status: RO\r\n\tfolded\r\nX-UID: 1\r\nSubject:\r\n x  y \r\n\r\nb"))
	f.Add([]byte("no separator\r\nat all"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := headerDigest(raw)
		if len(d) != 32 {
			t.Fatalf("digest %q", d)
		}
		if top := headerDigest(topOf(raw)); top != d {
			t.Fatalf("TOP digest %s != RETR digest %s", top, d)
		}
		lf := bytes.ReplaceAll(raw, []byte("\r"), nil)
		crlf := bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n"))
		if headerDigest(lf) != headerDigest(crlf) {
			t.Fatalf("LF and CRLF forms of %q digest differently", lf)
		}
	})
}

// TestIdentityOf: the identity is the header digest and the body digest;
// the body digest sees a changed body of the same size, not a rewritten
// header, and reads CRLF and LF alike.
func TestIdentityOf(t *testing.T) {
	base := identityOf(int64(len(digestBase)), []byte(digestBase))
	if len(base.Digest) != fullDigestLen || base.Digest[:32] != headerDigest([]byte(digestBase)) {
		t.Fatalf("identityOf = %+v; want the header digest then the body digest", base)
	}
	tests := []struct {
		name, raw string
		same      bool // same body digest as digestBase
	}{
		{"same", digestBase, true},
		{"other body, same size", replace(digestBase, "\r\n\r\nbody", "\r\n\r\nBODY"), false},
		{"header rewritten (mailutils)", replace(digestBase, "\r\n\r\n", "\r\nX-IMAPbase: 1 2\r\nX-UID: 1\r\nStatus: RO\r\n\r\n"), true},
		{"LF line ends", strings.ReplaceAll(digestBase, "\r\n", "\n"), true},
		{"body line added", digestBase + "more\r\n", false},
		{"trailing empty line added", digestBase + "\r\n", false},
		{"no body", replace(digestBase, "\r\n\r\nbody\r\n", "\r\n"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bodyDigest([]byte(tt.raw)) == bodyDigest([]byte(digestBase)); got != tt.same {
				t.Errorf("body digest equal = %v; want %v", got, tt.same)
			}
		})
	}
	if bodyDigest([]byte("a: b\r\n")) == bodyDigest([]byte("a: b\r\n\r\n")) {
		t.Error("a message without a body digests like one with an empty body")
	}
}

// FuzzBodyDigest: never panics, is 32 hex digits, and a message gives the
// same body digest with LF as with CRLF line ends.
func FuzzBodyDigest(f *testing.F) {
	for _, s := range []string{digestBase, "", "\n", "\r\n\r\n", "a: b\n\nc\r\r\n", "x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := bodyDigest(raw)
		if len(d) != 32 {
			t.Fatalf("bodyDigest = %q", d)
		}
		lf := bytes.ReplaceAll(raw, []byte("\r"), nil)
		crlf := bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n"))
		if bodyDigest(lf) != bodyDigest(crlf) {
			t.Fatalf("LF and CRLF forms of %q digest differently", lf)
		}
	})
}

// TestVolatile holds volatile equal to volatileFields, the list the
// identity documents, for its names and for names next to them.
func TestVolatile(t *testing.T) {
	names := []string{"", "subject", "from", "x-uidl2", "xstatus", "status ", "Status", "x-mozilla-status3", "content-type", "line"}
	for n := range volatileFields {
		names = append(names, n, n+"x", n[:len(n)-1])
	}
	for _, n := range names {
		if got, want := volatile([]byte(n)), volatileFields[n]; got != want {
			t.Errorf("volatile(%q) = %v; want %v", n, got, want)
		}
	}
}

// BenchmarkIdentitySmall is the identity of one small message (about 3
// KB, a dozen header fields) held in memory, as a delivery digests it.
func BenchmarkIdentitySmall(b *testing.B) {
	raw := smallMessage(1).Data
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		identityOf(int64(len(raw)), raw)
	}
}
