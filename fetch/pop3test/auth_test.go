package pop3test

import (
	"bufio"
	"encoding/base64"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAuthServer: the server side of AUTH and APOP, on the raw wire.
func TestAuthServer(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	srv := NewServer(t, Options{APOP: true, XOAUTH2TwoLine: true, ValidToken: func(tok string) bool { return tok == "good" },
		Capa: []string{"USER", "SASL PLAIN XOAUTH2 OAUTHBEARER"}})
	for _, tt := range []struct {
		name   string
		dialog []string // client line, then the expected start of the server's reply, in turns
		login  string
	}{
		{"plain, initial response", []string{"AUTH PLAIN " + b64("\x00user\x00pass"), "+OK"}, "PLAIN"},
		{"plain, two lines", []string{"AUTH PLAIN", "+ ", b64("\x00user\x00pass"), "+OK"}, "PLAIN"},
		{"plain, wrong password", []string{"AUTH PLAIN " + b64("\x00user\x00nope"), "-ERR [AUTH]"}, ""},
		{"cancelled", []string{"AUTH PLAIN", "+ ", "*", "-ERR"}, ""},
		{"not offered", []string{"AUTH SCRAM-SHA-256 " + b64("n,,n=user,r=abc"), "-ERR"}, ""},
		{"xoauth2 refuses an initial response", []string{"AUTH XOAUTH2 " + b64("user=user\x01auth=Bearer good\x01\x01"), "-ERR"}, ""},
		{"xoauth2 in two lines", []string{"AUTH XOAUTH2", "+ ", b64("user=user\x01auth=Bearer good\x01\x01"), "+OK"}, "XOAUTH2"},
		{"oauthbearer, bad token", []string{"AUTH OAUTHBEARER " + b64("n,a=user,\x01auth=Bearer bad\x01\x01"), "+ " + b64(defaultOAuthError), b64("\x01"), "-ERR [AUTH]"}, ""},
		{"apop", []string{"APOP user 2ffd1c8bd2bd3e1bd9e4a9a4d3a0c2e9", "-ERR [AUTH]"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(srv.Logins())
			c, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			greeting, _ := r.ReadString('\n')
			if !strings.Contains(greeting, apopTimestamp) {
				t.Fatalf("greeting %q has no APOP timestamp", greeting)
			}
			for i := 0; i < len(tt.dialog); i += 2 {
				c.Write([]byte(tt.dialog[i] + "\r\n"))
				got, _ := r.ReadString('\n')
				if !strings.HasPrefix(got, tt.dialog[i+1]) {
					t.Fatalf("after %q: server said %q; want %q\n%s", tt.dialog[i], got, tt.dialog[i+1], srv.Transcript())
				}
			}
			logins := srv.Logins()[before:]
			if want := []string{tt.login}; tt.login == "" && len(logins) != 0 || tt.login != "" && !slices.Equal(logins, want) {
				t.Errorf("logins %q; want %q", logins, tt.login)
			}
		})
	}
}
