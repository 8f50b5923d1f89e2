package ldapdir

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/popfetch/popfetch/deliver/ldapdir/slapdtest"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/redact"
)

// adTree is an Active Directory shaped tree: what the default filter must
// and must not find, and values the client must take, ignore or note.
var adTree = strings.Join([]string{
	slapdtest.ADUser("alice", "Alice Smith", 512, "alice@example.com",
		"SMTP:alice@example.com", "smtp:a.smith@example.com", "X500:/o=Example/ou=Exchange/cn=Recipients/cn=alice",
		"SIP:alice@example.com", "x400:c=US;a= ;p=Example;o=Exchange;s=Smith;"),
	// Upper-case name, no mail, addresses only in proxyAddresses with
	// prefixes in odd case; a value without a type is noted.
	slapdtest.ADUser("Bob", "Bob Jones", 512, "", "sMtP:bob@example.com", "Smtp:robert@example.org", "bobby@example.com"),
	// Disabled (ACCOUNTDISABLE, bit 2): excluded by the default filter,
	// also when other bits are set (66050 = 514 | DONT_EXPIRE_PASSWORD).
	slapdtest.ADUser("carol", "Carol", 514, "carol@example.com"),
	slapdtest.ADUser("carl", "Carl", 66050, "carl@example.com"),
	// Enabled with other bits set (66048 = 512 | DONT_EXPIRE_PASSWORD).
	slapdtest.ADUser("dave", "Dave", 66048, "dave@example.com"),
	// Names that must not become {user} in a path or argv.
	slapdtest.ADUser("../root", "Evil Dots", 512, "evil1@example.com"),
	slapdtest.ADUser("\u212Aaren", "Kelvin Karen", 512, "karen@example.com"),
	slapdtest.ADUser("a b", "Space Name", 512, "space@example.com"),
	// No sAMAccountName at all.
	slapdtest.ADUser("", "No Name", 512, "noname@example.com"),
	// A second "alice": the first entry returned wins.
	slapdtest.ADUser("ALICE", "Alice Two", 512, "alice2@example.com"),
	// A bad mail value is noted, the good one kept.
	slapdtest.ADUser("erin", "Erin", 512, "not an address", "SMTP:erin@example.com"),
	// A long value is skipped.
	slapdtest.ADUser("frank", "Frank", 512, strings.Repeat("f", 1100)+"@example.com", "smtp:frank@example.com"),
	// No usable address at all: still a user.
	slapdtest.ADUser("gina", "Gina", 512, "", "X500:/o=Example/cn=gina"),
	// An address another user has already.
	slapdtest.ADUser("hank", "Hank", 512, "hank@example.com", "smtp:a.smith@example.com"),
}, "")

var adWantUsers = map[string][]string{
	"alice": {"alice@example.com", "a.smith@example.com"},
	"bob":   {"bob@example.com", "robert@example.org"},
	"dave":  {"dave@example.com"},
	"erin":  {"erin@example.com"},
	"frank": {"frank@example.com"},
	"gina":  {},
	"hank":  {"hank@example.com"},
}

// adWantNotes are substrings that Skipped must hold, one line each.
var adWantNotes = []string{
	`"cn=Bob Jones,ou=people,dc=example,dc=com": proxyAddresses value "bobby@example.com" has no address type`,
	`"cn=Evil Dots,ou=people,dc=example,dc=com": sAMAccountName "../root" is not a safe user name`,
	`"cn=Kelvin Karen,ou=people,dc=example,dc=com": sAMAccountName "\u212aaren" is not a safe user name`,
	`"cn=Space Name,ou=people,dc=example,dc=com": sAMAccountName "a b" is not a safe user name`,
	`"cn=No Name,ou=people,dc=example,dc=com": no sAMAccountName, skipped`,
	`"cn=Alice Two,ou=people,dc=example,dc=com": user name "alice" taken by an earlier entry`,
	`"cn=Erin,ou=people,dc=example,dc=com": mail value "not an address" is not an address`,
	`"cn=Frank,ou=people,dc=example,dc=com": mail value of 1112 bytes`,
	`"cn=Hank,ou=people,dc=example,dc=com": address "a.smith@example.com" belongs to user "alice" already`,
}

func checkNotes(t *testing.T, got []string, want []string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.Contains(g, w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("Skipped lacks %q; got:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

func mustLoad(t *testing.T, c Config) *Snapshot {
	t.Helper()
	s, err := Load(context.Background(), c)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func config(s *slapdtest.Server) Config {
	return Config{URL: s.URL(), RootCAs: s.RootCAs(), BindDN: s.BindDN(), Password: s.Password(), BaseDN: s.BaseDN(), Timeout: 10 * time.Second}
}

// TestLoadAD reads the AD-shaped tree with the defaults (filter, user and
// address attributes) over ldaps and over ldap with StartTLS.
func TestLoadAD(t *testing.T) {
	s := slapdtest.Start(t, slapdtest.Options{LDIF: adTree})
	for _, tc := range []struct{ name, url string }{
		{"ldaps", s.URL()},
		{"starttls", s.StartTLSURL()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config(s)
			c.URL = tc.url
			snap := mustLoad(t, c)
			if d := cmp.Diff(adWantUsers, snap.Users); d != "" {
				t.Errorf("Users (-want +got):\n%s", d)
			}
			checkNotes(t, snap.Skipped, adWantNotes)
			for _, n := range snap.Skipped {
				for _, quiet := range []string{"X500", "SIP", "x400", "carol", "Carl"} {
					if strings.Contains(n, quiet) {
						t.Errorf("note %q: other address types and filtered-out users are ignored silently", n)
					}
				}
			}
			if snap.Groups != nil {
				t.Errorf("Groups = %v without Config.Groups", snap.Groups)
			}
			if want := len(strings.Split(adTree, "\n\n")) - 1 - 2; snap.Entries != want {
				t.Errorf("Entries = %d, want %d (all but the two disabled users)", snap.Entries, want)
			}
			if time.Since(snap.Loaded) > time.Minute {
				t.Errorf("Loaded = %v", snap.Loaded)
			}
		})
	}
}

// TestLoadOpenLDAP reads the plain OpenLDAP shape: inetOrgPerson with uid
// and mail, groupOfNames.
func TestLoadOpenLDAP(t *testing.T) {
	s := slapdtest.Start(t, slapdtest.Options{LDIF: slapdtest.InetOrgPerson("jdoe", "john.doe@example.com", "jd@example.com") +
		slapdtest.InetOrgPerson("Mary", "mary@example.com") +
		slapdtest.InetOrgPerson("nomail") +
		slapdtest.GroupOfNames("team", "team@example.com", slapdtest.InetOrgPersonDN("jdoe"), slapdtest.InetOrgPersonDN("Mary")) +
		slapdtest.GroupOfNames("ghosts", "ghosts@example.com", "uid=gone,ou=people,dc=example,dc=com")})
	c := config(s)
	c.Filter = "(objectClass=inetOrgPerson)"
	c.UserAttribute = "uid"
	c.AddressAttributes = []string{"mail"}
	c.Groups = true
	c.GroupFilter = "(objectClass=groupOfNames)"
	snap := mustLoad(t, c)
	want := map[string][]string{"jdoe": {"john.doe@example.com", "jd@example.com"}, "mary": {"mary@example.com"}, "nomail": {}}
	if d := cmp.Diff(want, snap.Users); d != "" {
		t.Errorf("Users (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string][]string{"team@example.com": {"jdoe", "mary"}}, snap.Groups); d != "" {
		t.Errorf("Groups (-want +got):\n%s", d)
	}
	checkNotes(t, snap.Skipped, []string{`"cn=ghosts,ou=groups,dc=example,dc=com": no member is a loaded user`})
}

// TestLoadGroups: members by DN in any case, nested groups, a cycle, a
// group of disabled users only, nesting deeper than the bound.
func TestLoadGroups(t *testing.T) {
	alice, bob, carol := slapdtest.ADUserDN("Alice Smith"), slapdtest.ADUserDN("Bob Jones"), slapdtest.ADUserDN("Carol")
	ldif := adTree +
		// Member DN written in another case than the entry's own.
		slapdtest.ADGroup("staff", "staff@example.com", "CN=Alice Smith,OU=People,DC=EXAMPLE,DC=COM", bob) +
		slapdtest.ADGroup("all", "all@example.com", slapdtest.ADGroupDN("staff"), slapdtest.ADUserDN("Dave"), carol) +
		// A cycle: loop1 holds loop2, loop2 holds loop1.
		slapdtest.ADGroup("loop1", "loop1@example.com", slapdtest.ADGroupDN("loop2"), alice) +
		slapdtest.ADGroup("loop2", "loop2@example.com", slapdtest.ADGroupDN("loop1"), slapdtest.ADUserDN("Erin")) +
		// Only a disabled user: nobody to deliver to.
		slapdtest.ADGroup("former", "former@example.com", carol) +
		// No address: not routable itself, but its members count in "outer".
		slapdtest.ADGroup("inner", "", slapdtest.ADUserDN("Gina")) +
		slapdtest.ADGroup("outer", "outer@example.com", slapdtest.ADGroupDN("inner")) +
		// An address a user has, and one an earlier group has: the user,
		// and the first group, keep it.
		slapdtest.ADGroup("clash", "alice@example.com", bob) +
		slapdtest.ADGroup("staff2", "STAFF@example.com", slapdtest.ADUserDN("Dave"))
	// A chain deeper than MaxNestingDepth: deep0 -> deep1 -> ... -> deep7 (hank).
	for i := 0; i < 8; i++ {
		var m string
		if i == 7 {
			m = slapdtest.ADUserDN("Hank")
		} else {
			m = slapdtest.ADGroupDN(fmt.Sprintf("deep%d", i+1))
		}
		mail := ""
		if i == 0 {
			mail = "deep@example.com"
		}
		ldif += slapdtest.ADGroup(fmt.Sprintf("deep%d", i), mail, m, slapdtest.ADUserDN("Frank"))
	}
	s := slapdtest.Start(t, slapdtest.Options{LDIF: ldif})
	c := config(s)
	c.Groups = true
	snap := mustLoad(t, c)
	want := map[string][]string{
		"staff@example.com": {"alice", "bob"},
		"all@example.com":   {"alice", "bob", "dave"},
		"loop1@example.com": {"alice", "erin"},
		"loop2@example.com": {"alice", "erin"},
		"outer@example.com": {"gina"},
		// deep@ is not routed: its members past MaxNestingDepth are
		// not known, and a part of a group is not the group.
	}
	if d := cmp.Diff(want, snap.Groups); d != "" {
		t.Errorf("Groups (-want +got):\n%s", d)
	}
	checkNotes(t, snap.Skipped, []string{
		`"cn=former,ou=groups,dc=example,dc=com": no member is a loaded user`,
		`groups nested deeper than 5`,
		`"cn=clash,ou=groups,dc=example,dc=com": address "alice@example.com" belongs to user "alice" already`,
		`"cn=staff2,ou=groups,dc=example,dc=com": address "STAFF@example.com" belongs to group "cn=staff,ou=groups,dc=example,dc=com" already`,
	})
	if d := cmp.Diff(adWantUsers, snap.Users); d != "" {
		t.Errorf("Users (-want +got):\n%s", d)
	}
}

// TestLoadPaging: 1200 users, a server that answers an unpaged search with
// at most 500; only paging gets them all. MaxEntries below the count is an
// error, not a cut.
func TestLoadPaging(t *testing.T) {
	var b strings.Builder
	const n = 1200
	for i := range n {
		fmt.Fprintf(&b, "%s", slapdtest.ADUser(fmt.Sprintf("u%04d", i), fmt.Sprintf("User %d", i), 512, fmt.Sprintf("u%04d@example.com", i)))
	}
	s := slapdtest.Start(t, slapdtest.Options{LDIF: b.String(), SizeLimit: 500})

	// The limit is real: an unpaged search stops at 500.
	l, err := ldap.DialURL(s.StartTLSURL())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Bind(s.BindDN(), s.Password()); err != nil {
		t.Fatal(err)
	}
	_, err = l.Search(ldap.NewSearchRequest(s.BaseDN(), ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, DefaultFilter, []string{"cn"}, nil))
	l.Close()
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		t.Fatalf("unpaged search: %v, want sizeLimitExceeded (the test needs the server limit)", err)
	}

	snap := mustLoad(t, config(s))
	if len(snap.Users) != n || snap.Entries != n {
		t.Fatalf("got %d users, %d entries; want %d", len(snap.Users), snap.Entries, n)
	}
	if got := snap.Users["u1199"]; len(got) != 1 || got[0] != "u1199@example.com" {
		t.Errorf("u1199: %q", got)
	}

	c := config(s)
	c.MaxEntries = 1000
	_, err = Load(context.Background(), c)
	if !errors.Is(err, ErrTooManyEntries) || !strings.Contains(err.Error(), s.URL()) {
		t.Fatalf("MaxEntries 1000 of %d: err %v, want ErrTooManyEntries naming the URL", n, err)
	}
	c.MaxEntries = n
	if snap := mustLoad(t, c); len(snap.Users) != n {
		t.Fatalf("MaxEntries = %d exactly: %d users", n, len(snap.Users))
	}
}

// TestLoadServerErrors: what the server refuses is an error naming the URL
// (temporary for the caller: not ErrConfig), never the password.
func TestLoadServerErrors(t *testing.T) {
	s := slapdtest.Start(t, slapdtest.Options{LDIF: adTree})
	plain := slapdtest.Start(t, slapdtest.Options{NoTLS: true, LDIF: adTree})
	otherCA, _, _ := pop3test.GenerateCert(t)
	otherPool := x509.NewCertPool()
	otherPool.AppendCertsFromPEM(otherCA)
	const wrong = "wrong-Pa55word"
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // in the error text
	}{
		{"wrong password", func(c *Config) { c.Password = wrong }, "Invalid Credentials"},
		{"wrong password starttls", func(c *Config) { c.URL = s.StartTLSURL(); c.Password = wrong }, "Invalid Credentials"},
		{"untrusted CA ldaps", func(c *Config) { c.RootCAs = otherPool }, "certificate"},
		{"untrusted CA starttls", func(c *Config) { c.URL = s.StartTLSURL(); c.RootCAs = otherPool }, "certificate"},
		{"system roots", func(c *Config) { c.RootCAs = nil }, "certificate"},
		{"no StartTLS", func(c *Config) { c.URL = plain.StartTLSURL() }, "StartTLS"},
		{"ldaps to the plain port", func(c *Config) { c.URL = strings.Replace(s.StartTLSURL(), "ldap:", "ldaps:", 1) }, "TLS"},
		{"no such base", func(c *Config) { c.BaseDN = "ou=nowhere,dc=example,dc=com" }, "No Such Object"},
		{"bad filter attribute", func(c *Config) { c.Filter = "(objectClass=user" }, "filter"},
		{"more bytes than MaxBytes", func(c *Config) { c.MaxBytes = 2500 }, "max_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config(s)
			tc.edit(&c)
			_, err := Load(context.Background(), c)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q lacks %q", msg, tc.want)
			}
			if tc.name != "bad filter attribute" {
				if errors.Is(err, ErrConfig) {
					t.Errorf("error %q is ErrConfig; the server's answer is temporary", msg)
				}
				if !strings.Contains(msg, strings.TrimSuffix(c.URL, "/")) {
					t.Errorf("error %q does not name %s", msg, c.URL)
				}
			}
			for _, p := range []string{wrong, s.Password()} {
				if strings.Contains(msg, p) {
					t.Errorf("error %q contains the password", msg)
				}
			}
		})
	}

	// Anonymous: allowed, and this server shows it nothing: zero users is
	// not an error here.
	c := config(s)
	c.BindDN, c.Password = "", ""
	if snap := mustLoad(t, c); len(snap.Users) != 0 {
		t.Errorf("anonymous: %d users, want 0 (the ACL shows nothing)", len(snap.Users))
	}

	// Stopped, then back: an error while down, the same data after.
	s.Stop(t)
	if _, err := Load(context.Background(), config(s)); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Errorf("stopped server: %v", err)
	}
	s.Restart(t)
	if d := cmp.Diff(adWantUsers, mustLoad(t, config(s)).Users); d != "" {
		t.Errorf("after restart (-want +got):\n%s", d)
	}
}

// TestLoadConfigErrors: mistakes in the Config fail before any connection.
func TestLoadConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
	}{
		{"http scheme", Config{URL: "http://127.0.0.1:1", BaseDN: "dc=x"}},
		{"ldapi", Config{URL: "ldapi:///var/run/slapd/ldapi", BaseDN: "dc=x"}},
		{"cldap", Config{URL: "cldap://127.0.0.1", BaseDN: "dc=x"}},
		{"no scheme", Config{URL: "127.0.0.1:636", BaseDN: "dc=x"}},
		{"user info", Config{URL: "ldaps://u:pw@127.0.0.1", BaseDN: "dc=x"}},
		{"DN in URL", Config{URL: "ldaps://127.0.0.1/dc=x?mail?sub", BaseDN: "dc=x"}},
		{"no host", Config{URL: "ldaps:///", BaseDN: "dc=x"}},
		{"bad port", Config{URL: "ldaps://127.0.0.1:99999", BaseDN: "dc=x"}},
		{"bind DN without password", Config{URL: "ldaps://127.0.0.1:1", BaseDN: "dc=x", BindDN: "cn=reader,dc=x"}},
		{"password without bind DN", Config{URL: "ldaps://127.0.0.1:1", BaseDN: "dc=x", Password: "pw"}},
		{"bad base DN", Config{URL: "ldaps://127.0.0.1:1", BaseDN: "no dn"}},
		{"bad filter", Config{URL: "ldaps://127.0.0.1:1", BaseDN: "dc=x", Filter: "(&(a=b)"}},
		{"bad attribute", Config{URL: "ldaps://127.0.0.1:1", BaseDN: "dc=x", AddressAttributes: []string{"mail;lang-de"}}},
		{"bad bind DN", Config{URL: "ldaps://127.0.0.1:1", BaseDN: "dc=x", BindDN: "cn=r,,dc=x", Password: "pw"}},
		{"attribute too long", Config{URL: "ldaps://127.0.0.1:1", BaseDN: "dc=x", UserAttribute: strings.Repeat("a", MaxAttrNameLen+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(context.Background(), tc.c)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err %v, want ErrConfig", err)
			}
			if strings.Contains(err.Error(), ":pw@") {
				t.Errorf("error %q shows the URL's password", err)
			}
		})
	}
}

// TestLoadTimeout: a server that accepts and never answers, at each step
// (TLS handshake, StartTLS, bind, search), costs Config.Timeout, not more;
// a cancelled ctx ends the load at once.
func TestLoadTimeout(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
	silent := startSilent(t)
	// Binds, then never answers the search.
	slowSearch := startFake(t, serverTLS, func(id int64, tag int, _ *ber.Packet) []*ber.Packet {
		if tag == ldap.ApplicationBindRequest {
			return []*ber.Packet{result(id, ldap.ApplicationBindResponse, 0, "")}
		}
		return nil
	})
	for _, tc := range []struct{ name, url string }{
		{"ldaps handshake", "ldaps://" + silent},
		{"starttls", "ldap://" + silent},
		{"search", "ldaps://" + slowSearch.addr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{URL: tc.url, RootCAs: pool, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", Timeout: 300 * time.Millisecond}
			t0 := time.Now()
			_, err := Load(context.Background(), c)
			took := time.Since(t0)
			if err == nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v, want context.DeadlineExceeded", err)
			}
			if took > 3*time.Second {
				t.Fatalf("took %v with Timeout 300ms", took)
			}
			if !strings.Contains(err.Error(), tc.url) {
				t.Errorf("error %q does not name %s", err, tc.url)
			}
		})
	}
	t.Run("ctx cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		c := Config{URL: "ldaps://" + silent, RootCAs: pool, BaseDN: "dc=x", Timeout: time.Minute}
		t0 := time.Now()
		_, err := Load(ctx, c)
		if !errors.Is(err, context.Canceled) || time.Since(t0) > 3*time.Second {
			t.Fatalf("err %v after %v, want context.Canceled soon", err, time.Since(t0))
		}
	})
}

// TestStartTLSRefusedNoPlainBind: a server that refuses StartTLS gets no
// bind: the load fails after the extended request, password unsent.
func TestStartTLSRefusedNoPlainBind(t *testing.T) {
	f := startFake(t, nil, func(id int64, tag int, _ *ber.Packet) []*ber.Packet {
		switch tag {
		case ldap.ApplicationExtendedRequest:
			return []*ber.Packet{result(id, ldap.ApplicationExtendedResponse, ldap.LDAPResultUnavailable, "no TLS here")}
		case ldap.ApplicationBindRequest:
			return []*ber.Packet{result(id, ldap.ApplicationBindResponse, 0, "")}
		}
		return []*ber.Packet{result(id, ldap.ApplicationSearchResultDone, 0, "")}
	})
	c := Config{URL: "ldap://" + f.addr(), BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", Timeout: 5 * time.Second}
	_, err := Load(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "StartTLS") {
		t.Fatalf("err %v, want a StartTLS error", err)
	}
	for _, op := range f.received() {
		if op == ldap.ApplicationBindRequest || op == ldap.ApplicationSearchRequest {
			t.Fatalf("server received operation %d in the clear after refusing StartTLS (ops %v)", op, f.received())
		}
	}
}

// TestErrorRedactsPassword: a server that echoes the password in its
// diagnostic message does not get it into the error text.
func TestErrorRedactsPassword(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
	const pw = "s3cret\"pw\n"
	f := startFake(t, serverTLS, func(id int64, tag int, _ *ber.Packet) []*ber.Packet {
		return []*ber.Packet{result(id, ldap.ApplicationBindResponse, ldap.LDAPResultInvalidCredentials,
			fmt.Sprintf("bad password %s, quoted %q", pw, pw))}
	})
	c := Config{URL: "ldaps://" + f.addr(), RootCAs: pool, BindDN: "cn=r,dc=x", Password: pw, BaseDN: "dc=x", Timeout: 5 * time.Second}
	_, err := Load(context.Background(), c)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	q := fmt.Sprintf("%q", pw)
	if strings.Contains(msg, pw) || strings.Contains(msg, q[1:len(q)-1]) || !strings.Contains(msg, redact.Mask) {
		t.Fatalf("error text %q shows the password", msg)
	}
	if !ldap.IsErrorWithCode(errors.Unwrap(err), ldap.LDAPResultInvalidCredentials) && !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Errorf("the LDAP error is not reachable through the redaction: %v", err)
	}
}

// TestNotesBounded: Skipped holds at most MaxSkipped lines and then says
// how many more there were.
func TestNotesBounded(t *testing.T) {
	n := &notes{}
	for i := range MaxSkipped + 7 {
		n.add("entry %d", i)
	}
	got := n.list()
	if len(got) != MaxSkipped+1 || got[MaxSkipped-1] != fmt.Sprintf("entry %d", MaxSkipped-1) || got[MaxSkipped] != "and 7 more" {
		t.Fatalf("got %d lines, last %q", len(got), got[len(got)-1])
	}
	n = &notes{}
	n.add("one")
	if got := n.list(); len(got) != 1 {
		t.Fatalf("one note: %q", got)
	}
}

// TestGroupMemberRange: Active Directory returns the members of a large
// group in ranges ("member;range=0-1499"); the rest is read range by range
// with base searches of the group. A group whose ranges cannot all be read
// is not routed (its mail goes to the postmaster), and that is noted.
func TestGroupMemberRange(t *testing.T) {
	users := func(id int64) []*ber.Packet {
		return []*ber.Packet{
			entry(id, "CN=Alice,DC=x", map[string][]string{"sAMAccountName": {"alice"}, "mail": {"alice@x.example"}}),
			entry(id, "CN=Bob,DC=x", map[string][]string{"SAMACCOUNTNAME": {"bob"}, "PROXYADDRESSES": {"SMTP:bob@x.example", "X500:/o=x"}}),
			entry(id, "CN=Carol,DC=x", map[string][]string{"sAMAccountName": {"carol"}}),
		}
	}
	for _, tc := range []struct {
		name string
		// rng answers the range request for "member;range=<from>-*".
		rng       func(id int64, from string) []*ber.Packet
		want      map[string][]string
		wantNotes []string
		requests  []string
	}{
		{
			name: "all ranges",
			rng: func(id int64, from string) []*ber.Packet {
				attr := map[string][]string{"member;range=2-2": {"cn=carol,dc=x"}}
				if from == "3" {
					attr = map[string][]string{"Member;Range=3-*": {"CN=Bob,DC=x"}}
				}
				return []*ber.Packet{entry(id, "CN=Big,DC=x", attr), result(id, ldap.ApplicationSearchResultDone, 0, "")}
			},
			want:     map[string][]string{"big@x.example": {"alice", "bob", "carol"}},
			requests: []string{"member;range=2-*", "member;range=3-*"},
		},
		{
			name: "range refused",
			rng: func(id int64, from string) []*ber.Packet {
				return []*ber.Packet{result(id, ldap.ApplicationSearchResultDone, ldap.LDAPResultUnwillingToPerform, "no")}
			},
			want:      map[string][]string{},
			wantNotes: []string{`"CN=Big,DC=x": reading the ranges of member failed`},
			requests:  []string{"member;range=2-*"},
		},
		{
			name: "wrong range",
			rng: func(id int64, from string) []*ber.Packet {
				return []*ber.Packet{entry(id, "CN=Big,DC=x", map[string][]string{"member;range=0-*": {"cn=carol,dc=x"}}),
					result(id, ldap.ApplicationSearchResultDone, 0, "")}
			},
			want:      map[string][]string{},
			wantNotes: []string{`"CN=Big,DC=x": member range "member;range=0-*" unexpected (want one from 2): the group is not routed`},
			requests:  []string{"member;range=2-*"},
		},
		{
			name: "empty range",
			rng: func(id int64, from string) []*ber.Packet {
				return []*ber.Packet{entry(id, "CN=Big,DC=x", map[string][]string{"member;range=2-5": {}}),
					result(id, ldap.ApplicationSearchResultDone, 0, "")}
			},
			want:      map[string][]string{},
			wantNotes: []string{`"CN=Big,DC=x": member range "member;range=2-5" is empty: the group is not routed`},
			requests:  []string{"member;range=2-*"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
			var mu sync.Mutex
			searches := 0
			var requests []string
			f := startFake(t, serverTLS, func(id int64, tag int, op *ber.Packet) []*ber.Packet {
				switch tag {
				case ldap.ApplicationBindRequest:
					return []*ber.Packet{result(id, ldap.ApplicationBindResponse, 0, "")}
				case ldap.ApplicationSearchRequest:
					mu.Lock()
					searches++
					k := searches
					mu.Unlock()
					done := result(id, ldap.ApplicationSearchResultDone, 0, "")
					switch k {
					case 1:
						return append(users(id), done)
					case 2:
						return []*ber.Packet{
							entry(id, "CN=Big,DC=x", map[string][]string{"mail": {"big@x.example"}, "member;range=0-1": {"cn=alice,dc=x", "cn=bob,dc=x"}}),
							done,
						}
					}
					attr := op.Children[7].Children[0].Value.(string)
					mu.Lock()
					requests = append(requests, attr)
					mu.Unlock()
					if base := op.Children[0].Value.(string); base != "CN=Big,DC=x" {
						t.Errorf("range search under %q", base)
					}
					from := strings.TrimSuffix(strings.TrimPrefix(attr, "member;range="), "-*")
					return tc.rng(id, from)
				}
				return nil
			})
			c := Config{URL: "ldaps://" + f.addr(), RootCAs: pool, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", Groups: true, Timeout: 5 * time.Second}
			snap, err := Load(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(map[string][]string{"alice": {"alice@x.example"}, "bob": {"bob@x.example"}, "carol": {}}, snap.Users); d != "" {
				t.Errorf("Users (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.want, snap.Groups); d != "" {
				t.Errorf("Groups (-want +got):\n%s", d)
			}
			checkNotes(t, snap.Skipped, tc.wantNotes)
			mu.Lock()
			defer mu.Unlock()
			if d := cmp.Diff(tc.requests, requests); d != "" {
				t.Errorf("range requests (-want +got):\n%s", d)
			}
		})
	}
}

// TestBindNameForms: Active Directory takes a user principal name or a
// down-level logon name as a simple bind's name; they reach the server
// unchanged. Attribute names up to MaxAttrNameLen are accepted.
func TestBindNameForms(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
	for _, name := range []string{"popfetch@example.com", `EXAMPLE\popfetch`, "CN=Reader,DC=example,DC=com"} {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var got string
			f := startFake(t, serverTLS, func(id int64, tag int, op *ber.Packet) []*ber.Packet {
				switch tag {
				case ldap.ApplicationBindRequest:
					mu.Lock()
					got, _ = op.Children[1].Value.(string)
					mu.Unlock()
					return []*ber.Packet{result(id, ldap.ApplicationBindResponse, 0, "")}
				case ldap.ApplicationSearchRequest:
					return []*ber.Packet{result(id, ldap.ApplicationSearchResultDone, 0, "")}
				}
				return nil
			})
			c := Config{URL: "ldaps://" + f.addr(), RootCAs: pool, BindDN: name, Password: "pw", BaseDN: "dc=x",
				UserAttribute: strings.Repeat("a", MaxAttrNameLen), Timeout: 5 * time.Second}
			if _, err := Load(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if got != name {
				t.Errorf("bind name %q, want %q", got, name)
			}
		})
	}
}

// lateCtx has a deadline whose timer has not fired yet: Err is still nil,
// as on a loaded machine just after the deadline.
type lateCtx struct {
	context.Context
	deadline time.Time
}

func (c lateCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c lateCtx) Done() <-chan struct{}       { return nil }
func (c lateCtx) Err() error                  { return nil }

// TestCtxErrLateTimer: a read that timed out at the load's deadline is
// reported as the deadline even when ctx's own timer has not run yet (on
// a loaded machine it ran late, and the error was a bare "i/o timeout").
func TestCtxErrLateTimer(t *testing.T) {
	ioTimeout := fmt.Errorf("read tcp: %w", os.ErrDeadlineExceeded)
	for _, tc := range []struct {
		name     string
		deadline time.Duration // from now
		err      error
		want     error // nil: err unchanged
	}{
		{"deadline passed, timer late", -time.Second, io.EOF, context.DeadlineExceeded},
		{"conn deadline fired, timer late", 20 * time.Millisecond, ioTimeout, context.DeadlineExceeded},
		{"deadline far, other error", time.Hour, io.EOF, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ctxErr(lateCtx{context.Background(), time.Now().Add(tc.deadline)}, tc.err)
			if !strings.Contains(got.Error(), tc.err.Error()) {
				t.Errorf("ctxErr = %v; want it to name %v", got, tc.err)
			}
			if tc.want == nil && got != tc.err || tc.want != nil && !errors.Is(got, tc.want) {
				t.Errorf("ctxErr = %v; want %v", got, tc.want)
			}
		})
	}
}
