package deliver

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// lookupOne is LookupAll joined with ",", for names that reach at most
// one user.
func lookupOne(d *Directory, local, domain string) (string, bool) {
	us := d.LookupAll(local, domain)
	return strings.Join(us, ","), len(us) > 0
}

func TestDirectoryLookup(t *testing.T) {
	d := NewDirectory(map[string][]string{
		"alice": {"alice", "a.smith", "Sales@Example.COM"},
		"bob":   {"bob", "joe+lists", `"joe@other"@example.com`, "shared"},
		"carol": {"carol", "shared", "x@bücher.example"},
		"bad":   {"has space", "ctl\x00"},
		"x y":   {"xy"},
	}, false)
	tests := []struct {
		local, domain string
		want          string
	}{
		{"alice", "example.com", "alice"},
		{"ALICE", "EXAMPLE.ORG", "alice"},           // bare local part: every domain
		{"sales", "example.com", "alice"},           // full address, case-folded
		{"sales", "example.org", ""},                // full address: that domain only
		{"joe+lists", "example.com", "bob"},         // explicit mapping with a delimiter
		{`"joe@other"`, "example.com", "bob"},       // quoted local part, explicit only
		{"joe@other", "example.com", ""},            // ... never its unquoted form
		{"shared", "example.com", "bob"},            // claimed twice: first user by name
		{"x", "xn--bcher-kva.example", "carol"},     // U-label in config, A-label in mail
		{"x", "BÜCHER.example.", "carol"},           // and the other way round
		{"has space", "example.com", ""},            // invalid entries are ignored
		{"xy", "example.com", ""},                   // ... and users with invalid names
		{"dave", "example.com", ""},                 // unknown
		{"", "example.com", ""},                     // empty
		{"alice\r\nRCPT TO:<x>", "example.com", ""}, // CR/LF never looked up
	}
	for _, tc := range tests {
		got, ok := lookupOne(d, tc.local, tc.domain)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("LookupAll(%q, %q) = %q, %v; want %q", tc.local, tc.domain, got, ok, tc.want)
		}
	}
	ign := strings.Join(d.Ignored(), "\n")
	for _, want := range []string{"address shared of user carol already belongs to bob", `invalid address "has space"`, `user "x y": invalid user name`} {
		if !strings.Contains(ign, want) {
			t.Errorf("Ignored() lacks %q; got:\n%s", want, ign)
		}
	}
}

func TestDirectoryCaseSensitive(t *testing.T) {
	d := NewDirectory(map[string][]string{"Joe": {"Joe"}, "joe": {"joe"}}, true)
	for _, tc := range []struct{ local, want string }{{"Joe", "Joe"}, {"joe", "joe"}, {"JOE", ""}} {
		if got, _ := lookupOne(d, tc.local, "EXAMPLE.com"); got != tc.want {
			t.Errorf("case-sensitive LookupAll(%q) = %q; want %q", tc.local, got, tc.want)
		}
	}
}

func TestDirectorySystemUsers(t *testing.T) {
	uids := map[string]uint64{"root": 0, "daemon": 1, "mail": 8, "joe": 1000, "ann": 59999, "nobody": 65534, "big": 70000, "j.doe": 1001}
	calls := 0
	newDir := func() *Directory {
		d := NewDirectory(map[string][]string{"alice": {"alice"}}, false)
		d.lookupUID = func(name string) (uint64, bool) {
			calls++
			u, ok := uids[name]
			return u, ok
		}
		return d
	}
	d := newDir()
	if _, ok := lookupOne(d, "joe", "example.com"); ok {
		t.Errorf("system user found while SetSystemUsers is off")
	}
	d.SetSystemUsers(true)
	for _, tc := range []struct{ local, want string }{
		{"joe", "joe"}, {"JOE", "joe"}, {"ann", "ann"}, {"j.doe", "j.doe"},
		{"root", ""}, {"daemon", ""}, {"mail", ""}, {"nobody", ""}, {"big", ""},
		{"ghost", ""}, {"../joe", ""}, {"-joe", ""}, {"1joe", ""}, {strings.Repeat("j", 33), ""},
		{`"joe"`, ""}, {"alice", "alice"},
	} {
		if got, _ := lookupOne(d, tc.local, "example.com"); got != tc.want {
			t.Errorf("LookupAll(%q) with system users = %q; want %q", tc.local, got, tc.want)
		}
	}
	before := calls
	lookupOne(d, "joe", "example.com")
	lookupOne(d, "ghost", "example.com")
	if calls != before {
		t.Errorf("system user lookups are not cached: %d new calls", calls-before)
	}

	// An alias target that is no configured name is tried as a system
	// user at lookup time, so the order of LoadAliases and SetSystemUsers
	// does not matter.
	d = newDir()
	if err := d.LoadAliases(writeAliases(t, "staff: joe, root, alice\n")); err != nil {
		t.Fatal(err)
	}
	if got := d.LookupAll("staff", "example.com"); !reflect.DeepEqual(got, []string{"alice"}) {
		t.Errorf("LookupAll(staff) without system users = %v; want [alice]", got)
	}
	d.SetSystemUsers(true)
	if got := d.LookupAll("staff", "example.com"); !reflect.DeepEqual(got, []string{"alice", "joe"}) {
		t.Errorf("LookupAll(staff) with system users = %v; want [alice joe]", got)
	}
}

// TestDirectoryRouteQuoted: a quoted local part routes only through an
// explicit mapping, and the recipient address keeps the quotes.
func TestDirectoryRouteQuoted(t *testing.T) {
	r := fixtureRules(t, false)
	r.Directory = NewDirectory(map[string][]string{"bob": {`"joe@other"@example.com`}}, false)
	got := RouteHeader([]byte("To: \"joe@other\"@example.com, joe@other@example.com\r\n\r\n"), r)
	want := []Recipient{{User: "bob", Address: `"joe@other"@example.com`, Domain: "example.com"}}
	if !reflect.DeepEqual(got.Rcpts, want) {
		t.Errorf("RouteHeader = %+v; want %+v", got, want)
	}
}

// TestDirectoryUTF8 (RFC 6532): UTF-8 local parts match after NFC, in the
// configuration and in mail, and only through an explicit mapping.
func TestDirectoryUTF8(t *testing.T) {
	d := NewDirectory(map[string][]string{"joerg": {"jo\u0308rg"}}, false) // NFD in the config
	if u, _ := lookupOne(d, "jörg", "example.com"); u != "joerg" {
		t.Errorf("LookupAll(NFC jörg) = %q; want joerg", u)
	}
	r := fixtureRules(t, false)
	r.Directory = d
	got := RouteHeader([]byte("To: JO\u0308RG@example.com\r\n\r\n"), r) // NFD, upper case in mail
	if len(got.Rcpts) != 1 || got.Rcpts[0].User != "joerg" || got.Rcpts[0].Address != "JÖRG@example.com" {
		t.Errorf("RouteHeader(NFD JÖRG) = %+v; want joerg via JÖRG@example.com (NFC)", got)
	}
}

func TestDirectoryNil(t *testing.T) {
	var d *Directory
	if got := d.LookupAll("alice", "example.com"); got != nil {
		t.Errorf("nil Directory LookupAll = %v", got)
	}
}

// HasUser knows the users a message can reach (configured, and system
// users only when they are on), never an alias name or an address;
// Addresses gives a user's addresses in configuration order.
func TestDirectoryHasUser(t *testing.T) {
	d := NewDirectory(map[string][]string{
		"alice": {"alice", "Alice.Smith@EXAMPLE.com", "ali@bücher.example"},
		"bob":   nil,
	}, false)
	d.lookupUID = func(name string) (uint64, bool) {
		u, ok := map[string]uint64{"joe": 1000, "root": 0}[name]
		return u, ok
	}
	if err := d.LoadAliases(writeAliases(t, "staff: joe, alice\n")); err != nil {
		t.Fatal(err)
	}
	check := func(when string, want map[string]bool) {
		t.Helper()
		for name, w := range want {
			if got := d.HasUser(name); got != w {
				t.Errorf("%s: HasUser(%q) = %v; want %v", when, name, got, w)
			}
		}
	}
	check("without system users", map[string]bool{
		"alice": true, "bob": true, "joe": false, "staff": false, "root": false,
		"Alice": false, "alice.smith": false, "": false, "a b": false,
	})
	d.SetSystemUsers(true)
	check("with system users", map[string]bool{"joe": true, "root": false, "staff": false, "ghost": false, "../joe": false})
	if got, want := d.Addresses("alice"), []string{"alice", "Alice.Smith@example.com", "ali@xn--bcher-kva.example"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Addresses(alice) = %q; want %q", got, want)
	}
	if got := d.Addresses("joe"); got != nil {
		t.Errorf("Addresses(joe) = %q; want none", got)
	}
	var nilDir *Directory
	if nilDir.HasUser("alice") || nilDir.Addresses("alice") != nil {
		t.Errorf("a nil Directory knows someone")
	}
	for name, want := range map[string]bool{"joe": true, "j.doe-2": true, "Jörg": true, "": false, "-x": false, ".x": false, "a/b": false, "a b": false, "a\x00": false, strings.Repeat("x", 65): false} {
		if got := ValidUserName(name); got != want {
			t.Errorf("ValidUserName(%q) = %v; want %v", name, got, want)
		}
	}
}

// TestDirectoryFoldIntoASCII: a non-ASCII rune that NFC or lower-casing
// turns into ASCII never makes an address another mailbox's: such an
// address is refused with a note when added (configured, directory or
// group), and a message's local part with one reaches nobody (not the
// ASCII user); real non-ASCII letters still fold among themselves.
func TestDirectoryFoldIntoASCII(t *testing.T) {
	d := NewDirectory(map[string][]string{"isa": {"\u0130sa@example.com"}}, false) // İ lower-cases to i
	d.AddUsers(map[string][]string{
		"aaron":  {"\u212Aaren@example.com"}, // KELVIN SIGN: K under NFC, k lower-cased
		"karen":  {"karen@example.com"},
		"semi":   {"a\u037Eb@example.com"}, // GREEK QUESTION MARK: ';' under NFC
		"jorg":   {"JÖRG@example.com"},
		"yildiz": {"yıldız@example.com"}, // dotless ı lower-cases to itself
		"isa2":   {"isa@example.com"},
	}, "ldap")
	d.AddGroup("\u212Aitchen@example.com", []string{"karen"}, "ldap")
	for _, tc := range []struct{ local, want string }{
		{"karen", "karen"},
		{"KAREN", "karen"},
		{"\u212Aaren", ""},
		{"\u212AAREN", ""},
		{"isa", "isa2"},
		{"\u0130sa", ""},
		{"a;b", ""},
		{"jörg", "jorg"},
		{"jo\u0308rg", "jorg"},
		{"YILDIZ", ""},
		{"yıldız", "yildiz"},
		{"kitchen", ""},
	} {
		got := d.LookupAll(tc.local, "example.com")
		if (tc.want == "" && got != nil) || (tc.want != "" && (len(got) != 1 || got[0] != tc.want)) {
			t.Errorf("LookupAll(%q) = %v; want %q", tc.local, got, tc.want)
		}
	}
	notes := strings.Join(d.Ignored(), "\n")
	for _, a := range []string{"\u212Aaren@example.com", "\u0130sa@example.com", "a\u037Eb@example.com", "\u212Aitchen@example.com"} {
		if !strings.Contains(notes, strconv.Quote(a)) || !strings.Contains(notes, "folds into ASCII") {
			t.Errorf("no note refusing %q in:\n%s", a, notes)
		}
	}
	// In mail: the message's KELVIN SIGN local part is not normalised
	// into karen's name.
	r := fixtureRules(t, false)
	r.Directory = d
	if got := RouteHeader([]byte("To: \u212Aaren@example.com\r\n\r\n"), r); len(got.Rcpts) != 0 {
		t.Errorf("RouteHeader(KELVIN SIGN aren) = %+v; want no recipient", got.Rcpts)
	}
}
