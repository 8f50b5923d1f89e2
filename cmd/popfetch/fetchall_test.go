package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestFetchAllWithKeep: fetch_all with keep is one pass per run of
// `popfetch fetch`, and one per start of the daemon (later polls take only
// new mail); `popfetch check` warns that the combination refetches the
// whole mailbox.
func TestFetchAllWithKeep(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		{UID: "a", Data: []byte("Subject: x\r\n\r\nhi\r\n")},
		{UID: "b", Data: []byte("Subject: y\r\n\r\nho\r\n")},
	}})
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{name: "fake", port: srv.Port(), user: "user", pass: "pass",
		maildir: maildir, keep: true, extra: []string{"fetch_all = true"}}))

	code, out, errs := runCLI(t, "check", "-f", rc)
	if code != exitOK || !strings.Contains(errs, "warning: fetch_all with keep fetches everything again") || !strings.Contains(errs, "popfetch fetch") {
		t.Fatalf("check = %d; want %d and the fetch_all warning on stderr\n%s%s", code, exitOK, out, errs)
	}
	for i := range 2 {
		code, out, _ := runCLI(t, "fetch", "-f", rc)
		if code != exitOK || !strings.Contains(out, "fake: 2 new, 2 delivered, 0 deleted") {
			t.Fatalf("fetch %d = %d %q; want both messages again (fetch_all is this run)", i, code, out)
		}
	}
	if n := maildirCount(t, maildir); n != 4 {
		t.Fatalf("%d messages after two runs; want 4", n)
	}

	d := startDaemon(t, rc)
	waitMaildir(t, maildir, 6, 10*time.Second)
	waitFor(t, 30*time.Second, "the first poll to end", func() bool { return len(d.log.lines("poll done")) > 0 })
	for i := range 2 {
		r := daemonCLI(t, rc, "now")
		if r.code != 0 || !strings.Contains(r.stdout, "fake: 0 new") {
			t.Fatalf("popfetch now %d = %d %q; want nothing new: the daemon's fetch_all pass was its first poll", i, r.code, r.stdout)
		}
	}
	if n := maildirCount(t, maildir); n != 6 {
		t.Fatalf("%d messages; want 6 (the daemon fetched the mailbox once)", n)
	}
}
