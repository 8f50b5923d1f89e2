package deliver

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseAliases(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string][]string
		wantErr string // substring; "" = no error
	}{
		{name: "empty", in: "", want: map[string][]string{}},
		{name: "comments and blanks", in: "# c\n\n   \n# d\n", want: map[string][]string{}},
		{
			name: "basic",
			in:   "info: alice, bob\nteam:carol\n",
			want: map[string][]string{"info": {"alice", "bob"}, "team": {"carol"}},
		},
		{
			name: "continuation lines",
			in:   "team: carol,\n\tinfo,\n  dave\nx: y\n",
			want: map[string][]string{"team": {"carol", "info", "dave"}, "x": {"y"}},
		},
		{
			name: "comment inside an entry does not end it",
			in:   "team: carol,\n# note\n\tdave\n",
			want: map[string][]string{"team": {"carol", "dave"}},
		},
		{
			name: "CRLF and case",
			in:   "Info: Alice\r\nPOSTMASTER: root\r\n",
			want: map[string][]string{"info": {"Alice"}, "postmaster": {"root"}},
		},
		{
			name: "targets kept as written",
			in:   "p: |/bin/evil, \"|/usr/bin/x a, b\", /var/log/f, :include:/etc/list, x@elsewhere.test\n",
			want: map[string][]string{"p": {"|/bin/evil", `"|/usr/bin/x a, b"`, "/var/log/f", ":include:/etc/list", "x@elsewhere.test"}},
		},
		{
			name: "empty targets dropped",
			in:   "a: , b,, c ,\n",
			want: map[string][]string{"a": {"b", "c"}},
		},
		{
			name: "alias with no targets",
			in:   "a:\n",
			want: map[string][]string{"a": nil},
		},
		{name: "missing colon", in: "info alice\n", wantErr: "aliases:1: missing ':'"},
		{
			name: "indented colon line is a continuation",
			in:   "ok: a\n : alice\n",
			want: map[string][]string{"ok": {"a : alice"}},
		},
		{name: "empty name 2", in: ": alice\n", wantErr: "aliases:1: invalid alias name"},
		{name: "continuation first", in: "\talice\n", wantErr: "aliases:1: continuation line without an entry"},
		{name: "continuation after blank", in: "a: b\n\n\tc\n", wantErr: "aliases:3: continuation"},
		{name: "duplicate", in: "a: b\nA: c\n", wantErr: `aliases:2: alias "a" already defined at line 1`},
		{name: "name with space", in: "a b: c\n", wantErr: "invalid alias name"},
		{name: "line too long", in: "a: " + strings.Repeat("b", maxAliasLine+1) + "\n", wantErr: "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAliases(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseAliases = %v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAliases = %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseAliases = %#v; want %#v", got, tc.want)
			}
		})
	}
}

func writeAliases(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "aliases")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAliasResolution(t *testing.T) {
	d := NewDirectory(fixtureUsers, false)
	p := writeAliases(t, `
info: alice, bob
team: carol, info, sales
loop1: loop2, carol
loop2: loop1, bob
self: self, alice
diamond: info, team
pipe: |/bin/evil, "|/bin/evil2", /tmp/file, :include:/etc/list, x@elsewhere.test, alice
d0: d1
d1: d2
d2: d3
d3: d4
d4: d5
d5: d6
d6: d7
d7: d8
d8: d9
d9: d10
d10: d11
d11: alice
d8b: d9
nobody-here: ghost
`)
	if err := d.LoadAliases(p); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		local string
		want  []string
	}{
		{"info", []string{"alice", "bob"}},
		{"INFO", []string{"alice", "bob"}},
		{"team", []string{"carol", "alice", "bob"}}, // sales is alice's address
		{"loop1", []string{"bob", "carol"}},
		{"loop2", []string{"carol", "bob"}},
		{"self", []string{"alice"}},
		{"diamond", []string{"alice", "bob", "carol"}},
		{"pipe", []string{"alice"}},
		{"d0", nil},                  // d0 → … → d11 is deeper than 10
		{"d8b", []string{"alice"}},   // d8b → d9 → d10 → d11 → alice
		{"nobody-here", nil},         // "ghost" is not a user (no system users)
		{"alice", []string{"alice"}}, // users win over aliases
	}
	for _, tc := range tests {
		if got := d.LookupAll(tc.local, "example.com"); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("LookupAll(%q) = %v; want %v", tc.local, got, tc.want)
		}
	}
	ign := strings.Join(d.Ignored(), "\n")
	for _, want := range []string{
		`alias pipe: pipe target "|/bin/evil" ignored`,
		`alias pipe: pipe target "\"|/bin/evil2\"" ignored`,
		`alias pipe: file target "/tmp/file" ignored`,
		`alias pipe: :include: target ":include:/etc/list" ignored`,
		`alias pipe: remote address target "x@elsewhere.test" ignored`,
		"alias loop1: loop loop1 → loop2 → loop1 cut",
		"alias self: loop self → self cut",
		"alias d0: nested deeper than 10",
	} {
		if !strings.Contains(ign, want) {
			t.Errorf("Ignored() lacks %q; got:\n%s", want, ign)
		}
	}
}

// TestLoadAliasesAtomic: a broken file leaves the previous aliases active,
// so a reload with a typo does not silently change routing.
func TestLoadAliasesAtomic(t *testing.T) {
	d := NewDirectory(fixtureUsers, false)
	if err := d.LoadAliases(writeAliases(t, "info: alice\n")); err != nil {
		t.Fatal(err)
	}
	err := d.LoadAliases(writeAliases(t, "info: bob\nbroken line\n"))
	if err == nil || !strings.Contains(err.Error(), "aliases:2") {
		t.Fatalf("LoadAliases(broken) = %v; want an error naming line 2", err)
	}
	if u, ok := lookupOne(d, "info", "example.com"); !ok || u != "alice" {
		t.Errorf("after a failed reload LookupAll(info) = %q, %v; want alice", u, ok)
	}
	if err := d.LoadAliases(writeAliases(t, "info: alice\np: |/bin/x\n")); err != nil {
		t.Fatal(err)
	}
	if err := d.LoadAliases(writeAliases(t, "info: alice\n")); err != nil {
		t.Fatal(err)
	}
	if ign := d.Ignored(); len(ign) != 0 {
		t.Errorf("Ignored() after a clean reload = %q; want none", ign)
	}
	if err := d.LoadAliases(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Errorf("LoadAliases(missing file) = nil; want an error")
	}
}

// FuzzParseAliases: never panics; names are lower-case and safe; targets
// are trimmed and non-empty; resolving the result never yields a user that
// is not configured.
func FuzzParseAliases(f *testing.F) {
	for _, s := range []string{
		"info: alice, bob\n",
		"team: carol,\n\tinfo\n# c\nx: \"|a, b\", y\n",
		"a: b\nb: a\n",
		"\tx\n",
		"a b: c\r\n",
		":include:/etc/x: y\n",
	} {
		f.Add(s)
	}
	if b, err := os.ReadFile("../testdata/route/aliases"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseAliases(strings.NewReader(s))
		if err != nil {
			return
		}
		for name, ts := range m {
			if name == "" || name != strings.ToLower(name) || hasUnsafe(name) {
				t.Errorf("alias name %q", name)
			}
			for _, tg := range ts {
				if tg == "" || tg != strings.TrimSpace(tg) {
					t.Errorf("alias %q: target %q", name, tg)
				}
			}
		}
		d := NewDirectory(fixtureUsers, false)
		d.setAliases(m)
		for name := range m {
			for _, u := range d.LookupAll(name, "example.com") {
				if _, ok := fixtureUsers[u]; !ok {
					t.Errorf("alias %q reaches unconfigured user %q", name, u)
				}
			}
		}
	})
}
