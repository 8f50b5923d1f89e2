package fetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/rcfile"
)

// Benchmarks of one multidrop delivery through the real Dispatcher
// (NewDispatcher: routing, grouping per target, the target itself) without
// the POP3 side. They report figures only and assert nothing about time:
// the numbers depend on the disk's fsync and on the machine's load.

// nopProgress is a Progress with no UIDL store behind it, so the figures
// show routing and delivery, not the store's fsync.
type nopProgress struct{}

func (nopProgress) Done(string) bool    { return false }
func (nopProgress) Record(string) error { return nil }
func (nopProgress) Intend(string) error { return nil }
func (nopProgress) Copied(Copy)         {}

// benchMessage is a typical multidrop message: the provider's envelope
// header, a few trace fields, To/Cc naming users and outsiders, a 4 KiB
// body. The envelope names two users (an alias), so each delivery makes
// two copies.
func benchMessage() *deliver.Message {
	var b strings.Builder
	b.WriteString("Delivered-To: team@example.com\r\n")
	b.WriteString("Return-Path: <news@example.net>\r\n")
	for i := range 4 {
		fmt.Fprintf(&b, "Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d])\r\n\tby mx.isp.example with ESMTPS id %x; Wed, 25 Nov 2026 10:00:0%d +0000\r\n", i, i, i+1, 0xabc0+i, i)
	}
	b.WriteString("From: News <news@example.net>\r\nTo: Alice <alice@example.com>, someone@elsewhere.test\r\nCc: bob+lists@example.com\r\n")
	b.WriteString("Subject: weekly report\r\nMessage-ID: <bench@example.net>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for range 64 {
		b.WriteString("0123456789 abcdefghij 0123456789 abcdefghij 0123456789 abcd\r\n")
	}
	return &deliver.Message{Account: "bench", Server: "pop.example.net", User: "catchall", UID: "bench-1", Raw: []byte(b.String())}
}

// benchAccount is a multidrop account whose envelope alias team@ reaches
// alice and bob.
func benchAccount(b *testing.B, d rcfile.Destination) *rcfile.Account {
	b.Helper()
	dir := b.TempDir()
	aliases := filepath.Join(dir, "aliases")
	if err := os.WriteFile(aliases, []byte("team: alice, bob\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	md := testMultidrop(mdUser("alice", "alice"), mdUser("bob", "bob"), mdUser("carol", "carol"))
	md.AliasesFile = aliases
	return &rcfile.Account{
		Name:       "bench",
		Deliver:    d,
		Postmaster: &rcfile.Destination{Maildir: filepath.Join(dir, "postmaster")},
		Multidrop:  md,
	}
}

// runDispatch dispatches m b.N times and reports messages (not copies)
// per second. The postmaster must stay empty: a benchmark that silently
// measured the fallback path would report the wrong thing.
func runDispatch(b *testing.B, a *rcfile.Account, m *deliver.Message) {
	b.Helper()
	d, err := NewDispatcher(a)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(len(m.Raw)))
	for b.Loop() {
		if err := d.Dispatch(ctx, m, nopProgress{}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if n := delivertest.MaildirCount(b, a.Postmaster.Maildir, "new"); n > 0 {
		b.Fatalf("%d messages went to the postmaster", n)
	}
}

// BenchmarkRouteMaildir: routing plus two durable Maildir copies (file
// fsync, link, directory fsync) per message.
func BenchmarkRouteMaildir(b *testing.B) {
	a := benchAccount(b, rcfile.Destination{Maildir: filepath.Join(b.TempDir(), "{user}", "Maildir")})
	runDispatch(b, a, benchMessage())
}

// BenchmarkLMTPDovecot: routing plus one LMTP transaction with two RCPTs
// into a real dovecot-lmtpd over its unix socket (dovecot writes both
// copies). The message reaches the users by their own addresses, because
// the SMTP target sends RCPT for Recipient.Address (see the LMTP run of
// TestMultidropIntegration), and dovecot knows alice and bob only.
func BenchmarkLMTPDovecot(b *testing.B) {
	srv := dovecottest.Start(b, dovecottest.Options{LMTP: true})
	srv.AddUser(b, "alice", "pw")
	srv.AddUser(b, "bob", "pw")
	a := benchAccount(b, rcfile.Destination{SMTP: &rcfile.SMTP{Server: srv.LMTPSocket, LMTP: true, Helo: "popfetch.test"}})
	m := benchMessage()
	m.Raw = []byte(strings.Replace(string(m.Raw), "Delivered-To: team@example.com\r\n", "", 1))
	runDispatch(b, a, m)
}

// BenchmarkMDAProcmail: routing plus two procmail runs (one per user,
// each a fork/exec and a Maildir delivery by procmail).
func BenchmarkMDAProcmail(b *testing.B) {
	requireProcmail(b)
	dir := b.TempDir()
	for _, u := range []string{"alice", "bob"} {
		if err := os.MkdirAll(filepath.Join(dir, "procmail", u), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	rc := filepath.Join(dir, "procmailrc")
	if err := os.WriteFile(rc, fmt.Appendf(nil, "DEFAULT=%s/procmail/$USER/Maildir/\n", dir), 0o644); err != nil {
		b.Fatal(err)
	}
	a := benchAccount(b, rcfile.Destination{MDA: []string{"/usr/bin/procmail", "-m", "USER={user}", rc}})
	runDispatch(b, a, benchMessage())
}
