package pop3

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

func saslAndUserCount(srv *pop3test.Server) (auth, user int) {
	for _, cmd := range srv.Commands() {
		switch strings.ToUpper(strings.Fields(cmd + " x")[0]) {
		case "AUTH":
			if !strings.HasSuffix(cmd, "*") && strings.Contains(cmd, " ") {
				f := strings.Fields(cmd)
				if len(f) >= 2 && (strings.HasPrefix(strings.ToUpper(f[1]), "SCRAM") || strings.EqualFold(f[1], "PLAIN")) {
					auth++
				}
			}
		case "USER":
			user++
		}
	}
	return
}

// TestBadSignatureNoFallback: a server (verified TLS) whose SCRAM
// server-final carries a wrong signature has failed mutual authentication;
// auto must not then hand it the password with PLAIN.
func TestBadSignatureNoFallback(t *testing.T) {
	caPEM, serverTLS, _ := pop3test.GenerateCert(t)
	for _, capa := range []string{"SASL SCRAM-SHA-256 PLAIN", "SASL SCRAM-SHA-256"} {
		t.Run(capa, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Capa: []string{"UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", capa}, Messages: msgs(1),
				TLS: serverTLS, Implicit: true, SCRAMBadSignature: true})
			c, err := Dial(context.Background(), Options{Host: "localhost", Port: srv.Port(), TLS: TLSImplicit, RootCAs: x509Pool(t, caPEM), Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Authenticate(context.Background(), Credentials{Username: "user", Password: "pass"})
			t.Logf("err=%v mech=%q fellBack=%q\ncommands=%q", err, c.Mechanism(), c.FellBack(), srv.Commands())
			if a, u := saslAndUserCount(srv); a != 1 || u != 0 {
				t.Errorf("after a bad SCRAM server signature the client sent %d SASL AUTH and %d USER; want 1 and 0 (no PLAIN/USER to a server that failed mutual authentication)", a, u)
			}
		})
	}
}
