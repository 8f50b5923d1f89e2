package filter

import (
	"strings"
	"testing"
)

// TestTrustedReceivedByBrokenField: when the provider's own field (the
// topmost with "by" the trusted host) cannot be parsed because the
// sender put a '(' or ';' in its HELO, or made it overlong, the search
// must not go on to the fields below it: those the sender wrote, and one
// of them forged "by" the trusted host would give the filters an
// address of the sender's choosing (an SPF pass for any domain).
func TestTrustedReceivedByBrokenField(t *testing.T) {
	forged := "Received: from mail.bank.example (mail.bank.example [192.0.2.77])\r\n\tby mx.google.com with ESMTPS id f1; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	for _, tc := range []struct{ name, helo string }{
		{"open paren", "evil("},
		{"semicolon", "evil;"},
		{"open quote", `evil"`},
		{"quoted paren", `evil\(`},
		{"overlong", strings.Repeat("a", 5000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := "Received: by 2002:a05:6000:1::1 with SMTP id x; Mon, 1 Jan 2024 00:00:01 +0000\r\n" +
				"Received: from " + tc.helo + " (attacker.example [203.0.113.9])\r\n\tby mx.google.com with ESMTPS id g2; Mon, 1 Jan 2024 00:00:01 +0000\r\n" +
				forged + "Subject: x\r\n\r\n"
			r, err := TrustedReceived([]byte(head), Trust{By: "mx.google.com"})
			if err == nil && r.ClientIP.String() == "192.0.2.77" {
				t.Fatalf("trusted the sender's forged field %d: %+v", r.Index, r)
			}
			if r.ClientIP.String() == "192.0.2.77" || r.Helo == "mail.bank.example" {
				t.Fatalf("forged client reached the result: %+v (err %v)", r, err)
			}
			if r.Index != 0 && r.Index != 2 {
				t.Fatalf("index %d, want the provider's field 2 or none", r.Index)
			}
		})
	}
	// Wildcard form too.
	head := "Received: from evil( (attacker.example [203.0.113.9])\r\n\tby mx1.provider.example with ESMTP; Mon, 1 Jan 2024 00:00:01 +0000\r\n" +
		"Received: from x (x [192.0.2.77]) by mx9.provider.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
	if r, err := TrustedReceived([]byte(head), Trust{By: "*.provider.example"}); r.ClientIP.String() == "192.0.2.77" {
		t.Fatalf("wildcard: trusted the forged field: %+v %v", r, err)
	}
}
