package rcfile

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// TestSameSignIn: any change to the oauth2 block, the token command or the
// state directory is a new sign-in; where the block is declared is not.
func TestSameSignIn(t *testing.T) {
	base := func() *Account {
		return &Account{
			Name:     "a",
			StateDir: "/var/lib/popfetch",
			OAuth2: &OAuth2{Provider: "microsoft", ClientID: "cid", ClientSecret: "s", Tenant: "t",
				Scopes: []string{"x", "y"}, Flow: "device", Range: hcl.Range{Filename: "rc", Start: hcl.Pos{Line: 3}}},
		}
	}
	for _, tt := range []struct {
		name string
		edit func(a *Account)
		same bool
	}{
		{"unchanged", func(*Account) {}, true},
		{"block moved", func(a *Account) { a.OAuth2.Range.Start.Line = 9 }, true},
		{"other setting", func(a *Account) { a.Server = "elsewhere" }, true},
		{"client_id", func(a *Account) { a.OAuth2.ClientID = "other" }, false},
		{"client_secret", func(a *Account) { a.OAuth2.ClientSecret = "t" }, false},
		{"scopes", func(a *Account) { a.OAuth2.Scopes = []string{"x"} }, false},
		{"token_url", func(a *Account) { a.OAuth2.TokenURL = "https://idp.example/token" }, false},
		{"state_dir", func(a *Account) { a.StateDir = "/srv/popfetch" }, false},
		{"no oauth2", func(a *Account) { a.OAuth2 = nil }, false},
		{"token command", func(a *Account) { a.OAuth2, a.OAuth2TokenCommand = nil, []string{"/bin/tok"} }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x, y := base(), base()
			tt.edit(y)
			if got := SameSignIn(x, y); got != tt.same {
				t.Errorf("SameSignIn = %v; want %v", got, tt.same)
			}
		})
	}
}
