package fetch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// TestPollTLSSettings: the account's TLS settings reach the POP3 client
// (the TLS gate itself is tested in package pop3, TestTLS): ca_file is
// trusted, tls_fingerprint pins the key, and a failed gate sends no
// credentials.
func TestPollTLSSettings(t *testing.T) {
	caPEM, serverTLS, _ := pop3test.GenerateCert(t)
	for _, tt := range []struct {
		name    string
		ca, pin bool
		badPin  bool
		wantErr error
	}{
		{name: "ca_file", ca: true},
		{name: "tls_fingerprint", pin: true},
		{name: "tls_fingerprint mismatch", badPin: true, wantErr: ErrTLS},
		{name: "system roots", wantErr: ErrTLS},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Implicit: true, TLS: serverTLS, Messages: msgs(1)})
			a := testAccount(t, srv)
			a.TLS, a.Server, a.Timeout = rcfile.TLSImplicit, "localhost", 1500e6
			if tt.ca {
				a.CAFile = pop3test.WriteCAFile(t, caPEM)
			}
			if tt.pin {
				a.Fingerprint = pop3test.SPKIPin(t, serverTLS)
			}
			if tt.badPin {
				a.Fingerprint = strings.Repeat("ab", 32)
			}
			rec := &recorder{}
			res := poller(rec).Poll(context.Background(), a)
			if tt.wantErr == nil {
				if res.Err != nil || len(rec.got) != 1 {
					t.Fatalf("Poll = %+v", res)
				}
				return
			}
			if !errors.Is(res.Err, tt.wantErr) || srv.SentCredentials() {
				t.Fatalf("Poll error = %v, credentials sent %v; want %v and none sent", res.Err, srv.SentCredentials(), tt.wantErr)
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
