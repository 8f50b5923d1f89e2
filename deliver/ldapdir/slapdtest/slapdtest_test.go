package slapdtest

import (
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// search reads the entries matching filter as the reader, over ldaps.
func search(t *testing.T, s *Server, filter string) ([]string, error) {
	t.Helper()
	c, err := ldap.DialURL(s.StartTLSURL())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Bind(s.BindDN(), s.Password()); err != nil {
		return nil, err
	}
	res, err := c.Search(ldap.NewSearchRequest(s.BaseDN(), ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, []string{"cn"}, nil))
	if err != nil {
		return nil, err
	}
	var dns []string
	for _, e := range res.Entries {
		dns = append(dns, e.DN)
	}
	return dns, nil
}

// TestStartADShape pins what the AD-shaped entries and the default filter
// give on slapd: enabled users match, the disabled one does not.
func TestStartADShape(t *testing.T) {
	t0 := time.Now()
	s := Start(t, Options{LDIF: ADUser("alice", "Alice A", 512, "alice@example.com", "SMTP:alice@example.com") +
		ADUser("dis", "Dis", 514, "") + ADGroup("staff", "staff@example.com", ADUserDN("Alice A"))})
	t.Logf("started in %v", time.Since(t0))
	const filter = "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"
	got, err := search(t, s, filter)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.EqualFold(got[0], ADUserDN("Alice A")) {
		t.Fatalf("default AD filter found %q, want only alice", got)
	}
	s.Add(t, ADUser("bob", "Bob", 512, "bob@example.com"))
	s.Stop(t)
	if _, err := search(t, s, filter); err == nil {
		t.Fatal("search succeeded while slapd is stopped")
	}
	s.Restart(t)
	if got, err := search(t, s, filter); err != nil || len(got) != 2 {
		t.Fatalf("after restart: %q, %v; want alice and bob", got, err)
	}
	s.Delete(t, ADUserDN("Bob"))
	if got, err := search(t, s, filter); err != nil || len(got) != 1 {
		t.Fatalf("after delete: %q, %v; want alice", got, err)
	}
}
