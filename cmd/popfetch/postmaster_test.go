package main

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite cmd/popfetch/testdata/postmaster/*.golden")

// postmasterFixture writes a postmaster Maildir with crafted messages:
// encoded-word subjects in UTF-8 and windows-1252, ANSI escapes and a
// bidi override, a cut X-Popfetch-Unrouted, a file without a header, one
// named without a time (its mtime counts), a directory where a message
// should be, and a dot file that is skipped.
func postmasterFixture(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "postmaster")
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"new/1700000300.M5P1Q1.host": "X-Popfetch-Reason: unknown user dave@example.com\n" +
			"X-Popfetch-Unrouted: dave@example.com\n" +
			"Received: from pop.example.net\n\tby host with POP3 (popfetch 1)\n" +
			"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.net>\n" +
			"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\n\nbody\n",
		"cur/1700000100.M1P1Q1.host:2,S": "X-Popfetch-Reason: partly routed (to alice); not routed: unknown user a@example.com, b@example.com\n" +
			"X-Popfetch-Unrouted: a@example.com, b@example.com (3 more)\n" +
			"Received: from pop.example.net\n\tby host with POP3 (popfetch 1)\n" +
			"From: \"Evil \x1b]0;title\x07\" <evil@example.org>\n" +
			"Subject: \x1b[31mURGENT\x1b[0m pay \u202eexe.fdp\u202c now\n\n",
		"new/1700000200.M9P2Q7.host": "From: =?windows-1252?q?Andr=E9?= <andre@example.fr>\n" +
			"Subject: =?windows-1252?q?Caf=E9_=80_50?=\n" +
			"X-Popfetch-Reason: mail loop: already fetched by popfetch 3 times\n" +
			"Received: from pop.example.net\n\tby host with POP3 (popfetch 1)\n\n",
		"new/1700000400.M1P1Q2.host": "this is no header at all\n\njust text\n",
		"new/no-time-in-name": "From: x@example.com\nSubject: " + strings.Repeat("long subject ", 10) + "\n" +
			"X-Popfetch-Reason: " + strings.Repeat("a very long reason ", 10) + "\n" +
			"Received: from pop.example.net\n\tby host with POP3 (popfetch 1)\n\n",
		"new/.hidden":                "From: hidden@example.com\n\n",
		"tmp/1700000000.M1P1Q1.host": "From: tmp@example.com\n\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(dir, "new/no-time-in-name"), time.Time{}, time.Unix(1700000250, 0)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "new/1700000500.M1P1Q1.host"), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkGolden compares got with testdata/postmaster/name, with the
// fixture's directory written as DIR.
func checkGolden(t *testing.T, name, dir, got string) {
	t.Helper()
	got = strings.ReplaceAll(got, dir, "DIR")
	path := filepath.Join("testdata", "postmaster", name)
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -run %s -update rewrites it):\ngot:\n%s\nwant:\n%s", path, t.Name(), got, want)
	}
}

// The listing: oldest first by the time in the Maildir name (else the
// mtime), encoded-words decoded, nothing that could drive a terminal left,
// long cells cut, a malformed or unreadable entry listed with its error;
// the same fields as JSON.
func TestPostmasterListing(t *testing.T) {
	dir := postmasterFixture(t)
	list, err := listMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	writeWaiting(&text, list, time.UTC)
	checkGolden(t, "list.golden", dir, text.String())
	for _, bad := range []string{"\x1b", "\u202e", "\x07"} {
		if strings.Contains(text.String(), bad) {
			t.Errorf("the listing contains %q", bad)
		}
	}
}

// popfetch postmaster itself: the account's Maildir from the rc file,
// text and --json, and the cases that cannot be listed.
func TestPostmasterCommand(t *testing.T) {
	dir := postmasterFixture(t)
	rc := filepath.Join(t.TempDir(), "rc.hcl")
	writeFile(t, rc, rcText(t.TempDir(), nil,
		rcAccount{name: "md", port: 110, user: "u", pass: "p", maildir: filepath.Join(dir, "..", "{user}"),
			extra: []string{`multidrop {
    local_domains = ["example.com"]
    user "joe" {}
  }`, `postmaster { maildir = "` + dir + `" }`}},
		rcAccount{name: "other", port: 110, user: "v", pass: "p", maildir: filepath.Join(dir, "..", "other"),
			extra: []string{`postmaster { mda = ["/bin/cat"] }`}},
	))
	code, out, errs := runCLI(t, "postmaster", "-f", rc, "--account", "md", "--json")
	if code != exitOK {
		t.Fatalf("postmaster --json = %d\n%s%s", code, out, errs)
	}
	checkGolden(t, "list.json.golden", dir, out)
	if code, out, errs := runCLI(t, "-f", rc, "postmaster", "--account", "md"); code != exitOK || strings.Count(out, "\n") != 7 {
		t.Errorf("postmaster = %d; want 0 and a head line and 6 rows\n%s%s", code, out, errs)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"postmaster"}, "several accounts"},
		{[]string{"postmaster", "--account", "other"}, "not a Maildir"},
		{[]string{"postmaster", "--account", "nosuch"}, `no account "nosuch"`},
		{[]string{"postmaster", "extra"}, "takes no arguments"},
	} {
		code, out, errs := runCLI(t, append(tc.args, "-f", rc)...)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("%v = %d, stderr %q; want %d and %q\n%s", tc.args, code, errs, exitUsage, tc.want, out)
		}
	}
	// An empty postmaster says so.
	empty := filepath.Join(t.TempDir(), "rc.hcl")
	writeFile(t, empty, rcText(t.TempDir(), nil, rcAccount{name: "md", port: 110, user: "u", pass: "p", maildir: dir,
		extra: []string{`postmaster { maildir = "` + filepath.Join(dir, "..", "none") + `" }`}}))
	if code, out, _ := runCLI(t, "postmaster", "-f", empty); code != exitOK || !strings.HasPrefix(out, "nothing waits in ") {
		t.Errorf("empty postmaster = %d %q", code, out)
	}
}

func TestTermSafe(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 0, "plain"},
		{"a\x1b[1;31mred\x1b[0m", 0, "a?red?"},
		{"t\x1b]0;owned\x07x", 0, "t?x"},
		{"t\x1b]0;owned\x1b\\x", 0, "t?x"},
		{"\x1bc reset", 0, "? reset"},
		{"tab\there\r\nnl", 0, "tab here??nl"},
		{"\u202eevil\u202c \u2066x\u2069", 0, "?evil? ?x?"},
		{"c1 \u009b31m", 0, "c1 ?31m"},
		{"bad \xff utf8", 0, "bad \uFFFD utf8"},
		{"äöüßéèàç", 5, "äöüß…"},
		{"short", 5, "short"},
		{"\x1b[", 0, "?"},
	} {
		if got := termSafe(tc.in, tc.max); got != tc.want {
			t.Errorf("termSafe(%q, %d) = %q; want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

// FuzzTermSafe: no control character or escape survives, and the result
// is valid UTF-8 within the width.
func FuzzTermSafe(f *testing.F) {
	for _, s := range []string{"a\x1b[31mb", "\u202e", "x\x1b]0;t\x07", "\xff\xfe"} {
		f.Add(s, 10)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = max%200 + 1
		if max < 1 {
			max = -max + 1
		}
		got := termSafe(s, max)
		for _, r := range got {
			if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 {
				t.Fatalf("termSafe(%q) = %q keeps %U", s, got, r)
			}
		}
		if n := len([]rune(got)); n > max {
			t.Fatalf("termSafe(%q, %d) has %d runes", s, max, n)
		}
	})
}

// FuzzParseHeader: any file start gives fields or an error, never a panic,
// and the listing of it prints.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte("From: a@x\nSubject: =?utf-8?q?x?=\n\nbody"), false)
	f.Add([]byte(" bad\n"), true)
	f.Add([]byte("A: b\n c\nD: e"), true)
	f.Fuzz(func(t *testing.T, b []byte, cut bool) {
		h, _ := parseHeader(b, cut)
		w := waiting{From: fromAddress(h.Get("From")), Subject: termSafe(decodeWords(h.Get("Subject")), 1000)}
		w.Unrouted, w.UnroutedMore = unrouted(h.Get("X-Popfetch-Unrouted"))
		var out bytes.Buffer
		writeWaiting(&out, []waiting{w}, time.UTC)
	})
}

// swappedEntry is a directory entry read before its name was swapped: it
// still says "regular file".
type swappedEntry struct {
	fs.DirEntry
	info fs.FileInfo
}

func (e swappedEntry) Info() (fs.FileInfo, error) { return e.info, nil }

// readWaiting opens the file it lists without following a symbolic link
// put in place of the file after the directory was read (nor blocking on
// a FIFO): what the listing shows is never another file's header.
func TestReadWaitingSwappedForLink(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, "Subject: the other file\n\nbody\n")
	name := filepath.Join(dir, "1700000001.M1P1Q1.host")
	writeFile(t, name, "Subject: s\n\nbody\n")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ents, func(e fs.DirEntry) bool { return e.Name() == filepath.Base(name) })
	info, err := ents[i].Info()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, name); err != nil {
		t.Fatal(err)
	}
	w := readWaiting(name, swappedEntry{ents[i], info})
	if w.Subject != "" || w.Error == "" {
		t.Errorf("readWaiting of a name swapped for a link = %+v; want an error, nothing of the link's target", w)
	}
}
