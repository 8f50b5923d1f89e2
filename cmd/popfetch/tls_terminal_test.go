package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/logsafe"
)

// TestCheckConnectCertNamesTerminal: a man in the middle chooses the
// names of the certificate he presents; `popfetch check --connect` and
// `popfetch fetch` print the untrusted-certificate error with "it is for
// NAMES" on the admin's terminal. Terminal escapes in a DNS SAN
// (IA5String admits every ASCII byte) must not arrive raw, nor a CR/LF
// that starts a forged line.
func TestCheckConnectCertNamesTerminal(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames:    []string{"evil\x1b]0;pwned\x07\x1b[2J.example", "x\r\nisp: logged in with PLAIN; 0 messages"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Skipf("crypto/x509 refuses the name: %v", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv := pop3test.NewServer(t, pop3test.Options{Implicit: true, TLS: cfg})
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, fmt.Sprintf(`state_dir = %q
account "isp" {
  server   = "localhost"
  port     = %d
  username = "u"
  password = "p"
  timeout  = "3s"
  deliver { maildir = %q }
}
`, filepath.Join(dir, "state"), srv.Port(), filepath.Join(dir, "Maildir")))
	os.Chmod(rc, 0o600)
	for _, args := range [][]string{{"check", "--connect"}, {"fetch"}} {
		code, out, errs := runCLI(t, append([]string{"-f", rc}, args...)...)
		if code == exitOK {
			t.Fatalf("%v = %d against an untrusted certificate", args, code)
		}
		if !strings.Contains(out+errs, "not trusted") {
			t.Fatalf("%v: no untrusted-certificate error\n%s%s", args, out, errs)
		}
		for _, s := range []string{out, errs} {
			if strings.ContainsAny(s, "\x1b\x07\r") || strings.Contains(s, "\nisp: logged in") {
				t.Errorf("%v prints the certificate's names raw: %q", args, s)
			}
		}
	}
}

// TestErrorLinesTerminalSafe: whatever an error says, the summary line
// and the error text of check carry no control or bidirectional
// character (the second layer behind the packages' own escaping).
func TestErrorLinesTerminalSafe(t *testing.T) {
	for _, e := range []string{
		"account isp: it is for evil\x1b]0;pwned\x07\x1b[2J.example",
		"x\r\nisp: logged in with PLAIN; 0 messages",
		"c1 \u009b31m and bidi \u202eevil\u2066 and nul \x00",
	} {
		for _, s := range []string{
			summaryLine(fetch.PollSummary{Account: "isp", Err: e}),
			errText("isp", e),
		} {
			for _, r := range s {
				if logsafe.Unsafe(r) {
					t.Errorf("%q: unsafe character %U in %q", e, r, s)
				}
			}
		}
	}
}
