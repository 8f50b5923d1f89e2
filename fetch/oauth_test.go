package fetch

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/oauth"
	"github.com/popfetch/popfetch/fetch/oauthtest"
	"github.com/popfetch/popfetch/rcfile"
)

// TestOAuth2TokenHold: a revoked grant is ErrAuth (the daemon's
// authentication hold) saying what to run; an unreachable provider is not.
func TestOAuth2TokenHold(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.AutoApprove = true
	a := &rcfile.Account{Name: "work", StateDir: t.TempDir(), OAuth2: idp.Registration(rcfile.FlowDevice)}
	oauthLogin(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tf, err := OAuth2Token(a, nil)
	if err != nil || tf == nil {
		t.Fatalf("OAuth2Token = %v, %v", tf, err)
	}
	tok, err := tf(ctx, false)
	if _, ok := idp.Active(tok); err != nil || !ok {
		t.Fatalf("token = %v, active %v", err, ok)
	}

	idp.SetDown(true)
	_, err = tf(ctx, true)
	if err == nil || errors.Is(err, ErrAuth) {
		t.Errorf("provider down: %v; want a temporary error, not ErrAuth", err)
	}
	idp.SetDown(false)
	idp.RevokeAll()
	_, err = tf(ctx, true)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("revoked: %v; want ErrAuth", err)
	}
	if !regexp.MustCompile("run `popfetch login work`").MatchString(err.Error()) {
		t.Errorf("hold message does not say what to run: %v", err)
	}
	if s := Summarize(Result{Account: "work", Err: err}); !s.AuthFailed || !strings.Contains(s.Err, "popfetch login work") {
		t.Errorf("Summarize = %+v; want AuthFailed and the command", s)
	}

	if tf, err := OAuth2Token(&rcfile.Account{Name: "pw"}, nil); tf != nil || err != nil {
		t.Errorf("OAuth2Token(password account) = %v, %v; want nil, nil", tf != nil, err)
	}
}

// oauthLogin signs a in at its provider, as `popfetch login` does, and
// returns the token source it used.
func oauthLogin(t *testing.T, a *rcfile.Account) *oauth.Source {
	t.Helper()
	src, err := oauth.New(a, oauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := src.Login(ctx, oauth.LoginIO{Out: io.Discard}); err != nil {
		t.Fatal(err)
	}
	return src
}
