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
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// expiredSelfSigned is a server configuration with a self-signed
// certificate for localhost that expired a day ago.
func expiredSelfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     time.Now().Add(-24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// TestPinReplacesVerification: a tls_fingerprint pin is the trust anchor
// instead of the certificate chain, the server name and the validity
// dates (as mpop's --tls-fingerprint; man/popfetch.hcl.5 says so), and a
// key that does not match is refused whatever else holds.
func TestPinReplacesVerification(t *testing.T) {
	caPEM, otherName, _ := pop3test.GenerateCert(t, "mail.example.net")
	expired := expiredSelfSigned(t)
	tests := []struct {
		name    string
		server  *tls.Config
		ca      []byte
		pin     string // "self": the server's own key
		wantErr error  // nil = success
	}{
		{name: "another name, verified", server: otherName, ca: caPEM, wantErr: ErrTLS},
		{name: "another name, pinned", server: otherName, pin: "self"},
		{name: "another name, CA and wrong pin", server: otherName, ca: caPEM, pin: strings.Repeat("ab", 32), wantErr: ErrTLS},
		{name: "expired self-signed, unpinned", server: expired, wantErr: ErrTLS},
		{name: "expired self-signed, pinned", server: expired, pin: "self"},
		{name: "expired self-signed, wrong pin", server: expired, pin: strings.Repeat("ab", 32), wantErr: ErrTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Implicit: true, TLS: tt.server, Messages: msgs(1)})
			o := Options{Host: "localhost", Port: srv.Port(), TLS: TLSImplicit, Timeout: tlsTimeout, Fingerprint: tt.pin}
			if tt.ca != nil {
				o.RootCAs = x509Pool(t, tt.ca)
			}
			if tt.pin == "self" {
				o.Fingerprint = pop3test.SPKIPin(t, tt.server)
			}
			c, err := Dial(context.Background(), o)
			if err == nil {
				c.Close()
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Dial = %v; want %v", err, tt.wantErr)
			}
		})
	}
}
