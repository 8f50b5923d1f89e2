package dovecottest

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/oauth"
	"github.com/popfetch/popfetch/fetch/oauthtest"
	"github.com/popfetch/popfetch/rcfile"
)

// oauthbearer is the initial response of SASL OAUTHBEARER (RFC 7628
// §3.1: a GS2 header with the authorization identity, then key=value
// pairs separated by ^A).
func oauthbearer(user, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("n,a=" + user + ",\x01auth=Bearer " + token + "\x01\x01"))
}

// xoauth2 is the initial response of SASL XOAUTH2 (Google's and
// Microsoft's format: user=USER^Aauth=Bearer TOKEN^A^A).
func xoauth2(user, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
}

// TestOAuth2Passdb: dovecot accepts over XOAUTH2 a token that package
// fetch/oauth got from the fake provider, refuses it once expired, and
// accepts the refreshed one: the token lifecycle against a real server,
// with a hand-written AUTH exchange.
func TestOAuth2Passdb(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.AutoApprove = true
	idp.User = "alice"
	s := Start(t, Options{OAuth2IntrospectionURL: idp.IntrospectURL()})
	mb := s.AddUser(t, "alice", "not-the-token")
	mb.Put(t, []byte("Subject: hi\r\n\r\nbody\r\n"))

	a := &rcfile.Account{Name: "alice", StateDir: t.TempDir(), OAuth2: idp.Registration(rcfile.FlowDevice)}
	src, err := oauth.New(a, oauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := src.Login(ctx, oauth.LoginIO{Out: io.Discard}); err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(ctx, false)
	if err != nil {
		t.Fatal(err)
	}

	mech, resp := "XOAUTH2", xoauth2
	auth := func(tok string) string {
		c := dial(t, s.addr(s.PlainPort))
		if g := c.line(); !strings.HasPrefix(g, "+OK") {
			t.Fatalf("greeting %q", g)
		}
		send := func(l string) { fmt.Fprintf(c.conn, "%s\r\n", l) }
		send("AUTH " + mech + " " + resp("alice", tok))
		reply := c.line()
		if strings.HasPrefix(reply, "+ ") {
			// The error challenge (base64 JSON): answer it with an
			// empty response to get the final -ERR.
			send("")
			reply = c.line()
		}
		if strings.HasPrefix(reply, "+OK") {
			c.cmd("+OK 1 ", "STAT")
			c.cmd("+OK", "QUIT")
		}
		return reply
	}
	if r := auth(tok); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("AUTH XOAUTH2 with a live token = %q", r)
	}
	if idp.Count("introspect") == 0 {
		t.Fatal("dovecot never asked the provider")
	}
	idp.ExpireAccess()
	if r := auth(tok); strings.HasPrefix(r, "+OK") {
		t.Fatalf("AUTH XOAUTH2 with an expired token = %q; want a refusal", r)
	}
	fresh, err := src.Token(ctx, true)
	if err != nil || fresh == tok {
		t.Fatalf("refresh after the refusal: %v (same token: %v)", err, fresh == tok)
	}
	if r := auth(fresh); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("AUTH XOAUTH2 with the refreshed token = %q", r)
	}
	if r := auth("at-" + fmt.Sprint(time.Now().UnixNano())); strings.HasPrefix(r, "+OK") {
		t.Fatalf("AUTH XOAUTH2 with a made-up token = %q", r)
	}
	mech, resp = "OAUTHBEARER", oauthbearer
	if r := auth(fresh); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("AUTH OAUTHBEARER with a live token = %q", r)
	}
	idp.RevokeAll()
	if r := auth(fresh); strings.HasPrefix(r, "+OK") {
		t.Fatalf("AUTH OAUTHBEARER with a revoked token = %q; want a refusal", r)
	}
}
