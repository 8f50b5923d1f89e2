package pop3

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// rawServer accepts one connection on loopback, writes greeting and
// keeps the connection open until the test ends.
func rawServer(t *testing.T, greeting []byte) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
		c.Write(greeting)
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestPlainGreetingHostile: the greeting of a server that answers a
// ClientHello in plain text reaches the admin's terminal: it must come
// quoted, without control characters, bounded, and must not forge a
// tls_fingerprint suggestion of its own.
func TestPlainGreetingHostile(t *testing.T) {
	for name, g := range map[string]string{
		"ansi":       "+OK \x1b[2J\x1b]0;pwned\x07 ready\r\n",
		"crlf":       "+OK a\rtls = \"none\"\r\nsecond line\r\n",
		"nul":        "+OK a\x00b\r\n",
		"bad utf-8":  "+OK \xff\xfe\xc3\r\n",
		"c1":         "+OK \xc2\x9b31m red\r\n",
		"huge":       "+OK " + strings.Repeat("A", 1<<20) + "\r\n",
		"fake pin":   "+OK tls_fingerprint = \"sha256:" + strings.Repeat("ab", 32) + "\"\r\n",
		"no newline": "+OK " + strings.Repeat("\x1b", 300),
		"bidi":       "+OK \u202eevil\u2066\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			port := rawServer(t, []byte(g))
			_, err := Dial(context.Background(), Options{Host: "127.0.0.1", Port: port, TLS: TLSImplicit, Timeout: 2 * time.Second})
			if err == nil {
				t.Fatal("Dial succeeded")
			}
			if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "answered in plain text") {
				// plainText reads only the record header; "+OK" is
				// enough whatever the fifth byte is.
				t.Errorf("not recognised as plain text: %v", err)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\x00\x1b\x07\r\n\u009b") || strings.Contains(msg, "\x9b") {
				t.Errorf("control character in %q", msg)
			}
			if strings.ContainsAny(msg, "\u202e\u2066") {
				t.Errorf("bidi override in %q", msg)
			}
			if len(msg) > 1000 {
				t.Errorf("error is %d bytes", len(msg))
			}
			if strings.Contains(msg, `tls_fingerprint = "`) {
				t.Errorf("a server-chosen tls_fingerprint line appears unescaped: %s", msg)
			}
		})
	}
}

// hostileNameCert is a self-signed certificate whose DNS SAN carries
// terminal escapes (IA5String allows every ASCII byte; crypto/x509 parses
// it).
func hostileNameCert(t *testing.T, names ...string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: names, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Skipf("crypto/x509 refuses the name: %v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestUntrustedCertNamesEscaped: the names of an untrusted (MITM)
// certificate are printed in "it is for ...": they are the attacker's
// text and must not carry terminal escapes to the admin's terminal.
func TestUntrustedCertNamesEscaped(t *testing.T) {
	cfg := hostileNameCert(t, "evil\x1b]0;pwned\x07\x1b[2J.example", "x\r\ntls_fingerprint = \"sha256:00\"")
	srv := pop3test.NewServer(t, pop3test.Options{Implicit: true, TLS: cfg, Messages: msgs(1)})
	for _, pin := range []string{"", "check-name"} {
		o := Options{Host: "localhost", Port: srv.Port(), TLS: TLSImplicit, Timeout: 1500 * time.Millisecond}
		if pin != "" {
			o.Fingerprint = pop3test.SPKIPin(t, cfg)
			o.CheckName = true
		}
		_, err := Dial(context.Background(), o)
		if !errors.Is(err, ErrTLS) {
			t.Fatalf("%s: Dial = %v; want ErrTLS", pin, err)
		}
		if msg := err.Error(); strings.ContainsAny(msg, "\x1b\x07\r\n") {
			t.Errorf("pin=%q: certificate names reach the message raw: %q", pin, msg)
		}
	}
}

// TestPinNoDowngrade: a pin never lets tls = "starttls" go on in
// plain text when the server does not offer STLS.
func TestPinNoDowngrade(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1)})
	o := Options{Host: "127.0.0.1", Port: srv.Port(), TLS: TLSStartTLS, Fingerprint: strings.Repeat("ab", 32), Timeout: 1500 * time.Millisecond}
	_, err := Dial(context.Background(), o)
	if !errors.Is(err, ErrTLS) {
		t.Fatalf("Dial = %v; want ErrTLS", err)
	}
	if srv.SentCredentials() {
		t.Error("credentials sent")
	}
}
