package fetch

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// spkiPin returns the tls_fingerprint of the server certificate in cfg.
func spkiPin(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

func sentCredentials(srv *pop3test.Server) bool {
	for _, c := range srv.Commands() {
		if strings.HasPrefix(c, "USER") || strings.HasPrefix(c, "PASS") {
			return true
		}
	}
	return false
}

// longGreeting is a greeting with an APOP timestamp (RFC 1939 §7), as
// GNU mailutils pop3d sends, padded past the replies that follow it.
const longGreeting = "+OK POP3 server ready on mail.example.org, GNU Mailutils 3.15, please use STLS before logging in " +
	"<2786.1733309130.1234567890@mail.example.org>"

func TestTLS(t *testing.T) {
	caPEM, serverTLS, _ := pop3test.GenerateCert(t)
	otherCA, _, _ := pop3test.GenerateCert(t)
	tests := []struct {
		name    string
		opts    pop3test.Options
		mode    rcfile.TLSMode
		ca      []byte
		pin     string
		wantErr error // nil = success
	}{
		{name: "implicit verified", opts: pop3test.Options{Implicit: true}, mode: rcfile.TLSImplicit, ca: caPEM},
		{name: "starttls verified", opts: pop3test.Options{STLS: true}, mode: rcfile.TLSStartTLS, ca: caPEM},
		{name: "implicit wrong CA", opts: pop3test.Options{Implicit: true}, mode: rcfile.TLSImplicit, ca: otherCA, wantErr: ErrTLS},
		{name: "implicit system roots reject test CA", opts: pop3test.Options{Implicit: true}, mode: rcfile.TLSImplicit, wantErr: ErrTLS},
		{name: "starttls wrong CA", opts: pop3test.Options{STLS: true}, mode: rcfile.TLSStartTLS, ca: otherCA, wantErr: ErrTLS},
		{name: "implicit pinned", opts: pop3test.Options{Implicit: true}, mode: rcfile.TLSImplicit, pin: "self"},
		{name: "implicit pin mismatch", opts: pop3test.Options{Implicit: true}, mode: rcfile.TLSImplicit, pin: strings.Repeat("ab", 32), wantErr: ErrTLS},
		{name: "stls not offered", opts: pop3test.Options{}, mode: rcfile.TLSStartTLS, ca: caPEM, wantErr: ErrTLS},
		{name: "stls advertised then refused", opts: pop3test.Options{STLS: true, Faults: []pop3test.Fault{{Cmd: "STLS", Action: pop3test.Reply, Reply: "-ERR not now"}}}, mode: rcfile.TLSStartTLS, ca: caPEM, wantErr: ErrTLS},
		{name: "stls response injection", opts: pop3test.Options{STLS: true, Faults: []pop3test.Fault{{Cmd: "STLS", Action: pop3test.Reply, Reply: "+OK begin TLS\r\n+OK injected"}}}, mode: rcfile.TLSStartTLS, ca: caPEM, wantErr: ErrTLS},
		{name: "stls server hangs after +OK", opts: pop3test.Options{STLS: true, Faults: []pop3test.Fault{{Cmd: "STLS", Action: pop3test.Custom, Func: func(c *pop3test.Conn) { c.WriteLine("+OK go ahead"); c.Hang() }}}}, mode: rcfile.TLSStartTLS, ca: caPEM, wantErr: nil},
		// mailutils and solid-pop3d greet with an APOP timestamp, longer
		// than the CAPA and STLS replies read after it.
		{name: "starttls long greeting", opts: pop3test.Options{STLS: true, Greeting: longGreeting}, mode: rcfile.TLSStartTLS, ca: caPEM},
		{name: "implicit long greeting", opts: pop3test.Options{Implicit: true, Greeting: longGreeting}, mode: rcfile.TLSImplicit, ca: caPEM},
		{name: "bad greeting", opts: pop3test.Options{Implicit: true, Greeting: "* IMAP here"}, mode: rcfile.TLSImplicit, ca: caPEM, wantErr: ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.TLS = serverTLS
			tt.opts.Messages = msgs(1)
			srv := pop3test.NewServer(t, tt.opts)
			a := testAccount(t, srv)
			a.TLS = tt.mode
			a.Server = "localhost"
			a.Timeout = 1500e6
			if tt.ca != nil {
				a.CAFile = pop3test.WriteCAFile(t, tt.ca)
			}
			if tt.pin == "self" {
				a.Fingerprint = spkiPin(t, serverTLS)
			} else {
				a.Fingerprint = tt.pin
			}
			rec := &recorder{}
			res := poller(rec).Poll(context.Background(), a)
			if tt.name == "stls server hangs after +OK" {
				// CVE-2011-1947: the handshake deadline fires.
				if res.Err == nil || sentCredentials(srv) {
					t.Fatalf("Poll = %+v; want a handshake timeout and no credentials", res)
				}
				return
			}
			if tt.wantErr == nil {
				if res.Err != nil || len(rec.got) != 1 {
					t.Fatalf("Poll = %+v", res)
				}
				return
			}
			if !errors.Is(res.Err, tt.wantErr) {
				t.Fatalf("Poll error = %v; want %v", res.Err, tt.wantErr)
			}
			// No credential byte before the TLS gate.
			if sentCredentials(srv) {
				t.Fatalf("credentials sent although the TLS policy failed:\n%s", srv.Transcript())
			}
		})
	}
}

// RFC 2595 §4: after STLS the client discards the capabilities it was told
// in plaintext and asks again; what the server says over TLS is what counts.
// Here PIPELINING is on one side of the handshake only, and the server
// checks whether the client pipelines.
func TestCapaAfterSTLS(t *testing.T) {
	caPEM, serverTLS, _ := pop3test.GenerateCert(t)
	for _, tt := range []struct {
		name           string
		plain, overTLS []string
		wantPipelined  bool
	}{
		{"pipelining only over TLS", []string{"USER", "UIDL"}, []string{"USER", "UIDL", "PIPELINING"}, true},
		{"pipelining only in plaintext", []string{"USER", "UIDL", "PIPELINING"}, []string{"USER", "UIDL"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{
				Messages: msgs(2), TLS: serverTLS, STLS: true, Capa: tt.overTLS, CheckPipelining: true,
				Faults: []pop3test.Fault{{Cmd: "CAPA", N: 1, Action: pop3test.Reply,
					Reply: "+OK\r\n" + strings.Join(append(tt.plain, "STLS"), "\r\n") + "\r\n."}},
			})
			a := testAccount(t, srv)
			a.TLS, a.Server, a.CAFile = rcfile.TLSStartTLS, "localhost", pop3test.WriteCAFile(t, caPEM)
			res := poller(&recorder{}).Poll(context.Background(), a)
			if res.Err != nil || res.Delivered != 2 {
				t.Fatalf("Poll = %+v", res)
			}
			cmds := srv.Commands()
			stls := slices.Index(cmds, "STLS")
			if stls < 0 || !slices.Contains(cmds[stls:], "CAPA") {
				t.Fatalf("commands %q: want CAPA again after STLS", cmds)
			}
			// Without PIPELINING over TLS, the server itself fails the
			// test (CheckPipelining) if the client pipelines anyway.
			if got := srv.Pipelined() > 0; got != tt.wantPipelined {
				t.Fatalf("client pipelined: %v; want %v (it must follow the capabilities given over TLS)", got, tt.wantPipelined)
			}
		})
	}
}
