package deliver

import (
	"slices"
	"strings"
	"testing"
)

// TestMaildirPlaceholders: a Maildir path has the placeholder syntax of an
// MDA argument, with {user} and {domain} known; the path expands exactly
// the placeholders MaildirPlaceholders reports as known, and other braces
// stay literal directory names.
func TestMaildirPlaceholders(t *testing.T) {
	rc := Recipient{User: "joe", Domain: "example.com"}
	for _, tc := range []struct {
		path   string
		phs    []Placeholder
		expand string
	}{
		{"/m/joe", nil, "/m/joe"},
		{"/m/{user}", []Placeholder{{"{user}", true}}, "/m/joe"},
		{"/v/{domain}/{user}/Maildir", []Placeholder{{"{domain}", true}, {"{user}", true}}, "/v/example.com/joe/Maildir"},
		{"/m/{{user}", []Placeholder{{"{user}", true}}, "/m/{joe"},
		{"/m/{user}}", []Placeholder{{"{user}", true}}, "/m/joe}"},
		{"/m/{}/{user}", []Placeholder{{"{user}", true}}, "/m/{}/joe"},
		{"/m/{a b}/{a/b}/{user}", []Placeholder{{"{user}", true}}, "/m/{a b}/{a/b}/joe"},
		{"/m/{a.b}/{user}", []Placeholder{{"{user}", true}}, "/m/{a.b}/joe"},
		{"/m/{address}/{user}", []Placeholder{{"{address}", false}, {"{user}", true}}, "/m/{address}/joe"},
		{"/m/{User}", []Placeholder{{"{User}", false}}, "/m/{User}"},
		{"/m/{not closed", nil, "/m/{not closed"},
	} {
		if got := MaildirPlaceholders(tc.path); !slices.Equal(got, tc.phs) {
			t.Errorf("MaildirPlaceholders(%q) = %v; want %v", tc.path, got, tc.phs)
		}
		got, err := NewMaildir(tc.path, MaildirOptions{LocalHost: "h"}).dir(rc)
		if err != nil || got != tc.expand {
			t.Errorf("dir(%q) = %q, %v; want %q", tc.path, got, err, tc.expand)
		}
	}
}

// FuzzMaildirPlaceholders: a Maildir expands a path exactly where
// MaildirPlaceholders finds a known placeholder, and that is every
// "{user}" and "{domain}" written in it, as a plain text replacement
// would find them.
func FuzzMaildirPlaceholders(f *testing.F) {
	for _, s := range []string{"/m/{user}", "/m/{{user}", "/v/{domain}/{user}", "/m/{}", "/m/{a{user}b}", "/m/{", "}{user}{"} {
		f.Add(s)
	}
	rc := Recipient{User: "joe", Domain: "example.com"}
	f.Fuzz(func(t *testing.T, path string) {
		known := 0
		for _, ph := range MaildirPlaceholders(path) {
			if ph.Known != (ph.Text == "{user}" || ph.Text == "{domain}") {
				t.Fatalf("MaildirPlaceholders(%q): bad %+v", path, ph)
			}
			if ph.Known {
				known++
			}
		}
		if want := strings.Count(path, "{user}") + strings.Count(path, "{domain}"); known != want {
			t.Fatalf("MaildirPlaceholders(%q) finds %d known placeholders; the path has %d", path, known, want)
		}
		got, err := NewMaildir(path, MaildirOptions{LocalHost: "h"}).dir(rc)
		if want := strings.NewReplacer("{user}", "joe", "{domain}", "example.com").Replace(path); err != nil || got != want {
			t.Fatalf("dir(%q) = %q, %v; want %q", path, got, err, want)
		}
	})
}
