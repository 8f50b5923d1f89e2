package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/ldapdir/slapdtest"
	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// learnRC writes an rc file for a multidrop account of example.com on the
// POP3 server at port whose catch-all address is catchall@example.com
// (ignored in the envelope): users joe and ann (their own names), a
// Maildir per user under dir, the postmaster Maildir dir/postmaster; more
// lines go into the multidrop block.
func learnRC(t *testing.T, dir string, port int, user string, more ...string) string {
	t.Helper()
	rc := filepath.Join(dir, "popfetch.hcl")
	writeFile(t, filepath.Join(dir, "pw"), "pw\n")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{
		name: "desk", port: port, user: user, passFile: filepath.Join(dir, "pw"),
		maildir: filepath.Join(dir, "{user}"),
		extra: []string{fmt.Sprintf(`multidrop {
    local_domains    = ["example.com"]
    envelope_ignore  = ["catchall@example.com"]
    fallback_headers = ["To"]
    user "joe" {}
    user "ann" {}
%s
  }`, strings.Join(more, "\n")), fmt.Sprintf("postmaster { maildir = %q }", filepath.Join(dir, "postmaster"))},
	}))
	return rc
}

// envMsg is message seq for the envelope recipient rcpt (Delivered-To),
// with more header lines; To names nobody local.
func envMsg(seq int, rcpt, more string) []byte {
	return fmt.Appendf(nil, "Delivered-To: %s\r\n%sFrom: s@example.net\r\nTo: someone@elsewhere.example.net\r\nSubject: seq %d\r\nMessage-ID: <learn-%d@example.net>\r\nX-Seq: %d\r\n\r\nbody %d\r\n",
		rcpt, more, seq, seq, seq, seq)
}

// fetchOnce runs popfetch fetch and wants it to succeed.
func fetchOnce(t *testing.T, rc string) cliResult {
	t.Helper()
	r := daemonCLI(t, rc, "fetch")
	if r.code != exitOK {
		t.Fatalf("fetch = %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// pmFile returns the one postmaster file holding X-Seq seq.
func pmFile(t *testing.T, rc string, seq int) waiting {
	t.Helper()
	var found []waiting
	for _, w := range listJSON(t, rc) {
		if strings.Contains(readString(t, w.File), fmt.Sprintf("\nX-Seq: %d\n", seq)) {
			found = append(found, w)
		}
	}
	if len(found) != 1 {
		t.Fatalf("postmaster holds %d copies of message %d; want 1", len(found), seq)
	}
	return found[0]
}

// Learning end to end with the real binary and a real dovecot: a message
// to an old address lands at the postmaster, popfetch postmaster lists it,
// reroute --learn delivers it to joe once and learns the address, check
// lists the route, the next message to that address goes to joe at the
// next fetch, and after --forget to the postmaster again. A list message
// teaches its List-Id. A message that teaches nothing, or only through an
// X-Popfetch-Unrouted its sender wrote, is refused with the file left.
func TestLearnEndToEnd(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "desk", "pw")
	const listHdr = "List-Id: Example list <list.lists.example.org>\r\n"
	listMsg := func(seq int) []byte {
		return fmt.Appendf(nil, "Delivered-To: catchall@example.com\r\n%sFrom: poster@example.net\r\nTo: list@lists.example.org\r\nSubject: list %d\r\nMessage-ID: <list-%d@lists.example.org>\r\nX-Seq: %d\r\n\r\nbody %d\r\n",
			listHdr, seq, seq, seq, seq)
	}
	mb.Put(t,
		envMsg(1, "old.joe@example.com", ""),
		listMsg(2),
		envMsg(3, "catchall@example.com", ""),
		// The sender's own X-Popfetch-Unrouted: below popfetch's Received.
		envMsg(4, "catchall@example.com", "X-Popfetch-Unrouted: ceo@example.com\r\n"),
	)
	dir := t.TempDir()
	rc := learnRC(t, dir, srv.PlainPort, mb.User)
	joe, pm := filepath.Join(dir, "joe"), filepath.Join(dir, "postmaster")
	fetchOnce(t, rc)
	if n := maildirCount(t, pm); n != 4 {
		t.Fatalf("postmaster holds %d messages after the fetch; want 4", n)
	}

	// 1. An old address.
	old := pmFile(t, rc, 1)
	if strings.Join(old.Unrouted, ",") != "old.joe@example.com" || old.Reason != "unknown user old.joe@example.com" {
		t.Errorf("popfetch postmaster lists message 1 as %+v", old)
	}
	r := daemonCLI(t, rc, "reroute", "--learn", "--to", "joe", old.File)
	if want := old.File + ": delivered to joe (maildir " + joe + "); learned old.joe@example.com -> joe\n"; r.code != exitOK || r.stdout != want {
		t.Fatalf("reroute --learn = %d, %q; want 0, %q\n%s", r.code, r.stdout, want, r.stderr)
	}
	if exists(old.File) {
		t.Errorf("the rerouted file is still at the postmaster")
	}
	if got := seqCounts(t, joe); fmt.Sprint(got) != "map[1:1]" {
		t.Errorf("joe holds %v after the reroute; want message 1 once", got)
	}
	r = daemonCLI(t, rc, "check")
	if r.code != exitOK || !strings.Contains(r.stdout, "# learned route: old.joe@example.com -> joe (learned ") {
		t.Errorf("check = %d; want the learned route listed\n%s%s", r.code, r.stdout, r.stderr)
	}
	mb.Put(t, envMsg(5, "old.joe@example.com", ""))
	fetchOnce(t, rc)
	if got := seqCounts(t, joe); fmt.Sprint(got) != "map[1:1 5:1]" {
		t.Errorf("joe holds %v after the next fetch; want messages 1 and 5 once", got)
	}
	if n := maildirCount(t, pm); n != 3 {
		t.Errorf("postmaster holds %d messages; want the 3 not yet handled", n)
	}
	r = daemonCLI(t, rc, "reroute", "--forget", "old.joe@example.com")
	if r.code != exitOK || r.stdout != "forgot old.joe@example.com (account desk)\n" {
		t.Errorf("reroute --forget = %d, %q\n%s", r.code, r.stdout, r.stderr)
	}
	if r := daemonCLI(t, rc, "check"); strings.Contains(r.stdout, "learned route") {
		t.Errorf("check lists a learned route after --forget:\n%s", r.stdout)
	}
	mb.Put(t, envMsg(6, "old.joe@example.com", ""))
	fetchOnce(t, rc)
	if w := pmFile(t, rc, 6); strings.Join(w.Unrouted, ",") != "old.joe@example.com" {
		t.Errorf("message 6 is listed as %+v; want unrouted old.joe@example.com", w)
	}
	if got := seqCounts(t, joe); fmt.Sprint(got) != "map[1:1 5:1]" {
		t.Errorf("joe holds %v after --forget; want message 6 at the postmaster", got)
	}

	// 2. A mailing list: nothing unrouted, so its List-Id is learned.
	list := pmFile(t, rc, 2)
	if len(list.Unrouted) != 0 {
		t.Errorf("the list message is listed as %+v; want no unrouted address", list)
	}
	ann := filepath.Join(dir, "ann")
	r = daemonCLI(t, rc, "reroute", "--learn", "--to", "ann", list.File)
	if r.code != exitOK || !strings.HasSuffix(r.stdout, "; learned list-id:list.lists.example.org -> ann\n") || exists(list.File) {
		t.Fatalf("reroute --learn of the list message = %d, %q\n%s", r.code, r.stdout, r.stderr)
	}
	mb.Put(t, listMsg(7))
	r = popfetchCmd(t, "", nil, "-f", rc, "-v", "fetch")
	if r.code != exitOK {
		t.Fatalf("fetch = %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := seqCounts(t, ann); fmt.Sprint(got) != "map[2:1 7:1]" {
		t.Errorf("ann holds %v; want list messages 2 and 7 once\n%s", got, r.stderr)
	}
	for _, f := range maildirFiles(t, ann) {
		if m := readString(t, f); strings.Contains(m, "\nX-Seq: 7\n") && (!strings.Contains(m, "\nDelivered-To: ann@example.com\n") || strings.Contains(m, "X-Popfetch-")) {
			t.Errorf("ann's copy of list message 7 lacks Delivered-To: ann@example.com or has postmaster fields:\n%s", m)
		}
	}
	if !strings.Contains(r.stderr, `msg="multidrop: routed"`) || !strings.Contains(r.stderr, `via="learned List-Id"`) {
		t.Errorf("fetch -v does not log the list message routed via \"learned List-Id\":\n%s", r.stderr)
	}

	// 3. Nothing to learn; a forged X-Popfetch-Unrouted is not learned.
	for _, seq := range []int{3, 4} {
		w := pmFile(t, rc, seq)
		r := daemonCLI(t, rc, "reroute", "--learn", "--to", "joe", w.File)
		if r.code != exitFail || !strings.Contains(r.stdout, "not delivered: nothing to learn from") || !exists(w.File) {
			t.Errorf("reroute --learn of message %d = %d, %q; want %d, nothing to learn, the file kept\n%s", seq, r.code, r.stdout, exitFail, r.stderr)
		}
	}
	if got := seqCounts(t, joe); fmt.Sprint(got) != "map[1:1 5:1]" {
		t.Errorf("joe holds %v; a refused --learn delivered something", got)
	}
	r = daemonCLI(t, rc, "check")
	if strings.Contains(r.stdout, "ceo@example.com") || !strings.Contains(r.stdout, "# account desk: 1 learned routes in ") {
		t.Errorf("check after the refused --learn:\n%s", r.stdout)
	}
	if n := mb.Count(t); n != 0 {
		t.Errorf("server holds %d messages; want 0", n)
	}
}

// Two reroute --learn processes at once, on different files teaching
// different addresses: every route ends up in the file (the writers lock
// it), and every message is delivered once.
func TestLearnParallel(t *testing.T) {
	const n = 4 // files per process
	dir := t.TempDir()
	rc := learnRC(t, dir, 110, "u")
	pm := filepath.Join(dir, "postmaster")
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(pm, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]string{}
	for i := 1; i <= 2*n; i++ {
		user := []string{"joe", "ann"}[i%2]
		p := filepath.Join(pm, "new", fmt.Sprintf("%d.M%dP1Q%d.host", 1700000000+i, i, i))
		writeFile(t, p, fmt.Sprintf("X-Popfetch-Reason: unknown user old%d@example.com\nX-Popfetch-Unrouted: old%d@example.com\n"+
			"Received: from 127.0.0.1 by host with POP3 (popfetch 1.0); Fri, 4 Dec 2026 20:00:00 +0000\n"+
			"From: s@example.net\nTo: old%d@example.com\nSubject: seq %d\nX-Seq: %d\n\nbody %d\n", i, i, i, i, i, i))
		files[user] = append(files[user], p)
	}
	var outs [2]bytes.Buffer
	var dones [2]<-chan error
	for i, user := range []string{"joe", "ann"} {
		cmd := exec.Command(popfetchBin, append([]string{"-f", rc, "reroute", "--learn", "--to", user}, files[user]...)...)
		dones[i] = startCmd(t, cmd, &outs[i])
	}
	for i := range dones {
		if err := <-dones[i]; err != nil {
			t.Fatalf("reroute --learn process %d: %v\n%s", i, err, outs[i].String())
		}
	}
	r := daemonCLI(t, rc, "check")
	for i := 1; i <= 2*n; i++ {
		user := []string{"joe", "ann"}[i%2]
		if want := fmt.Sprintf("# learned route: old%d@example.com -> %s (", i, user); !strings.Contains(r.stdout, want) {
			t.Errorf("check lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, user := range []string{"joe", "ann"} {
		if got := seqCounts(t, filepath.Join(dir, user)); len(got) != n {
			t.Errorf("%s holds %v; want %d messages once", user, got, n)
		}
	}
	if n := maildirCount(t, pm); n != 0 {
		t.Errorf("postmaster holds %d messages; want 0", n)
	}
}

// A learned route to a user only the LDAP directory knows routes the
// next message to that user.
func TestLearnLDAPUser(t *testing.T) {
	t.Parallel()
	s := slapdtest.Start(t, slapdtest.Options{LDIF: slapdtest.ADUser("gina", "Gina Green", 512, "gina@example.com")})
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "office", "pw")
	mb.Put(t, envMsg(1, "g.green@example.com", ""))
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "ldap.password")
	writeFile(t, pwFile, s.Password()+"\n")
	rc := learnRC(t, dir, srv.PlainPort, mb.User,
		`    ldap {`,
		fmt.Sprintf("      url           = %q", s.URL()),
		fmt.Sprintf("      ca_file       = %q", s.CAFile),
		fmt.Sprintf("      bind_dn       = %q", s.BindDN()),
		fmt.Sprintf("      password_file = %q", pwFile),
		fmt.Sprintf("      base_dn       = %q", s.BaseDN()),
		`    }`)
	fetchOnce(t, rc)
	w := pmFile(t, rc, 1)
	gina := filepath.Join(dir, "gina")
	r := daemonCLI(t, rc, "reroute", "--learn", "--to", "gina", w.File)
	if r.code != exitOK || !strings.HasSuffix(r.stdout, "; learned g.green@example.com -> gina\n") {
		t.Fatalf("reroute --learn to the directory user = %d, %q\n%s", r.code, r.stdout, r.stderr)
	}
	mb.Put(t, envMsg(2, "g.green@example.com", ""))
	fetchOnce(t, rc)
	if got := seqCounts(t, gina); fmt.Sprint(got) != "map[1:1 2:1]" {
		t.Errorf("gina holds %v; want messages 1 and 2 once (2 by the learned route)", got)
	}
	if n := maildirCount(t, filepath.Join(dir, "postmaster")); n != 0 {
		t.Errorf("postmaster holds %d messages; want 0", n)
	}
}

// A kill between the durable copy and the removal of the source with
// --learn: the route is there, the file too; the rerun delivers again
// (at most one duplicate, never none), says the route was already learned
// and removes the file.
func TestLearnKilledAfterDelivery(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "mdaout")
	script := filepath.Join(dir, "mda.sh")
	writeFile(t, script, fmt.Sprintf(`#!/bin/sh
mkdir -p %[1]q/new %[1]q/tmp && cat > %[1]q/tmp/$$ && mv %[1]q/tmp/$$ %[1]q/new/$$ || exit 75
if [ ! -e %[2]q ]; then : > %[2]q; kill -KILL $PPID; sleep 1; fi
exit 0
`, out, filepath.Join(dir, "killed-once")))
	if err := os.Chmod(script, 0o700); err != nil {
		t.Fatal(err)
	}
	rc := learnRC(t, dir, 110, "u", fmt.Sprintf("    user \"kim\" {\n      deliver {\n        mda = [%q]\n      }\n    }", script))
	pm := filepath.Join(dir, "postmaster")
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(pm, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(pm, "new", "1700000001.M1P1Q1.host")
	writeFile(t, file, "X-Popfetch-Reason: unknown user old.kim@example.com\nX-Popfetch-Unrouted: old.kim@example.com\n"+
		"Received: from 127.0.0.1 by host with POP3 (popfetch 1.0); Fri, 4 Dec 2026 20:00:00 +0000\n"+
		"From: s@example.net\nTo: old.kim@example.com\nSubject: seq 1\nX-Seq: 1\n\nbody 1\n")
	r := daemonCLI(t, rc, "reroute", "--learn", "--to", "kim", file)
	if r.code != -1 {
		t.Fatalf("reroute was not killed: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !exists(file) || maildirCount(t, out) != 1 {
		t.Fatalf("after the kill: source there %v, kim has %d copies; want the source and 1 copy", exists(file), maildirCount(t, out))
	}
	r = daemonCLI(t, rc, "reroute", "--learn", "--to", "kim", file)
	if want := file + ": delivered to kim (mda " + script + "); learned old.kim@example.com -> kim (already learned)\n"; r.code != exitOK || r.stdout != want {
		t.Errorf("rerun = %d, %q; want 0, %q\n%s", r.code, r.stdout, want, r.stderr)
	}
	if exists(file) || maildirCount(t, out) != 2 {
		t.Errorf("after the rerun: source there %v, kim has %d copies; want it gone and 2 (one duplicate)", exists(file), maildirCount(t, out))
	}
	if r := daemonCLI(t, rc, "check"); !strings.Contains(r.stdout, "# learned route: old.kim@example.com -> kim (") {
		t.Errorf("check lacks the route:\n%s", r.stdout)
	}
}

// A reroute to a user the rc file does not configure loads the LDAP
// directory; one that cannot be reached is temporary (exit 75, the file
// stays), and a configured user never needs it.
func TestRerouteDirectoryDown(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "ldap.password")
	writeFile(t, pwFile, "secret\n")
	rc := learnRC(t, dir, 110, "u",
		`    ldap {`,
		`      url           = "ldaps://127.0.0.1:1"`,
		`      bind_dn       = "cn=popfetch,dc=example,dc=com"`,
		fmt.Sprintf("      password_file = %q", pwFile),
		`      base_dn       = "dc=example,dc=com"`,
		`      timeout       = "2s"`,
		`    }`)
	files := putPostmaster(t, filepath.Join(dir, "postmaster"), 2)
	r := daemonCLI(t, rc, "reroute", "--to", "gina", files[0])
	if r.code != exitTempFail || !strings.Contains(r.stderr, "ldaps://127.0.0.1:1") || !strings.Contains(r.stderr, "nothing delivered, try again later") || !exists(files[0]) {
		t.Errorf("reroute to a directory user with the directory down = %d, %q; want %d and the file kept\n%s", r.code, r.stdout, exitTempFail, r.stderr)
	}
	if r := daemonCLI(t, rc, "reroute", "--to", "joe", files[1]); r.code != exitOK || exists(files[1]) || maildirCount(t, filepath.Join(dir, "joe")) != 1 {
		t.Errorf("reroute to a configured user with the directory down = %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
