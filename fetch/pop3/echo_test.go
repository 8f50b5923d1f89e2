package pop3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
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

// TestEchoAfterLogin: replies after login that are +OK yet malformed
// (STAT, UIDL and LIST lines) are quoted in errors too, and so must be
// masked like -ERR text: a server that echoes the credential there must
// not put it in the log, the journal and `popfetch status`.
func TestEchoAfterLogin(t *testing.T) {
	const pass = "Sup3rSecretPw"
	for _, tt := range []struct {
		name   string
		faults []pop3test.Fault
	}{
		{"STAT +OK echo", []pop3test.Fault{{Cmd: "STAT", Action: pop3test.Reply, Reply: "+OK hello PASS " + pass}}},
		{"STAT -ERR echo", []pop3test.Fault{{Cmd: "STAT", Action: pop3test.Reply, Reply: "-ERR hello PASS " + pass}}},
		{"UIDL line echo", []pop3test.Fault{{Cmd: "UIDL", Action: pop3test.Reply, Reply: "+OK\r\n1 PASS:" + pass + "\x01\r\n."}}},
		{"UIDL number echo", []pop3test.Fault{{Cmd: "UIDL", Action: pop3test.Reply, Reply: "+OK\r\n" + pass + " uid1\r\n."}}},
		{"LIST size echo", []pop3test.Fault{{Cmd: "LIST", Action: pop3test.Reply, Reply: "+OK\r\n1 " + pass + "\r\n."}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := authServer(t, pop3test.Options{Pass: pass, Faults: tt.faults}, "")
			c := dialAuth(t, srv)
			if err := c.Authenticate(context.Background(), Credentials{Mechanism: MechUser, Username: "user", Password: pass}); err != nil {
				t.Fatal(err)
			}
			_, _, err := c.Listing()
			if err == nil {
				t.Fatal("Listing succeeded")
			}
			if strings.Contains(err.Error(), pass) || !strings.Contains(err.Error(), "***") {
				t.Errorf("error does not mask the password the server echoed: %v", err)
			}
		})
	}
}

// TestSCRAMErrorEchoRedacted: the e= text of a SCRAM server-final-message
// (RFC 5802 §7) is server text too.
func TestSCRAMErrorEchoRedacted(t *testing.T) {
	const pass = "Sup3rSecretPw"
	var srv *pop3test.Server
	fn := func(c *pop3test.Conn) {
		// The AUTH line carries client-first "n,,n=user,r=<nonce>".
		cmds := srv.Commands()
		line := cmds[len(cmds)-1]
		f := strings.Fields(line)
		cf, _ := base64.StdEncoding.DecodeString(f[len(f)-1])
		_, nonce, _ := strings.Cut(string(cf), "r=")
		c.WriteLine("+ " + base64.StdEncoding.EncodeToString([]byte("r="+nonce+"srv,s="+base64.StdEncoding.EncodeToString([]byte("salt"))+",i=4096")))
		c.ReadLine() // client-final
		c.WriteLine("+ " + base64.StdEncoding.EncodeToString([]byte("e=invalid-proof for password "+pass)))
		c.ReadLine() // "*"
		c.WriteLine("-ERR [AUTH] cancelled")
	}
	srv = authServer(t, pop3test.Options{Pass: pass, Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: fn}}}, "SASL SCRAM-SHA-256")
	c := dialAuth(t, srv)
	err := c.Authenticate(context.Background(), Credentials{Mechanism: MechSCRAMSHA256, Username: "user", Password: pass})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v; want ErrAuth", err)
	}
	if strings.Contains(err.Error(), pass) || !strings.Contains(err.Error(), "***") {
		t.Errorf("error does not mask the password in e=: %v", err)
	}
}
