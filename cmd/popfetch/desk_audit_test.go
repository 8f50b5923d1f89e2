package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/deliver/learned"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// Audit probes for the postmaster's desk (popfetch reroute, --learn,
// popfetch postmaster). A failing probe here is a finding.

// TestRerouteRefusesSymlinkedDir: root runs popfetch reroute on a
// message in a Maildir another user owns. That user has replaced the
// Maildir's new/ by a symbolic link to a directory of root's; the file
// name the admin typed exists there too. reroute follows the link,
// delivers root's file to the user named by --to and unlinks it from
// root's directory. A directory the invoking user does not own (or a
// symbolic link in the path that such a user owns) should be refused,
// as internal/trust refuses it for the rc file.
func TestRerouteRefusesSymlinkedDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	dir := t.TempDir()
	rc := deskRC(t, dir, 110, "u", nil)
	secret := filepath.Join(dir, "rootonly")
	if err := os.Mkdir(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	const name = "1700000001.M1P1Q1.host"
	writeFile(t, filepath.Join(secret, name), "Subject: root's file\n\nroot's secret\n")
	// The other user's Maildir: owned by nobody, new/ a link it made.
	home := filepath.Join(dir, "home")
	md := filepath.Join(home, "Maildir")
	for _, d := range []string{home, md, filepath.Join(md, "cur"), filepath.Join(md, "tmp")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(secret, filepath.Join(md, "new")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(md, "new"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	r := daemonCLI(t, rc, "reroute", "--to", "joe", filepath.Join(md, "new", name))
	if !exists(filepath.Join(secret, name)) || maildirCount(t, filepath.Join(dir, "joe")) != 0 {
		t.Errorf("reroute through another user's symbolic link = %d, %q: root's file was delivered to joe and removed from root's directory; want it refused", r.code, r.stdout)
	}
}

// TestRerouteRefusesEmptyAndHeaderless: an empty file and a file with no
// header section are not postmaster messages popfetch wrote. What does
// reroute make of them?
func TestRerouteRefusesEmptyAndHeaderless(t *testing.T) {
	dir := t.TempDir()
	rc := deskRC(t, dir, 110, "u", nil)
	pm := filepath.Join(dir, "postmaster")
	putPostmaster(t, pm, 0)
	empty := filepath.Join(pm, "new", "1700000001.M1P1Q1.empty")
	writeFile(t, empty, "")
	r := daemonCLI(t, rc, "reroute", "--to", "joe", empty)
	if r.code == exitOK {
		t.Errorf("reroute of an empty file = %d, %q; want it refused (nothing to deliver), the file kept", r.code, r.stdout)
	}
	if !exists(empty) {
		t.Errorf("reroute removed an empty file: %q", r.stdout)
	}
	for i, content := range []string{"\n\n", "just a body line\nSubject: s\n", "From joe Fri Dec  4 10:00:00 2026\nSubject: s\n\nbody\n", " Subject: s\n\nbody\n", ": s\n\nbody\n"} {
		p := filepath.Join(pm, "new", fmt.Sprintf("170000001%d.M1P1Q1.nohdr", i))
		writeFile(t, p, content)
		r := daemonCLI(t, rc, "reroute", "--to", "joe", p)
		if r.code != exitFail || !exists(p) || !strings.Contains(r.stdout, "nothing delivered") {
			t.Errorf("reroute of %q = %d, %q; want %d, the file kept", content, r.code, r.stdout, exitFail)
		}
	}
	if n := maildirCount(t, filepath.Join(dir, "joe")); n != 0 {
		t.Errorf("joe got %d messages; want none", n)
	}
}

// TestRerouteStripsOnlyHeader: a postmaster copy whose popfetch
// fields are folded, in odd case, and with a body holding lines that
// look like those fields: the header's go, the body stays byte for byte,
// and a sender's X-Popfetch-Reason below popfetch's goes too (it is in
// the header). Regression probe (passes).
func TestRerouteStripsOnlyHeader(t *testing.T) {
	dir := t.TempDir()
	rc := deskRC(t, dir, 110, "u", nil)
	pm := filepath.Join(dir, "postmaster")
	putPostmaster(t, pm, 0)
	p := filepath.Join(pm, "new", "1700000001.M1P1Q1.host")
	const body = "X-Popfetch-Reason: in the body\nX-Popfetch-Unrouted: body@example.com\n"
	writeFile(t, p, "x-popfetch-REASON : unknown user\n\tdave@example.com\nX-Popfetch-Unrouted: dave@example.com,\n eve@example.com\n"+
		"Received: from pop by h with POP3 (popfetch 1.0); d\nX-Popfetch-Reason: forged\nSubject: s\n\n"+body)
	r := daemonCLI(t, rc, "reroute", "--to", "joe", p)
	if r.code != exitOK {
		t.Fatalf("reroute = %d, %q %q", r.code, r.stdout, r.stderr)
	}
	got := onlyMessage(t, filepath.Join(dir, "joe"))
	hdr, gotBody, _ := strings.Cut(got, "\n\n")
	if strings.Contains(strings.ToLower(hdr), "x-popfetch") || strings.Contains(hdr, "dave@") {
		t.Errorf("rerouted header keeps popfetch fields:\n%s", hdr)
	}
	if gotBody != body {
		t.Errorf("rerouted body = %q; want %q", gotBody, body)
	}
}

func onlyMessage(t *testing.T, md string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(md, "new"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("%s/new: %d entries, %v; want 1", md, len(ents), err)
	}
	return readString(t, filepath.Join(md, "new", ents[0].Name()))
}

// TestLearnSkipsAddressThatRoutes: a postmaster copy lists an address in
// X-Popfetch-Unrouted that routes today (an alias of several users, one
// of whom failed permanently, is in X-Popfetch-Unrouted as the alias's
// address). Rerouting it to that one user with --learn teaches
// "sales@example.com -> anne", and a learned address comes before the
// aliases file: from then on bob no longer gets sales@ mail. learn
// should refuse (or at least not silently write) a key that the
// directory routes today.
func TestLearnSkipsAddressThatRoutes(t *testing.T) {
	a := learnAccount(t)
	aliases := filepath.Join(t.TempDir(), "aliases")
	writeFile(t, aliases, "sales: alice, bob\n")
	a.Multidrop.AliasesFile = aliases
	var stderr bytes.Buffer
	g := &globals{stdout: &bytes.Buffer{}, stderr: &stderr}
	msg := []byte("X-Popfetch-Reason: bob: mailbox over quota\r\nX-Popfetch-Unrouted: sales@example.com\r\n" +
		"Received: by h with POP3 (popfetch 1.0); d\r\nTo: sales@example.com\r\n\r\nbody\r\n")
	got, err := g.learnRoutes(a, msg, "alice", "new/1.msg")
	routes, _ := learned.Read(fetch.LearnedPath(a))
	if slices.ContainsFunc(routes, func(r learned.Route) bool { return r.Key == "sales@example.com" }) {
		t.Errorf("learnRoutes = %q, %v: learned sales@example.com -> alice, which shadows the alias sales: alice, bob (bob loses sales@ mail)", got, err)
	}
	if err == nil || !strings.Contains(stderr.String(), "sales@example.com already routes to alice, bob") {
		t.Errorf("learnRoutes = %q, %v, stderr %q; want an error (nothing learned) and a notice", got, err, stderr.String())
	}
	// A configured user's address: already routes to that user (said,
	// not written); another user's: skipped; an unknown one: learned.
	a.Multidrop.Users[0].Addresses = []string{"alice"}
	a.Multidrop.Users[1].Addresses = []string{"bob"}
	a.Multidrop.DetailDelimiter = "+"
	msg = []byte("X-Popfetch-Unrouted: Alice@example.com, bob+x@example.com, old@example.com\r\n" +
		"Received: by h with POP3 (popfetch 1.0); d\r\n\r\nbody\r\n")
	got, err = g.learnRoutes(a, msg, "alice", "new/2.msg")
	if err != nil || !slices.Equal(got, []string{"alice@example.com already routes to alice", "old@example.com -> alice"}) {
		t.Errorf("learnRoutes = %q, %v; want alice@ said to route already, bob+x@ skipped, old@ learned", got, err)
	}
	routes, _ = learned.Read(fetch.LearnedPath(a))
	if len(routes) != 1 || routes[0].Key != "old@example.com" {
		t.Errorf("learned routes = %+v; want only old@example.com", routes)
	}
}

// TestPostmasterIgnoresForgedFields: popfetch postmaster lists the
// first X-Popfetch-Unrouted anywhere in the header, so a sender's own
// field (below popfetch's Received) shows as "the addresses that failed"
// when popfetch wrote none (a loop, no recipient at all), while --learn
// rightly ignores it (deliver.FieldAddresses). The listing should read the
// field as --learn does.
func TestPostmasterIgnoresForgedFields(t *testing.T) {
	dir := t.TempDir()
	rc := deskRC(t, dir, 110, "u", nil)
	pm := filepath.Join(dir, "postmaster")
	putPostmaster(t, pm, 0)
	writeFile(t, filepath.Join(pm, "new", "1700000001.M1P1Q1.host"),
		"X-Popfetch-Reason: mail forwarding loop for joe@example.com\n"+
			"Received: from pop by h with POP3 (popfetch 1.0); d\n"+
			"X-Popfetch-Unrouted: ceo@example.com\nFrom: eve@evil.example\nSubject: hi\n\nbody\n")
	list := listJSON(t, rc)
	if len(list) != 1 {
		t.Fatalf("listing = %+v", list)
	}
	if len(list[0].Unrouted) != 0 {
		t.Errorf("listing shows the sender's X-Popfetch-Unrouted %q as the addresses that failed; want none", list[0].Unrouted)
	}
	// A reason only below popfetch's Received is the sender's too.
	writeFile(t, filepath.Join(pm, "new", "1700000002.M1P1Q1.host"),
		"Received: from pop by h with POP3 (popfetch 1.0); d\n"+
			"X-Popfetch-Reason: your account is locked, see evil.example\nX-Popfetch-Unrouted: ceo@example.com\nSubject: hi\n\nbody\n")
	list = listJSON(t, rc)
	if len(list) != 2 || list[1].Reason != "" || len(list[1].Unrouted) != 0 || list[0].Reason == "" {
		t.Errorf("listing = %+v; want the sender's X-Popfetch-Reason and -Unrouted below popfetch's Received not shown, popfetch's own reason shown", list)
	}
}

// TestRerouteHostileNames: --to values that are options, paths or
// not user names are refused before anything is read or delivered, even
// with --force. Regression probe (passes).
func TestRerouteHostileNames(t *testing.T) {
	dir := t.TempDir()
	rc := deskRC(t, dir, 110, "u", nil)
	files := putPostmaster(t, filepath.Join(dir, "postmaster"), 1)
	for _, to := range []string{"-rf", "../x", "a/b", ".", "..", "joe\u200b", "joe\n", " joe", strings.Repeat("a", 65)} {
		r := daemonCLI(t, rc, "reroute", "--force", "--to", to, files[0])
		if r.code == exitOK || !exists(files[0]) {
			t.Errorf("reroute --force --to %q = %d, %q; want refused, file kept", to, r.code, r.stdout)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if n := e.Name(); n != "postmaster" && n != "state" && n != "pw" && n != "popfetch.hcl" {
			t.Errorf("reroute created %s", n)
		}
	}
}

// TestLearnAsRootWritesAsStateOwner: the daemon runs as an unprivileged
// user that owns the state directory; the admin runs popfetch reroute
// --learn as root. learned.Add creates STATE_DIR/learned/ (0700) and the
// routes file (0600) owned by root, which the daemon's user cannot open:
// every later poll of the account fails ("learned routes: permission
// denied") until someone fixes the owner. Mail waits, but the desk stops
// the mailbox. Add should create them owned by the state directory's
// owner (or reroute should refuse to run as another user than the state
// directory's owner).
func TestLearnAsRootWritesAsStateOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	dir := t.TempDir()
	rc := deskRC(t, dir, 110, "u", nil)
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// The daemon's user can reach its state directory.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	pm := filepath.Join(dir, "postmaster")
	putPostmaster(t, pm, 0)
	msg := filepath.Join(pm, "new", "1700000001.M1P1Q1.host")
	writeFile(t, msg, "X-Popfetch-Reason: unknown user old@example.com\nX-Popfetch-Unrouted: old@example.com\n"+
		"Received: from pop by h with POP3 (popfetch 1.0); d\nSubject: s\n\nbody\n")
	r := daemonCLI(t, rc, "reroute", "--learn", "--to", "joe", msg)
	// Refused or not, nothing the daemon's user cannot read may be left
	// in its state directory.
	paths := []string{filepath.Join(state, "learned")}
	if m, _ := filepath.Glob(filepath.Join(state, "learned", "*.routes")); len(m) > 0 {
		paths = append(paths, m...)
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 65534 {
			t.Errorf("reroute --learn as root = %d (%s): left %s owned by uid %d (mode %v); the daemon's user (65534, the state dir's owner) cannot open it and every poll fails with a learned routes error", r.code, strings.TrimSpace(r.stdout), p, uid, fi.Mode())
		}
	}
	// Written as the state directory's owner, and then delivered as root.
	if r.code != exitOK || exists(msg) || maildirCount(t, filepath.Join(dir, "joe")) != 1 || len(paths) != 2 {
		t.Errorf("reroute --learn as root = %d, %q %q; want the route learned and the message delivered", r.code, r.stdout, r.stderr)
	}
	// Again, now that the daemon's user's routes file is there.
	msg2 := filepath.Join(pm, "new", "1700000002.M1P1Q1.host")
	writeFile(t, msg2, "X-Popfetch-Reason: unknown user older@example.com\nX-Popfetch-Unrouted: older@example.com\n"+
		"Received: from pop by h with POP3 (popfetch 1.0); d\nSubject: s\n\nbody\n")
	r = daemonCLI(t, rc, "reroute", "--learn", "--to", "joe", msg2)
	if r.code != exitOK || exists(msg2) {
		t.Errorf("second reroute --learn as root = %d, %q %q; want it learned and delivered", r.code, r.stdout, r.stderr)
	}
	if os.Geteuid() != 0 {
		t.Errorf("popfetch reroute left the test running as uid %d", os.Geteuid())
	}
}

// TestRerouteDiskFull: the user's Maildir is on a full file system:
// reroute fails for now (exit 75), the postmaster's file stays, and no
// partial copy shows in the user's new/. Regression probe.
func TestRerouteDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount)")
	}
	dir := t.TempDir()
	rc := deskRC(t, dir, 110, "u", nil)
	joe := filepath.Join(dir, "joe")
	if err := os.Mkdir(joe, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", joe).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", joe).Run() })
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.Mkdir(filepath.Join(joe, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	filler, err := os.Create(filepath.Join(joe, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = filler.Write(make([]byte, 1024))
	}
	filler.Close()
	pm := filepath.Join(dir, "postmaster")
	putPostmaster(t, pm, 0)
	p := filepath.Join(pm, "new", "1700000001.M1P1Q1.host")
	writeFile(t, p, "X-Popfetch-Reason: unknown user\nSubject: big\n\n"+strings.Repeat("0123456789abcdef\n", 8<<10))
	r := daemonCLI(t, rc, "reroute", "--to", "joe", p)
	if r.code != exitTempFail || !exists(p) || maildirCount(t, joe) != 0 {
		t.Errorf("reroute to a full Maildir = %d, %q; want %d, the file kept, nothing in joe's new/", r.code, r.stdout, exitTempFail)
	}
}

// TestRerouteKeepsFileChangedWhileDelivering: reroute takes "any message
// file"; one that is still being written (or is edited) between the read
// and the removal is removed anyway: remove checks only that the name
// holds the same inode, not that the file is what was read. Whatever was
// written after the read is lost. Here the user's MDA appends to the
// source while it delivers (a writer still at work). remove should
// compare size and mtime/ctime with the read's fstat and keep a file that
// changed.
func TestRerouteKeepsFileChangedWhileDelivering(t *testing.T) {
	dir := t.TempDir()
	pm := filepath.Join(dir, "postmaster")
	putPostmaster(t, pm, 0)
	src := filepath.Join(pm, "new", "1700000001.M1P1Q1.host")
	writeFile(t, src, "X-Popfetch-Reason: unknown user\nSubject: s\n\npart one\n")
	out := filepath.Join(dir, "kimbox")
	script := filepath.Join(dir, "mda.sh")
	writeFile(t, script, fmt.Sprintf("#!/bin/sh\ncat > %q || exit 75\nprintf 'part two: the rest of the message\\n' >> %q\nexit 0\n", out, src))
	if err := os.Chmod(script, 0o700); err != nil {
		t.Fatal(err)
	}
	rc := deskRC(t, dir, 110, "u", map[string]string{"kim": fmt.Sprintf("mda = [%q]", script)})
	r := daemonCLI(t, rc, "reroute", "--to", "kim", src)
	got, _ := os.ReadFile(out)
	if !exists(src) && !strings.Contains(string(got), "part two") {
		t.Errorf("reroute = %d, %q: the source changed after it was read and was removed anyway; \"part two\" is nowhere (kim got %q)", r.code, strings.TrimSpace(r.stdout), got)
	}
	if r.code != exitFail || !strings.Contains(r.stdout, "changed after reroute read it") {
		t.Errorf("reroute of a file that changed = %d, %q; want %d and a message saying it changed", r.code, r.stdout, exitFail)
	}
}

// TestLearnForgetKeyForms: keys learned from X-Popfetch-Unrouted in
// odd forms (an IDN domain in U-labels, a quoted local part that needs no
// quotes, upper case) are stored in one canonical form, which routing
// uses, and --forget finds them whichever form the admin types; a
// List-Id in upper case with brackets likewise. Local parts alone,
// quoted strings with spaces, options and empty keys are refused.
// Regression probe.
func TestLearnForgetKeyForms(t *testing.T) {
	a := learnAccount(t)
	g := &globals{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	msg := []byte("X-Popfetch-Unrouted: Joe@B\u00fccher.Example, \"ann.lee\"@example.net, \"a b\"@example.net\r\n" +
		"Received: by h with POP3 (popfetch 1.0); d\r\nList-Id: <X.Example.ORG>\r\n\r\nbody\r\n")
	got, err := g.learnRoutes(a, msg, "alice", "m")
	if err != nil || len(got) != 2 {
		t.Fatalf("learnRoutes = %q, %v", got, err)
	}
	routes, _ := learned.Read(fetch.LearnedPath(a))
	addrs, _ := learned.Maps(routes)
	for _, k := range []string{"joe@xn--bcher-kva.example", "ann.lee@example.net"} {
		if addrs[k] != "alice" {
			t.Errorf("learned %v; want %s -> alice", addrs, k)
		}
	}
	for _, k := range []string{"JOE@b\u00fccher.example", "ann.lee@EXAMPLE.NET"} {
		if ok, err := g.forgetRoute(a, k); !ok || err != nil {
			t.Errorf("forgetRoute(%q) = %v, %v; want it found", k, ok, err)
		}
	}
	list := []byte("Received: by h with POP3 (popfetch 1.0); d\r\nList-Id: Some list <X.Example.ORG>\r\n\r\n")
	if _, err := g.learnRoutes(a, list, "bob", "m2"); err != nil {
		t.Fatal(err)
	}
	if ok, err := g.forgetRoute(a, "LIST-ID:<x.EXAMPLE.org>"); !ok || err != nil {
		t.Errorf("forgetRoute(list-id in odd case) = %v, %v", ok, err)
	}
	for _, k := range []string{"joe", "\"a b\"@example.net", "-rf", "list-id:", "list-id:<>", "@example.com", "joe@", "joe@-bad-.example", "joe@exa mple.com", "#x@example.com"} {
		if _, err := g.forgetRoute(a, k); err == nil {
			t.Errorf("forgetRoute(%q) = nil error; want the key refused", k)
		}
	}
}

// TestRerouteHostileReturnPath: a message whose Return-Path is
// hostile never puts it into an MDA's argv as an option; but a sender
// starting with '-' makes the MDA delivery a permanent failure, so the
// admin cannot reroute the message to a user whose MDA takes {sender} at
// all (the sender is informational: MDA.args could use MAILER-DAEMON
// instead, as for the null path). The file stays either way.
func TestRerouteHostileReturnPath(t *testing.T) {
	dir := t.TempDir()
	argvOut := filepath.Join(dir, "argv")
	script := filepath.Join(dir, "mda.sh")
	writeFile(t, script, fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %q\ncat >/dev/null\nexit 0\n", argvOut))
	if err := os.Chmod(script, 0o700); err != nil {
		t.Fatal(err)
	}
	rc := deskRC(t, dir, 110, "u", map[string]string{"kim": fmt.Sprintf("mda = [%q, \"-f\", \"{sender}\", \"--\", \"{user}\"]", script)})
	pm := filepath.Join(dir, "postmaster")
	putPostmaster(t, pm, 0)
	for i, rp := range []string{"<-oQ/tmp/x@evil.example>", "<\"a b> NOTIFY=NEVER\"@evil.example>", "<\"x\r\n-oQ\"@evil.example>"} {
		p := filepath.Join(pm, "new", fmt.Sprintf("170000000%d.M1P1Q1.host", i))
		writeFile(t, p, "X-Popfetch-Reason: unknown user\nReturn-Path: "+rp+"\nSubject: s\n\nbody\n")
		os.Remove(argvOut)
		r := daemonCLI(t, rc, "reroute", "--to", "kim", p)
		argv, _ := os.ReadFile(argvOut)
		if lines := strings.Split(string(argv), "\n"); len(argv) > 0 && (len(lines) < 2 || strings.HasPrefix(lines[1], "-")) {
			t.Errorf("Return-Path %q: MDA argv %q", rp, argv)
		}
		if r.code != exitOK {
			t.Errorf("Return-Path %q: reroute = %d, %q; the message cannot be rerouted to kim at all (file kept: %v)", rp, r.code, strings.TrimSpace(r.stdout), exists(p))
		}
	}
}

// TestLearnedCommentTerminal: the comment learnRoutes writes names
// the source file, and popfetch check prints learned comments as they
// are. cleanComment (deliver/learned) drops C0 controls but keeps C1
// controls (U+009B is CSI) and bidi overrides (U+202E), and Parse accepts
// them in a hand-edited comment: a file name chosen by whoever named the
// file (a user's Maildir rerouted with a glob) reaches the admin's
// terminal through popfetch check. printLearned should filter the comment
// as popfetch postmaster filters its cells (termSafe).
func TestLearnedCommentTerminal(t *testing.T) {
	a := learnAccount(t)
	g := &globals{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	msg := []byte("X-Popfetch-Unrouted: old@example.com\r\nReceived: by h with POP3 (popfetch 1.0); d\r\n\r\nbody\r\n")
	if _, err := g.learnRoutes(a, msg, "alice", "new/1.\u202etxt.exe\u009b2J\x1b]0;t\x07"); err != nil {
		t.Fatal(err)
	}
	cfg := &rcfile.Config{Accounts: []*rcfile.Account{a}}
	var out bytes.Buffer
	printLearned(&out, cfg)
	if s := out.String(); strings.ContainsAny(s, "\u202e\u009b\x1b\x07") {
		t.Errorf("popfetch check's learned routes carry terminal controls: %q", s)
	}
}

// TestRerouteDirectoryOwners: a message in a directory of another user is
// refused (that user could swap it between the read and the removal),
// unless that user owns the account's state directory (the daemon's user,
// who writes the postmaster's Maildir).
func TestRerouteDirectoryOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	dir := t.TempDir()
	rc := deskRC(t, dir, 110, "u", nil)
	other := filepath.Join(dir, "other")
	for _, d := range []string{other, filepath.Join(other, "new"), filepath.Join(other, "cur"), filepath.Join(other, "tmp")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(other, "new", "1700000001.M1P1Q1.host")
	writeFile(t, p, "Subject: s\n\nbody\n")
	r := daemonCLI(t, rc, "reroute", "--to", "joe", p)
	if r.code != exitFail || !exists(p) || !strings.Contains(r.stdout, "belongs to uid 65534") {
		t.Errorf("reroute from another user's directory = %d, %q; want %d, refused, the file kept", r.code, r.stdout, exitFail)
	}
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} { // the daemon's user reaches its state
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	r = daemonCLI(t, rc, "reroute", "--to", "joe", p)
	if r.code != exitOK || exists(p) || maildirCount(t, filepath.Join(dir, "joe")) != 1 {
		t.Errorf("reroute from the state directory owner's directory = %d, %q %q; want it delivered", r.code, r.stdout, r.stderr)
	}
}
