package deliver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// TestLocalMessageNoReceived: a message popfetch wrote itself
// (Message.Local, an alert) gets no "Received: ... with POP3" trace
// field from any target, since it was never retrieved; a retrieved one
// still does, and Delivered-To is added to both.
func TestLocalMessageNoReceived(t *testing.T) {
	rc := Recipient{Address: "postmaster@example.com"}
	raw := "From: popfetch@h\r\nSubject: alert\r\n\r\nbody\r\n"
	msg := func(local bool) *Message {
		return &Message{Account: "acct", Server: "h", User: "popfetch-alert", UID: "alert.1.ab",
			Fetched: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Raw: []byte(raw), Local: local}
	}
	type deliverFunc func(t *testing.T, m *Message) string // returns the copy as stored
	maildir := func(t *testing.T, m *Message) string {
		dir := filepath.Join(t.TempDir(), "Maildir")
		d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
		defer d.Close()
		if errs := d.Deliver(context.Background(), m, "", []Recipient{rc}, nil); errs[0] != nil {
			t.Fatal(errs[0])
		}
		b, err := os.ReadFile(filepath.Join(dir, "new", delivertest.Names(t, filepath.Join(dir, "new"))[0]))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	smtpOrLMTP := func(lmtp bool) deliverFunc {
		return func(t *testing.T, m *Message) string {
			sink := &delivertest.Sink{}
			d := NewSMTP(SMTPOptions{Addr: startSink(t, sink, lmtp, nil, false), LMTP: lmtp, LocalHost: "h", Timeout: 4 * time.Second})
			if errs := d.Deliver(context.Background(), m, "", []Recipient{rc}, nil); errs[0] != nil {
				t.Fatal(errs[0])
			}
			msgs := sink.Messages()
			if len(msgs) != 1 {
				t.Fatalf("sink got %d messages", len(msgs))
			}
			return string(msgs[0].Data)
		}
	}
	mda := func(t *testing.T, m *Message) string {
		stub := delivertest.NewMDA(t)
		d, _ := newTestMDA(t, stub.Argv("x"), MDAOptions{})
		if errs := d.Deliver(context.Background(), m, "", []Recipient{rc}, nil); errs[0] != nil {
			t.Fatal(errs[0])
		}
		got := stub.Messages(t, "x")
		if len(got) != 1 {
			t.Fatalf("the MDA stored %d messages", len(got))
		}
		return string(got[0])
	}
	for _, tc := range []struct {
		name string
		f    deliverFunc
	}{{"maildir", maildir}, {"smtp", smtpOrLMTP(false)}, {"lmtp", smtpOrLMTP(true)}, {"mda", mda}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, local := range []bool{false, true} {
				got := tc.f(t, msg(local))
				hasTrace := strings.Contains(got, "Received:") || strings.Contains(got, "with POP3")
				if hasTrace == local {
					t.Errorf("Local=%v: copy has a Received: trace field = %v; want %v:\n%s", local, hasTrace, !local, got)
				}
				if !strings.Contains(got, "Delivered-To: postmaster@example.com") {
					t.Errorf("Local=%v: no Delivered-To:\n%s", local, got)
				}
			}
		})
	}
}
