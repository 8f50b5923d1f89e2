package fetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/oauthtest"
	"github.com/popfetch/popfetch/rcfile"
)

// TestUnsavedTokenAcrossPolls: a rotated refresh token that could not be
// saved lives only in the memory of the account's oauth.Source; the next
// poll of the same Poller must use it, not the rotated-away one on disk,
// which a provider with reuse detection answers by revoking the grant.
// This drives the token source exactly as two consecutive polls do.
func TestUnsavedTokenAcrossPolls(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.AutoApprove = true
	idp.Rotate = true
	a := &rcfile.Account{Name: "work", StateDir: t.TempDir(), OAuth2: idp.Registration(rcfile.FlowDevice)}
	src := oauthLogin(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The disk "fills up": writeTokens' temporary file cannot be made.
	block := fmt.Sprintf("%s.tmp%d", src.Path(), os.Getpid())
	if err := os.MkdirAll(filepath.Join(block, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := &Poller{}
	idp.ExpireAccess()
	poll1, err := p.oauth.token(a, nil) // poll 1 (session.go)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poll1(ctx, true); err != nil {
		t.Fatalf("poll 1: %v", err)
	}
	os.RemoveAll(block) // the disk is fine again
	idp.ExpireAccess()
	// Poll 2, with the account as a reloaded rc file gives it: equal
	// settings in new structs, the oauth2 block moved.
	b := *a
	reg := *a.OAuth2
	reg.Range.Start.Line += 3
	b.OAuth2 = &reg
	poll2, err := p.oauth.token(&b, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = poll2(ctx, true)
	if n := idp.Count("reuse"); n != 0 || err != nil {
		t.Errorf("next poll after a failed save: err=%v; rotated-away refresh token presented %d times (grant revoked by reuse detection)", err, n)
	}
}

// TestOAuthSourcesRebuilt: a change to the account's oauth2 settings
// gives a new token source (the old one would keep the old endpoints or
// client), equal settings the same one.
func TestOAuthSourcesRebuilt(t *testing.T) {
	base := func() *rcfile.Account {
		return &rcfile.Account{Name: "work", StateDir: "/var/lib/popfetch", OAuth2: &rcfile.OAuth2{
			Provider: rcfile.ProviderGeneric, ClientID: "cid", Flow: rcfile.FlowDevice, Scopes: []string{"mail"},
			TokenURL: "https://idp.example/token", DeviceURL: "https://idp.example/device"}}
	}
	for _, tt := range []struct {
		name   string
		change func(a *rcfile.Account)
		same   bool
	}{
		{"unchanged", func(a *rcfile.Account) {}, true},
		{"block moved", func(a *rcfile.Account) { a.OAuth2.Range.Start.Line = 9 }, true},
		{"client_id", func(a *rcfile.Account) { a.OAuth2.ClientID = "other" }, false},
		{"client_secret", func(a *rcfile.Account) { a.OAuth2.ClientSecret = "s" }, false},
		{"scopes", func(a *rcfile.Account) { a.OAuth2.Scopes = []string{"mail", "offline"} }, false},
		{"token_url", func(a *rcfile.Account) { a.OAuth2.TokenURL = "https://idp2.example/token" }, false},
		{"state_dir", func(a *rcfile.Account) { a.StateDir = "/var/lib/other" }, false},
		{"token command", func(a *rcfile.Account) { a.OAuth2 = nil; a.OAuth2TokenCommand = []string{"helper"} }, false},
		{"other account", func(a *rcfile.Account) { a.Name = "home" }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c oauthSources
			a := base()
			if _, err := c.token(a, nil); err != nil {
				t.Fatal(err)
			}
			first := c.m[a.Name].src
			b := base()
			tt.change(b)
			if _, err := c.token(b, nil); err != nil {
				t.Fatal(err)
			}
			second := c.m[b.Name].src
			if first == nil || second == nil {
				t.Fatal("no token source cached")
			}
			if same := first == second; same != tt.same {
				t.Errorf("same token source = %v, want %v", same, tt.same)
			}
		})
	}
}

// TestOAuthSourcesPassword: an account that signs in with a password has
// no token source, so nothing of it is kept between polls (a copy of its
// settings per account was a fifth of an idle 5,000-account daemon's
// heap); one that switches from oauth2 to a password drops its source,
// and a switch back builds a new one, as any change of settings does.
func TestOAuthSourcesPassword(t *testing.T) {
	oauth2 := func() *rcfile.Account {
		return &rcfile.Account{Name: "work", StateDir: "/var/lib/popfetch", OAuth2: &rcfile.OAuth2{
			Provider: rcfile.ProviderGeneric, ClientID: "cid", Flow: rcfile.FlowDevice,
			TokenURL: "https://idp.example/token", DeviceURL: "https://idp.example/device"}}
	}
	password := &rcfile.Account{Name: "work", StateDir: "/var/lib/popfetch", Password: rcfile.Password{Inline: "pw"}}
	var c oauthSources
	for range 2 {
		if tf, err := c.token(password, nil); tf != nil || err != nil {
			t.Fatalf("password account: token func %v, err %v; want none", tf != nil, err)
		}
		if len(c.m) != 0 {
			t.Fatalf("password account: %d cache entries kept; want none", len(c.m))
		}
	}
	if _, err := c.token(oauth2(), nil); err != nil {
		t.Fatal(err)
	}
	first := c.m["work"].src
	if _, err := c.token(password, nil); err != nil {
		t.Fatal(err)
	}
	if len(c.m) != 0 {
		t.Fatalf("after the switch to a password: %d cache entries kept; want none", len(c.m))
	}
	if _, err := c.token(oauth2(), nil); err != nil {
		t.Fatal(err)
	}
	if second := c.m["work"].src; first == nil || second == nil || first == second {
		t.Errorf("oauth2, password, oauth2 again: sources %p then %p; want two different ones", first, second)
	}
}
