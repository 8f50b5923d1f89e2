package ldapdir

import (
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestUserName(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" = refused
	}{
		{"alice", "alice"},
		{"Alice.Smith", "alice.smith"},
		{"J_Doe-2", "j_doe-2"},
		{"0day", "0day"},
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{strings.Repeat("a", 65), ""},
		{"", ""},
		{"../root", ""},
		{"a..b", ""},
		{".hidden", ""},
		{"-rf", ""},
		{"_x", ""},
		{"a/b", ""},
		{"a b", ""},
		{"a\x00b", ""},
		{"a\nb", ""},
		{"user@example.com", ""},
		{"DOMAIN\\user", ""},
		{"\u212Aaren", ""}, // KELVIN SIGN lower-cases to "k"
		{"\u0130stanbul", ""},
		{"jörg", ""},
		{"a$", ""},
	} {
		got, err := UserName(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("UserName(%q) = %q, want refused", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("UserName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestAddressValues(t *testing.T) {
	for _, tc := range []struct {
		in    string
		proxy bool
		want  string // "" with ok false
		ok    bool
		err   bool
	}{
		{in: "alice@example.com", want: "alice@example.com", ok: true},
		{in: "Alice.Smith+x@Example.COM", want: "Alice.Smith+x@Example.COM", ok: true},
		{in: "jörg@exämple.de", want: "jörg@exämple.de", ok: true},
		{in: "alice", err: true},
		{in: "@example.com", err: true},
		{in: "alice@", err: true},
		{in: "a@b@c", err: true},
		{in: "a b@c", err: true},
		{in: "a@b\t", err: true},
		{in: "a@b\r\nBcc: x@y", err: true},
		{in: "<a@b>", err: true},
		{in: "a@b,c@d", err: true},
		{in: "\"a\"@b", err: true},
		{in: "a\u00a0@b", err: true}, // NO-BREAK SPACE
		{in: "a\u2028@b", err: true}, // LINE SEPARATOR
		{in: "a\xff@b", err: true},
		{in: "\u212Aaren@example.com", err: true}, // KELVIN SIGN lower-cases to "k"
		{in: "ali\u017Fe@example.com", err: true}, // LONG S upper-cases to "S"
		{in: "\u0130nfo@example.com", err: true},  // I WITH DOT ABOVE lower-cases to "i"
		{in: "\u0131nfo@example.com", err: true},  // DOTLESS I upper-cases to "I"
		{in: "karen@\u212Aexample.com", err: true},
		{in: "SMTP:\u212Aaren@example.com", proxy: true, err: true},
		{in: "\u00C5sa@example.com", want: "\u00C5sa@example.com", ok: true}, // Å folds to å: not ASCII
		{in: strings.Repeat("a", 1021) + "@b.c", err: true},
		{in: "SMTP:alice@example.com", proxy: true, want: "alice@example.com", ok: true},
		{in: "smtp:a.smith@example.com", proxy: true, want: "a.smith@example.com", ok: true},
		{in: "sMtP:bob@example.com", proxy: true, want: "bob@example.com", ok: true},
		{in: "X500:/o=Example/ou=Exchange/cn=Recipients/cn=alice", proxy: true},
		{in: "x500:/o=x", proxy: true},
		{in: "SIP:alice@example.com", proxy: true},
		{in: "X400:c=US;a= ;p=Example", proxy: true},
		{in: "EUM:1234;phone-context=x", proxy: true},
		{in: "smtp2:alice@example.com", proxy: true},
		{in: "alice@example.com", proxy: true, err: true},
		{in: ":alice@example.com", proxy: true, err: true},
		{in: "SMTP:", proxy: true, err: true},
		{in: "SMTP:not an address", proxy: true, err: true},
		{in: "SMTP: alice@example.com", proxy: true, err: true},
		{in: "SMTP:SMTP:a@b", proxy: true, err: true},
	} {
		var got string
		var ok bool
		var err error
		if tc.proxy {
			got, ok, err = ProxyAddress(tc.in)
		} else {
			got, err = Address(tc.in)
			ok = err == nil
		}
		if (err != nil) != tc.err || ok != tc.ok || got != tc.want {
			t.Errorf("proxy=%v %q: got %q, %v, %v; want %q, %v, error %v", tc.proxy, tc.in, got, ok, err, tc.want, tc.ok, tc.err)
		}
	}
}

var safeName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// FuzzValues checks the invariants of the value parsers: a user name
// accepted is safe as a path element and an argv word and is the input
// lower-cased (ASCII); an address accepted has one "@", no space or
// control character; a proxyAddresses value gives an address only for
// the smtp: type, the same one Address gives for the rest.
func FuzzValues(f *testing.F) {
	for _, s := range []string{
		"alice", "Alice.Smith", "../root", "a..b", "\u212Aaren", "",
		"alice@example.com", "a@b@c", "a b@c", "<a@b>",
		"SMTP:alice@example.com", "smtp:a@b", "sMtP:x@y", "X500:/o=x", "SIP:a@b", "x400:c=US;a= ;",
		"SMTP:", ":a@b", "SMTP: a@b", "smtp:a@b\x00", "smtp:a\u2028@b", "\u212Aaren@x.example", "smtp:ali\u017Fe@x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if name, err := UserName(v); err == nil {
			if !safeName.MatchString(name) || strings.Contains(name, "..") || name != strings.ToLower(v) || len(name) != len(v) {
				t.Fatalf("UserName(%q) = %q: not safe", v, name)
			}
		}
		checkAddr := func(a string) {
			if strings.Count(a, "@") != 1 || strings.HasPrefix(a, "@") || strings.HasSuffix(a, "@") || !utf8.ValidString(a) || len(a) > MaxValueLen {
				t.Fatalf("address %q from %q", a, v)
			}
			for _, r := range a {
				if unicode.IsSpace(r) || unicode.IsControl(r) {
					t.Fatalf("address %q from %q has %q", a, v, r)
				}
			}
			// Case folding must not turn a non-ASCII rune into ASCII
			// (the address would equal another, ASCII one).
			ascii := func(s string) int {
				n := 0
				for i := 0; i < len(s); i++ {
					if s[i] < utf8.RuneSelf {
						n++
					}
				}
				return n
			}
			if n := ascii(a); ascii(strings.ToLower(a)) != n || ascii(strings.ToUpper(a)) != n {
				t.Fatalf("address %q from %q folds non-ASCII into ASCII", a, v)
			}
		}
		if a, err := Address(v); err == nil {
			checkAddr(a)
			if a != v {
				t.Fatalf("Address(%q) = %q, want the value itself", v, a)
			}
		}
		a, ok, err := ProxyAddress(v)
		if ok != (err == nil && a != "") {
			t.Fatalf("ProxyAddress(%q) = %q, %v, %v: inconsistent", v, a, ok, err)
		}
		if ok {
			checkAddr(a)
			if len(v) < 5 || !strings.EqualFold(v[:5], "smtp:") {
				t.Fatalf("ProxyAddress(%q) = %q without an smtp: prefix", v, a)
			}
			if b, err := Address(v[5:]); err != nil || b != a {
				t.Fatalf("ProxyAddress(%q) = %q, Address of the rest = %q, %v", v, a, b, err)
			}
		} else if err == nil && len(v) >= 5 && strings.EqualFold(v[:5], "smtp:") {
			t.Fatalf("ProxyAddress(%q): smtp: value ignored silently", v)
		}
	})
}
