package fetch

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// TestRememberedFallbackOnlyWhereLearnt: the fallback from SCRAM
// to PLAIN is only for sessions over verified TLS. The Poller remembers it
// for the server, user and TLS mode it was learnt on; after a reload that keeps the name but moves the
// account to tls = "none" (or another host), auto must try SCRAM first
// again instead of sending the password in clear with PLAIN.
func TestRememberedFallbackOnlyWhereLearnt(t *testing.T) {
	caPEM, serverTLS, _ := pop3test.GenerateCert(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	capa := []string{"UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "SASL SCRAM-SHA-256 PLAIN"}
	a1 := pop3test.NewServer(t, pop3test.Options{Capa: capa, TLS: serverTLS, Implicit: true,
		Faults: []pop3test.Fault{{Cmd: "AUTH", N: 1, Action: pop3test.Reply, Reply: "-ERR [AUTH] Authentication failed."}}})
	var log testutil.SyncBuffer
	p := &Poller{Log: slog.New(slog.NewTextHandler(&log, nil))}
	acct := testAccount(t, a1)
	acct.Server, acct.TLS, acct.CAFile, acct.Keep = "localhost", rcfile.TLSImplicit, caFile, true
	if res := p.Poll(context.Background(), acct); res.Err != nil || res.Mechanism != "PLAIN" {
		t.Fatalf("first poll: %v mechanism %q\n%s", res.Err, res.Mechanism, log.String())
	}
	// Reload: same name, now a plaintext server (tls = "none") that has SCRAM.
	b := pop3test.NewServer(t, pop3test.Options{Capa: capa})
	acct2 := testAccount(t, b)
	acct2.Name, acct2.Keep = acct.Name, true
	res := p.Poll(context.Background(), acct2)
	t.Logf("second poll: err=%v mechanism=%q logins=%q", res.Err, res.Mechanism, b.Logins())
	if res.Mechanism != "SCRAM-SHA-256" {
		t.Errorf("after a reload to tls = \"none\", auto logged in with %q (password in clear text) although the server offers SCRAM; the remembered fallback applies only to the verified-TLS session it was learnt on", res.Mechanism)
	}
}

// TestAudit9cSourcesConcurrent: token look-ups and token calls of the same
