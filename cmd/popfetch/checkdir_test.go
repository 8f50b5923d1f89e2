package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/ldapdir"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// TestCheckDirectory: `popfetch check --connect` prints the counts of a
// multidrop account's LDAP directory, a sample of its users and groups
// and what is skipped (also conflicts with configured users); a failure
// or an empty directory prints the error and exits with the failure code.
func TestCheckDirectory(t *testing.T) {
	t.Parallel()
	users := map[string][]string{"alice": {"alice@example.com", "boss@example.com"}}
	for i := range 6 {
		users[fmt.Sprintf("u%d", i)] = []string{fmt.Sprintf("u%d@example.com", i)}
	}
	good := &ldapdir.Snapshot{Users: users, Groups: map[string][]string{"staff@example.com": {"alice", "u0"}},
		Skipped: []string{"CN=Printer: no sAMAccountName"}}
	tests := []struct {
		name    string
		snap    *ldapdir.Snapshot
		err     error
		code    int
		want    []string
		notWant []string
		noLDAP  bool
	}{
		{name: "sample", snap: good, code: exitOK, want: []string{
			"a: directory ldaps://dc.example.com: 7 users, 8 addresses, 1 groups\n",
			"  alice: alice@example.com, boss@example.com\n  u0: u0@example.com\n",
			"  u3: u3@example.com\n  ... 2 more\n",
			"  group staff@example.com: alice, u0\n",
			"  skipped 2:\n    CN=Printer: no sAMAccountName\n    ldap address boss@example.com of user alice already belongs to bob\n",
		}, notWant: []string{"u4:", "u5:"}},
		{name: "failure", err: errors.New("bind: invalid credentials \x1b[0m"), code: exitFail,
			want: []string{"a: directory ldaps://dc.example.com: error: ", "invalid credentials \\x1b[0m\n"}},
		{name: "empty", snap: &ldapdir.Snapshot{}, code: exitFail, want: []string{"error: ", "yields no users"}},
		{name: "no ldap", noLDAP: true, code: exitOK, notWant: []string{"directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &rcfile.Account{Name: "a", Multidrop: &rcfile.Multidrop{
				Users: []*rcfile.User{{Name: "bob", Addresses: []string{"boss@example.com"}}},
				LDAP:  &rcfile.LDAP{URL: "ldaps://dc.example.com"}}}
			if tt.noLDAP {
				a.Multidrop.LDAP = nil
			}
			p := &fetch.Poller{LoadDirectory: func(context.Context, ldapdir.Config) (*ldapdir.Snapshot, error) { return tt.snap, tt.err }}
			var out bytes.Buffer
			if code := checkDirectory(context.Background(), &out, p, a); code != tt.code {
				t.Errorf("exit code %d; want %d", code, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
		})
	}
}
