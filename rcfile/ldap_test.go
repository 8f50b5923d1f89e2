package rcfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"

	"github.com/popfetch/popfetch/internal/testutil"
)

// ldapRC is a multidrop account whose ldap block (on line 8, column 5)
// holds lines, one attribute per line.
func ldapRC(lines ...string) string {
	var b strings.Builder
	b.WriteString(`account "d" {
  server       = "pop.example.com"
  username     = "catchall@example.com"
  password_env = "PW"
  deliver { maildir = "/var/vmail/{user}" }
  multidrop {
    local_domains = ["example.com"]
    ldap {
`)
	for _, l := range lines {
		b.WriteString("      " + l + "\n")
	}
	b.WriteString("    }\n  }\n}\n")
	return b.String()
}

// ldapStd are the two required attributes, on lines 9 and 10; a test's
// own lines follow from line 11.
var ldapStd = []string{`url = "ldaps://dc1.example.com"`, `base_dn = "DC=example,DC=com"`}

func withStd(lines ...string) []string { return append(append([]string{}, ldapStd...), lines...) }

// TestLDAPDefaults: an ldap block with only url and base_dn gets every
// default of rcfile.LDAP's comments, and counts as the multidrop
// block's users (no "No local users").
func TestLDAPDefaults(t *testing.T) {
	fixedEnv(t)
	cfg, diags := parseOne(t, ldapRC(ldapStd...))
	if len(diags) != 0 {
		t.Fatalf("diagnostics:\n%s", render(t, diags))
	}
	got := cfg.Accounts[0].Multidrop.LDAP
	want := &LDAP{
		URL:               "ldaps://dc1.example.com",
		BaseDN:            "DC=example,DC=com",
		Filter:            "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
		UserAttribute:     "sAMAccountName",
		AddressAttributes: []string{"mail", "proxyAddresses"},
		GroupFilter:       "(objectClass=group)",
		MemberAttribute:   "member",
		Refresh:           5 * time.Minute,
		Grace:             24 * time.Hour,
		Timeout:           30 * time.Second,
		MaxEntries:        100000,
	}
	if diff := cmp.Diff(want, got, ignorePositions); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if got.Range.Start.Line != 8 || got.Range.Start.Column != 5 {
		t.Errorf("Range = %v; want the ldap block at 8:5", got.Range)
	}
}

// TestLDAPExamples: the two example rc files decode to exactly the
// settings they write, with the defaults for the rest.
func TestLDAPExamples(t *testing.T) {
	fixedEnv(t)
	for _, tt := range []struct {
		file string
		want LDAP
	}{
		{"multidrop-ad.hcl", LDAP{
			URL:               "ldaps://dc1.example.com",
			CAFile:            "/etc/popfetch/example-ca.pem",
			BindDN:            "CN=popfetch,OU=Service Accounts,DC=example,DC=com",
			Password:          Password{File: "/etc/popfetch/ldap.password"},
			BaseDN:            "DC=example,DC=com",
			Filter:            DefaultLDAPFilter,
			UserAttribute:     "sAMAccountName",
			AddressAttributes: []string{"mail", "proxyAddresses"},
			Groups:            true,
			GroupFilter:       "(objectClass=group)",
			MemberAttribute:   "member",
			Refresh:           5 * time.Minute,
			Grace:             24 * time.Hour,
			Timeout:           30 * time.Second,
			MaxEntries:        100000,
		}},
		{"multidrop-openldap.hcl", LDAP{
			URL:               "ldap://ldap.example.org",
			CAFile:            "/etc/popfetch/example-org-ca.pem",
			BindDN:            "cn=popfetch,ou=services,dc=example,dc=org",
			Password:          Password{File: "/etc/popfetch/ldap.password"},
			BaseDN:            "dc=example,dc=org",
			Filter:            "(&(objectClass=inetOrgPerson)(mail=*))",
			UserAttribute:     "uid",
			AddressAttributes: []string{"mail"},
			Groups:            true,
			GroupFilter:       "(objectClass=groupOfNames)",
			MemberAttribute:   "member",
			Refresh:           10 * time.Minute,
			Grace:             2 * time.Hour,
			Timeout:           20 * time.Second,
			MaxEntries:        20000,
		}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(rcDir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			cfg, diags := parseAs(src, tt.file, testEUID)
			if diags.HasErrors() {
				t.Fatal(string(render(t, diags)))
			}
			got := cfg.Accounts[0].Multidrop.LDAP
			if got == nil {
				t.Fatal("no LDAP")
			}
			if diff := cmp.Diff(&tt.want, got, ignorePositions); diff != "" {
				t.Errorf("LDAP (-want +got):\n%s", diff)
			}
			if got.Password.Range.Start.Line == 0 {
				t.Error("Password.Range not set; Load's password_file check would have no position")
			}
		})
	}
}

// TestLDAPValues: accepted settings and how they are normalised.
func TestLDAPValues(t *testing.T) {
	fixedEnv(t)
	t.Setenv("LDAP_HOST", "dc9.example.com")
	for _, tt := range []struct {
		lines []string
		get   func(l *LDAP) any
		want  any
	}{
		{[]string{`url = "LDAPS://DC1.Example.COM:3269/"`, `base_dn = "DC=x"`}, func(l *LDAP) any { return l.URL }, "ldaps://dc1.example.com:3269"},
		{[]string{`url = "ldap://dc1.example.com"`, `base_dn = "DC=x"`}, func(l *LDAP) any { return l.URL }, "ldap://dc1.example.com"},
		{[]string{`url = "ldaps://[::1]:636"`, `base_dn = "DC=x"`}, func(l *LDAP) any { return l.URL }, "ldaps://[::1]:636"},
		{[]string{`url = "ldaps://[::1]"`, `base_dn = "DC=x"`}, func(l *LDAP) any { return l.URL }, "ldaps://[::1]"},
		{[]string{`url = "ldaps://192.0.2.7"`, `base_dn = "DC=x"`}, func(l *LDAP) any { return l.URL }, "ldaps://192.0.2.7"},
		{[]string{`url = "ldaps://bücher.example"`, `base_dn = "DC=x"`}, func(l *LDAP) any { return l.URL }, "ldaps://xn--bcher-kva.example"},
		{[]string{`url = "ldaps://${env("LDAP_HOST")}"`, `base_dn = "DC=x"`}, func(l *LDAP) any { return l.URL }, "ldaps://dc9.example.com"},
		{withStd(`ca_file = "certs/ad.pem"`), func(l *LDAP) any { return l.CAFile }, "/etc/popfetch/certs/ad.pem"},
		{withStd(`ca_file = ""`), func(l *LDAP) any { return l.CAFile }, ""},
		{withStd(`bind_dn = "popfetch@example.com"`, `password_env = "LDAP_PW"`), func(l *LDAP) any { return l.BindDN + " " + l.Password.Env }, "popfetch@example.com LDAP_PW"},
		{withStd(`bind_dn = "EXAMPLE\\popfetch"`, `password_command = ["pass", "ldap"]`), func(l *LDAP) any { return l.BindDN + " " + l.Password.String() }, `EXAMPLE\popfetch password_command = ["pass", "ldap"]`},
		{withStd(`bind_dn = "uid=pf,dc=x"`, `password_file = "~/ldap.pw"`), func(l *LDAP) any { return l.Password.File }, "/home/joe/ldap.pw"},
		{withStd(`filter = "(&(mail=*))"`), func(l *LDAP) any { return l.Filter }, "(&(mail=*))"},
		{withStd(`user_attribute = "uid"`), func(l *LDAP) any { return l.UserAttribute }, "uid"},
		{withStd(`user_attribute = "0.9.2342.19200300.100.1.1"`), func(l *LDAP) any { return l.UserAttribute }, "0.9.2342.19200300.100.1.1"},
		{withStd(`address_attributes = ["mail", "otherMailbox"]`), func(l *LDAP) any { return l.AddressAttributes }, []string{"mail", "otherMailbox"}},
		{withStd(`groups = true`), func(l *LDAP) any { return l.GroupFilter + " " + l.MemberAttribute }, "(objectClass=group) member"},
		{withStd(`groups = true`, `member_attribute = "uniqueMember"`, `group_filter = "(objectClass=groupOfUniqueNames)"`), func(l *LDAP) any { return l.GroupFilter + " " + l.MemberAttribute }, "(objectClass=groupOfUniqueNames) uniqueMember"},
		{withStd(`refresh = "1m"`, `grace = "0"`, `timeout = "1s"`), func(l *LDAP) any { return fmt.Sprint(l.Refresh, l.Grace, l.Timeout) }, "1m0s 0s 1s"},
		{withStd(`refresh = "24h"`, `grace = "720h"`, `timeout = "10m"`), func(l *LDAP) any { return fmt.Sprint(l.Refresh, l.Grace, l.Timeout) }, "24h0m0s 720h0m0s 10m0s"},
		{withStd(`max_entries = 1`), func(l *LDAP) any { return l.MaxEntries }, 1},
		{withStd(`max_entries = 10000000`), func(l *LDAP) any { return l.MaxEntries }, 10000000},
	} {
		cfg, diags := parseOne(t, ldapRC(tt.lines...))
		if diags.HasErrors() {
			t.Errorf("%q: errors:\n%s", tt.lines, render(t, diags))
			continue
		}
		if got := tt.get(cfg.Accounts[0].Multidrop.LDAP); !cmp.Equal(got, tt.want) {
			t.Errorf("%q: got %v; want %v", tt.lines, got, tt.want)
		}
	}
}

// TestLDAPErrors: every rule, with the position it is reported at.
// Lines are numbered from ldapFirstLine; attributes start in column 7,
// the ldap block at 8:5.
func TestLDAPErrors(t *testing.T) {
	fixedEnv(t)
	const f = "/etc/popfetch/test.hcl:"
	for _, tt := range []struct {
		lines []string
		want  string // the first diagnostic, up to where it differs between cases
	}{
		// url
		{[]string{`base_dn = "DC=x"`}, "8:5: error: Missing url; An ldap block needs the directory server's url"},
		{[]string{`url = "http://dc1.example.com"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url must start with ldaps:// or ldap://"},
		{[]string{`url = "dc1.example.com"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url must start with ldaps:// or ldap://"},
		{[]string{`url = "ldaps:dc1.example.com"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url must start with ldaps:// or ldap://"},
		{[]string{`url = "ldapi://%2Frun%2Fslapd%2Fldapi"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url names a unix socket (ldapi)"},
		{[]string{`url = "ldaps://admin:pw@dc1.example.com"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url must not contain a user name or password"},
		{[]string{`url = "ldaps://dc1.example.com/DC=example,DC=com?sAMAccountName?sub"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url has a path or query"},
		{[]string{`url = "ldaps://dc1.example.com?x"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url has a path or query"},
		{[]string{`url = "ldaps://dc1.example.com#x"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url has a path or query"},
		{[]string{`url = "ldaps://"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url names no host"},
		{[]string{`url = "ldaps://:636"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url names no host"},
		{[]string{`url = "ldaps://dc1..example.com"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url names no valid host"},
		{[]string{`url = "ldaps://dc1.example.com:0"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url has a port that is not between 1 and 65535"},
		{[]string{`url = "ldaps://dc1.example.com:70000"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url has a port that is not between 1 and 65535"},
		{[]string{`url = "ldaps://dc1.example.com:ldaps"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url is not a valid URL"},
		{[]string{`url = "ldaps://dc1.example.com\n"`, `base_dn = "DC=x"`}, "9:7: error: Invalid url; url contains a control character"},
		{[]string{`url = ["ldaps://a", "ldaps://b"]`, `base_dn = "DC=x"`}, "9:13: error: Wrong type; url must be a string"},
		{[]string{`url = null`, `base_dn = "DC=x"`}, "9:7: error: Missing url; url must not be null."},
		// base_dn
		{[]string{`url = "ldaps://dc1.example.com"`}, "8:5: error: Missing base_dn; An ldap block needs base_dn"},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = ""`}, "10:7: error: Invalid base_dn; base_dn is empty"},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = null`}, "10:7: error: Missing base_dn; base_dn must not be null."},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = ["DC=x"]`}, "10:17: error: Wrong type; base_dn must be a string"},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = "example.com"`}, `10:7: error: Invalid base_dn; base_dn "example.com" is not a DN`},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = "=example"`}, `10:7: error: Invalid base_dn; base_dn "=example" is not a DN`},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = "DC=example,DC=com,"`}, `10:7: error: Invalid base_dn; base_dn "DC=example,DC=com," is not a DN (RDN 3 is empty`},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = "DC=example,,DC=com"`}, `10:7: error: Invalid base_dn; base_dn "DC=example,,DC=com" is not a DN (RDN 2 is empty`},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = "OU=#zz,DC=com"`}, `10:7: error: Invalid base_dn; base_dn "OU=#zz,DC=com" is not a DN (the value of OU in RDN 1 after # is not the hex`},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = "DC=x+"`}, `10:7: error: Invalid base_dn; base_dn "DC=x+" is not a DN (RDN 1 has an empty part around +)`},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = "DC=x\\"`}, `10:7: error: Invalid base_dn; base_dn "DC=x\\" is not a DN (the value of DC in RDN 1 has a \ that is not followed`},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = "CN=a;b,DC=x"`}, `10:7: error: Invalid base_dn; base_dn "CN=a;b,DC=x" is not a DN (the value of CN in RDN 1 has an unescaped ';'`},
		{withStd(`bind_dn = "CN=pf,,DC=x"`, `password_env = "X"`), `11:7: error: Invalid bind_dn; bind_dn "CN=pf,,DC=x" is not a DN (RDN 2 is empty`},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = "DC=example\r\nDC=com"`}, "10:7: error: Invalid base_dn; base_dn contains a control character"},
		{[]string{`url = "ldaps://dc1.example.com"`, `base_dn = "DC=` + strings.Repeat("x", 1100) + `"`}, "10:7: error: Invalid base_dn; base_dn is 1103 bytes long; at most 1024"},
		// bind_dn and the password
		{withStd(`bind_dn = "CN=popfetch,DC=example,DC=com"`), "11:7: error: No password source; bind_dn is set, so the bind needs a password"},
		{withStd(`bind_dn = ""`, `password_env = "X"`), "11:7: error: Invalid bind_dn; bind_dn is empty"},
		{withStd(`bind_dn = "popfetch"`, `password_env = "X"`), `11:7: error: Invalid bind_dn; bind_dn "popfetch" is not a DN`},
		{withStd(`bind_dn = "example.com=x"`, `password_env = "X"`), `11:7: error: Invalid bind_dn; bind_dn "example.com=x" is not a DN`},
		{withStd(`bind_dn = "CN=x\nDC=y"`, `password_env = "X"`), "11:7: error: Invalid bind_dn; bind_dn contains a control character"},
		{withStd(`password = "x"`), "11:7: error: Password without bind_dn; A bind password needs bind_dn"},
		{withStd(`password_file = "/etc/popfetch/ldap.pw"`), "11:7: error: Password without bind_dn"},
		{withStd(`password_env = "X"`), "11:7: error: Password without bind_dn"},
		{withStd(`bind_dn = null`, `password_env = "X"`), "12:7: error: Password without bind_dn"},
		{withStd(`bind_dn = ["CN=x"]`, `password_env = "X"`), "11:17: error: Wrong type; bind_dn must be a string"},
		{withStd(`password_command = ["pass", "ldap"]`), "11:7: error: Password without bind_dn"},
		{withStd(`bind_dn = "CN=x,DC=y"`, `password_env = "X"`, `password_file = "/x"`), "12:7: error: Two password sources; Both password_file (at /etc/popfetch/test.hcl:13,7-27) and password_env (at /etc/popfetch/test.hcl:12,7-25) are set; keep exactly one."},
		{withStd(`bind_dn = "CN=x,DC=y"`, `password_env = "not a name"`), "12:7: error: Invalid password_env"},
		{withStd(`bind_dn = "CN=x,DC=y"`, `password_command = []`), "12:7: error: Invalid password_command"},
		{withStd(`bind_dn = "CN=x,DC=y"`, `password_command = ["bin/pw"]`), "12:7: error: Invalid password_command; The program \"bin/pw\" must be an absolute path or a bare name"},
		{withStd(`bind_dn = "CN=x,DC=y"`, `password = ""`), "12:7: error: Invalid password; password must not be empty"},
		{withStd(`bind_dn = "CN=x,DC=y"`, `password = "a\nb"`), "12:7: error: Invalid password; password contains a line feed (LF) character"},
		{withStd(`bind_dn = "CN=x,DC=y"`, `password = "`+strings.Repeat("p", 256)+`"`), "12:7: error: Invalid password; password is 256 bytes long; at most 255"},
		{withStd(`bind_dn = "CN=x,DC=y"`, `password_file = ""`), "12:7: error: Invalid path"},
		// filters
		{withStd(`filter = "objectClass=user"`), `11:7: error: Invalid filter; filter is not an LDAP search filter (RFC 4515): at position 1: expected (, found "o"`},
		{withStd(`filter = "(objectClass=user"`), "11:7: error: Invalid filter; filter is not an LDAP search filter (RFC 4515): at position 18: a ) is missing at the end"},
		{withStd(`filter = "(&(a=b)(c=d)"`), "11:7: error: Invalid filter; filter is not an LDAP search filter (RFC 4515): at position 13: a ) is missing at the end"},
		{withStd(`filter = "(a=b)(c=d)"`), `11:7: error: Invalid filter; filter is not an LDAP search filter (RFC 4515): at position 6: "(c=d)" after the end of the filter`},
		{withStd(`filter = ""`), "11:7: error: Invalid filter; filter is not an LDAP search filter (RFC 4515): it is empty"},
		{withStd(`groups = true`, `group_filter = "(objectClass=group"`), "12:7: error: Invalid group_filter; group_filter is not an LDAP search filter (RFC 4515): at position 19: a ) is missing"},
		// group settings need groups
		{withStd(`group_filter = "(objectClass=group)"`), "11:7: error: Option needs groups; group_filter only applies with groups = true"},
		{withStd(`groups = false`, `member_attribute = "member"`), "12:7: error: Option needs groups; member_attribute only applies with groups = true"},
		{withStd(`groups = "yes"`), "11:16: error: Wrong type; groups must be true or false"},
		// attribute names
		{withStd(`user_attribute = "sAMAccount Name"`), `11:7: error: Invalid user_attribute; "sAMAccount Name" is not an LDAP attribute name; user_attribute takes a letter followed by letters, digits and hyphens (such as "mail" or "sAMAccountName"), or an OID.`},
		{withStd(`user_attribute = ""`), `11:7: error: Invalid user_attribute;`},
		{withStd(`user_attribute = "1uid"`), `11:7: error: Invalid user_attribute;`},
		{withStd(`user_attribute = "1.2."`), `11:7: error: Invalid user_attribute;`},
		{withStd(`address_attributes = []`), "11:7: error: Invalid address_attributes; address_attributes must name at least one attribute"},
		{withStd(`address_attributes = ["mail", "MAIL"]`), `11:7: error: Invalid address_attributes; address_attributes lists "MAIL" twice.`},
		{withStd(`address_attributes = ["mail;binary"]`), `11:7: error: Invalid address_attributes; "mail;binary" is not an LDAP attribute name`},
		{withStd(`groups = true`, `member_attribute = "member_of"`), `12:7: error: Invalid member_attribute;`},
		// durations and bounds
		{withStd(`refresh = "59s"`), "11:7: error: Invalid refresh; refresh must be between 1m and 24h, not 59s."},
		{withStd(`refresh = "25h"`), "11:7: error: Invalid refresh; refresh must be between 1m and 24h, not 25h."},
		{withStd(`refresh = "5 minutes"`), `11:7: error: Invalid duration; refresh = "5 minutes" is not a duration`},
		{withStd(`grace = "-1s"`), "11:7: error: Invalid grace; grace must be between 0s and 720h, not -1s."},
		{withStd(`grace = "721h"`), "11:7: error: Invalid grace; grace must be between 0s and 720h, not 721h."},
		{withStd(`grace = "30d"`), `11:7: error: Invalid duration; grace = "30d" is not a duration`},
		{withStd(`timeout = "999ms"`), "11:7: error: Invalid timeout; timeout must be between 1s and 10m, not 999ms."},
		{withStd(`timeout = "11m"`), "11:7: error: Invalid timeout; timeout must be between 1s and 10m, not 11m."},
		{withStd(`max_entries = 0`), "11:7: error: Invalid max_entries; max_entries must be between 1 and 10000000, not 0."},
		{withStd(`max_entries = 10000001`), "11:7: error: Invalid max_entries; max_entries must be between 1 and 10000000, not 10000001."},
		{withStd(`max_entries = -1`), "11:7: error: Invalid max_entries"},
		{withStd(`uri = "ldaps://x"`), "11:7: error: Unsupported argument"},
	} {
		_, diags := parseOne(t, ldapRC(tt.lines...))
		out := string(render(t, diags))
		if !diags.HasErrors() || !strings.HasPrefix(out, f+tt.want) {
			t.Errorf("%q:\n%s\nwant first %s%s", tt.lines, out, f, tt.want)
		}
		if strings.Count(out, ": error: ") != 1 {
			t.Errorf("%q: want exactly one error:\n%s", tt.lines, out)
		}
	}
}

// TestLDAPURLUserinfoNotQuoted: a password pasted into url is not
// repeated by the diagnostic.
func TestLDAPURLUserinfoNotQuoted(t *testing.T) {
	fixedEnv(t)
	for _, u := range []string{"ldaps://admin:" + testSecret + "@dc1.example.com", "ldaps://admin:" + testSecret + "@dc1.example.com:x", "http://admin:" + testSecret + "@x"} {
		_, diags := parseOne(t, ldapRC(`url = "`+u+`"`, `base_dn = "DC=x"`))
		var b bytes.Buffer
		for _, d := range diags {
			fmt.Fprintln(&b, FormatDiagnostic(d))
		}
		if !diags.HasErrors() || leaked(b.String()) != "" {
			t.Errorf("url %s: diagnostics\n%s\nwant an error without the password", u, b.String())
		}
	}
}

// TestLDAPOnce: a second ldap block in one multidrop block is an error
// at the second, as for any block allowed once.
func TestLDAPOnce(t *testing.T) {
	fixedEnv(t)
	src := strings.Replace(ldapRC(ldapStd...), "    }\n  }\n}\n",
		"    }\n    ldap {\n      url = \"ldaps://dc2.example.com\"\n      base_dn = \"DC=y\"\n    }\n  }\n}\n", 1)
	_, diags := parseOne(t, src)
	out := string(render(t, diags))
	if want := "/etc/popfetch/test.hcl:12:5: error: Duplicate ldap block; Only one ldap block is allowed; one was already declared at /etc/popfetch/test.hcl:8,5-9."; !strings.HasPrefix(out, want) || strings.Count(out, "error") != 1 {
		t.Errorf("diagnostics:\n%s\nwant only %s", out, want)
	}
}

// TestLDAPOnlyUsers: an ldap block alone is enough users for a multidrop
// block, and like system_users it makes a deliver target without {user}
// a shared mailbox worth a warning.
func TestLDAPOnlyUsers(t *testing.T) {
	fixedEnv(t)
	src := strings.Replace(ldapRC(ldapStd...), `"/var/vmail/{user}"`, `"/var/vmail/all"`, 1)
	cfg, diags := parseOne(t, src)
	out := string(render(t, diags))
	if cfg == nil || !strings.Contains(out, "warning: All users share one mailbox") {
		t.Errorf("diagnostics:\n%s\nwant only the shared-mailbox warning", out)
	}
}

// TestLDAPSecretsNotShown: the inline bind password appears in no
// Format output, %v, %+v, %#v, slog record, or diagnostic (with the
// source line it is on quoted).
func TestLDAPSecretsNotShown(t *testing.T) {
	fixedEnv(t)
	src := ldapRC(withStd(`bind_dn = "CN=popfetch,DC=example,DC=com"`, `password = "`+testSecret+`"`)...)
	cfg, diags := parseOne(t, src)
	if diags.HasErrors() {
		t.Fatal(string(render(t, diags)))
	}
	l := cfg.Accounts[0].Multidrop.LDAP
	if l.Password.Inline != testSecret {
		t.Fatalf("Password.Inline = %q; want the secret", l.Password.Inline)
	}
	var b bytes.Buffer
	cfg.Format(&b)
	if !strings.Contains(b.String(), "\n      password           = \"********\"\n") {
		t.Errorf("Format does not show the masked bind password:\n%s", b.String())
	}
	fmt.Fprintf(&b, "%v %+v %#v %v %+v %#v %s", l, l, l, *l, *l, *l, l.Password)
	fmt.Fprintf(&b, "%v %+v %#v", cfg.Accounts[0].Multidrop, cfg.Accounts[0].Multidrop, cfg.Accounts[0].Multidrop)
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "ldap", l, "password", l.Password, "multidrop", cfg.Accounts[0].Multidrop)
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "ldap", l, "password", l.Password)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.Write(js)
	if f := leaked(b.String()); f != "" {
		t.Errorf("%q leaked:\n%s", f, b.String())
	}

	// Errors around the password: on its line, in its block, and the
	// password itself invalid.
	for _, lines := range [][]string{
		withStd(`bind_dn = "CN=x,DC=y"`, `password = "`+testSecret+`" filter = "x"`),
		withStd(`bind_dn = "x"`, `password = "`+testSecret+`"`, `grace = "1y"`),
		withStd(`password = "` + testSecret + `"`),
		withStd(`bind_dn = "CN=x,DC=y"`, `password = "`+testSecret+`\r"`),
		withStd(`bind_dn = "CN=x,DC=y"`, `password = ["`+testSecret+`"]`),
		withStd(`bind_dn = "CN=x,DC=y"`, `password_env = "`+testSecret+`"`),
		withStd(`bind_dn = "CN=x,DC=y"`, `password = "`+testSecret+`"`, `password_file = "/x"`),
	} {
		src := []byte(ldapRC(lines...))
		_, diags := parseAs(src, "rc.hcl", testEUID)
		var b bytes.Buffer
		WriteDiagnostics(&b, diags, map[string]*hcl.File{"rc.hcl": {Bytes: src}})
		for _, d := range diags {
			fmt.Fprintln(&b, FormatDiagnostic(d), d.Error())
		}
		if !diags.HasErrors() || leaked(b.String()) != "" {
			t.Errorf("%q: diagnostics\n%s\nwant errors without the secret", lines, b.String())
		}
	}
}

// TestLDAPLoadRules: Load applies the account's file rules to the ldap
// block: an inline bind password needs a private rc file, and the
// password_file, password_command and ca_file must be safe.
func TestLDAPLoadRules(t *testing.T) {
	fixedEnv(t)
	for _, tt := range []struct {
		name  string
		rc    os.FileMode
		mode  os.FileMode // of the target file
		lines func(target string) []string
		want  string // "" = loads; else the first diagnostic, with its position
	}{
		{"inline password, rc 0600", 0o600, 0o600, func(string) []string {
			return withStd(`bind_dn = "CN=x,DC=y"`, `password = "`+testSecret+`"`)
		}, ""},
		{"inline password, rc 0644", 0o644, 0o600, func(string) []string {
			return withStd(`bind_dn = "CN=x,DC=y"`, `password = "`+testSecret+`"`)
		}, ":12:7: error: Password in a readable file; "},
		{"inline password, rc 0640", 0o640, 0o600, func(string) []string {
			return withStd(`bind_dn = "CN=x,DC=y"`, `password = "`+testSecret+`"`)
		}, ":12:7: error: Password in a readable file; "},
		{"password_file, rc 0644", 0o644, 0o600, func(p string) []string {
			return withStd(`bind_dn = "CN=x,DC=y"`, fmt.Sprintf("password_file = %q", p))
		}, ""},
		{"password_file 0644", 0o600, 0o644, func(p string) []string {
			return withStd(`bind_dn = "CN=x,DC=y"`, fmt.Sprintf("password_file = %q", p))
		}, ":12:7: error: Readable password_file; "},
		{"password_file other-writable", 0o600, 0o602, func(p string) []string {
			return withStd(`bind_dn = "CN=x,DC=y"`, fmt.Sprintf("password_file = %q", p))
		}, ":12:7: error: Unsafe password_file; "},
		{"password_file missing", 0o600, 0o600, func(p string) []string {
			return withStd(`bind_dn = "CN=x,DC=y"`, fmt.Sprintf("password_file = %q", p+".missing"))
		}, ""},
		{"password_command 0755", 0o600, 0o755, func(p string) []string {
			return withStd(`bind_dn = "CN=x,DC=y"`, fmt.Sprintf("password_command = [%q]", p))
		}, ""},
		{"password_command other-writable", 0o600, 0o757, func(p string) []string {
			return withStd(`bind_dn = "CN=x,DC=y"`, fmt.Sprintf("password_command = [%q]", p))
		}, ":12:7: error: Unsafe password_command program; "},
		{"ca_file 0644", 0o600, 0o644, func(p string) []string {
			return withStd(fmt.Sprintf("ca_file = %q", p))
		}, ""},
		{"ca_file other-writable", 0o600, 0o646, func(p string) []string {
			return withStd(fmt.Sprintf("ca_file = %q", p))
		}, ":8:5: error: Unsafe ca_file; account d: ldap ca_file "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := testutil.PrivateDir(t)
			target := testutil.WriteFile(t, dir, "target", "pw\n", tt.mode)
			p := testutil.WriteFile(t, dir, "rc.hcl", ldapRC(tt.lines(target)...), tt.rc)
			cfg, diags := loadAs(p, testEUID)
			var b bytes.Buffer
			WriteDiagnostics(&b, diags, SourceFiles(diags))
			out := b.String()
			if f := leaked(out); f != "" {
				t.Errorf("diagnostics show %q:\n%s", f, out)
			}
			if tt.want == "" {
				if diags.HasErrors() || cfg == nil {
					t.Fatalf("Load errors:\n%s", out)
				}
				return
			}
			if cfg != nil || !strings.HasPrefix(out, p+tt.want) {
				t.Fatalf("Load diagnostics:\n%s\nwant first %s%s", out, p, tt.want)
			}
		})
	}
}

// TestLDAPFormatRoundTrip: Format prints the ldap block so that Parse
// reads the same settings back, the group settings only with groups (the
// file may not set them without), bind_dn and the password only when set.
func TestLDAPFormatRoundTrip(t *testing.T) {
	fixedEnv(t)
	for _, lines := range [][]string{
		ldapStd,
		withStd(`groups = true`),
		withStd(`bind_dn = "CN=a \\\"b\\\",DC=x"`, `password_command = ["/usr/bin/pass", "show", "${x}"]`, `filter = "(cn=\\2a$${x}%%{y})"`,
			`groups = true`, `group_filter = "(objectClass=groupOfNames)"`, `grace = "0s"`, `refresh = "1h30m"`, `max_entries = 7`),
	} {
		src := strings.Replace(ldapRC(lines...), `"${x}"`, `"$${x}"`, 1)
		cfg, diags := parseOne(t, src)
		if diags.HasErrors() {
			t.Fatalf("%q: %s", lines, render(t, diags))
		}
		var out bytes.Buffer
		cfg.Format(&out)
		cfg2, diags := parseOne(t, out.String())
		if diags.HasErrors() {
			t.Fatalf("Format output does not parse:\n%s\n%s", render(t, diags), out.String())
		}
		if diff := cmp.Diff(cfg.Accounts[0].Multidrop.LDAP, cfg2.Accounts[0].Multidrop.LDAP, ignorePositions); diff != "" {
			t.Errorf("%q: Format output parses to another LDAP (-want +got):\n%s\n%s", lines, diff, out.String())
		}
		groups := cfg.Accounts[0].Multidrop.LDAP.Groups
		if strings.Contains(out.String(), "group_filter") != groups || strings.Contains(out.String(), "member_attribute") != groups {
			t.Errorf("%q: group settings printed %v; want only with groups:\n%s", lines, !groups, out.String())
		}
		if strings.Contains(out.String(), "bind_dn") != (cfg.Accounts[0].Multidrop.LDAP.BindDN != "") {
			t.Errorf("%q: bind_dn printed without being set:\n%s", lines, out.String())
		}
	}
}

// validFilters are RFC 4515 §4's examples, AD's and OpenLDAP's usual
// ones, and the edge cases the grammar allows.
var validFilters = []string{
	DefaultLDAPFilter,
	"(cn=Babs Jensen)",
	"(!(cn=Tim Howes))",
	"(&(objectClass=Person)(|(sn=Jensen)(cn=Babs J*)))",
	"(o=univ*of*mich*)",
	"(seeAlso=)",
	"(cn:caseExactMatch:=Fred Flintstone)",
	"(cn:=Betty Rubble)",
	"(sn:dn:2.4.6.8.10:=Barney Rubble)",
	"(o:dn:=Ace Industry)",
	"(:1.2.3:=Wilma Flintstone)",
	"(:DN:2.4.6.8.10:=Dino)",
	`(o=Parens R Us \28for all your parenthetical needs\29)`,
	`(cn=*\2A*)`,
	`(filename=C:\5cMyFile)`,
	`(sn=Lu\c4\8di\c4\87)`,
	`(1.3.6.1.4.1.1466.0=\04\02\48\69)`,
	"(mail=*)",
	"(cn=*)",
	"(sn;lang-de=Müller)",
	"(createTimestamp>=20240101000000Z)",
	"(uidNumber<=1000)",
	"(cn~=jensen)",
	"(memberOf:1.2.840.113556.1.4.1941:=CN=Staff,OU=Groups,DC=example,DC=com)",
	"(&(objectClass=inetOrgPerson)(mail=*))",
	"(|(objectClass=groupOfNames)(objectClass=group))",
}

var invalidFilters = []struct{ filter, want string }{
	{"(&)", "at position 2: (&) with no filter inside matches every entry"},
	{"(|)", "at position 2: (|) with no filter inside matches nothing"},
	{"(&(mail=*)(|))", "at position 12: (|) with no filter inside"},
	{"(!(&))", "at position 4: (&) with no filter inside"},
	{"", "it is empty"},
	{"cn=x", "at position 1: expected (, found \"c\""},
	{" (cn=x)", "at position 1: expected (, found \" \""},
	{"(cn=x) ", `at position 7: " " after the end of the filter`},
	{"(cn=x", "at position 6: a ) is missing at the end"},
	{"(cn=x))", `at position 7: ")" after the end of the filter`},
	{"(", "at position 2: the filter ends after ("},
	{"()", "at position 2: \"\" has no = (write attribute=value)"},
	{"((cn=x))", `at position 2: ( inside a value must be written \28`},
	{"(cn=a(b))", `at position 6: ( inside a value must be written \28`},
	{"(cn)", `at position 2: "cn" has no =`},
	{"(=x)", "at position 2: an attribute name is missing before the operator"},
	{"(c n=x)", `at position 2: "c n" is not an attribute name`},
	{"(cn>x)", `at position 2: "cn>x" has no =`},
	{"(cn>=a*)", `at position 7: * is only a wildcard after =`},
	{"(cn:=a*)", `at position 7: * is only a wildcard after =`},
	{"(:=x)", "at position 2: an extensible match needs an attribute or a matching rule before :="},
	{"(cn:dn:a:b:=x)", `at position 2: "cn:dn:a:b:=" is not attr[:dn][:rule]:=value`},
	{"(cn:1.2.:=x)", `at position 2: "1.2." is not a matching rule`},
	{`(cn=\2)`, `at position 5: \ must start an escape of two hex digits`},
	{`(cn=\zz)`, `at position 5: \ must start an escape of two hex digits`},
	{`(cn=x\)`, `at position 6: \ must start an escape`},
	{"(&(cn=x)", "at position 9: a ) is missing at the end"},
	{"(&(cn=x)cn=y)", `at position 9: expected ), found "c"`},
	{"(!)", `at position 3: expected (, found ")"`},
	{"(!(a=b)(c=d))", `at position 8: expected ), found "("`},
	{"(|(a=b)\n(c=d))", "it contains a control character or line break at position 8"},
	{"(cn=\x00)", "control character"},
	{"(cn=\xff)", "it is not valid UTF-8"},
	{"(cn=\ufffd)", "U+FFFD"},
	{strings.Repeat("(!", 40) + "(a=b)" + strings.Repeat(")", 40), "filters are nested more than 32 deep"},
	{"(cn=" + strings.Repeat("x", 4100) + ")", "at most 4096 are allowed"},
}

func TestCheckFilter(t *testing.T) {
	for _, f := range validFilters {
		if err := checkFilter(f); err != nil {
			t.Errorf("checkFilter(%q) = %v; want nil", f, err)
		}
	}
	for _, tt := range invalidFilters {
		err := checkFilter(tt.filter)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("checkFilter(%q) = %v; want an error containing %q", tt.filter, err, tt.want)
		}
	}
}

// FuzzCheckFilter: checkFilter never panics; what it accepts is one
// parenthesised, balanced filter of printable UTF-8 that nests again
// inside & and !; its errors are one line and name a position within
// the filter.
func FuzzCheckFilter(f *testing.F) {
	for _, s := range validFilters {
		f.Add(s)
	}
	for _, tt := range invalidFilters {
		f.Add(tt.filter)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := checkFilter(s)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") && !strings.Contains(msg, `\n`) {
				t.Fatalf("checkFilter(%q): multi-line error %q", s, msg)
			}
			var pos int
			if _, e := fmt.Sscanf(msg, "at position %d:", &pos); e == nil && (pos < 1 || pos > utf8.RuneCountInString(s)+1) {
				t.Fatalf("checkFilter(%q): position %d outside the filter", s, pos)
			}
			return
		}
		if !utf8.ValidString(s) || s[0] != '(' || s[len(s)-1] != ')' {
			t.Fatalf("checkFilter accepted %q", s)
		}
		depth := 0
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i += 2
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 && i != len(s)-1 {
					t.Fatalf("checkFilter accepted %q: two filters", s)
				}
			}
			if depth < 0 {
				t.Fatalf("checkFilter accepted unbalanced %q", s)
			}
		}
		if depth != 0 {
			t.Fatalf("checkFilter accepted unbalanced %q", s)
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("checkFilter accepted a control character in %q", s)
			}
		}
		if len(s) < maxFilter-10 {
			if err := checkFilter("(&" + s + "(x=y))"); err != nil && !strings.Contains(err.Error(), "nested") {
				t.Fatalf("checkFilter accepted %q but not inside (&...): %v", s, err)
			}
			if err := checkFilter("(!" + s + ")"); err != nil && !strings.Contains(err.Error(), "nested") {
				t.Fatalf("checkFilter accepted %q but not inside (!...): %v", s, err)
			}
		}
	})
}

// TestSameLDAP: any change to the ldap block is a new directory; where it
// is declared, and settings outside it, are not. SameContent differs only
// in refresh, grace and timeout, which do not change what a load yields.
func TestSameLDAP(t *testing.T) {
	base := func() *Account {
		return &Account{
			Name: "a",
			Multidrop: &Multidrop{LocalDomains: []string{"example.com"}, LDAP: &LDAP{
				URL: "ldaps://dc1.example.com", BindDN: "CN=x,DC=y",
				Password: Password{File: "/etc/pw", Range: hcl.Range{Filename: "rc", Start: hcl.Pos{Line: 4}}},
				BaseDN:   "DC=y", Filter: DefaultLDAPFilter, UserAttribute: "sAMAccountName",
				AddressAttributes: []string{"mail", "proxyAddresses"}, GroupFilter: "(objectClass=group)", MemberAttribute: "member",
				Refresh: time.Minute, Grace: time.Hour, Timeout: time.Second, MaxEntries: 10,
				Range: hcl.Range{Filename: "rc", Start: hcl.Pos{Line: 3}},
			}},
		}
	}
	for _, tt := range []struct {
		name string
		edit func(a *Account)
		same bool
	}{
		{"unchanged", func(*Account) {}, true},
		{"block moved", func(a *Account) {
			a.Multidrop.LDAP.Range.Start.Line = 9
			a.Multidrop.LDAP.Password.Range.Start.Line = 10
		}, true},
		{"other multidrop setting", func(a *Account) { a.Multidrop.LocalDomains = []string{"example.org"} }, true},
		{"other account setting", func(a *Account) { a.Server = "elsewhere" }, true},
		{"url", func(a *Account) { a.Multidrop.LDAP.URL = "ldaps://dc2.example.com" }, false},
		{"ca_file", func(a *Account) { a.Multidrop.LDAP.CAFile = "/etc/ca.pem" }, false},
		{"bind_dn", func(a *Account) { a.Multidrop.LDAP.BindDN = "CN=z,DC=y" }, false},
		{"password source", func(a *Account) { a.Multidrop.LDAP.Password = Password{Env: "PW"} }, false},
		{"inline password", func(a *Account) { a.Multidrop.LDAP.Password = Password{Inline: "x"} }, false},
		{"base_dn", func(a *Account) { a.Multidrop.LDAP.BaseDN = "DC=z" }, false},
		{"filter", func(a *Account) { a.Multidrop.LDAP.Filter = "(cn=*)" }, false},
		{"user_attribute", func(a *Account) { a.Multidrop.LDAP.UserAttribute = "uid" }, false},
		{"address_attributes", func(a *Account) { a.Multidrop.LDAP.AddressAttributes = []string{"mail"} }, false},
		{"groups", func(a *Account) { a.Multidrop.LDAP.Groups = true }, false},
		{"group_filter", func(a *Account) { a.Multidrop.LDAP.GroupFilter = "(objectClass=groupOfNames)" }, false},
		{"member_attribute", func(a *Account) { a.Multidrop.LDAP.MemberAttribute = "uniqueMember" }, false},
		{"refresh", func(a *Account) { a.Multidrop.LDAP.Refresh = time.Hour }, false},
		{"grace", func(a *Account) { a.Multidrop.LDAP.Grace = 0 }, false},
		{"timeout", func(a *Account) { a.Multidrop.LDAP.Timeout = time.Minute }, false},
		{"max_entries", func(a *Account) { a.Multidrop.LDAP.MaxEntries = 11 }, false},
		{"no ldap", func(a *Account) { a.Multidrop.LDAP = nil }, false},
		{"no multidrop", func(a *Account) { a.Multidrop = nil }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x, y := base(), base()
			tt.edit(y)
			if got := SameLDAP(x, y); got != tt.same {
				t.Errorf("SameLDAP = %v; want %v", got, tt.same)
			}
			if got := SameLDAP(y, x); got != tt.same {
				t.Errorf("SameLDAP reversed = %v; want %v", got, tt.same)
			}
			// Only when and how long it is read leaves the content.
			content := tt.same || tt.name == "refresh" || tt.name == "grace" || tt.name == "timeout"
			if got := accountLDAP(x).SameContent(accountLDAP(y)); got != content {
				t.Errorf("SameContent = %v; want %v", got, content)
			}
			if got := accountLDAP(y).SameContent(accountLDAP(x)); got != content {
				t.Errorf("SameContent reversed = %v; want %v", got, content)
			}
		})
	}
	if !SameLDAP(&Account{}, &Account{Multidrop: &Multidrop{}}) {
		t.Error("no multidrop and a multidrop without ldap differ; want the same (no directory)")
	}
}
