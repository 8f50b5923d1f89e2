package pop3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestServerEchoOfCredentialRedacted: a server that quotes the offending
// command line in its -ERR (common: "-ERR unknown command: ...") must not
// make the error, and so the log, the journal and `popfetch status`,
// carry the base64 of the SASL response, the PASS argument, the APOP
// digest or the password, whole or cut short.
func TestServerEchoOfCredentialRedacted(t *testing.T) {
	const pass = "Sup3rSecretPw"
	b64 := base64.StdEncoding.EncodeToString([]byte("\x00user\x00" + pass))
	sum := md5.Sum([]byte("<1896.697170952@pop3test>" + pass))
	digest := hex.EncodeToString(sum[:])
	for _, tt := range []struct {
		name  string
		sasl  string
		opts  pop3test.Options
		mech  Mechanism
		fault pop3test.Fault
		leak  []string
	}{
		{"AUTH PLAIN echoed", "SASL PLAIN", pop3test.Options{}, MechPlain,
			pop3test.Fault{Cmd: "AUTH", Action: pop3test.Reply, Reply: "-ERR [AUTH] bad command AUTH PLAIN " + b64},
			[]string{b64}},
		{"AUTH PLAIN echoed cut short", "SASL PLAIN", pop3test.Options{}, MechPlain,
			pop3test.Fault{Cmd: "AUTH", Action: pop3test.Reply, Reply: "-ERR [AUTH] bad command AUTH PLAIN " + b64[:14] + "..."},
			[]string{b64[:10]}},
		{"PASS echoed", "", pop3test.Options{}, MechUser,
			pop3test.Fault{Cmd: "PASS", Action: pop3test.Reply, Reply: "-ERR [AUTH] PASS " + pass + " rejected"},
			[]string{pass}},
		{"APOP echoed", "", pop3test.Options{APOP: true}, MechAPOP,
			pop3test.Fault{Cmd: "APOP", Action: pop3test.Reply, Reply: "-ERR [AUTH] APOP user " + digest + " rejected"},
			[]string{digest}},
		{"password in a status line that is neither", "SASL PLAIN", pop3test.Options{}, MechPlain,
			pop3test.Fault{Cmd: "AUTH", Action: pop3test.Reply, Reply: "?? " + pass},
			[]string{pass}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Pass = pass
			tt.opts.Faults = []pop3test.Fault{tt.fault}
			srv := authServer(t, tt.opts, tt.sasl)
			c := dialAuth(t, srv)
			err := c.Authenticate(context.Background(), Credentials{Mechanism: tt.mech, Username: "user", Password: pass})
			if err == nil {
				t.Fatal("Authenticate succeeded")
			}
			for _, s := range append(tt.leak, pass) {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error quotes a secret the server echoed (%q): %v", s, err)
				}
			}
			if !strings.Contains(err.Error(), "***") {
				t.Errorf("error does not show where the server's text was masked: %v", err)
			}
		})
	}
}

// TestServerEchoOfTokenRedacted: XOAUTH2's response goes on a line of its
// own; a server that quotes it in its -ERR, or puts the token in the JSON
// error challenge, must not make the error carry it.
func TestServerEchoOfTokenRedacted(t *testing.T) {
	const tok = "ya29.SECRET-access-token-value"
	for _, tt := range []struct {
		name string
		fn   func(c *pop3test.Conn)
	}{
		{"response echoed in -ERR", func(c *pop3test.Conn) {
			c.WriteLine("+ ")
			line, _ := c.ReadLine()
			c.WriteLine("-ERR [AUTH] bad response " + line)
		}},
		{"token in the JSON error challenge", func(c *pop3test.Conn) {
			c.WriteLine("+ ")
			c.ReadLine()
			c.WriteLine("+ " + base64.StdEncoding.EncodeToString([]byte(`{"status":"invalid_token `+tok+`","scope":"`+tok[:12]+`"}`)))
			c.ReadLine()
			c.WriteLine("-ERR [AUTH] no")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := authServer(t, pop3test.Options{Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: tt.fn}}}, "SASL XOAUTH2")
			c := dialAuth(t, srv)
			err := c.Authenticate(context.Background(), Credentials{Mechanism: MechXOAUTH2, Username: "user",
				Token: func(context.Context, bool) (string, error) { return tok, nil }})
			if err == nil {
				t.Fatal("Authenticate succeeded")
			}
			ir := base64.StdEncoding.EncodeToString([]byte("user=user\x01auth=Bearer " + tok + "\x01\x01"))
			for _, s := range []string{tok, tok[:12], ir, ir[:20]} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error quotes a secret the server echoed (%q): %v", s, err)
				}
			}
		})
	}
}
