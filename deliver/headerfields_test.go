package deliver

import (
	"slices"
	"strings"
	"testing"
)

func TestMessageID(t *testing.T) {
	tests := []struct {
		header, want string
	}{
		{"Message-ID: <a.b@example.com>\r\n", "a.b@example.com"},
		{"message-id:   (c) <a@[127.0.0.1]> (d)\r\n", "a@[127.0.0.1]"},
		{"Message-Id:\r\n <folded@example.com>\r\n", "folded@example.com"},
		{"To: x@y\r\nMessage-ID: <first@x>\r\nMessage-ID: <second@x>\r\n", "first@x"},
		{"Message-ID: a@b\r\n", ""},           // no angle brackets
		{"Message-ID: <a b@c>\r\n", ""},       // whitespace
		{"Message-ID: <a\x00b@c>\r\n", ""},    // NUL
		{"Message-ID: <>\r\n", ""},            // empty
		{"Message-ID: <a@b> junk\r\n", "a@b"}, // go-message stops after the msg-id
		{"Subject: no id\r\n", ""},            // none
		{"\r\nMessage-ID: <body@x>\r\n", ""},  // in the body
		{"Message-ID: <\xff@x>\r\n", ""},      // invalid UTF-8
		{"Message-ID: <" + strings.Repeat("a", 2000) + "@x>\r\n", ""},
	}
	for _, tc := range tests {
		if got := MessageID([]byte(tc.header + "\r\nbody\r\n")); got != tc.want {
			t.Errorf("MessageID(%q) = %q; want %q", tc.header, got, tc.want)
		}
	}
}

// TestReadHeader pins the one header reader's rules (see the top of
// headerfields.go): where the header ends, unfolding, canonical names,
// duplicates kept in order, and the MaxHeaderBytes cut.
func TestReadHeader(t *testing.T) {
	big := "X-Big: " + strings.Repeat("a", MaxHeaderBytes) + "\r\n"
	// cut is "Cc: c@x" and a To field that ends exactly at the limit.
	cut := "Cc: c@x\r\nTo: " + strings.Repeat("b", MaxHeaderBytes-len("Cc: c@x\r\nTo: \r\n")) + "\r\n"
	for _, tc := range []struct {
		name, raw string
		want      []field
		truncated bool
		first     map[string]string // header.first lookups; "" = absent
	}{
		{"crlf", "To: a@x\r\nCc: b@x\r\n\r\nTo: body@x\r\n", []field{{"To", "a@x"}, {"Cc", "b@x"}}, false, map[string]string{"To": "a@x", "From": ""}},
		{"bare lf", "To: a@x\nCc: b@x\n\nbody\n", []field{{"To", "a@x"}, {"Cc", "b@x"}}, false, nil},
		{"folded", "Subject: one\r\n two\r\n\tthree\r\n\r\n", []field{{"Subject", "one two three"}}, false, nil},
		{"canonical names", "message-id: <a@b>\r\nDELIVERED-TO: x@y\r\nreturn-path: <s@t>\r\n\r\n",
			[]field{{"Message-Id", "<a@b>"}, {"Delivered-To", "x@y"}, {"Return-Path", "<s@t>"}}, false,
			map[string]string{"Message-Id": "<a@b>", "Return-Path": "<s@t>"}},
		{"white space trimmed", "To:   a@x  \r\nCc:b@x\r\n\r\n", []field{{"To", "a@x"}, {"Cc", "b@x"}}, false, nil},
		{"duplicates in order", "Delivered-To: 1@x\r\nDelivered-To: 2@x\r\nTo: t@x\r\nDelivered-To: 3@x\r\n\r\n",
			[]field{{"Delivered-To", "1@x"}, {"Delivered-To", "2@x"}, {"To", "t@x"}, {"Delivered-To", "3@x"}}, false,
			map[string]string{"Delivered-To": "1@x"}},
		{"malformed line ends the header", "To: a@x\r\nnot a field\r\nCc: b@x\r\n\r\n", []field{{"To", "a@x"}}, false, map[string]string{"Cc": ""}},
		{"no empty line", "To: a@x\r\nCc: b@x", []field{{"To", "a@x"}, {"Cc", "b@x"}}, false, nil},
		{"headerless", "\r\nTo: body@x\r\n", nil, false, map[string]string{"To": ""}},
		{"empty", "", nil, false, nil},
		{"leading continuation", " x\r\nTo: a@x\r\n\r\n", nil, false, nil},
		{"field past the limit dropped", "To: a@x\r\n" + big + "Cc: c@x\r\n\r\n", []field{{"To", "a@x"}}, true, map[string]string{"X-Big": "", "Cc": ""}},
		// A field ending exactly at the limit is dropped too: a
		// continuation of it may follow past the limit.
		{"field ending at the limit dropped", cut + "Bcc: z\r\n\r\n", []field{{"Cc", "c@x"}}, true, nil},
	} {
		got, truncated := readHeader([]byte(tc.raw))
		if !slices.Equal(got, header(tc.want)) || truncated != tc.truncated {
			t.Errorf("%s: readHeader = %.200q, %v; want %.200q, %v", tc.name, got, truncated, tc.want, tc.truncated)
		}
		for k, want := range tc.first {
			if v, ok := got.first(k); v != want || ok != (want != "") {
				t.Errorf("%s: first(%s) = %q, %v; want %q", tc.name, k, v, ok, want)
			}
		}
	}
}

// FuzzReadHeader: the reader never panics, stays within MaxHeaderBytes,
// returns canonical names and unfolded values (no LF), and reads
// nothing after the empty line that ends the header.
func FuzzReadHeader(f *testing.F) {
	for _, s := range []string{"To: a@x\r\n\r\nbody", "A: 1\n b\n\nB: 2", "a: 1\r\nbad\r\nb: 2\r\n", " x\r\n", "X:\r\n\r\n", "\r\n\r\n", "A: 1\r\nA: 2\r\n\r\n", "0:\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, _ := readHeader(raw)
		n := 0
		for _, fl := range h {
			n += len(fl.key) + len(fl.value)
			if fl.key != canonical(fl.key) || fl.key == "" {
				t.Fatalf("key %q not canonical", fl.key)
			}
			// A bare CR (no LF) stays in a value: the address and
			// Message-ID parsers reject it.
			if strings.Contains(fl.value, "\n") || strings.ContainsAny(fl.key, "\r\n:") {
				t.Fatalf("field %q: %q not unfolded", fl.key, fl.value)
			}
			if v, ok := h.first(fl.key); !ok || v != h[slices.IndexFunc(h, func(g field) bool { return g.key == fl.key })].value {
				t.Fatalf("first(%q) = %q, %v", fl.key, v, ok)
			}
		}
		if n > MaxHeaderBytes {
			t.Fatalf("read %d bytes of fields; limit %d", n, MaxHeaderBytes)
		}
		if end := headerEnd(raw); end >= 0 {
			// What follows the empty line is body: appending to it
			// changes nothing.
			more := append(slices.Clip(raw), "\r\nX-After: 1\r\n"...)
			if h2, _ := readHeader(more); !slices.Equal(h, h2) {
				t.Fatalf("readHeader read past the header's end: %q vs %q", h, h2)
			}
		}
	})
}
