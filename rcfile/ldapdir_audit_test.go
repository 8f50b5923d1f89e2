package rcfile_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/ldapdir"
	"github.com/popfetch/popfetch/rcfile"
)

// TestAuditAcceptedLDAPLoads: an ldap block the rc file accepts without a
// diagnostic must not be refused by deliver/ldapdir as ErrConfig at
// every load (the account's mail would then wait on the server for good,
// and the mistake, if it is one, would not get its file:line:col). The
// load goes to a closed port: any error but ErrConfig is what is wanted.
func TestAuditAcceptedLDAPLoads(t *testing.T) {
	t.Setenv("LDAPPW", "secret")
	for _, tc := range []struct{ name, line string }{
		{"bind_dn as a user principal name (documented)", `bind_dn = "popfetch@example.com"`},
		{"bind_dn as a down-level logon name (documented)", `bind_dn = "EXAMPLE\\popfetch"`},
		{"base_dn with a trailing comma", `base_dn = "DC=example,DC=com,"`},
		{"base_dn with an empty RDN", `base_dn = "DC=example,,DC=com"`},
		{"address attribute of 200 characters", `address_attributes = ["a` + strings.Repeat("b", 199) + `"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := []string{`url = "ldaps://127.0.0.1:1"`, `base_dn = "DC=example,DC=com"`}
			if strings.HasPrefix(tc.line, "bind_dn") {
				lines = append(lines, tc.line, `password_env = "LDAPPW"`)
			} else if strings.HasPrefix(tc.line, "base_dn") {
				lines[1] = tc.line
			} else {
				lines = append(lines, tc.line)
			}
			src := fmt.Sprintf(`account "d" {
  server       = "pop.example.com"
  username     = "catchall@example.com"
  password_env = "LDAPPW"
  deliver { maildir = "/var/vmail/{user}" }
  multidrop {
    local_domains = ["example.com"]
    ldap {
      %s
    }
  }
}
`, strings.Join(lines, "\n      "))
			cfg, diags := rcfile.Parse([]byte(src), "/etc/popfetch/test.hcl")
			if diags.HasErrors() {
				t.Skipf("refused by the rc file, fine: %v", diags)
			}
			l := cfg.Accounts[0].Multidrop.LDAP
			c := ldapdir.Config{URL: l.URL, BindDN: l.BindDN, BaseDN: l.BaseDN, Filter: l.Filter, UserAttribute: l.UserAttribute,
				AddressAttributes: l.AddressAttributes, Groups: l.Groups, GroupFilter: l.GroupFilter,
				MemberAttribute: l.MemberAttribute, Timeout: time.Second, MaxEntries: l.MaxEntries}
			if l.BindDN != "" {
				c.Password = "secret"
			}
			_, err := ldapdir.Load(context.Background(), c)
			if errors.Is(err, ldapdir.ErrConfig) {
				t.Errorf("the rc file accepts %s; every load fails with %v", tc.line, err)
			}
		})
	}
}
