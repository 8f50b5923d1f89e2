package deliver

import (
	"fmt"
	"testing"
	"time"
)

// TestDirectoryAddGroupFanOut: one directory group of 100000 members (an
// "all staff" list of a large office; ldapdir allows max_entries of them)
// is merged into the poll's Directory at every poll. AddGroup checks each
// member against the members so far with a linear scan: quadratic, about
// 5e9 comparisons, seconds to minutes of CPU per poll before any mail is
// fetched.
func TestDirectoryAddGroupFanOut(t *testing.T) {
	const n = 100000
	users := make(map[string][]string, n)
	members := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("u%06d", i)
		users[name] = []string{name + "@example.com"}
		members = append(members, name)
	}
	d := NewDirectory(nil, false)
	d.AddUsers(users, "ldap")
	done := make(chan time.Duration, 1)
	go func() {
		t0 := time.Now()
		d.AddGroup("all@example.com", members, "ldap")
		done <- time.Since(t0)
	}()
	select {
	case took := <-done:
		t.Logf("AddGroup of %d members: %v", n, took)
		if got := d.LookupAll("all", "example.com"); len(got) != n {
			t.Errorf("group reaches %d users, want %d", len(got), n)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("AddGroup of %d members has not returned after 5s", n)
	}
}

// TestDirectoryUnicodeCaseHijack: a directory address whose local part holds
// a non-ASCII letter that lower-cases to an ASCII one (KELVIN SIGN U+212A
// lower-cases to "k") is folded onto another person's ASCII address.
// AddUsers takes users in name order, so "aaron" with the mail value
// "\u212Aaren@example.com" (self-service mail editing is a common
// OpenLDAP ACL) takes karen@example.com, and karen's own address is
// skipped as "already belongs to aaron": her mail goes to aaron. ldapdir
// guards user names against this (UserName) but not addresses.
func TestDirectoryUnicodeCaseHijack(t *testing.T) {
	d := NewDirectory(nil, false)
	d.AddUsers(map[string][]string{
		"aaron": {"\u212Aaren@example.com"},
		"karen": {"karen@example.com"},
	}, "ldap")
	if got := d.LookupAll("karen", "example.com"); len(got) != 1 || got[0] != "karen" {
		t.Errorf("karen@example.com reaches %v, want [karen]; ignored: %q", got, d.Ignored())
	}
}
