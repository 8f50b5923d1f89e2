package fetch

import (
	"maps"
	"strings"

	"github.com/popfetch/popfetch/rcfile"
)

// Retain drops what the Poller keeps across polls for accounts that are
// not among accounts: a daemon calls it after a reload. Without it an
// account removed or renamed by a reload would keep, for the daemon's
// lifetime, its OAuth2 token source (its client secret and refresh token
// in memory), its multidrop account's copy of the LDAP directory (every
// user of the domain), and its SCRAM refusal. What is keyed by mailbox
// (careful, noTrust) stays: it is a few bytes, and another account may
// share the mailbox. A poll of a removed account still running during the
// call may store its entries again; the next reload drops them.
func (p *Poller) Retain(accounts []*rcfile.Account) {
	keep := make(map[string]bool, len(accounts))
	for _, a := range accounts {
		keep[a.Name] = true
	}
	p.oauth.retain(keep)
	p.dirs.retain(keep)
	p.mu.Lock()
	maps.DeleteFunc(p.scramRefused, func(k string, _ bool) bool {
		name, _, _ := strings.Cut(k, "\x00")
		return !keep[name]
	})
	p.mu.Unlock()
}

func (c *oauthSources) retain(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maps.DeleteFunc(c.m, func(name string, _ oauthSource) bool { return !keep[name] })
}

func (c *directories) retain(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maps.DeleteFunc(c.m, func(name string, _ *dirEntry) bool { return !keep[name] })
}
