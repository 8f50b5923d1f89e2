package fetch

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
)

// TestSMTPCAFileTrusted: an SMTP/LMTP ca_file another user can change is
// not used: whoever can change the trust anchors can impersonate the
// server.
func TestSMTPCAFileTrusted(t *testing.T) {
	ca := testutil.WriteFile(t, testutil.PrivateDir(t), "ca.pem", "not a certificate\n", 0o646)
	_, err := newSMTPTarget(&rcfile.SMTP{Server: "127.0.0.1:25", CAFile: ca}, "h")
	if !errors.Is(err, trust.ErrUntrustedFile) {
		t.Fatalf("newSMTPTarget with an other-writable ca_file = %v; want ErrUntrustedFile", err)
	}
}

// TestPOP3CAFileTrusted: a POP3 ca_file another user can change is not
// used, and no credentials are sent.
func TestPOP3CAFileTrusted(t *testing.T) {
	caPEM, serverTLS, _ := pop3test.GenerateCert(t)
	srv := pop3test.NewServer(t, pop3test.Options{Implicit: true, TLS: serverTLS, Messages: msgs(1)})
	a := testAccount(t, srv)
	a.TLS, a.Server = rcfile.TLSImplicit, "localhost"
	a.CAFile = pop3test.WriteCAFile(t, caPEM)
	if err := os.Chmod(a.CAFile, 0o646); err != nil {
		t.Fatal(err)
	}
	res := poller(&recorder{}).Poll(context.Background(), a)
	if !errors.Is(res.Err, trust.ErrUntrustedFile) || !errors.Is(res.Err, ErrTLS) {
		t.Fatalf("Poll with an other-writable ca_file = %v; want ErrTLS and ErrUntrustedFile", res.Err)
	}
	if srv.SentCredentials() {
		t.Fatalf("credentials sent:\n%s", srv.Transcript())
	}
}
