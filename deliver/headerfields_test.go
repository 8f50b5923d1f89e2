package deliver

import (
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
