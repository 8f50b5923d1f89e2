package deliver

import (
	"slices"
	"strings"
	"testing"
)

// TestMDAPlaceholders pins the one placeholder syntax that NewMDA, the
// expansion and the rc file's validation share.
func TestMDAPlaceholders(t *testing.T) {
	vals := map[string]string{"user": "joe", "address": "joe@example.com", "domain": "example.com", "sender": "s@x"}
	for _, tc := range []struct {
		arg    string
		phs    []MDAPlaceholder
		expand string
	}{
		{"-d", nil, "-d"},
		{"{user}", []MDAPlaceholder{{"{user}", true}}, "joe"},
		{"--to={user}@{domain}", []MDAPlaceholder{{"{user}", true}, {"{domain}", true}}, "--to=joe@example.com"},
		{"{sender}{address}", []MDAPlaceholder{{"{sender}", true}, {"{address}", true}}, "s@xjoe@example.com"},
		{"{{user}", []MDAPlaceholder{{"{user}", true}}, "{joe"}, // the inner pair is the placeholder
		{"{user}}", []MDAPlaceholder{{"{user}", true}}, "joe}"},
		{"{a{user}b}", []MDAPlaceholder{{"{user}", true}}, "{ajoeb}"},
		{"{}", nil, "{}"},
		{"a{b c}", nil, "a{b c}"},
		{"{a/b}", nil, "{a/b}"},
		{"{not closed", nil, "{not closed"},
		{"{User}", []MDAPlaceholder{{"{User}", false}}, "{User}"},
		{"${HOME}", []MDAPlaceholder{{"{HOME}", false}}, "${HOME}"},
		{"{recipient}{user}", []MDAPlaceholder{{"{recipient}", false}, {"{user}", true}}, "{recipient}joe"},
		{"{user_1}", []MDAPlaceholder{{"{user_1}", false}}, "{user_1}"},
	} {
		if got := MDAPlaceholders(tc.arg); !slices.Equal(got, tc.phs) {
			t.Errorf("MDAPlaceholders(%q) = %v; want %v", tc.arg, got, tc.phs)
		}
		if got := expand(tc.arg, vals); got != tc.expand {
			t.Errorf("expand(%q) = %q; want %q", tc.arg, got, tc.expand)
		}
	}
}

// FuzzMDAPlaceholders: every placeholder found is "{name}" with an
// identifier name and occurs in the argument in order; expansion replaces
// exactly the known ones, and leaves an argument without any unchanged.
func FuzzMDAPlaceholders(f *testing.F) {
	for _, s := range []string{"{user}", "{{user}", "a{b c}{domain}", "${HOME}", "{", "}{", "{a{b{c}}}", "{user}{address}{sender}{domain}"} {
		f.Add(s)
	}
	vals := map[string]string{"user": "U", "address": "A", "domain": "D", "sender": "S"}
	marks := map[string]string{"user": "\x01", "address": "\x01", "domain": "\x01", "sender": "\x01"}
	f.Fuzz(func(t *testing.T, a string) {
		rest := a
		known := 0
		for _, ph := range MDAPlaceholders(a) {
			name := strings.TrimSuffix(strings.TrimPrefix(ph.Text, "{"), "}")
			if len(name) != len(ph.Text)-2 || !isIdent(name) || ph.Known != mdaPlaceholders[name] {
				t.Fatalf("MDAPlaceholders(%q): bad %+v", a, ph)
			}
			i := strings.Index(rest, ph.Text)
			if i < 0 {
				t.Fatalf("MDAPlaceholders(%q): %s not in order", a, ph.Text)
			}
			rest = rest[i+len(ph.Text):]
			if ph.Known {
				known++
			}
		}
		got := expand(a, vals)
		if known == 0 && got != a {
			t.Fatalf("expand(%q) = %q; want it unchanged", a, got)
		}
		if !strings.Contains(a, "\x01") {
			if n := strings.Count(expand(a, marks), "\x01"); n != known {
				t.Fatalf("expand(%q) replaced %d placeholders; want %d", a, n, known)
			}
		}
	})
}
