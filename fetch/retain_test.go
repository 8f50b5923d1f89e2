package fetch

import (
	"testing"

	"github.com/popfetch/popfetch/rcfile"
)

// TestRetain: a reload that removes or renames accounts drops what the
// Poller kept for them, and nothing of the accounts that stay.
func TestRetain(t *testing.T) {
	t.Parallel()
	acct := func(name string) *rcfile.Account {
		return &rcfile.Account{Name: name, Server: "pop.example.com", Port: 995, Username: "u", TLS: "implicit"}
	}
	var p Poller
	for _, name := range []string{"stays", "removed", "renamed"} {
		a := acct(name)
		if p.oauth.m == nil {
			p.oauth.m = map[string]oauthSource{}
			p.dirs.m = map[string]*dirEntry{}
			p.scramRefused = map[string]bool{}
		}
		p.oauth.m[name] = oauthSource{acct: a}
		p.dirs.m[name] = &dirEntry{}
		p.scramRefused[scramKey(a)] = true
	}
	p.Retain([]*rcfile.Account{acct("stays"), acct("renamed-now"), acct("new")})
	for _, name := range []string{"removed", "renamed", "renamed-now", "new"} {
		if _, ok := p.oauth.m[name]; ok {
			t.Errorf("token source of %q kept", name)
		}
		if _, ok := p.dirs.m[name]; ok {
			t.Errorf("directory of %q kept", name)
		}
		if p.noSCRAM(acct(name)) {
			t.Errorf("SCRAM refusal of %q kept", name)
		}
	}
	if _, ok := p.oauth.m["stays"]; !ok {
		t.Error("token source of an account that stays dropped")
	}
	if _, ok := p.dirs.m["stays"]; !ok {
		t.Error("directory of an account that stays dropped")
	}
	if !p.noSCRAM(acct("stays")) {
		t.Error("SCRAM refusal of an account that stays dropped")
	}
}
