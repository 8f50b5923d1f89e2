package main

// Tests of a real `popfetch run` process against a real dovecot: what the
// daemon issue lists as "Tests (real parts)". Each test starts the binary
// built by TestMain, talks to it only the way an operator would (the rc
// file, signals, `popfetch now` and `popfetch status`), and reads its log
// (slog text lines on stderr). Waits are bounded polls of a condition,
// never fixed sleeps.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
)

var generationRE = regexp.MustCompile(`generation (\d+)`)

// statusGeneration runs `popfetch status` and returns the config generation.
func statusGeneration(t *testing.T, rc string) int {
	t.Helper()
	r := daemonCLI(t, rc, "status")
	if r.code != 0 {
		t.Fatalf("popfetch status = exit %d; want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	m := generationRE.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("popfetch status prints no generation:\n%s", r.stdout)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

var columnSep = regexp.MustCompile(`\s{2,}`)

// statusPolls returns the POLLS column of `popfetch status` per account:
// how often each was polled, also when a poll logged nothing at Info.
func statusPolls(t *testing.T, rc string) map[string]int {
	t.Helper()
	rows, out := statusRows(t, rc)
	polls := map[string]int{}
	for name, row := range rows {
		n, err := strconv.Atoi(row["POLLS"])
		if err != nil {
			t.Fatalf("popfetch status: POLLS of %s = %q:\n%s", name, row["POLLS"], out)
		}
		polls[name] = n
	}
	return polls
}

// statusRows runs `popfetch status` and returns each account's row keyed
// by the table's column headings (ACCOUNT, STATE, LAST POLL, NEXT POLL, …).
func statusRows(t *testing.T, rc string) (map[string]map[string]string, string) {
	t.Helper()
	r := daemonCLI(t, rc, "status")
	if r.code != 0 {
		t.Fatalf("popfetch status = exit %d; want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	rows := map[string]map[string]string{}
	var head []string
	for _, ln := range strings.Split(r.stdout, "\n") {
		ln = strings.TrimSpace(ln)
		if ln == "" {
			if len(rows) > 0 {
				break // the end of the table: the OAuth2 table may follow
			}
			continue
		}
		cells := columnSep.Split(ln, -1)
		if cells[0] == "ACCOUNT" {
			head = cells
			continue
		}
		if head == nil {
			continue
		}
		row := map[string]string{}
		for i, h := range head {
			if i < len(cells) {
				row[h] = cells[i]
			}
		}
		rows[cells[0]] = row
	}
	if head == nil {
		t.Fatalf("popfetch status prints no table:\n%s", r.stdout)
	}
	return rows, r.stdout
}

var timestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)

// TestDaemonFetchesNowAndStatus: the daemon polls on its own soon after
// start (first poll jittered by at most interval/10), `popfetch now`
// fetches new mail at once instead of at the next interval, and `popfetch
// status` reports the account's last and next poll and the generation.
func TestDaemonFetchesNowAndStatus(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "alice", "pw-alice")
	mb.Put(t, seqMsg("first", 1, 3), seqMsg("first", 2, 3), seqMsg("first", 3, 3))
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "alice", port: srv.PlainPort, user: mb.User, pass: mb.Pass, maildir: maildir}))

	start := time.Now()
	d := startDaemon(t, rc)
	// Jitter ≤ 3 s for a 30 s interval, plus the session itself.
	waitMaildir(t, maildir, 3, 10*time.Second)
	firstPoll := time.Since(start)
	// Delivered first, then DELE and QUIT, then the poll's log line.
	waitFor(t, 30*time.Second, "the first poll to end", func() bool { return len(d.log.lines("msg=\"poll done\"", "account=alice")) > 0 })
	if n := mb.Count(t); n != 0 {
		t.Errorf("after the first poll the server still holds %d messages; want 0 (keep = false)", n)
	}

	mb.Put(t, seqMsg("second", 4, 3), seqMsg("second", 5, 3))
	r := daemonCLI(t, rc, "now")
	if r.code != 0 {
		t.Fatalf("popfetch now = exit %d; want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "alice: 2 new, 2 delivered") {
		t.Errorf("popfetch now printed %q; want a line with \"alice: 2 new, 2 delivered\"", r.stdout)
	}
	// The result comes from a poll that started after the request, so the
	// mail is there when `now` returns, without waiting.
	if n := maildirCount(t, maildir); n != 5 {
		t.Errorf("Maildir holds %d messages when `popfetch now` returned; want 5", n)
	}
	if r.took > 5*time.Second {
		t.Errorf("popfetch now took %v; want an immediate poll", r.took)
	}
	// No scheduled poll came in between (POLLS is 2 below): it was `now`.
	if since := time.Since(start) - firstPoll; since > 25*time.Second {
		t.Errorf("popfetch now returned %v after the first poll; the test cannot tell it from the 30 s interval", since)
	}

	rows, out := statusRows(t, rc)
	if g := generationRE.FindStringSubmatch(out); g == nil || g[1] != "1" {
		t.Errorf("popfetch status: want \"generation 1\":\n%s", out)
	}
	row := rows["alice"]
	if row == nil {
		t.Fatalf("popfetch status has no row for alice:\n%s", out)
	}
	if row["STATE"] != "idle" {
		t.Errorf("status STATE of alice = %q; want idle\n%s", row["STATE"], out)
	}
	if !timestampRE.MatchString(row["LAST POLL"]) {
		t.Errorf("status LAST POLL of alice = %q; want a time\n%s", row["LAST POLL"], out)
	}
	if !timestampRE.MatchString(row["NEXT POLL"]) {
		t.Errorf("status NEXT POLL of alice = %q; want a time\n%s", row["NEXT POLL"], out)
	} else if next, err := time.ParseInLocation("2006-01-02 15:04:05", row["NEXT POLL"], time.Local); err == nil {
		// Fixed delay: one interval after the `now` poll ended.
		if in := time.Until(next); in < 20*time.Second || in > 31*time.Second {
			t.Errorf("status NEXT POLL of alice is %v from now; want about the 30 s interval", in.Round(time.Second))
		}
	}
	if row["POLLS"] != "2" || row["DELIVERED TOTAL"] != "5" || row["NEW"] != "2" {
		t.Errorf("status of alice: POLLS %q, NEW %q, DELIVERED TOTAL %q; want 2, 2, 5\n%s", row["POLLS"], row["NEW"], row["DELIVERED TOTAL"], out)
	}
	// Both polls fetched mail: one Info line each.
	if n := len(d.log.lines("level=INFO", "msg=\"poll done\"", "account=alice")); n != 2 {
		t.Errorf("the log has %d \"poll done\" Info lines for alice; want 2 (one per poll that fetched mail)", n)
	}
}

// TestDaemonReload: a changed rc file is applied without a restart,
// whether it is rewritten in place, replaced by rename (as editors save),
// or swapped behind a symlink (as configuration managers do); a broken one
// is reported with file:line and the running configuration stays in
// effect until the file is fixed.
func TestDaemonReload(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})

	// setup starts a daemon with account A of user prefix+"a"; write
	// replaces the rc file the way the subtest is about.
	type env struct {
		t              *testing.T // the subtest: writers fail it, not the parent
		dir, rc, state string
		a, b           rcAccount
		mbA, mbB       *dovecottest.Mailbox
		d              *daemonProc
	}
	setup := func(t *testing.T, prefix string, write func(e *env, text string)) *env {
		e := &env{t: t, dir: t.TempDir()}
		e.rc = filepath.Join(e.dir, "rc.hcl")
		e.state = filepath.Join(e.dir, "state")
		e.mbA = srv.AddUser(t, prefix+"a", "pw-a")
		e.mbB = srv.AddUser(t, prefix+"b", "pw-b")
		e.a = rcAccount{name: "A", port: srv.PlainPort, user: e.mbA.User, pass: e.mbA.Pass, maildir: filepath.Join(e.dir, "MaildirA")}
		e.b = rcAccount{name: "B", port: srv.PlainPort, user: e.mbB.User, pass: e.mbB.Pass, maildir: filepath.Join(e.dir, "MaildirB")}
		e.mbA.Put(t, seqMsg("A", 1, 2))
		e.mbB.Put(t, seqMsg("B", 1, 2), seqMsg("B", 2, 2))
		write(e, rcText(e.state, nil, e.a))
		e.d = startDaemon(t, e.rc)
		waitMaildir(t, e.a.maildir, 1, 10*time.Second)
		if g := statusGeneration(t, e.rc); g != 1 {
			t.Fatalf("generation at start = %d; want 1", g)
		}
		return e
	}
	// addB writes a config with A and B and checks that B's mail arrives
	// without a restart and that the generation went from 1 to 2.
	addB := func(t *testing.T, e *env, write func(e *env, text string)) {
		write(e, rcText(e.state, nil, e.a, e.b))
		// Debounce 300 ms, then the first poll of an added account is
		// jittered by ≤ 3 s.
		waitMaildir(t, e.b.maildir, 2, 8*time.Second)
		if g := statusGeneration(t, e.rc); g != 2 {
			t.Errorf("generation after adding B = %d; want 2", g)
		}
		if n := len(e.d.log.lines("rc file reloaded")); n != 1 {
			t.Errorf("the log has %d \"rc file reloaded\" lines; want 1 (one per change)", n)
		}
		if e.d.exited() {
			t.Fatalf("the daemon exited")
		}
	}

	// stillOldConfig checks that after a refused reload (why) the daemon
	// runs the old config, A only: SIGUSR1 polls A, and B is not polled.
	stillOldConfig := func(t *testing.T, e *env, why string) {
		t.Helper()
		e.mbA.Put(t, seqMsg("A", 2, 2))
		e.d.signal(t, syscall.SIGUSR1)
		waitMaildir(t, e.a.maildir, 2, 5*time.Second)
		if n := maildirCount(t, e.b.maildir); n != 0 {
			t.Errorf("B was polled (%d messages) although the %s", n, why)
		}
	}

	t.Run("in-place", func(t *testing.T) {
		// Truncate and rewrite the same inode, as `cat > rc` does.
		inPlace := func(e *env, text string) {
			f, err := os.OpenFile(e.rc, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				e.t.Fatal(err)
			}
			if _, err := io.WriteString(f, text); err != nil {
				e.t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				e.t.Fatal(err)
			}
		}
		e := setup(t, "inplace", inPlace)
		fi1, _ := os.Stat(e.rc)
		addB(t, e, inPlace)
		if fi2, _ := os.Stat(e.rc); !os.SameFile(fi1, fi2) {
			t.Errorf("the in-place rewrite changed the inode; the test does not test what it says")
		}
	})

	// byRename writes a new file next to the rc file and renames it over
	// the rc file, as editors save.
	byRename := func(e *env, text string) {
		tmp := e.rc + ".new"
		writeFile(e.t, tmp, text)
		if err := os.Rename(tmp, e.rc); err != nil {
			e.t.Fatal(err)
		}
	}

	t.Run("rename", func(t *testing.T) {
		e := setup(t, "rename", byRename)
		addB(t, e, byRename)
	})

	t.Run("symlink-swap", func(t *testing.T) {
		// rc.hcl → dirN/rc.hcl; each write goes to a new directory and an
		// atomic rename of a new symlink over rc.hcl points at it.
		n := 0
		swap := func(e *env, text string) {
			n++
			target := filepath.Join(e.dir, fmt.Sprintf("dir%d", n), "rc.hcl")
			if err := os.Mkdir(filepath.Dir(target), 0o700); err != nil {
				e.t.Fatal(err)
			}
			writeFile(e.t, target, text)
			tmp := filepath.Join(e.dir, fmt.Sprintf(".rc.hcl.%d", n))
			if err := os.Symlink(target, tmp); err != nil {
				e.t.Fatal(err)
			}
			if err := os.Rename(tmp, e.rc); err != nil {
				e.t.Fatal(err)
			}
		}
		e := setup(t, "symlink", swap)
		if fi, err := os.Lstat(e.rc); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("%s is not a symlink (%v)", e.rc, err)
		}
		addB(t, e, swap)
	})

	t.Run("invalid-then-fixed", func(t *testing.T) {
		e := setup(t, "invalid", byRename)
		addB(t, e, byRename)

		// An unknown attribute in account B, on a line we know.
		lines := strings.Split(rcText(e.state, nil, e.a, e.b), "\n")
		bad := -1
		for i, l := range lines {
			if l == `account "B" {` {
				bad = i + 1 // the line after it, 0-based → 1-based line i+2
				break
			}
		}
		if bad < 0 {
			t.Fatalf("no account B in the rc text")
		}
		lines = append(lines[:bad], append([]string{"  no_such_setting = true"}, lines[bad:]...)...)
		badLine := bad + 1
		byRename(e, strings.Join(lines, "\n"))

		waitFor(t, 30*time.Second, "the daemon to log that the rc file has errors", func() bool {
			return len(e.d.log.lines("stays in effect")) > 0
		})
		where := fmt.Sprintf("rc.hcl:%d:", badLine)
		if diag := e.d.log.lines("msg=\"rc file\"", where); len(diag) != 1 {
			t.Errorf("the log has %d diagnostic lines with %q; want 1; log:\n%s", len(diag), where, e.d.log.String())
		} else if !strings.Contains(diag[0], "no_such_setting") {
			t.Errorf("the diagnostic does not name the attribute: %s", diag[0])
		}
		if n := len(e.d.log.lines("config reloaded")); n != 1 {
			t.Errorf("the log has %d \"config reloaded\" lines after a broken rc file; want 1 (only the addition of B)", n)
		}
		// `popfetch status` and `now` must still reach the daemon: a broken
		// rc file is exactly when the operator wants to look at it.
		if r := daemonCLI(t, e.rc, "status"); r.code != 0 {
			t.Errorf("popfetch status while the rc file is broken = exit %d; want 0 "+
				"and the running daemon's status (generation 2): it needs only state_dir to find the socket\nstderr:\n%s", r.code, r.stderr)
		} else if g := generationRE.FindStringSubmatch(r.stdout); g == nil || g[1] != "2" {
			t.Errorf("popfetch status after a broken rc file: want generation 2 (unchanged):\n%s", r.stdout)
		}
		// Still polling with the old config: A and B are both there.
		e.mbA.Put(t, seqMsg("A", 2, 2))
		e.mbB.Put(t, seqMsg("B", 3, 2))
		r := daemonCLI(t, e.rc, "now")
		if r.code != 0 {
			t.Errorf("popfetch now while the rc file is broken = exit %d; want 0 "+
				"and a poll of A and B by the running daemon\nstderr:\n%s", r.code, r.stderr)
			// Make the daemon poll another way, to check the old config
			// still runs.
			e.d.signal(t, syscall.SIGUSR1)
		} else if !strings.Contains(r.stdout, "A: 1 new, 1 delivered") || !strings.Contains(r.stdout, "B: 1 new, 1 delivered") {
			t.Errorf("popfetch now with a broken rc file printed %q; want one new message each for A and B", r.stdout)
		}
		waitMaildir(t, e.a.maildir, 2, 5*time.Second)
		waitMaildir(t, e.b.maildir, 3, 5*time.Second)
		if e.d.exited() {
			t.Fatalf("the daemon exited after a broken rc file")
		}

		// Fixed, and B removed: applied.
		byRename(e, rcText(e.state, nil, e.a))
		waitFor(t, 30*time.Second, "the fixed rc file to be applied", func() bool {
			return len(e.d.log.lines("rc file reloaded")) >= 2
		})
		rows, out := statusRows(t, e.rc)
		if g := generationRE.FindStringSubmatch(out); g == nil || g[1] != "3" {
			t.Errorf("popfetch status after the fix: want generation 3:\n%s", out)
		}
		if rows["B"] != nil || rows["A"] == nil {
			t.Errorf("popfetch status after the fix (B removed): want only A:\n%s", out)
		}
	})

	t.Run("unsafe-file-refused", func(t *testing.T) {
		// A new version that others may write (mode 0602, saved by
		// rename) is refused at reload like at start: it could name any
		// mda or password_command. The daemon keeps running on the old
		// config and takes the next safe version.
		e := setup(t, "unsafe", byRename)
		tmp := e.rc + ".new"
		writeFile(t, tmp, rcText(e.state, nil, e.a, e.b))
		if err := os.Chmod(tmp, 0o602); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, e.rc); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the daemon to refuse the unsafe rc file", func() bool {
			return len(e.d.log.lines("stays in effect")) > 0
		})
		if diag := e.d.log.lines("Unsafe rc file", "writable by every user", "chmod go-w"); len(diag) != 1 {
			t.Errorf("the log has %d \"Unsafe rc file\" lines naming the fix; want 1; log:\n%s", len(diag), e.d.log.String())
		}
		if g := statusGeneration(t, e.rc); g != 1 {
			t.Errorf("generation after an unsafe rc file = %d; want 1 (unchanged)", g)
		}
		stillOldConfig(t, e, "unsafe rc file was refused")
		if e.d.exited() {
			t.Fatalf("the daemon exited after an unsafe rc file")
		}
		addB(t, e, byRename)
	})

	t.Run("account-state-dir-needs-restart", func(t *testing.T) {
		// A per-account state_dir holds that account's UIDL journal:
		// moved at run time, A would start with an empty journal (and
		// with keep fetch its whole mailbox again). Refused like the
		// top-level one.
		e := setup(t, "acctstate", byRename)
		moved := e.a
		moved.extra = []string{fmt.Sprintf("state_dir = %q", filepath.Join(e.dir, "stateA"))}
		byRename(e, rcText(e.state, nil, moved, e.b))
		waitFor(t, 30*time.Second, "the daemon to refuse the account's new state_dir", func() bool {
			return len(e.d.log.lines("rc file not applied", "account A: state_dir changed")) > 0
		})
		stillOldConfig(t, e, "reload was refused")
		if _, err := os.Stat(filepath.Join(e.dir, "stateA")); !os.IsNotExist(err) {
			t.Errorf("the refused state_dir was created or used: %v", err)
		}
		if g := statusGeneration(t, e.rc); g != 1 {
			t.Errorf("generation = %d; want 1", g)
		}
	})

	t.Run("state-dir-needs-restart", func(t *testing.T) {
		// A new state_dir (with B added) is refused whole: the control
		// socket, the daemon lock and every UIDL store would move.
		e := setup(t, "statedir", byRename)
		byRename(e, rcText(filepath.Join(e.dir, "state2"), nil, e.a, e.b))
		waitFor(t, 30*time.Second, "the daemon to refuse the new state_dir", func() bool {
			return len(e.d.log.lines("rc file not applied", "state_dir changed")) > 0
		})
		if n := len(e.d.log.lines("config reloaded")); n != 0 {
			t.Errorf("the log has %d \"config reloaded\" lines; want none", n)
		}
		// Still the old config (A only), in the old place.
		stillOldConfig(t, e, "reload was refused")
		if _, err := os.Stat(filepath.Join(e.dir, "state2")); !os.IsNotExist(err) {
			t.Errorf("the refused state_dir was created or used: %v", err)
		}
	})
}

// bigMailbox is a dovecot mailbox of n messages (≈ 3.5 KB each, numbered
// by X-Seq) and an rc file that fetches it into maildir.
func bigMailbox(t *testing.T, n int) (mb *dovecottest.Mailbox, rc, maildir string) {
	t.Helper()
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb = srv.AddUser(t, "big", "pw-big")
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = seqMsg("big", i+1, 40)
	}
	mb.Put(t, msgs...)
	dir := t.TempDir()
	maildir = filepath.Join(dir, "Maildir")
	rc = filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "big", port: srv.PlainPort, user: mb.User, pass: mb.Pass, maildir: maildir}))
	return mb, rc, maildir
}

// signalMidFetch waits until the daemon has delivered some of the n
// messages and sends sig (once per entry), then waits for the process to
// exit. It returns how many messages the Maildir held when the first
// signal went out and when the process had exited. The test fails if the
// fetch was over before the signal: then it would test nothing.
func signalMidFetch(t *testing.T, d *daemonProc, maildir string, n int, sigs ...os.Signal) (atSignal, afterExit int) {
	t.Helper()
	waitMaildir(t, maildir, 50, 20*time.Second)
	for _, sig := range sigs {
		if err := d.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Now()
	atSignal = maildirCount(t, maildir)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("popfetch run did not exit within 10 s of %v", sigs)
	}
	afterExit = maildirCount(t, maildir)
	t.Logf("signalled with %d of %d messages in the Maildir; exited after %v with %d",
		atSignal, n, time.Since(sent).Round(time.Millisecond), afterExit)
	if afterExit >= n {
		t.Fatalf("all %d messages were delivered before the signal took effect; the interruption was not exercised", n)
	}
	return atSignal, afterExit
}

// restartCompletes starts `popfetch run` again and waits until its first
// poll has fetched the rest and the server mailbox is empty.
func restartCompletes(t *testing.T, rc, maildir string, mb *dovecottest.Mailbox, n int) {
	t.Helper()
	startDaemon(t, rc)
	waitMaildir(t, maildir, n, 60*time.Second)
	// DELE and QUIT come after the deliveries.
	waitFor(t, 20*time.Second, "the server mailbox to be emptied", func() bool { return mb.Count(t) == 0 })
	checkComplete(t, maildir, n)
}

// TestDaemonSIGTERMDuringBigFetch: SIGTERM in the middle of a 1000-message
// fetch stops the daemon quickly and cleanly (exit 0, the messages in
// flight finished, QUIT sent so the delivered ones are expunged), and a
// restarted `popfetch run` fetches exactly the rest: nothing lost, nothing
// delivered twice.
func TestDaemonSIGTERMDuringBigFetch(t *testing.T) {
	const n = 1000
	mb, rc, maildir := bigMailbox(t, n)
	d := startDaemon(t, rc)
	atTerm, afterStop := signalMidFetch(t, d, maildir, n, syscall.SIGTERM)
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("popfetch run exit status after SIGTERM = %d; want 0", code)
	}
	// Only the deliveries in flight (32 at once into a Maildir) finish,
	// plus those that completed while the signal was on its way, which
	// on a loaded machine can be as many again; replies already on the
	// wire are read but not delivered. A stop not honoured would deliver
	// the hundreds left.
	if afterStop-atTerm > 200 {
		t.Errorf("the daemon delivered %d more messages after SIGTERM; want only those in flight", afterStop-atTerm)
	}
	if len(d.log.lines("stopping after the messages in flight")) == 0 {
		t.Errorf("the log does not show the graceful stop")
	}
	if onServer := mb.Count(t); onServer != n-afterStop {
		t.Errorf("after the graceful stop the server holds %d messages and the Maildir %d; want %d on the server (QUIT expunges what was delivered)",
			onServer, afterStop, n-afterStop)
	}
	restartCompletes(t, rc, maildir, mb, n)
}

// TestDaemonSecondSignalAborts: a second SIGTERM drops the session at once
// without QUIT. The session here is stuck: the server never answers the
// 100th RETR, so the graceful stop the first SIGTERM asked for cannot end
// until the read deadline. After the second signal the daemon exits
// promptly with status 0, the abort is not counted as the server's
// failure, the server deleted nothing, and a restarted `popfetch run`
// completes the fetch with nothing lost or duplicated.
func TestDaemonSecondSignalAborts(t *testing.T) {
	// A session delivers a round of commands (256, see fetch's maxWindow)
	// only once all its replies are in: the stuck RETR is in the second
	// round, so the first is delivered before the session gets stuck.
	const n, stuck, firstRound = 400, 300, 256
	msgs := make([]pop3test.Message, n)
	for i := range msgs {
		msgs[i] = pop3test.Message{UID: fmt.Sprintf("uid-%04d", i+1), Data: seqMsg("abort", i+1, 10)}
	}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs,
		Faults: []pop3test.Fault{{Cmd: "RETR", N: stuck, Session: 1, Action: pop3test.Hang}}})
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "stuck", port: srv.Port(), user: "user", pass: "pass", maildir: maildir}))

	d := startDaemon(t, rc)
	waitMaildir(t, maildir, firstRound, 20*time.Second)
	d.signal(t, syscall.SIGTERM)
	// Two signals sent back to back would merge into one (standard
	// signals do not queue): send the second once the first was handled.
	waitFor(t, 30*time.Second, "the first SIGTERM to be handled", func() bool {
		return len(d.log.lines("stopping after the messages in flight")) > 0
	})
	if d.exited() {
		t.Fatalf("the daemon exited on the first SIGTERM; the stuck RETR should have held the graceful stop:\n%s", srv.Transcript())
	}
	d.signal(t, syscall.SIGTERM)
	d.waitExit(t, 5*time.Second, "the second SIGTERM")
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("popfetch run exit status after two SIGTERMs = %d; want 0", code)
	}
	if len(d.log.lines("aborting sessions without QUIT")) == 0 {
		t.Errorf("the log does not show the abort")
	}
	if len(d.log.lines("poll aborted", "account=stuck")) != 1 {
		t.Errorf("the log does not show the aborted poll")
	}
	if l := d.log.lines("poll failed", "account=stuck"); len(l) != 0 {
		t.Errorf("the abort was logged as a failure of the server:\n%s", strings.Join(l, "\n"))
	}
	// Commands, not Settled: the server's session hangs in the stuck
	// RETR until the test ends. An aborted session sends no QUIT at all,
	// not even one it would not wait for.
	if slices.Contains(srv.Commands(), "QUIT") {
		t.Errorf("the aborted session sent QUIT:\n%s", srv.Transcript())
	}
	// No QUIT: the server expunged nothing, so every message not in the
	// Maildir is certainly still there.
	if left := len(srv.Messages()); left != n {
		t.Errorf("the server holds %d messages after the abort; want all %d", left, n)
	}
	delivered := maildirCount(t, maildir)
	if delivered >= n {
		t.Fatalf("all messages delivered before the abort; the test tests nothing")
	}
	t.Logf("aborted with %d of %d messages delivered", delivered, n)

	startDaemon(t, rc)
	waitMaildir(t, maildir, n, 30*time.Second)
	waitFor(t, 20*time.Second, "the server mailbox to be emptied", func() bool { return len(srv.Messages()) == 0 })
	checkComplete(t, maildir, n)
}

// TestDaemonDeadServerDoesNotDelayOthers: a server that accepts and never
// answers, and one that refuses connections, cost only their own accounts:
// while a session to the hanging server is stuck, a healthy account is
// polled and answered (ordering, not wall time). Each dead account logs
// its error once, not once per retry, and status shows both in backoff.
func TestDaemonDeadServerDoesNotDelayOthers(t *testing.T) {
	t.Parallel() // mostly waits for the hanging server's timeouts
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "healthy", "pw-healthy")
	mb.Put(t, seqMsg("healthy", 1, 2), seqMsg("healthy", 2, 2))
	hang := pop3test.NewServer(t, pop3test.Options{Faults: []pop3test.Fault{{Cmd: "GREETING", Action: pop3test.Hang}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now: connection refused

	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "rc.hcl")
	// The hanging session lasts its whole timeout: long enough for a
	// healthy poll to start and finish inside it on any machine.
	hangTimeout := []string{`timeout = "10s"`}
	// All three accounts are on 127.0.0.1: raise the per-server limit so
	// that it is not what serializes them (different hosts in real life).
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), []string{"per_server = 4"},
		rcAccount{name: "dead-hang", port: hang.Port(), user: "hang", pass: "pass", maildir: filepath.Join(dir, "MaildirHang"), extra: hangTimeout},
		rcAccount{name: "dead-refused", port: refusedPort, user: "refused", pass: "pass", maildir: filepath.Join(dir, "MaildirRefused")},
		rcAccount{name: "healthy", port: srv.PlainPort, user: mb.User, pass: mb.Pass, maildir: maildir}))

	d := startDaemon(t, rc)
	waitMaildir(t, maildir, 2, 10*time.Second)

	failedLine := func(name string) []string {
		return d.log.lines("poll failed; will retry", "account="+name+" ")
	}
	waitFor(t, 20*time.Second, "both dead accounts to fail", func() bool {
		return len(failedLine("dead-hang")) > 0 && len(failedLine("dead-refused")) > 0
	})
	if l := failedLine("dead-refused"); !strings.Contains(l[0], "refused") {
		t.Errorf("dead-refused's error does not say the connection was refused: %s", l[0])
	}

	// Retry dead-refused through `popfetch now` (the scheduled retry is
	// 30 s away): the same error, so no new warning.
	for range 2 {
		r := daemonCLI(t, rc, "now", "dead-refused")
		if r.code != exitFail || !strings.Contains(r.stdout, "dead-refused: ") || !strings.Contains(r.stdout, "error:") {
			t.Errorf("popfetch now dead-refused = exit %d, %q; want exit %d and the error", r.code, r.stdout, exitFail)
		}
	}

	// `popfetch now dead-hang` in the background: its session hangs for
	// its timeout. Meanwhile `popfetch now healthy` must get its answer.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bg := exec.CommandContext(ctx, popfetchBin, "-f", rc, "now", "dead-hang")
	var bgOut bytes.Buffer
	bgDone := startCmd(t, bg, &bgOut)
	hangState := func() string {
		rows, _ := statusRows(t, rc)
		return rows["dead-hang"]["STATE"]
	}
	waitFor(t, 10*time.Second, "dead-hang's session to start", func() bool { return hangState() == "polling" })
	mb.Put(t, seqMsg("healthy", 3, 2))
	r := daemonCLI(t, rc, "now", "healthy")
	if r.code != 0 || !strings.Contains(r.stdout, "healthy: 1 new, 1 delivered") {
		t.Errorf("popfetch now healthy = exit %d, %q; want 0 and the new message", r.code, r.stdout)
	}
	select {
	case err := <-bgDone:
		t.Errorf("`popfetch now dead-hang` finished (%v: %s) before `popfetch now healthy`; the test needs the hang to last", err, bgOut.String())
	default:
		if st := hangState(); st != "polling" {
			t.Errorf("dead-hang is %q when healthy's poll returned; want still polling", st)
		}
	}
	select {
	case <-bgDone:
	case <-ctx.Done():
		t.Fatalf("`popfetch now dead-hang` did not return: %s", bgOut.String())
	}
	if code := bg.ProcessState.ExitCode(); code != exitFail || !strings.Contains(bgOut.String(), "dead-hang: ") {
		t.Errorf("popfetch now dead-hang = exit %d, %q; want exit %d and the error", code, bgOut.String(), exitFail)
	}

	polls := statusPolls(t, rc)
	for name, want := range map[string]int{"dead-refused": 3, "dead-hang": 2} {
		if polls[name] != want {
			t.Errorf("%s was polled %d times; want %d", name, polls[name], want)
		}
		if got := len(failedLine(name)); got != 1 {
			t.Errorf("the log has %d \"poll failed; will retry\" lines for %s after %d failed polls; want 1 (logged once per change of error)\n%s",
				got, name, polls[name], strings.Join(failedLine(name), "\n"))
		}
	}

	rows, out := statusRows(t, rc)
	for _, name := range []string{"dead-hang", "dead-refused"} {
		if row := rows[name]; row == nil || row["STATE"] != "backoff" || !timestampRE.MatchString(row["NEXT POLL"]) {
			t.Errorf("status of %s: want state backoff with a next poll time:\n%s", name, out)
		}
	}
	if row := rows["healthy"]; row == nil || row["STATE"] != "idle" || row["DELIVERED TOTAL"] != "3" {
		t.Errorf("status of healthy: want idle with 3 delivered:\n%s", out)
	}
}

// TestDaemonControlSocketRefusesOtherUsers: another user can neither ask
// the daemon for its status nor make it poll, even with a readable rc
// file; the owner still can. Two layers: the private directory around the
// socket, and the SO_PEERCRED check when that directory is loosened.
func TestDaemonControlSocketRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a command as user nobody")
	}
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "owner", "pw-owner")

	// A directory nobody can traverse: t.TempDir's parents are 0700.
	dir := testutil.OpenDir(t, "popfetch-nobody-")
	bin := popfetchBin
	if fi, err := os.Stat(filepath.Dir(popfetchBin)); err != nil || fi.Mode().Perm()&0o005 != 0o005 {
		bin = testutil.CopyExecutable(t, popfetchBin, dir, "popfetch")
	}
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, mb.Pass+"\n") // 0600, root's
	rc := filepath.Join(dir, "rc.hcl")
	maildir := filepath.Join(dir, "Maildir")
	// Polled once a day: after the `now` below, only a `now` fetches
	// new mail while the test runs.
	if err := os.WriteFile(rc, []byte(rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "owner", port: srv.PlainPort, user: mb.User, passFile: pw, maildir: maildir, extra: []string{`interval = "24h"`}})), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, rc)
	// The first poll, by hand (the scheduled one is up to 30 s away): its
	// end plans the next for a day later.
	if r := daemonCLI(t, rc, "now"); r.code != 0 {
		t.Fatalf("popfetch now as root = exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	asNobody := func(args ...string) cliResult {
		return popfetchCmd(t, bin, nobody, append([]string{"-f", rc}, args...)...)
	}
	// Sanity: nobody can run the binary and read the rc file. Its check
	// finds root's Maildir and state directory unwritable (exit 1): the
	// rc file loaded.
	if r := asNobody("check"); r.code != exitOK && r.code != exitFail || !strings.Contains(r.stdout, ": ok\n") {
		t.Fatalf("popfetch check as nobody = exit %d; want 0 (the setup must let nobody load the rc file)\n%s%s", r.code, r.stdout, r.stderr)
	}
	// refused runs status and now as nobody, tries times each: each must
	// fail, show nothing and poll nothing, and tell why (want).
	refused := func(layer string, tries int, want ...string) {
		t.Helper()
		mb.Put(t, seqMsg(layer, 1, 1))
		before := maildirCount(t, maildir)
		for _, cmd := range []string{"status", "now"} {
			var unexplained []string
			for range tries {
				r := asNobody(cmd)
				if r.code == 0 {
					t.Errorf("%s: popfetch %s as nobody = exit 0, %q; want a failure", layer, cmd, r.stdout)
				}
				if strings.Contains(r.stdout, "owner") {
					t.Errorf("%s: popfetch %s as nobody printed the daemon's data: %q", layer, cmd, r.stdout)
				}
				for _, w := range want {
					if !strings.Contains(r.stderr, w) {
						unexplained = append(unexplained, r.stderr)
						break
					}
				}
			}
			if len(unexplained) > 0 {
				t.Errorf("%s: popfetch %s as nobody failed without saying why (want %q) in %d of %d runs, e.g.:\n%s",
					layer, cmd, want, len(unexplained), tries, unexplained[0])
			}
		}
		if got := maildirCount(t, maildir); got != before {
			t.Errorf("%s: nobody's `popfetch now` made the daemon poll (%d → %d messages)", layer, before, got)
		}
		// The owner still controls it.
		if r := daemonCLI(t, rc, "now"); r.code != 0 || !strings.Contains(r.stdout, "owner: 1 new, 1 delivered") {
			t.Errorf("%s: popfetch now as root = exit %d, %q; want 0 and the new message\n%s", layer, r.code, r.stdout, r.stderr)
		}
		if r := daemonCLI(t, rc, "status"); r.code != 0 || !strings.Contains(r.stdout, "owner") {
			t.Errorf("%s: popfetch status as root = exit %d, %q; want 0 and the account", layer, r.code, r.stdout)
		}
	}
	sock := filepath.Join(dir, "state", "run", "popfetch.sock")
	refused("private-dir", 1, "permission denied", sock)

	// Someone loosens the directories and the socket: SO_PEERCRED still
	// refuses uid 65534.
	for _, p := range []string{filepath.Join(dir, "state"), filepath.Join(dir, "state", "run")} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	// Several tries: the refusal's reason must reach the client every
	// time, not only when the client's request beats the daemon's close.
	const tries = 10
	refused("peercred", tries, "uid 65534 may not control")
	if n := len(d.log.lines("control connection refused", "uid=65534")); n != 2*tries {
		t.Errorf("the daemon logged %d refused control connections of uid 65534; want %d (every status and now)", n, 2*tries)
	}
}

// TestDaemonAuthFailureHeld: a rejected password is logged once and puts
// the account on hold instead of retrying (which could lock it at the
// provider); `popfetch now` polls it anyway (exit status 3). Fixing the
// password in the rc file lifts the hold of that account (carol); fixing
// a password file, which the rc file does not show, does not by itself,
// but SIGHUP does (dave).
func TestDaemonAuthFailureHeld(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mbC := srv.AddUser(t, "carol", "right-password")
	mbC.Put(t, seqMsg("carol", 1, 2))
	mbD := srv.AddUser(t, "dave", "dave-right")
	mbD.Put(t, seqMsg("dave", 1, 2))
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	pwD := filepath.Join(dir, "dave.pw")
	writeFile(t, pwD, "dave-wrong\n")
	carol := rcAccount{name: "carol", port: srv.PlainPort, user: mbC.User, pass: "wrong-password", maildir: filepath.Join(dir, "MaildirC")}
	dave := rcAccount{name: "dave", port: srv.PlainPort, user: mbD.User, passFile: pwD, maildir: filepath.Join(dir, "MaildirD")}
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, carol, dave))

	d := startDaemon(t, rc)
	authLines := func(name string) []string {
		return d.log.lines("authentication failed; not retrying", "account="+name)
	}
	waitFor(t, daemonWait, "the authentication failures in the log", func() bool {
		return len(authLines("carol")) > 0 && len(authLines("dave")) > 0
	})
	if l := authLines("carol"); len(l) != 1 {
		t.Errorf("the log has %d authentication failure lines for carol; want 1:\n%s", len(l), strings.Join(l, "\n"))
	} else if strings.Contains(l[0], "wrong-password") {
		t.Errorf("the log shows the password: %s", l[0])
	}

	rows, out := statusRows(t, rc)
	row := rows["carol"]
	if row == nil || row["STATE"] != "auth-hold" {
		t.Fatalf("status of carol: want state auth-hold:\n%s", out)
	}
	if timestampRE.MatchString(row["NEXT POLL"]) || !strings.HasPrefix(row["NEXT POLL"], "held") {
		t.Errorf("status NEXT POLL of carol = %q; want no time but \"held: …\"", row["NEXT POLL"])
	}
	if polls := statusPolls(t, rc)["carol"]; polls != 1 {
		t.Errorf("carol was polled %d times on its own; want 1 (no retry in auth-hold)", polls)
	}

	r := daemonCLI(t, rc, "now", "carol")
	if r.code != exitAuth {
		t.Errorf("popfetch now carol = exit %d; want %d (authentication)\nstdout:\n%s\nstderr:\n%s", r.code, exitAuth, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "carol: 0 new") || !strings.Contains(r.stdout, "error:") {
		t.Errorf("popfetch now carol printed %q; want carol's result with the error", r.stdout)
	}
	if polls := statusPolls(t, rc)["carol"]; polls != 2 {
		t.Errorf("after `popfetch now` carol was polled %d times; want 2", polls)
	}
	if rows, out := statusRows(t, rc); rows["carol"] == nil || rows["carol"]["STATE"] != "auth-hold" {
		t.Errorf("status of carol after a failed `now`: want auth-hold again:\n%s", out)
	}
	if maildirCount(t, carol.maildir) != 0 {
		t.Errorf("mail was fetched with a wrong password")
	}

	// Fixing carol's password changes that account: its hold is lifted and
	// the first poll comes within its jitter. dave is unchanged: held.
	carol.pass = mbC.Pass
	tmp := rc + ".new"
	writeFile(t, tmp, rcText(filepath.Join(dir, "state"), nil, carol, dave))
	if err := os.Rename(tmp, rc); err != nil {
		t.Fatal(err)
	}
	waitMaildir(t, carol.maildir, 1, daemonWait)
	// The copy lands before the record, the DELE and the QUIT: the poll
	// may still be running when the file appears.
	waitFor(t, daemonWait, "carol idle after the fix", func() bool {
		rows, _ := statusRows(t, rc)
		return rows["carol"] != nil && rows["carol"]["STATE"] == "idle"
	})
	rows, out = statusRows(t, rc)
	if rows["dave"] == nil || rows["dave"]["STATE"] != "auth-hold" {
		t.Errorf("status of dave after a reload that did not change it: want auth-hold:\n%s", out)
	}

	// dave's password file is fixed: the rc file is the same, so the hold
	// stays until the operator's SIGHUP.
	writeFile(t, pwD, mbD.Pass+"\n")
	if rows, out := statusRows(t, rc); rows["dave"]["STATE"] != "auth-hold" || statusPolls(t, rc)["dave"] != 1 {
		t.Errorf("dave after fixing its password file, before SIGHUP: want auth-hold after 1 poll:\n%s", out)
	}
	d.signal(t, syscall.SIGHUP)
	waitMaildir(t, dave.maildir, 1, daemonWait)
	if len(d.log.lines("authentication hold lifted by the operator", "account=dave")) != 1 {
		t.Errorf("the log does not show dave's hold lifted by SIGHUP")
	}
	waitFor(t, daemonWait, "dave idle after SIGHUP", func() bool {
		rows, _ := statusRows(t, rc)
		return rows["dave"] != nil && rows["dave"]["STATE"] == "idle"
	})
}

// TestDaemonScheduledPoll: mail that arrives after a poll is fetched by
// the next scheduled poll, one interval (30 s, the floor) later, without
// `popfetch now` or a signal.
func TestDaemonScheduledPoll(t *testing.T) {
	t.Parallel() // waits out a whole interval
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "sched", "pw-sched")
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "sched", port: srv.PlainPort, user: mb.User, pass: mb.Pass, maildir: maildir, extra: []string{`interval = "30s"`}}))

	d := startDaemon(t, rc)
	// The start-up poll (within 3 s) finds nothing.
	waitFor(t, 10*time.Second, "the start-up poll", func() bool { return statusPolls(t, rc)["sched"] >= 1 })
	rows, out := statusRows(t, rc)
	next, err := time.ParseInLocation("2006-01-02 15:04:05", rows["sched"]["NEXT POLL"], time.Local)
	if err != nil {
		t.Fatalf("status NEXT POLL of sched: %v\n%s", err, out)
	}
	if in := time.Until(next); in < 20*time.Second || in > 31*time.Second {
		t.Errorf("status NEXT POLL of sched is %v from now; want about the 30 s interval", in.Round(time.Second))
	}
	mb.Put(t, seqMsg("sched", 1, 2))

	waitMaildir(t, maildir, 1, 45*time.Second)
	// Fixed delay: not before the planned poll (NEXT POLL is printed
	// truncated to the second, so this cannot fail on rounding).
	if now := time.Now(); now.Before(next) {
		t.Errorf("the mail was fetched %v before the scheduled poll", next.Sub(now))
	}
	// The copy lands in the Maildir before the poll ends (record, DELE,
	// QUIT, then the status and the log line): wait for the end.
	pollDone := func() int {
		return len(d.log.lines("level=INFO", `msg="poll done"`, "account=sched", "delivered=1"))
	}
	waitFor(t, 10*time.Second, "the scheduled poll to end", func() bool {
		return statusPolls(t, rc)["sched"] >= 2 && pollDone() >= 1
	})
	if polls := statusPolls(t, rc)["sched"]; polls != 2 {
		t.Errorf("sched was polled %d times; want 2 (start-up, then the scheduled poll)", polls)
	}
	if l := d.log.lines("SIGUSR1"); len(l) != 0 {
		t.Errorf("something sent SIGUSR1: %s", l[0])
	}
	if n := pollDone(); n != 1 {
		t.Errorf("%d Info \"poll done\" lines with the delivery; want 1:\n%s", n, d.log.String())
	}
}

// TestDaemonLogFormatJSON: with --log-format json every line the daemon
// writes is one JSON object with time, level and msg, and its records
// carry the stable keys (fetch/doc.go). The password never appears.
func TestDaemonLogFormatJSON(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "json", "pw-json-secret")
	mb.Put(t, seqMsg("json", 1, 2), seqMsg("json", 2, 2))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "mail", port: srv.PlainPort, user: mb.User, pass: mb.Pass, maildir: maildir},
		rcAccount{name: "down", port: refusedPort, user: "down", pass: "pw-down-secret", maildir: filepath.Join(dir, "MaildirDown")}))

	d := startDaemon(t, rc, "--log-format", "json")
	waitMaildir(t, maildir, 2, 10*time.Second)
	waitFor(t, 10*time.Second, "both first polls in the log", func() bool {
		return len(d.log.lines(`"msg":"poll done"`)) > 0 && len(d.log.lines(`"msg":"poll failed; will retry"`)) > 0
	})
	d.signal(t, syscall.SIGTERM)
	d.waitExit(t, 20*time.Second, "SIGTERM")

	records := map[string]map[string]any{} // by msg, the first of each
	for _, ln := range strings.Split(strings.TrimSpace(d.log.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(ln), &rec); err != nil {
			t.Errorf("log line is not JSON (%v): %s", err, ln)
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("log record without %q: %s", k, ln)
			}
		}
		if strings.Contains(ln, "secret") {
			t.Errorf("log record shows a password: %s", ln)
		}
		if msg, _ := rec["msg"].(string); records[msg] == nil {
			records[msg] = rec
		}
	}
	want := map[string][]string{
		"popfetch daemon started": {"version", "config", "accounts", "control"},
		"poll done":               {"account", "messages", "new", "delivered", "deleted", "skipped", "failed", "elapsed"},
		"poll failed; will retry": {"account", "err", "failures", "retry_in"},
		"popfetch daemon stopped": nil,
		// The rc file's warnings (interval under 1m) at start-up too.
		"rc file": {"path", "diag"},
	}
	for msg, keys := range want {
		rec := records[msg]
		if rec == nil {
			t.Errorf("no %q record in the log:\n%s", msg, d.log.String())
			continue
		}
		for _, k := range keys {
			if _, ok := rec[k]; !ok {
				t.Errorf("%q record without the key %q: %v", msg, k, rec)
			}
		}
	}
	if rec := records["poll done"]; rec != nil && (rec["account"] != "mail" || rec["delivered"] != 2.0 || rec["level"] != "INFO") {
		t.Errorf("poll done record = %v; want account mail, delivered 2, level INFO", rec)
	}
	if rec := records["poll failed; will retry"]; rec != nil {
		if e, _ := rec["err"].(string); rec["account"] != "down" || !strings.Contains(e, "refused") || rec["level"] != "WARN" {
			t.Errorf("poll failed record = %v; want account down, a refused connection, level WARN", rec)
		}
	}
}
