package deliver

import (
	"strings"
	"testing"
)

// An external directory's users, added after the configured ones, route by
// full address; configured users keep what they have and gain addresses;
// groups come after user addresses.
func TestDirectoryAddUsersAndGroups(t *testing.T) {
	d := NewDirectory(map[string][]string{
		"alice": {"alice", "boss@example.com"},
		"bob":   {"bob"},
	}, false)
	d.AddUsers(map[string][]string{
		"alice": {"Alice.Smith@example.com"},               // configured user gains an address
		"carol": {"carol@example.com", "boss@example.com"}, // boss@ is alice's (configured)
		"dave":  {"bob@example.com", "dave@Example.com"},   // bob is a configured local part
		"erin":  {"erin", "bad address@example.com"},       // bare local part, invalid address
		"x y":   {"xy@example.com"},                        // invalid user name
	}, "ldap")
	d.AddGroup("staff@example.com", []string{"carol", "dave", "zed", "dave"}, "ldap")
	d.AddGroup("carol@example.com", []string{"dave"}, "ldap") // a user's address
	d.AddGroup("bob@example.com", []string{"dave"}, "ldap")   // a configured local part
	d.AddGroup("empty@example.com", []string{"zed"}, "ldap")
	d.AddGroup("nodomain", []string{"dave"}, "ldap")
	tests := []struct {
		local, domain, want string
	}{
		{"alice.smith", "example.com", "alice"},
		{"alice", "example.com", "alice"},
		{"boss", "example.com", "alice"},
		{"carol", "EXAMPLE.com", "carol"},
		{"carol", "example.org", ""}, // full address: that domain only
		{"bob", "example.com", "bob"},
		{"dave", "example.com", "dave"},
		{"erin", "example.com", ""},
		{"xy", "example.com", ""},
		{"staff", "example.com", "carol,dave"},
		{"empty", "example.com", ""},
		{"nodomain", "example.com", ""},
	}
	for _, tc := range tests {
		if got := strings.Join(d.LookupAll(tc.local, tc.domain), ","); got != tc.want {
			t.Errorf("LookupAll(%q, %q) = %q; want %q", tc.local, tc.domain, got, tc.want)
		}
	}
	ign := strings.Join(d.Ignored(), "\n")
	for _, w := range []string{
		"ldap address boss@example.com of user carol already belongs to alice",
		"ldap address bob@example.com of user dave already belongs to bob",
		`ldap user erin: invalid address "erin"`,
		`ldap user erin: invalid address "bad address@example.com"`,
		`ldap user "x y": invalid user name`,
		`ldap group staff@example.com: member "zed" is not a user`,
		"ldap group address carol@example.com already belongs to user carol",
		"ldap group address bob@example.com already belongs to user bob",
		"ldap group empty@example.com: no member is a user",
		`ldap group: invalid address "nodomain"`,
	} {
		if !strings.Contains(ign, w) {
			t.Errorf("Ignored lacks %q; got:\n%s", w, ign)
		}
	}
	for name, want := range map[string]bool{"alice": true, "carol": true, "erin": true, "zed": false, "x y": false, "": false} {
		if got := d.HasUser(name); got != want {
			t.Errorf("HasUser(%q) = %v; want %v", name, got, want)
		}
	}
}

func TestDirectoryHasUserSystem(t *testing.T) {
	d := NewDirectory(nil, false)
	d.lookupUID = func(name string) (uint64, bool) { return 1001, name == "sam" }
	if d.HasUser("sam") {
		t.Fatal("HasUser(sam) without system users")
	}
	d.SetSystemUsers(true)
	if !d.HasUser("sam") || d.HasUser("root") {
		t.Fatalf("HasUser(sam) = %v, HasUser(root) = %v", d.HasUser("sam"), d.HasUser("root"))
	}
	var nilDir *Directory
	if nilDir.HasUser("sam") {
		t.Fatal("nil Directory has a user")
	}
}
