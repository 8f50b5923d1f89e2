package rcfile

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// FuzzCheckFilterCompiles: whatever checkFilter accepts, go-ldap's
// CompileFilter (which deliver/ldapdir runs at every load, failing it as
// a configuration error) compiles too: an accepted filter must never
// turn into a directory that fails at every refresh.
func FuzzCheckFilterCompiles(f *testing.F) {
	for _, s := range validFilters {
		f.Add(s)
	}
	for _, tt := range invalidFilters {
		f.Add(tt.filter)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkFilter(s) == nil {
			if _, err := ldap.CompileFilter(s); err != nil {
				t.Errorf("checkFilter accepts %q; CompileFilter: %v", s, err)
			}
		}
	})
}

// TestAuditDNAcceptedParses: a base_dn that checkDN accepts reaches
// deliver/ldapdir, which runs ldap.ParseDN on it at every load and fails
// the load as a configuration error: the mail then waits on the server
// at every poll, and the mistake is reported at run time instead of at
// file:line:col when the rc file is loaded (or reloaded, keeping the old
// settings).
func TestAuditDNAcceptedParses(t *testing.T) {
	for _, s := range []string{"DC=example,DC=com", "dc=x,", "dc=example,,dc=com", `DC=example,DC=com\`, "ou=#zz,dc=x", "dc=x+"} {
		if checkDN(s) != "" {
			continue
		}
		if _, err := ldap.ParseDN(s); err != nil {
			t.Errorf("checkDN accepts base_dn %q; ldap.ParseDN (run by every load): %v", s, err)
		}
	}
}
