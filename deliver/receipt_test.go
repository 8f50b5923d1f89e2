package deliver

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// Each target reports, with each copy it delivered, where the copy went:
// a Maildir the file relative to its root, an MDA its argv[0], SMTP and
// LMTP the server's address and its final reply to that copy. A copy that
// failed has no receipt.
func TestReceipts(t *testing.T) {
	dir := t.TempDir()
	md := NewMaildir(filepath.Join(dir, "{user}"), MaildirOptions{LocalHost: "mx.local"})
	stub := delivertest.NewMDA(t)
	argv := stub.Argv("{user}")
	mda, _ := newTestMDA(t, argv, MDAOptions{})
	// raw is a server that takes ann and bob, refuses -bad, and gives
	// its final reply to the DATA.
	raw := func(greeting, final string) string {
		return smtpRaw(t, func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 raw.test "+greeting+"\r\n")
			rawCmd(c, r, "250-raw.test\r\n250 8BITMIME") // EHLO or LHLO
			rawCmd(c, r, "250 ok")                       // MAIL
			rawCmd(c, r, "250 ok")                       // RCPT ann
			rawCmd(c, r, "550 5.1.1 no such user")       // RCPT -bad
			rawCmd(c, r, "250 ok")                       // RCPT bob
			rawCmd(c, r, "354 go ahead")
			rawReadData(r)
			io.WriteString(c, final)
			rawCmd(c, r, "221 bye")
		})
	}
	smtpAddr := raw("ESMTP", "250 2.0.0 Ok: queued as 4XyZ\r\n")
	// One LMTP reply per accepted recipient: ann's names her; bob's
	// names nobody, and also carries an escape sequence a log must not
	// pass on as it is.
	lmtpAddr := raw("LMTP", "250 2.0.0 <ann@x> Lx3 Saved\r\n250 2.0.0 ok \x1b[2J\r\n")
	rcpts := []Recipient{{User: "ann", Address: "ann@x", Domain: "x"}, {User: "-bad", Address: "-bad@x"}, {User: "bob", Address: "bob@x", Domain: "x"}}
	for _, tc := range []struct {
		name string
		tg   Target
		want []Receipt // for rcpts; Dest "new/" is checked as a file
	}{
		{"maildir", md, []Receipt{{Kind: "maildir", Dest: "new/"}, {}, {Kind: "maildir", Dest: "new/"}}},
		{"mda", mda, []Receipt{{Kind: "mda", Dest: argv[0]}, {}, {Kind: "mda", Dest: argv[0]}}},
		{"smtp", NewSMTP(SMTPOptions{Addr: smtpAddr}), []Receipt{
			{Kind: "smtp", Dest: smtpAddr, Reply: "250 2.0.0 Ok: queued as 4XyZ"}, {},
			{Kind: "smtp", Dest: smtpAddr, Reply: "250 2.0.0 Ok: queued as 4XyZ"}}},
		{"lmtp", NewSMTP(SMTPOptions{Addr: lmtpAddr, LMTP: true}), []Receipt{
			{Kind: "lmtp", Dest: lmtpAddr, Reply: "250 2.0.0 <ann@x> Lx3 Saved"}, {},
			{Kind: "lmtp", Dest: lmtpAddr, Reply: "250 2.0.0 ok \x1b[2J"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			got := make([]Receipt, len(rcpts))
			calls := 0
			errs := DeliverReporting(context.Background(), tc.tg, smtpMsg("Subject: x\r\n\r\nb\r\n"), "", rcpts, nil, func(i int, err error, rc Receipt) {
				mu.Lock()
				defer mu.Unlock()
				calls++
				if err != nil && rc != (Receipt{}) {
					t.Errorf("copy %d failed (%v) but has a receipt %+v", i, err, rc)
				}
				got[i] = rc
			})
			if errs[0] != nil || errs[1] == nil || errs[2] != nil {
				t.Fatalf("Deliver = %v; want ann and bob delivered", errs)
			}
			if calls != len(rcpts) {
				t.Errorf("%d reports; want %d", calls, len(rcpts))
			}
			for i, w := range tc.want {
				g := got[i]
				if w.Dest == "new/" && strings.HasPrefix(g.Dest, "new/") {
					// The file exists under the user's Maildir root.
					if _, err := os.Stat(filepath.Join(dir, rcpts[i].User, g.Dest)); err != nil {
						t.Errorf("copy %d: receipt %+v names no file: %v", i, g, err)
					}
					g.Dest = "new/"
				}
				if g != w {
					t.Errorf("copy %d: receipt %+v; want %+v", i, got[i], w)
				}
			}
		})
	}
}
