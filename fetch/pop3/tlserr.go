package pop3

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// The errors of a failed TLS handshake say what happened in the rc file's
// terms and what to change: a port that answered in plain text names the
// tls and port settings to use; a certificate that could not be verified
// names its key's fingerprint in the form tls_fingerprint takes, whether
// the certificate names the server, and the line that would pin it (as
// mpop prints the fingerprints of a certificate it cannot verify).

// SPKIFingerprint is the tls_fingerprint of cert: the lower-case hex
// SHA-256 of its SubjectPublicKeyInfo (the key, not the certificate, so a
// renewal that keeps the key keeps the pin).
func SPKIFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// firstBytes keeps the first bytes read from a connection: what a server
// that answered a ClientHello in plain text said (crypto/tls reads past the
// record header it refuses, so the greeting is gone from the socket).
type firstBytes struct {
	net.Conn
	b []byte
}

// firstBytesMax is the most firstBytes keeps: a greeting line, cut.
const firstBytesMax = 120

func (f *firstBytes) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if k := min(n, firstBytesMax-len(f.b)); k > 0 {
		f.b = append(f.b, p[:k]...)
	}
	return n, err
}

// handshakeError turns a failed handshake, after the server sent read,
// into the error Dial returns. Every error that says the policy was not
// met wraps ErrTLS once.
func handshakeError(err error, read []byte, o Options) error {
	addr := net.JoinHostPort(o.Host, fmt.Sprint(o.Port))
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) && plainText(rh.RecordHeader[:]) {
		if o.TLS == TLSStartTLS {
			return fmt.Errorf("%w: %s accepted STLS but went on in plain text (%s) instead of a TLS handshake",
				ErrTLS, addr, quote(firstLine(read)))
		}
		return fmt.Errorf("%w: %s answered in plain text (%s) where a TLS handshake was expected (tls = %q): %s",
			ErrTLS, addr, quote(firstLine(read)), o.TLS, plainAdvice(o))
	}
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) && len(verr.UnverifiedCertificates) > 0 {
		return fmt.Errorf("%w: %s", ErrTLS, untrusted(verr, o, addr))
	}
	if errors.Is(err, ErrTLS) {
		// From VerifyConnection (the pin): it says ErrTLS itself;
		// crypto/tls returns it as it is.
		return err
	}
	return fmt.Errorf("tls handshake with %s: %w", addr, err)
}

// plainText reports whether a record header is the start of a text line
// (a POP3 greeting, an SMTP banner) rather than TLS or binary noise. A
// POP3 status indicator (RFC 1939 §3) is enough, whatever byte follows
// it: a greeting may go on with any byte.
func plainText(b []byte) bool {
	if bytes.HasPrefix(b, []byte("+OK")) || bytes.HasPrefix(b, []byte("-ERR")) {
		return true
	}
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\r' && c != '\n' && c != '\t' {
			return false
		}
	}
	return true
}

// firstLine is the first line of what the server sent.
func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return bytes.TrimRight(b, "\r")
}

// plainAdvice says which settings fit a server that talks plain POP3 on
// the port: STLS on it, or the POP3S port (RFC 8314 §3.3: 995), or, at
// last, no TLS at all.
func plainAdvice(o Options) string {
	if o.Port == 110 {
		return `port 110 is plain POP3: set tls = "starttls" to upgrade it with STLS (if the server offers it), or port = 995 for implicit TLS; tls = "none" sends the password in clear`
	}
	return fmt.Sprintf(`port %d does not speak implicit TLS: set tls = "starttls" to upgrade it with STLS (if the server offers it), or the port of the server's POP3S service (usually 995); tls = "none" sends the password in clear`, o.Port)
}

// untrusted describes a certificate the handshake could not verify: why,
// whether it names the server, its key's fingerprint and the pin line.
func untrusted(verr *tls.CertificateVerificationError, o Options, addr string) string {
	leaf := verr.UnverifiedCertificates[0]
	fp := SPKIFingerprint(leaf)
	var b strings.Builder
	fmt.Fprintf(&b, "the certificate of %s is not trusted (%s); ", addr, verifyReason(verr.Err, leaf))
	match := leaf.VerifyHostname(o.Host) == nil
	if match {
		fmt.Fprintf(&b, "its name matches %s; ", o.Host)
	} else {
		fmt.Fprintf(&b, "its name does NOT match %s (it is for %s); ", o.Host, certNames(leaf))
	}
	fmt.Fprintf(&b, "server key fingerprint sha256:%s; if this is the server's own key (check the fingerprint with its operator), pin it in the account: tls_fingerprint = %q", fp, "sha256:"+fp)
	// A pin replaces the name check unless tls_check_name says
	// otherwise: keep it where the name is right, and say why it cannot
	// be kept where it is not.
	if match {
		b.WriteString(" and tls_check_name = true (the name is checked too)")
	} else {
		fmt.Fprintf(&b, " (without tls_check_name = true, which would refuse a certificate not for %s)", o.Host)
	}
	return b.String()
}

// verifyReason says in words why crypto/x509 refused the chain.
func verifyReason(err error, leaf *x509.Certificate) string {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		if bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
			return "self-signed"
		}
		return "signed by an unknown authority"
	case errors.As(err, &he):
		return "issued for another name"
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		if now := time.Now(); now.Before(leaf.NotBefore) {
			return "not valid before " + leaf.NotBefore.UTC().Format(time.RFC3339)
		}
		return "expired " + leaf.NotAfter.UTC().Format(time.RFC3339)
	}
	return strings.TrimPrefix(err.Error(), "x509: ")
}

// certNames lists the names a certificate is valid for (SANs only, RFC
// 6125 §6.4.4: no CN fallback). The certificate may be an attacker's (the
// names of an untrusted one are what a man in the middle chose; an
// IA5String admits every ASCII byte): a name that is not a plain host
// name is quoted with strconv.Quote, so no control character or escape
// sequence reaches a terminal or a log line, and the list is bounded in
// count and length.
func certNames(c *x509.Certificate) string {
	const maxNames, maxLen = 8, 100
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no name: it has no subjectAltName"
	}
	var out []string
	for i, n := range names {
		if i == maxNames {
			out = append(out, fmt.Sprintf("and %d more", len(names)-maxNames))
			break
		}
		out = append(out, certName(n, maxLen))
	}
	return strings.Join(out, ", ")
}

// certName is one certificate name for a message: as it is when it is
// made of the characters of a host name, a wildcard or an IP address,
// else cut to max bytes and quoted.
func certName(n string, max int) string {
	plain := n != "" && len(n) <= max
	for i := 0; plain && i < len(n); i++ {
		c := n[i]
		plain = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == '*' || c == ':'
	}
	if plain {
		return n
	}
	if len(n) > max {
		n = strings.ToValidUTF8(n[:max], "") + "…"
	}
	return strconv.Quote(n)
}

// greetingError is the error of a greeting that did not come. A server on
// the POP3S port waits for the client's TLS handshake and sends nothing,
// so a silent port 995 without implicit TLS says which setting to change.
func greetingError(err error, o Options) error {
	var ne net.Error
	if o.TLS != TLSImplicit && o.Port == 995 && errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("greeting: %w (port 995 is POP3S, which waits for a TLS handshake first: set tls = \"implicit\")", err)
	}
	return fmt.Errorf("greeting: %w", err)
}

// dialError is a failed connect. net.OpError says "dial tcp ADDR: connect:
// connection refused", or "dial tcp: lookup HOST on RESOLVER: no such
// host": the message names the address once and keeps the cause, while
// errors.As still finds the net.OpError.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string {
	var de *net.DNSError
	if errors.As(e.err, &de) {
		return fmt.Sprintf("connect %s: DNS lookup failed: %s", e.addr, de.Err)
	}
	cause := e.err
	var oe *net.OpError
	if errors.As(e.err, &oe) && oe.Err != nil {
		cause = oe.Err
	}
	var se *os.SyscallError
	if errors.As(cause, &se) {
		cause = se.Err // "connect: connection refused"
	}
	return fmt.Sprintf("connect %s: %v", e.addr, cause)
}

func (e *dialError) Unwrap() error { return e.err }
