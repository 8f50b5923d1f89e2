package interop

import (
	"context"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
)

// TestQuitWithLastRound drives GNU mailutils pop3d (plain, STLS, POP3S)
// the way popfetch ends a session with PIPELINING: RETRs with QUIT in the
// same write (keep mode), then DELEs with QUIT in the same write (delete
// mode). Every reply comes back in order; the kept messages stay; and
// once QUIT's reply is read the server's UPDATE is over: the deleted
// messages are gone from the store at that moment, not only once the
// server process has exited.
func TestQuitWithLastRound(t *testing.T) {
	t.Parallel()
	for _, mode := range []TLSMode{Plain, STLS, Implicit} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			s := StartMailutils(t, MailutilsOptions{TLS: mode})
			s.Put(t, messages(1, 5)...)
			o := pop3.Options{Host: "localhost", Port: s.Port, Timeout: 10 * time.Second,
				TLS: map[TLSMode]pop3.TLSMode{Plain: pop3.TLSNone, STLS: pop3.TLSStartTLS, Implicit: pop3.TLSImplicit}[mode]}
			if s.CAFile != "" {
				pem, err := os.ReadFile(s.CAFile)
				if err != nil {
					t.Fatal(err)
				}
				o.RootCAs = x509.NewCertPool()
				o.RootCAs.AppendCertsFromPEM(pem)
			}
			session := func(dele bool) {
				t.Helper()
				c, err := pop3.Dial(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if err := c.Login(s.User, s.Pass); err != nil {
					t.Fatal(err)
				}
				_, list, err := c.Listing()
				if err != nil || len(list) != 5 {
					t.Fatalf("Listing = %d messages, %v; want 5", len(list), err)
				}
				if !c.Pipelining() {
					t.Fatalf("mailutils pop3d does not announce PIPELINING")
				}
				for _, e := range list {
					send := c.SendRetr
					if dele {
						send = c.SendDele
					}
					if err := send(e.Num); err != nil {
						t.Fatal(err)
					}
				}
				if err := c.SendQuit(); err != nil {
					t.Fatal(err)
				}
				for _, e := range list {
					if dele {
						err = c.ReadDele()
					} else {
						_, err = c.ReadRetr(e)
					}
					if err != nil {
						t.Fatalf("reply to message %d: %v", e.Num, err)
					}
				}
				if err := c.ReadQuit(); err != nil {
					t.Fatalf("ReadQuit: %v", err)
				}
				if err := c.Quit(); err != nil {
					t.Fatalf("Quit after ReadQuit: %v", err)
				}
			}
			session(false)
			if n := s.box.Count(t); n != 5 {
				t.Fatalf("%d messages after RETRs with QUIT; want 5 kept", n)
			}
			s.settle(t)
			session(true)
			if n := s.box.Count(t); n != 0 {
				t.Fatalf("%d messages when QUIT's reply was read after DELEs; want 0 (UPDATE over)", n)
			}
		})
	}
}
