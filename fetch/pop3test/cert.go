package pop3test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// NewCert makes a throw-away CA and a server certificate signed by it
// for hosts (default "127.0.0.1" and "localhost"; IP addresses become IP
// SANs, everything else a dNSName SAN, and there is no CN, because clients
// must verify against SANs only, RFC 6125). Keys are ECDSA P-256, valid for
// 24 hours. It returns the CA in PEM (for a client's ca_file), the server's
// tls.Config (TLS 1.2 or later, RFC 8996) and a pool holding the CA for
// clients built in Go.
//
// A separate CA, rather than a self-signed leaf, keeps the test realistic: the
// client trusts an issuer, not the server certificate itself.
func NewCert(hosts ...string) (caPEM []byte, server *tls.Config, pool *x509.CertPool, err error) {
	caPEM, certPEM, keyPEM, err := NewCertPEM(hosts...)
	if err != nil {
		return nil, nil, nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, nil, err
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	server = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return caPEM, server, pool, nil
}

// SPKIPin returns the tls_fingerprint of the server certificate in cfg:
// the hex SHA-256 of its SubjectPublicKeyInfo.
func SPKIPin(t TB, cfg *tls.Config) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatalf("pop3test: %v", err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// NewCertPEM is NewCert for servers configured with files (dovecot): the
// CA certificate, the server certificate and its PKCS #8 key, all in PEM.
func NewCertPEM(hosts ...string) (caPEM, certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	// Backdate a little so that clock skew between test processes cannot
	// make the certificate "not yet valid".
	notBefore := time.Now().Add(-time.Hour)
	notAfter := time.Now().Add(24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          mustSerial(),
		Subject:               pkix.Name{Organization: []string{"pop3test"}, CommonName: "pop3test CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: mustSerial(),
		Subject:      pkix.Name{Organization: []string{"pop3test"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create server certificate: %w", err)
	}

	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("marshal server key: %w", err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return caPEM, certPEM, keyPEM, nil
}

// mustSerial returns a random 64-bit serial number; crypto/rand does not
// fail on Linux (Go 1.24+ crashes the program instead of returning errors).
func mustSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		panic(err)
	}
	return n
}

// GenerateCert is NewCert for tests: it fails the test on error.
func GenerateCert(t TB, hosts ...string) (caPEM []byte, server *tls.Config, pool *x509.CertPool) {
	t.Helper()
	caPEM, server, pool, err := NewCert(hosts...)
	if err != nil {
		t.Fatalf("pop3test: %v", err)
	}
	return caPEM, server, pool
}

// WriteCAFile writes caPEM to a file in t.TempDir and returns its path, for
// clients configured with a CA file path rather than a pool.
func WriteCAFile(t TB, caPEM []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, caPEM, 0o644); err != nil {
		t.Fatalf("pop3test: write CA file: %v", err)
	}
	return path
}
