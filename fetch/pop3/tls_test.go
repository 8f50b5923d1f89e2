package pop3

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// longGreeting is a greeting with an APOP timestamp (RFC 1939 §7), as
// GNU mailutils pop3d sends, padded past the replies that follow it.
const longGreeting = "+OK POP3 server ready on mail.example.org, GNU Mailutils 3.15, please use STLS before logging in " +
	"<2786.1733309130.1234567890@mail.example.org>"

// TestTLS: the TLS gate. Dial succeeds only over TLS verified by the
// given roots or the pin (or with TLSNone), and no credential byte is
// sent before it: a session whose gate failed never gets as far as Login.
func TestTLS(t *testing.T) {
	caPEM, serverTLS, _ := pop3test.GenerateCert(t)
	otherCA, _, _ := pop3test.GenerateCert(t)
	tests := []struct {
		name    string
		opts    pop3test.Options
		mode    TLSMode
		ca      []byte
		pin     string
		wantErr error // nil = success
	}{
		{name: "implicit verified", opts: pop3test.Options{Implicit: true}, mode: TLSImplicit, ca: caPEM},
		{name: "starttls verified", opts: pop3test.Options{STLS: true}, mode: TLSStartTLS, ca: caPEM},
		{name: "implicit wrong CA", opts: pop3test.Options{Implicit: true}, mode: TLSImplicit, ca: otherCA, wantErr: ErrTLS},
		{name: "implicit system roots reject test CA", opts: pop3test.Options{Implicit: true}, mode: TLSImplicit, wantErr: ErrTLS},
		{name: "starttls wrong CA", opts: pop3test.Options{STLS: true}, mode: TLSStartTLS, ca: otherCA, wantErr: ErrTLS},
		{name: "implicit pinned", opts: pop3test.Options{Implicit: true}, mode: TLSImplicit, pin: "self"},
		{name: "implicit pin mismatch", opts: pop3test.Options{Implicit: true}, mode: TLSImplicit, pin: strings.Repeat("ab", 32), wantErr: ErrTLS},
		{name: "stls not offered", opts: pop3test.Options{}, mode: TLSStartTLS, ca: caPEM, wantErr: ErrTLS},
		{name: "stls advertised then refused", opts: pop3test.Options{STLS: true, Faults: []pop3test.Fault{{Cmd: "STLS", Action: pop3test.Reply, Reply: "-ERR not now"}}}, mode: TLSStartTLS, ca: caPEM, wantErr: ErrTLS},
		{name: "stls response injection", opts: pop3test.Options{STLS: true, Faults: []pop3test.Fault{{Cmd: "STLS", Action: pop3test.Reply, Reply: "+OK begin TLS\r\n+OK injected"}}}, mode: TLSStartTLS, ca: caPEM, wantErr: ErrTLS},
		// The injected reply in a write of its own, after the STLS
		// reply was read: it reaches the read-ahead under TLS
		// (cipherConn), where it must be taken for a broken
		// handshake, never for a reply.
		{name: "stls response injection, separate write", opts: pop3test.Options{STLS: true, Faults: []pop3test.Fault{{Cmd: "STLS", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
			c.WriteLine("+OK begin TLS")
			time.Sleep(50 * time.Millisecond)
			c.WriteLine("+OK injected")
			c.WriteLine("+OK injected too")
			c.Hang()
		}}}}, mode: TLSStartTLS, ca: caPEM, wantErr: ErrTLS},
		{name: "stls server hangs after +OK", opts: pop3test.Options{STLS: true, Faults: []pop3test.Fault{{Cmd: "STLS", Action: pop3test.Custom, Func: func(c *pop3test.Conn) { c.WriteLine("+OK go ahead"); c.Hang() }}}}, mode: TLSStartTLS, ca: caPEM, wantErr: nil},
		// mailutils and solid-pop3d greet with an APOP timestamp, longer
		// than the CAPA and STLS replies read after it.
		{name: "starttls long greeting", opts: pop3test.Options{STLS: true, Greeting: longGreeting}, mode: TLSStartTLS, ca: caPEM},
		{name: "implicit long greeting", opts: pop3test.Options{Implicit: true, Greeting: longGreeting}, mode: TLSImplicit, ca: caPEM},
		{name: "bad greeting", opts: pop3test.Options{Implicit: true, Greeting: "* IMAP here"}, mode: TLSImplicit, ca: caPEM, wantErr: ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.TLS = serverTLS
			tt.opts.Messages = msgs(1)
			srv := pop3test.NewServer(t, tt.opts)
			o := Options{Host: "localhost", Port: srv.Port(), TLS: tt.mode, Timeout: tlsTimeout}
			if tt.name == "stls server hangs after +OK" {
				o.Timeout = 1500 * time.Millisecond // the deadline that must fire
			}
			if tt.ca != nil {
				o.RootCAs = x509Pool(t, tt.ca)
			}
			if tt.pin == "self" {
				o.Fingerprint = pop3test.SPKIPin(t, serverTLS)
			} else {
				o.Fingerprint = tt.pin
			}
			c, err := Dial(context.Background(), o)
			if err == nil {
				defer c.Close()
				if err = c.Login("user", "pass"); err == nil {
					var got [][]byte
					got, err = retrieveAll(c)
					if err == nil && (len(got) != 1 || !bytes.Equal(got[0], msg(1).Data)) {
						t.Fatalf("retrieved %q; want %q", got, msg(1).Data)
					}
				}
			}
			if tt.name == "stls server hangs after +OK" {
				// CVE-2011-1947: the handshake deadline fires.
				if err == nil || srv.SentCredentials() {
					t.Fatalf("Dial = %v; want a handshake timeout and no credentials", err)
				}
				return
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("session: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v; want %v", err, tt.wantErr)
			}
			// No credential byte before the TLS gate.
			if srv.SentCredentials() {
				t.Fatalf("credentials sent although the TLS policy failed:\n%s", srv.Transcript())
			}
		})
	}
}

// x509Pool is a pool of the CA certificates in caPEM.
func x509Pool(t *testing.T, caPEM []byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in the CA PEM")
	}
	return pool
}
