package pop3

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestSCRAMFallback: auth = "auto" that chose SCRAM tries PLAIN (else
// USER/PASS) once after the server refused SCRAM with [AUTH], as a Dovecot
// does that lists SCRAM over a password database of crypt hashes; but only
// over verified TLS, never for an explicit mechanism, never to a mechanism
// the server did not offer.
func TestSCRAMFallback(t *testing.T) {
	caPEM, serverTLS, _ := pop3test.GenerateCert(t)
	refuse := pop3test.Fault{Cmd: "AUTH", N: 1, Action: pop3test.Reply, Reply: "-ERR [AUTH] Authentication failed."}
	tests := []struct {
		name     string
		tls      bool
		capa     []string
		mech     Mechanism
		noSCRAM  bool
		faults   []pop3test.Fault
		wantMech Mechanism // "" = the login fails with ErrAuth
		wantFell Mechanism
		wantAuth int // AUTH commands sent
		wantUser int // USER commands sent
	}{
		{name: "auto tls falls back to plain", tls: true, capa: []string{"USER", "SASL SCRAM-SHA-256 PLAIN"}, faults: []pop3test.Fault{refuse}, wantMech: MechPlain, wantFell: MechSCRAMSHA256, wantAuth: 2},
		{name: "auto tls falls back to user", tls: true, capa: []string{"USER", "SASL SCRAM-SHA-256"}, faults: []pop3test.Fault{refuse}, wantMech: MechUser, wantFell: MechSCRAMSHA256, wantAuth: 1, wantUser: 1},
		{name: "auto tls sha1 falls back to plain", tls: true, capa: []string{"USER", "SASL SCRAM-SHA-1 PLAIN"}, faults: []pop3test.Fault{refuse}, wantMech: MechPlain, wantFell: MechSCRAMSHA1, wantAuth: 2},
		{name: "auto tls nothing else offered", tls: true, capa: []string{"SASL SCRAM-SHA-256"}, faults: []pop3test.Fault{refuse}, wantAuth: 1},
		{name: "auto tls both refused", tls: true, capa: []string{"USER", "SASL SCRAM-SHA-256 PLAIN"}, faults: []pop3test.Fault{refuse, {Cmd: "AUTH", N: 2, Action: pop3test.Reply, Reply: "-ERR [AUTH] Authentication failed."}}, wantAuth: 2},
		{name: "auto without tls no fallback", capa: []string{"USER", "SASL SCRAM-SHA-256 PLAIN"}, faults: []pop3test.Fault{refuse}, wantAuth: 1},
		{name: "explicit scram no fallback", tls: true, mech: MechSCRAMSHA256, capa: []string{"USER", "SASL SCRAM-SHA-256 PLAIN"}, faults: []pop3test.Fault{refuse}, wantAuth: 1},
		{name: "in-use is no fallback", tls: true, capa: []string{"USER", "SASL SCRAM-SHA-256 PLAIN"}, faults: []pop3test.Fault{{Cmd: "AUTH", N: 1, Action: pop3test.Reply, Reply: "-ERR [IN-USE] locked"}}, wantAuth: 1},
		{name: "scram works", tls: true, capa: []string{"USER", "SASL SCRAM-SHA-256 PLAIN"}, wantMech: MechSCRAMSHA256, wantAuth: 1},
		{name: "remembered goes straight to plain", tls: true, noSCRAM: true, capa: []string{"USER", "SASL SCRAM-SHA-256 PLAIN"}, wantMech: MechPlain, wantAuth: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := pop3test.Options{Capa: append([]string{"UIDL", "RESP-CODES", "AUTH-RESP-CODE"}, tt.capa...), Messages: msgs(1), Faults: tt.faults}
			o := Options{Host: "localhost", TLS: TLSNone, Timeout: 5 * time.Second}
			if tt.tls {
				opts.TLS, opts.Implicit = serverTLS, true
				o.TLS, o.RootCAs = TLSImplicit, x509Pool(t, caPEM)
			}
			srv := pop3test.NewServer(t, opts)
			o.Port = srv.Port()
			if !tt.tls {
				o.Host = srv.Host()
			}
			c, err := Dial(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Authenticate(context.Background(), Credentials{Mechanism: tt.mech, Username: "user", Password: "pass", NoSCRAM: tt.noSCRAM})
			if tt.wantMech == "" {
				if err == nil {
					t.Fatalf("login succeeded with %s", c.Mechanism())
				}
				if tt.name != "in-use is no fallback" && !errors.Is(err, ErrAuth) {
					t.Errorf("error = %v; want ErrAuth", err)
				}
			} else if err != nil {
				t.Fatalf("Authenticate: %v\n%s", err, srv.Transcript())
			} else if c.Mechanism() != tt.wantMech || c.FellBack() != tt.wantFell {
				t.Errorf("mechanism %s, fell back from %q; want %s from %q", c.Mechanism(), c.FellBack(), tt.wantMech, tt.wantFell)
			}
			var auth, user int
			for _, cmd := range srv.Commands() {
				switch strings.ToUpper(strings.Fields(cmd + " x")[0]) {
				case "AUTH":
					if !strings.HasSuffix(cmd, "*") {
						auth++
					}
				case "USER":
					user++
				}
			}
			if auth != tt.wantAuth || user != tt.wantUser {
				t.Errorf("sent %d AUTH and %d USER; want %d and %d:\n%v", auth, user, tt.wantAuth, tt.wantUser, srv.Commands())
			}
		})
	}
}

// TestAuthNotImplemented: an explicit SASL mechanism against a server
// whose CAPA did not list it, answered "-ERR Not implemented" (mailutils
// pop3d, popa3d, solid-pop3d offer no SASL), is a mechanism error, not a
// refused login; a response code or a listed mechanism is classified as
// before.
func TestAuthNotImplemented(t *testing.T) {
	notImpl := pop3test.Fault{Cmd: "AUTH", Action: pop3test.Reply, Reply: "-ERR Not implemented"}
	for _, tt := range []struct {
		name   string
		sasl   string
		mech   Mechanism
		faults []pop3test.Fault
		want   error
		not    []error
	}{
		{"plain, no SASL listed", "", MechPlain, []pop3test.Fault{notImpl}, ErrMechanism, []error{ErrLoginRefused, ErrAuth}},
		{"scram, no SASL listed", "", MechSCRAMSHA256, []pop3test.Fault{notImpl}, ErrMechanism, []error{ErrLoginRefused, ErrAuth}},
		{"plain, fake server default answer", "", MechPlain, nil, ErrMechanism, []error{ErrLoginRefused, ErrAuth}},
		{"plain, no SASL listed, [AUTH]", "", MechPlain, []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Reply, Reply: "-ERR [AUTH] bad password"}}, ErrAuth, []error{ErrMechanism}},
		{"plain listed, no code", "SASL PLAIN", MechPlain, []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Reply, Reply: "-ERR bad password"}}, ErrLoginRefused, []error{ErrMechanism}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := authServer(t, pop3test.Options{Pass: "pass", Faults: tt.faults}, tt.sasl)
			c := dialAuth(t, srv)
			err := c.Authenticate(context.Background(), Credentials{Mechanism: tt.mech, Username: "user", Password: "pass", Cleartext: true})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v; want %v", err, tt.want)
			}
			for _, n := range tt.not {
				if errors.Is(err, n) {
					t.Errorf("err = %v; is %v too", err, n)
				}
			}
		})
	}
}
