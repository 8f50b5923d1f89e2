package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// deskRC writes an rc file for a multidrop account of example.com on the
// POP3 server at port: users joe (joe, joseph@example.com) and the users
// given as name → deliver block body, per-user Maildirs under dir, the
// postmaster Maildir dir/postmaster.
func deskRC(t *testing.T, dir string, port int, user string, users map[string]string) string {
	t.Helper()
	var blocks []string
	for name, deliverBody := range users {
		blocks = append(blocks, fmt.Sprintf("    user %q {\n      addresses = [%q]\n      deliver {\n        %s\n      }\n    }", name, name, deliverBody))
	}
	rc := filepath.Join(dir, "popfetch.hcl")
	writeFile(t, filepath.Join(dir, "pw"), "pw\n")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{
		name: "desk", port: port, user: user, passFile: filepath.Join(dir, "pw"),
		maildir: filepath.Join(dir, "{user}"),
		extra: []string{fmt.Sprintf(`multidrop {
    local_domains    = ["example.com"]
    fallback_headers = ["To"]
    user "joe" {
      addresses = ["joe", "joseph@example.com"]
    }
%s
  }`, strings.Join(blocks, "\n")), fmt.Sprintf("postmaster { maildir = %q }", filepath.Join(dir, "postmaster"))},
	}))
	return rc
}

// listJSON runs popfetch postmaster --json and decodes its lines.
func listJSON(t *testing.T, rc string) []waiting {
	t.Helper()
	r := daemonCLI(t, rc, "postmaster", "--json")
	if r.code != exitOK {
		t.Fatalf("postmaster --json = %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var out []waiting
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if line == "" {
			continue
		}
		var w waiting
		if err := json.Unmarshal([]byte(line), &w); err != nil {
			t.Fatalf("postmaster --json line %q: %v", line, err)
		}
		out = append(out, w)
	}
	return out
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// The postmaster's desk end to end, with the real binary and a real
// dovecot: a message to an unknown address and one partly routed are
// fetched; popfetch postmaster lists both, with the reason and the
// unrouted address; popfetch reroute refuses an unknown user and a missing
// file without touching anything, then delivers the message once to
// joe's Maildir, without popfetch's postmaster fields and with joe's
// Delivered-To, and removes it from the postmaster Maildir.
func TestRerouteEndToEnd(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "desk", "pw")
	mb.Put(t,
		[]byte("Return-Path: <sender@example.net>\r\nFrom: Sender <sender@example.net>\r\nTo: dave@example.com\r\n"+
			"Subject: =?utf-8?q?F=C3=BCr_Dave?=\r\nMessage-ID: <m1@example.net>\r\n\r\nX-Popfetch-Reason: a body line\r\n"),
		[]byte("From: other@example.net\r\nTo: joe@example.com, eve@example.com\r\nSubject: two\r\nMessage-ID: <m2@example.net>\r\n\r\nhi\r\n"),
	)
	dir := t.TempDir()
	rc := deskRC(t, dir, srv.PlainPort, mb.User, nil)
	if r := daemonCLI(t, rc, "fetch"); r.code != exitOK {
		t.Fatalf("fetch = %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	joe, pm := filepath.Join(dir, "joe"), filepath.Join(dir, "postmaster")
	if n := maildirCount(t, joe); n != 1 {
		t.Fatalf("joe has %d messages after the fetch; want 1", n)
	}

	text := daemonCLI(t, rc, "postmaster")
	if text.code != exitOK || !strings.Contains(text.stdout, "Für Dave") || !strings.Contains(text.stdout, "unknown user dave@example.com") {
		t.Errorf("postmaster = %d\n%s%s", text.code, text.stdout, text.stderr)
	}
	list := listJSON(t, rc)
	if len(list) != 2 {
		t.Fatalf("postmaster lists %d messages; want 2: %+v", len(list), list)
	}
	var dave, eve waiting
	for _, w := range list {
		switch w.Subject {
		case "Für Dave":
			dave = w
		case "two":
			eve = w
		}
	}
	if dave.From != "sender@example.net" || dave.Reason != "unknown user dave@example.com" || strings.Join(dave.Unrouted, ",") != "dave@example.com" || dave.Error != "" {
		t.Errorf("dave's message is listed as %+v", dave)
	}
	if !strings.Contains(eve.Reason, "partly routed (to joe)") || strings.Join(eve.Unrouted, ",") != "eve@example.com" {
		t.Errorf("eve's message is listed as %+v", eve)
	}
	before := readString(t, dave.File)

	// Refused without touching anything.
	if r := daemonCLI(t, rc, "reroute", "--to", "nobody", dave.File); r.code != exitUsage || !strings.Contains(r.stderr, "not a user of this account") {
		t.Errorf("reroute to an unknown user = %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	missing := filepath.Join(pm, "new", "1700000000.M1P1Q1.gone")
	if r := daemonCLI(t, rc, "reroute", "--to", "joe", missing); r.code != exitFail || !strings.HasPrefix(r.stdout, missing+": error: ") {
		t.Errorf("reroute of a missing file = %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !exists(dave.File) || maildirCount(t, joe) != 1 || exists(filepath.Join(dir, "nobody")) {
		t.Fatalf("a refused reroute touched something: source there %v, joe has %d", exists(dave.File), maildirCount(t, joe))
	}

	// The file first, the flag after it.
	r := daemonCLI(t, rc, "reroute", dave.File, "--to", "joe")
	if want := dave.File + ": delivered to joe (maildir " + joe + ")\n"; r.code != exitOK || r.stdout != want {
		t.Fatalf("reroute = %d, %q; want 0, %q\n%s", r.code, r.stdout, want, r.stderr)
	}
	if exists(dave.File) {
		t.Errorf("the rerouted file is still at the postmaster")
	}
	var copy string
	for _, f := range maildirFiles(t, joe) {
		if s := readString(t, f); strings.Contains(s, "Message-ID: <m1@example.net>") {
			if copy != "" {
				t.Fatalf("joe has message m1 twice")
			}
			copy = s
		}
	}
	head, body, _ := strings.Cut(copy, "\n\n")
	_, origBody, _ := strings.Cut(before, "\n\n")
	if copy == "" || strings.Contains(head, "X-Popfetch-") || body != origBody {
		t.Fatalf("joe's copy keeps popfetch's postmaster fields or lost its body:\n%s", copy)
	}
	if !strings.HasPrefix(copy, "Received: from 127.0.0.1\n") || !strings.Contains(head, "\nDelivered-To: joseph@example.com\n") {
		t.Errorf("joe's copy lacks popfetch's Received field or Delivered-To: joseph@example.com:\n%s", head)
	}
	if l := listJSON(t, rc); len(l) != 1 || l[0].File != eve.File {
		t.Errorf("postmaster after the reroute lists %+v; want only eve's message", l)
	}
	// Once: the file is gone, so a second run delivers nothing.
	if r := daemonCLI(t, rc, "reroute", "--to", "joe", dave.File); r.code != exitFail || maildirCount(t, joe) != 2 {
		t.Errorf("second reroute = %d, joe has %d messages; want %d and 2\n%s", r.code, maildirCount(t, joe), exitFail, r.stdout)
	}
}

// putPostmaster writes n messages (X-Seq 1..n) into a postmaster Maildir
// as popfetch would have, and returns their paths.
func putPostmaster(t *testing.T, pm string, n int) []string {
	t.Helper()
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(pm, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var paths []string
	for i := 1; i <= n; i++ {
		p := filepath.Join(pm, "new", fmt.Sprintf("%d.M%dP1Q%d.host", 1700000000+i, i, i))
		writeFile(t, p, fmt.Sprintf("X-Popfetch-Reason: unknown user dave@example.com\nX-Popfetch-Unrouted: dave@example.com\n"+
			"From: s@example.net\nTo: dave@example.com\nSubject: seq %d\nX-Seq: %d\n\nbody %d\n", i, i, i))
		paths = append(paths, p)
	}
	return paths
}

// Failures leave the file: an MDA that exits 75 or an LMTP server that is
// down is temporary (exit 75), an MDA exit 67 permanent (exit 1); a
// symbolic link and a file in tmp/ are refused; with several files the
// worst outcome decides the exit status.
func TestRerouteFailuresLeaveTheFile(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "mda.sh")
	writeFile(t, script, "#!/bin/sh\ncat >/dev/null\nexit $1\n")
	if err := os.Chmod(script, 0o700); err != nil {
		t.Fatal(err)
	}
	rc := deskRC(t, dir, 110, "u", map[string]string{
		"busy": fmt.Sprintf("mda = [%q, \"75\"]", script),
		"gone": fmt.Sprintf("mda = [%q, \"67\"]", script),
		"down": `smtp {
          server = "127.0.0.1:1"
          lmtp   = true
        }`,
	})
	pm := filepath.Join(dir, "postmaster")
	files := putPostmaster(t, pm, 3)
	for _, tc := range []struct {
		user string
		code int
		say  string
	}{
		{"busy", exitTempFail, "temporary failure"},
		{"down", exitTempFail, "temporary failure"},
		{"gone", exitFail, "permanent failure"},
	} {
		r := daemonCLI(t, rc, "reroute", "--to", tc.user, files[0])
		if r.code == exitConfig {
			t.Fatalf("rc file refused:\n%s", r.stderr)
		}
		if r.code != tc.code || !strings.HasPrefix(r.stdout, files[0]+": not delivered ("+tc.say) || !strings.Contains(r.stdout, "the file stays") {
			t.Errorf("reroute to %s = %d, %q; want %d and a %s", tc.user, r.code, r.stdout, tc.code, tc.say)
		}
		if !exists(files[0]) {
			t.Fatalf("reroute to %s removed the file after a failure", tc.user)
		}
	}
	// Several files: one delivered, one failing for now, one for good.
	r := daemonCLI(t, rc, "reroute", "--to", "gone", files[0], "--", files[1])
	if r.code != exitFail {
		t.Errorf("two permanent failures = %d; want %d", r.code, exitFail)
	}
	r = daemonCLI(t, rc, "reroute", "--to", "joe", files[2], filepath.Join(pm, "new", "missing"))
	if r.code != exitFail || exists(files[2]) || maildirCount(t, filepath.Join(dir, "joe")) != 1 {
		t.Errorf("one delivered, one missing = %d; want %d, the first delivered and removed\n%s", r.code, exitFail, r.stdout)
	}

	// A symbolic link is refused; its target is left alone.
	link := filepath.Join(pm, "new", "1700009999.M1P1Q1.link")
	if err := os.Symlink(files[0], link); err != nil {
		t.Fatal(err)
	}
	if r := daemonCLI(t, rc, "reroute", "--to", "joe", link); r.code != exitFail || !strings.Contains(r.stdout, "symbolic link") || !exists(link) || !exists(files[0]) {
		t.Errorf("reroute of a symlink = %d, %q", r.code, r.stdout)
	}
	inTmp := filepath.Join(pm, "tmp", "1700009999.M2P1Q1.host")
	writeFile(t, inTmp, "From: s@example.net\n\nbody\n")
	if r := daemonCLI(t, rc, "reroute", "--to", "joe", inTmp); r.code != exitFail || !strings.Contains(r.stdout, "tmp/") || !exists(inTmp) {
		t.Errorf("reroute of a file in tmp/ = %d, %q", r.code, r.stdout)
	}
	if n := maildirCount(t, filepath.Join(dir, "joe")); n != 1 {
		t.Errorf("joe has %d messages; want the 1 delivered", n)
	}
	// Usage errors.
	for _, args := range [][]string{{"reroute", files[0]}, {"reroute", "--to", "joe"}, {"reroute", "--account", "nosuch", "--to", "joe", files[0]}} {
		if r := daemonCLI(t, rc, args...); r.code != exitUsage {
			t.Errorf("%v = %d; want %d", args, r.code, exitUsage)
		}
	}
}

// A kill between the durable copy and the removal of the source leaves
// both: the user's MDA delivers the copy and then kills popfetch before it
// sees the exit status. The file is still at the postmaster; the next
// run delivers it again (a duplicate, never a loss) and removes it.
func TestRerouteKilledAfterDelivery(t *testing.T) {
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
	rc := deskRC(t, dir, 110, "u", map[string]string{"kim": fmt.Sprintf("mda = [%q]", script)})
	file := putPostmaster(t, filepath.Join(dir, "postmaster"), 1)[0]
	r := daemonCLI(t, rc, "reroute", "--to", "kim", file)
	if r.code != -1 {
		t.Fatalf("reroute was not killed: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !exists(file) || maildirCount(t, out) != 1 {
		t.Fatalf("after the kill: source there %v, kim has %d copies; want the source and 1 copy", exists(file), maildirCount(t, out))
	}
	if r := daemonCLI(t, rc, "reroute", "--to", "kim", file); r.code != exitOK || exists(file) || maildirCount(t, out) != 2 {
		t.Fatalf("second run = %d: source there %v, kim has %d copies; want 0, gone, 2\n%s%s", r.code, exists(file), maildirCount(t, out), r.stdout, r.stderr)
	}
}

// Killed at random moments while rerouting many files into a Maildir,
// popfetch reroute never loses one: after every kill each message is at
// the postmaster or in joe's Maildir (or both), and in the end every
// message is in joe's Maildir, with at most one duplicate per kill.
func TestRerouteCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: several kills")
	}
	const n = 60
	dir := t.TempDir()
	rc := deskRC(t, dir, 110, "u", nil)
	pm, joe := filepath.Join(dir, "postmaster"), filepath.Join(dir, "joe")
	putPostmaster(t, pm, n)
	count := func() int {
		c := 0
		for _, k := range seqCounts(t, joe) {
			c += k
		}
		return c
	}
	atPostmaster := func() map[int]bool {
		at := map[int]bool{}
		for _, p := range maildirFiles(t, pm) {
			var seq int
			fmt.Sscanf(readString(t, p)[strings.Index(readString(t, p), "X-Seq: ")+7:], "%d", &seq)
			at[seq] = true
		}
		return at
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	kills := 0
	for run := 0; ; run++ {
		if run > 40 {
			t.Fatalf("not done after %d runs", run)
		}
		left := maildirFiles(t, pm)
		if len(left) == 0 {
			break
		}
		target := count() + 1 + rng.IntN(min(len(left), 10))
		if kills >= 6 {
			target = -1
		}
		cmd := exec.Command(popfetchBin, append([]string{"-f", rc, "reroute", "--to", "joe"}, left...)...)
		var outb bytes.Buffer
		done := startCmd(t, cmd, &outb)
		tick := time.NewTicker(time.Millisecond)
	watch:
		for {
			select {
			case err := <-done:
				if err != nil && target < 0 {
					t.Fatalf("reroute failed: %v\n%s", err, outb.String())
				}
				break watch
			case <-tick.C:
				if target >= 0 && count() >= target {
					cmd.Process.Signal(syscall.SIGKILL)
					<-done
					kills++
					break watch
				}
			}
		}
		tick.Stop()
		at, in := atPostmaster(), seqCounts(t, joe)
		for seq := 1; seq <= n; seq++ {
			if !at[seq] && in[seq] == 0 {
				t.Fatalf("after run %d: message %d is neither at the postmaster nor with joe", run+1, seq)
			}
		}
	}
	in := seqCounts(t, joe)
	dups := 0
	for seq := 1; seq <= n; seq++ {
		switch c := in[seq]; {
		case c == 0:
			t.Errorf("message %d lost", seq)
		case c > 1:
			dups += c - 1
		}
	}
	t.Logf("%d kills, %d duplicates", kills, dups)
	if kills == 0 {
		t.Fatalf("no kill landed: the test proved little")
	}
	if dups > kills {
		t.Errorf("%d duplicates after %d kills; want at most one per kill", dups, kills)
	}
}
