package rcfile

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// sameDir holds two rc files for the comparison tests: a.hcl, a real rc
// file with every kind of nested block, so that positions (hcl.Range)
// occur at several depths (account, password, multidrop user), and
// a-moved.hcl, which means the same: a comment on top, the blocks in
// another order, other alignment. fetch/daemon's reload tests read them too.
const sameDir = "../testdata/rc/same"

// readRC returns the rc file name in sameDir.
func readRC(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sameDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func parseRC(t *testing.T, src string) (*Config, map[string]*Account) {
	t.Helper()
	cfg, diags := parseAs([]byte(src), "/etc/popfetch/popfetch.hcl", testEUID)
	if diags.HasErrors() {
		t.Fatalf("Parse: %v", diags)
	}
	m := map[string]*Account{}
	for _, a := range cfg.Accounts {
		m[a.Name] = a
	}
	return cfg, m
}

// TestSameAccountIgnoresPositions: moving account blocks around or adding
// a comment line is not a change; editing any setting, also deep inside
// nested blocks, is.
func TestSameAccountIgnoresPositions(t *testing.T) {
	t.Parallel()
	rcA := readRC(t, "a.hcl")
	_, a := parseRC(t, rcA)
	_, moved := parseRC(t, readRC(t, "a-moved.hcl"))
	for name, x := range a {
		y := moved[name]
		if reflect.DeepEqual(x, y) {
			t.Fatalf("account %s: the two files give identical values, positions included; the test tests nothing", name)
		}
		if x.Password.Range == y.Password.Range {
			t.Fatalf("account %s: Password.Range is the same in both files; the test tests nothing", name)
		}
		if !SameAccount(x, y) {
			t.Errorf("SameAccount(%s) = false for a block that only moved", name)
		}
	}

	edits := []struct {
		old, new string
		changed  []string
	}{
		{`interval = "2m"`, `interval = "3m"`, []string{"one"}},
		{`"alice", "a.smith"`, `"alice", "a.smith", "al"`, []string{"two"}},
		{`"-d", "{user}"`, `"-d", "{user}", "-m"`, []string{"two"}},
		{`server = "localhost:24"`, `server = "localhost:2424"`, []string{"three"}},
		{`password_file = "/etc/popfetch/pw"`, `password_file = "/etc/popfetch/pw2"`, []string{"one", "three"}},
		{`postmaster { maildir = "/var/mail/pm" }`, ``, []string{"two"}},
	}
	for _, e := range edits {
		if !strings.Contains(rcA, e.old) {
			t.Fatalf("a.hcl has no %q", e.old)
		}
		_, b := parseRC(t, strings.Replace(rcA, e.old, e.new, 1))
		var changed []string
		for _, name := range []string{"one", "three", "two"} {
			if !SameAccount(a[name], b[name]) {
				changed = append(changed, name)
			}
		}
		if got, want := strings.Join(changed, ","), strings.Join(e.changed, ","); got != want {
			t.Errorf("after %q → %q: changed accounts = %q; want %q", e.old, e.new, got, want)
		}
	}
}

// TestSameAccount: each field the rc file sets counts, at any depth;
// positions (hcl.Range) do not.
func TestSameAccount(t *testing.T) {
	t.Parallel()
	pos := func(line int) hcl.Range {
		return hcl.Range{Filename: "/etc/popfetch.hcl", Start: hcl.Pos{Line: line, Column: 1, Byte: 10 * line}, End: hcl.Pos{Line: line, Column: 9, Byte: 10*line + 8}}
	}
	base := func() *Account {
		return &Account{
			Name: "a", Server: "pop.example", Port: 995, TLS: TLSImplicit, Username: "joe",
			Password: Password{File: "/etc/pw", Range: pos(3)},
			Timeout:  time.Minute, Interval: 5 * time.Minute, StateDir: "/var/lib/popfetch",
			Deliver:    Destination{MDA: []string{"/usr/bin/procmail", "-d", "{user}"}, MDATempExitCodes: []int{75}, MDARange: pos(4)},
			Postmaster: &Destination{Maildir: "/var/mail/pm"},
			Multidrop: &Multidrop{
				LocalDomains: []string{"example.com"}, EnvelopeHeader: "Delivered-To", EnvelopeCount: 1,
				AliasesFile: "/etc/aliases", AliasesFileRange: pos(6),
				Users: []*User{{Name: "alice", Addresses: []string{"alice"}, DeclRange: pos(7)},
					{Name: "bob", Deliver: &Destination{SMTP: &SMTP{Server: "localhost:24", LMTP: true}}, DeclRange: pos(8)}},
			},
			DeclRange: pos(1),
		}
	}
	tests := []struct {
		name string
		edit func(a *Account)
		same bool
	}{
		{"unchanged", func(*Account) {}, true},
		{"account moved", func(a *Account) { a.DeclRange = pos(20) }, true},
		{"password attribute moved", func(a *Account) { a.Password.Range = pos(21) }, true},
		{"mda moved", func(a *Account) { a.Deliver.MDARange = pos(22) }, true},
		{"aliases_file moved", func(a *Account) { a.Multidrop.AliasesFileRange = pos(23) }, true},
		{"user moved", func(a *Account) { a.Multidrop.Users[1].DeclRange = pos(24) }, true},
		{"interval", func(a *Account) { a.Interval = time.Hour }, false},
		{"keep", func(a *Account) { a.Keep = true }, false},
		{"password source", func(a *Account) { a.Password = Password{Env: "PW", Range: a.Password.Range} }, false},
		{"mda argument", func(a *Account) { a.Deliver.MDA = append(a.Deliver.MDA, "-m") }, false},
		{"temp exit codes", func(a *Account) { a.Deliver.MDATempExitCodes = []int{75, 69} }, false},
		{"postmaster removed", func(a *Account) { a.Postmaster = nil }, false},
		{"postmaster target", func(a *Account) { a.Postmaster.Maildir = "/var/mail/pm2" }, false},
		{"multidrop removed", func(a *Account) { a.Multidrop = nil }, false},
		{"user address", func(a *Account) { a.Multidrop.Users[0].Addresses = []string{"alice", "al"} }, false},
		{"user lmtp server", func(a *Account) { a.Multidrop.Users[1].Deliver.SMTP.Server = "localhost:2424" }, false},
		{"users reordered", func(a *Account) { u := a.Multidrop.Users; u[0], u[1] = u[1], u[0] }, false},
		// Not produced by the rc file, which never leaves an empty list
		// where it means none; counting it costs a re-plan, never a
		// missed change.
		{"nil and empty list", func(a *Account) { a.Multidrop.EnvelopeIgnore = []string{} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, y := base(), base()
			tt.edit(y)
			if got := SameAccount(x, y); got != tt.same {
				t.Errorf("SameAccount = %v; want %v", got, tt.same)
			}
			if got := SameAccount(y, x); got != tt.same {
				t.Errorf("SameAccount, arguments swapped, = %v; want %v", got, tt.same)
			}
		})
	}
	if !SameAccount(nil, nil) || SameAccount(base(), nil) {
		t.Errorf("SameAccount with nil: want equal only when both are nil")
	}
}
