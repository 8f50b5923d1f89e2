package deliver

import (
	"slices"
	"strings"
	"testing"
)

// TestSetLearnedOrder: a learned address comes after the configured
// addresses and before aliases and system users; routes to unknown users,
// invalid keys and conflicting folded keys are ignored and reported.
func TestSetLearnedOrder(t *testing.T) {
	d := NewDirectory(map[string][]string{"alice": {"alice"}, "bob": {"bob@example.com"}}, false)
	d.setAliases(map[string][]string{"info": {"alice"}, "sys": {"sysu"}})
	d.lookupUID = func(name string) (uint64, bool) { return 1000, name == "sysu" || name == "joe" }
	d.SetSystemUsers(true)
	d.SetLearned(map[string]string{
		"info@example.com":   "bob",   // before the alias
		"alice@example.com":  "bob",   // the configured local part wins
		"bob@example.com":    "alice", // the configured address wins
		"joe@example.com":    "alice", // before the system user joe
		"Old@Example.COM.":   "joe",   // folds to the one below, which sorts first: ignored
		"OLD@example.com":    "alice",
		"ghost@example.com":  "Mallory", // not a user, not a system name
		"x@":                 "alice",   // invalid
		"list@lists.example": "sysu",    // a system user
	}, map[string]string{"news.example.net": "alice", "nodot": "alice", "z.example": "../x"})
	for _, tc := range []struct {
		local, domain string
		want          []string
		learned       bool
	}{
		{"info", "example.com", []string{"bob"}, true},
		{"info", "example.org", []string{"alice"}, false},
		{"alice", "example.com", []string{"alice"}, false},
		{"bob", "example.com", []string{"bob"}, false},
		{"joe", "example.com", []string{"alice"}, true},
		{"joe", "example.org", []string{"joe"}, false},
		{"old", "EXAMPLE.com", []string{"alice"}, true},
		{"ghost", "example.com", nil, false},
	} {
		got, learned := d.lookupAll(tc.local, tc.domain)
		if !slices.Equal(got, tc.want) || learned != tc.learned {
			t.Errorf("lookupAll(%q, %q) = %v, %v; want %v, %v", tc.local, tc.domain, got, learned, tc.want, tc.learned)
		}
	}
	if u, ok := d.learnedAddress("LIST", "lists.example"); !ok || u != "sysu" {
		t.Errorf("learnedAddress(LIST@lists.example) = %q, %v; want sysu", u, ok)
	}
	if u, ok := d.learnedListID("news.example.net"); !ok || u != "alice" {
		t.Errorf("learnedListID(news.example.net) = %q, %v; want alice", u, ok)
	}
	ign := strings.Join(d.Ignored(), "\n")
	for _, want := range []string{`"ghost@example.com": unknown user "Mallory"`, `"x@": invalid address`,
		`"Old@Example.COM." to joe: the address is already learned for alice`, `"list-id:nodot": invalid List-Id`,
		`"list-id:z.example": unknown user "../x"`} {
		if !strings.Contains(ign, want) {
			t.Errorf("Ignored() = %q; want it to contain %q", ign, want)
		}
	}
	// Without system users a system name is no user at load.
	d.SetSystemUsers(false)
	d.SetLearned(map[string]string{"old@example.com": "joe"}, nil)
	if got := d.LookupAll("old", "example.com"); got != nil {
		t.Errorf("system users off: LookupAll(old) = %v; want nil", got)
	}
	if ign := d.Ignored(); len(ign) != 1 || !strings.Contains(ign[0], `unknown user "joe"`) {
		t.Errorf("system users off: Ignored() = %q", ign)
	}
}

// TestSetLearnedCaseSensitive: with case-sensitive local parts a learned
// address matches only as written.
func TestSetLearnedCaseSensitive(t *testing.T) {
	d := NewDirectory(map[string][]string{"alice": {"alice"}}, true)
	d.SetLearned(map[string]string{"Old@example.com": "alice"}, nil)
	if got := d.LookupAll("Old", "example.com"); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("LookupAll(Old) = %v", got)
	}
	if got := d.LookupAll("old", "example.com"); got != nil {
		t.Errorf("LookupAll(old) = %v; want nil", got)
	}
}

func TestListID(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"List-Id: <list.example.org>\r\n", "list.example.org"},
		{"List-Id: List Header Mailing List <list-header.nisto.com>\r\n", "list-header.nisto.com"}, // RFC 2919 §3 example
		{"List-ID: \"a <x.y>\" <Mixed.Case.Example>\r\n", "mixed.case.example"},
		{"List-Id: <a.b> (comment <c.d>)\r\n", "a.b"},
		{"List-Id: Tests\r\n\t<folded.example>\r\n", "folded.example"},
		{"List-Id: <first.example>\r\nList-Id: <second.example>\r\n", "first.example"},
		{"List-Id: <nodot>\r\n", ""},
		{"List-Id: <a..b>\r\n", ""},
		{"List-Id: <.a.b>\r\n", ""},
		{"List-Id: <a b.c>\r\n", ""},
		{"List-Id: <a.b> trailing\r\n", ""},
		{"List-Id: list.example.org\r\n", ""},
		{"List-Id: <jörg.example>\r\n", ""},
		{"List-Id: <" + strings.Repeat("a.", 128) + "b>\r\n", ""},
		{"To: x@example.com\r\n", ""},
	} {
		if got := ListID([]byte(tc.header + "\r\nbody\r\n")); got != tc.want {
			t.Errorf("ListID(%q) = %q; want %q", tc.header, got, tc.want)
		}
	}
}

func TestFieldAddresses(t *testing.T) {
	const pf = "Received: from pop.isp.example by host with POP3 (popfetch 1.0); date\r\n"
	raw := []byte("Received: from host by lmtp.example with LMTP id 1; date\r\n" +
		"X-Popfetch-Unrouted: Old.Bob@OLD.Example.NET., \"x\" <list@lists.example.org>, bad@@, old.bob@old.example.net\r\n" +
		"X-Popfetch-Unrouted: second@example.com\r\n" + pf + "To: a@example.com\r\n\r\n")
	got := FieldAddresses(raw, "x-popfetch-unrouted")
	want := []string{"Old.Bob@old.example.net", "list@lists.example.org", "old.bob@old.example.net"}
	if !slices.Equal(got, want) {
		t.Errorf("FieldAddresses = %q; want %q", got, want)
	}
	if got := FieldAddresses(raw, "Cc"); got != nil {
		t.Errorf("FieldAddresses(Cc) = %q; want nil", got)
	}
	// Below popfetch's Received, or without one, the sender wrote it
	// (even a forged popfetch Received below the real one changes nothing).
	for _, h := range []string{
		"X-Popfetch-Reason: x\r\n" + pf + "X-Popfetch-Unrouted: ceo@example.com\r\n" + pf,
		"X-Popfetch-Unrouted: ceo@example.com\r\nReceived: from a by b with ESMTP; date\r\n",
	} {
		if got := FieldAddresses([]byte(h+"\r\n"), "X-Popfetch-Unrouted"); got != nil {
			t.Errorf("FieldAddresses(%q) = %q; want nil", h, got)
		}
	}
}

// FuzzListID: never panics; a result is a lower-case dot-atom that
// ValidListID accepts unchanged.
func FuzzListID(f *testing.F) {
	for _, s := range []string{"<a.b>", "x <a.b> (c)", `"<a.b>" <c.d>`, "<a..b>", "(((", `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, ok := parseListID(v)
		if !ok {
			return
		}
		if again, ok2 := ValidListID(id); !ok2 || again != id || id != strings.ToLower(id) || hasUnsafe(id) {
			t.Errorf("parseListID(%q) = %q; not a valid lower-case identifier", v, id)
		}
	})
}

// TestSetLearnedBeforeDirectoryUsers: a route learned for a user that only
// a directory (AddUsers, after the rc file's users and the learned file)
// knows is used once that user is added, and reported as unknown before.
func TestSetLearnedBeforeDirectoryUsers(t *testing.T) {
	d := NewDirectory(map[string][]string{"alice": {"alice"}}, false)
	d.SetLearned(map[string]string{"list@lists.example": "ann"}, map[string]string{"news.example.net": "ann"})
	if u, ok := d.learnedAddress("list", "lists.example"); ok {
		t.Fatalf("before AddUsers: learnedAddress = %q; want no route", u)
	}
	if ign := strings.Join(d.Ignored(), "\n"); !strings.Contains(ign, `"list@lists.example": unknown user "ann"`) {
		t.Errorf("before AddUsers: Ignored() = %q; want the unknown user named", ign)
	}
	d.AddUsers(map[string][]string{"ann": {"ann@example.com"}}, "ldap")
	if u, ok := d.learnedAddress("list", "lists.example"); !ok || u != "ann" {
		t.Errorf("after AddUsers: learnedAddress = %q, %v; want ann", u, ok)
	}
	if u, ok := d.learnedListID("news.example.net"); !ok || u != "ann" {
		t.Errorf("after AddUsers: learnedListID = %q, %v; want ann", u, ok)
	}
	if ign := d.Ignored(); len(ign) != 0 {
		t.Errorf("after AddUsers: Ignored() = %q; want nothing", ign)
	}
}
