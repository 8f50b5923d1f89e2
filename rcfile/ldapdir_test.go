package rcfile_test

import (
	"testing"

	"github.com/popfetch/popfetch/deliver/ldapdir"
	"github.com/popfetch/popfetch/rcfile"
)

// TestDefaultLDAPFilterIsLdapdirs: the rc file's default filter is the
// LDAP client's. rcfile writes the string out rather than importing
// deliver/ldapdir, so that the rc file parser (and its fuzzers) does not
// depend on the LDAP client and its ASN.1 library; this external test
// keeps the two equal.
func TestDefaultLDAPFilterIsLdapdirs(t *testing.T) {
	if rcfile.DefaultLDAPFilter != ldapdir.DefaultFilter {
		t.Errorf("rcfile.DefaultLDAPFilter = %q; deliver/ldapdir.DefaultFilter = %q", rcfile.DefaultLDAPFilter, ldapdir.DefaultFilter)
	}
}
