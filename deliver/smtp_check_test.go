package deliver

import (
	"bufio"
	"context"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// TestSMTPCheck: Check goes as far as EHLO/LHLO (through STARTTLS or
// implicit TLS as configured, verified) and QUIT, never MAIL FROM, and
// names the step that failed.
func TestSMTPCheck(t *testing.T) {
	cfg, pool := smtpTestCert(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		name            string
		lmtp, serverTLS bool
		implicit        bool
		mode            string
		roots           *x509.CertPool
		addr            string // instead of a sink
		want            string // "" = ok
	}{
		{name: "plain", mode: "none"},
		{name: "lmtp socket", lmtp: true, mode: "none"},
		{name: "starttls", serverTLS: true, mode: "starttls", roots: pool},
		{name: "implicit", serverTLS: true, implicit: true, mode: "implicit", roots: pool},
		{name: "starttls not offered", mode: "starttls", roots: pool, want: "starttls required: server does not offer STARTTLS"},
		{name: "untrusted", serverTLS: true, mode: "starttls", roots: x509.NewCertPool(), want: "tls handshake: tls: failed to verify certificate"},
		{name: "closed port", addr: closed, mode: "none", want: "connect: dial tcp " + closed + ": connect: connection refused"},
		{name: "bad option", addr: "/run/lmtp", lmtp: true, mode: "starttls", want: "configuration: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &delivertest.Sink{}
			addr := tc.addr
			if addr == "" {
				var scfg = cfg
				if !tc.serverTLS {
					scfg = nil
				}
				addr = startSink(t, sink, tc.lmtp, scfg, tc.implicit)
			}
			d := NewSMTP(SMTPOptions{Addr: addr, LMTP: tc.lmtp, TLS: tc.mode, RootCAs: tc.roots, Timeout: 4 * time.Second})
			err := d.Check(context.Background())
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Check() = %v; want %q", err, tc.want)
			}
			if n := sink.Mails(); n != 0 {
				t.Errorf("Check sent MAIL FROM %d times", n)
			}
		})
	}
}

// TestSMTPCheckDialogue: the exact commands, EHLO then QUIT.
func TestSMTPCheckDialogue(t *testing.T) {
	got := make(chan []string, 1)
	addr := smtpRaw(t, func(c net.Conn, r *bufio.Reader) {
		io.WriteString(c, "220 raw.test ESMTP\r\n")
		var cmds []string
		cmds = append(cmds, strings.Fields(rawCmd(c, r, "250 raw.test"))[0])
		cmds = append(cmds, strings.TrimSpace(rawCmd(c, r, "221 bye")))
		got <- cmds
	})
	d := NewSMTP(SMTPOptions{Addr: addr, Timeout: 4 * time.Second})
	if err := d.Check(context.Background()); err != nil {
		t.Fatalf("Check() = %v", err)
	}
	if cmds := <-got; strings.Join(cmds, " ") != "EHLO QUIT" {
		t.Errorf("commands %q; want EHLO, QUIT", cmds)
	}
}
