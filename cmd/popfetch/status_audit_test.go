package main

import (
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/ldapdir"
	"github.com/popfetch/popfetch/fetch"
)

// TestStatusShowsDirectoryReason: `popfetch status` cuts the last
// directory error at 200 characters, and that error starts with the URL
// twice (fetch's "ldap URL:" and ldapdir's "ldap directory URL:") and
// the whole search filter (the AD default alone is 96 characters): the
// reason the server gave, the one thing the admin needs, is cut off. The
// error text is built here the way fetch.Poller.loadDirectory (before
// it stopped repeating the URL) and ldapdir.load wrap a search refused
// with insufficientAccessRights: the reason must show either way.
func TestStatusShowsDirectoryReason(t *testing.T) {
	const url = "ldaps://dc1.example.com"
	reason := `LDAP Result Code 50 "Insufficient Access Rights": 00002098: SecErr: DSID-03150F94, problem 4003 (INSUFF_ACCESS_RIGHTS), data 0`
	lastErr := "ldap " + url + ": ldap directory " + url + ":636: search \"" + ldapdir.DefaultFilter +
		"\" under \"DC=example,DC=com\": " + reason
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	st := &fetch.DirectoryState{Source: "ldap", URL: url, LastError: lastErr, LastErrorAt: now, FailingSince: now.Add(-time.Hour)}
	line := directoryLine(st, now)
	if !strings.Contains(line, "Insufficient Access Rights") {
		t.Errorf("status line hides the server's reason:\n%s", line)
	}
}

// printableEnds keeps a long text's start and end, escaping control
// characters, and leaves a short one whole.
func TestPrintableEnds(t *testing.T) {
	long := "start " + strings.Repeat("x", 500) + " the\x1b[2Jreason"
	for _, tc := range []struct{ in, want string }{
		{"short\nerror", `short\x0aerror`},
		{long, `start xxxx …  the\x1b[2Jreason`},
	} {
		got := printableEnds(tc.in, 10, 14)
		if got != tc.want {
			t.Errorf("printableEnds(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}
