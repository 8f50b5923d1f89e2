package rcfile

import (
	"slices"
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

// TestCheckDNAcceptedParses: a base_dn that checkDN accepts reaches
// deliver/ldapdir, which runs ldap.ParseDN on it at every load and fails
// the load as a configuration error: the mail then waits on the server
// at every poll, and the mistake is reported at run time instead of at
// file:line:col when the rc file is loaded (or reloaded, keeping the old
// settings).
func TestCheckDNAcceptedParses(t *testing.T) {
	for _, s := range []string{"DC=example,DC=com", "dc=x,", "dc=example,,dc=com", `DC=example,DC=com\`, "ou=#zz,dc=x", "dc=x+"} {
		if checkDN(s) != "" {
			continue
		}
		if _, err := ldap.ParseDN(s); err != nil {
			t.Errorf("checkDN accepts base_dn %q; ldap.ParseDN (run by every load): %v", s, err)
		}
	}
}

// validDNs are DNs checkDN must accept: RFC 4514 §4's examples, spaces
// around types and values, escapes, multi-valued RDNs, the #hex form.
var validDNs = []string{
	"DC=example,DC=com",
	"UID=jsmith,DC=example,DC=net",
	"OU=Sales+CN=J.  Smith,DC=example,DC=net",
	`CN=James \"Jim\" Smith\, III,DC=example,DC=net`,
	`CN=Before\0dAfter,DC=example,DC=net`,
	"1.3.6.1.4.1.1466.0=#04024869",
	"CN=Lu\\C4\\8Di\\C4\\87",
	"ou=people, dc=example, dc=org",
	` cn = a\  , dc=x`,
	`cn=\#hash,dc=x`,
	"cn=,dc=x",
	"cn=a=b,dc=x",
	"CN=Jörg Müller,OU=Staff,DC=example,DC=com",
}

var invalidDNs = []string{
	"dc=x,", ",dc=x", "dc=example,,dc=com", `DC=example,DC=com\`, "ou=#zz,dc=x", "ou=#0402486,dc=x", "ou=#040348690000,dc=x",
	"ou=#02012a,dc=x", "dc=x+", "+dc=x", "dc=x;dc=y", "cn=a<b", `cn=a"b`, `cn=\zz`, `cn=\c4`, "example.com", "=x",
	"cn", "c n=x", `cn=\c4\28`, "cn= #04024869",
}

func TestCheckDN(t *testing.T) {
	for _, s := range validDNs {
		if why := checkDN(s); why != "" {
			t.Errorf("checkDN(%q) = %q; want a DN", s, why)
		}
	}
	for _, s := range invalidDNs {
		if checkDN(s) == "" {
			t.Errorf("checkDN(%q) accepts it", s)
		}
	}
}

// FuzzCheckDNParses: whatever checkDN accepts, go-ldap's ParseDN (which
// deliver/ldapdir runs at every load) parses too.
func FuzzCheckDNParses(f *testing.F) {
	for _, s := range append(slices.Clone(validDNs), invalidDNs...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkDN(s) == "" {
			if _, err := ldap.ParseDN(s); err != nil {
				t.Errorf("checkDN accepts %q; ldap.ParseDN: %v", s, err)
			}
		}
	})
}
