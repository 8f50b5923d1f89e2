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
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// lockedBuffer is the daemon's stderr: written by os/exec's copier,
// read by the test while the daemon runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the log lines that contain every one of subs.
func (l *lockedBuffer) lines(subs ...string) []string {
	var out []string
	for _, ln := range strings.Split(l.String(), "\n") {
		ok := ln != ""
		for _, s := range subs {
			ok = ok && strings.Contains(ln, s)
		}
		if ok {
			out = append(out, ln)
		}
	}
	return out
}

// daemonProc is one running `popfetch -f rc run`.
type daemonProc struct {
	rc   string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done is closed
}

// startDaemon starts `popfetch -f rc run` and waits until it serves its
// control socket. t.Cleanup stops it with SIGTERM and requires exit
// status 0 within 20 s.
func startDaemon(t *testing.T, rc string) *daemonProc {
	t.Helper()
	d := &daemonProc{rc: rc, log: &lockedBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(popfetchBin, "-f", rc, "run")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start popfetch run: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		if !d.exited() {
			d.cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-d.done:
			if code := d.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("popfetch run exited with status %d (%v) after SIGTERM; want 0", code, d.err)
			}
		case <-time.After(20 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
			t.Errorf("popfetch run did not exit within 20 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("popfetch run log:\n%s", d.log.String())
		}
	})
	waitFor(t, 10*time.Second, "the daemon to start", func() bool {
		if d.exited() {
			t.Fatalf("popfetch run exited at start-up: %v\n%s", d.err, d.log.String())
		}
		return len(d.log.lines("popfetch daemon started")) > 0
	})
	return d
}

func (d *daemonProc) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cliResult is one run of the popfetch binary.
type cliResult struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// popfetchCmd runs the popfetch binary (bin, or popfetchBin if empty) to
// completion, at most 60 s; cred runs it as another user.
func popfetchCmd(t *testing.T, bin string, cred *syscall.Credential, args ...string) cliResult {
	t.Helper()
	if bin == "" {
		bin = popfetchBin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Dir = "/"
	}
	start := time.Now()
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("popfetch %s: %v", strings.Join(args, " "), err)
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("popfetch %s did not finish within 60 s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	}
	r.code = cmd.ProcessState.ExitCode()
	return r
}

// daemonCLI runs `popfetch -f rc args...` as the current user.
func daemonCLI(t *testing.T, rc string, args ...string) cliResult {
	t.Helper()
	return popfetchCmd(t, "", nil, append([]string{"-f", rc}, args...)...)
}

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

// rcAccount is one account block of a test rc file.
type rcAccount struct {
	name     string
	port     int
	server   string // default 127.0.0.1
	user     string
	pass     string // inline, unless passFile is set
	passFile string
	maildir  string
	keep     bool
	extra    []string // more attribute lines, e.g. `timeout = "2s"`
}

// rcText renders an rc file: state_dir, top-level lines, then accounts,
// each polled every 10 s (the minimum) unless extra says otherwise.
func rcText(stateDir string, top []string, accts ...rcAccount) string {
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir = %q\n", stateDir)
	for _, l := range top {
		fmt.Fprintln(&b, l)
	}
	for _, a := range accts {
		server := a.server
		if server == "" {
			server = "127.0.0.1"
		}
		fmt.Fprintf(&b, "account %q {\n", a.name)
		fmt.Fprintf(&b, "  server   = %q\n  port     = %d\n  tls      = \"none\"\n  username = %q\n", server, a.port, a.user)
		if a.passFile != "" {
			fmt.Fprintf(&b, "  password_file = %q\n", a.passFile)
		} else {
			fmt.Fprintf(&b, "  password = %q\n", a.pass)
		}
		fmt.Fprintf(&b, "  keep     = %v\n", a.keep)
		if !strings.Contains(strings.Join(a.extra, "\n"), "interval") {
			fmt.Fprintln(&b, `  interval = "10s"`)
		}
		for _, l := range a.extra {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		fmt.Fprintf(&b, "  deliver { maildir = %q }\n}\n", a.maildir)
	}
	return b.String()
}

// seqMsg is a message with an X-Seq header and lines body lines.
func seqMsg(tag string, seq, lines int) []byte {
	return fmt.Appendf(nil, "From: a@example.net\r\nTo: b@example.com\r\nSubject: %s %d\r\nX-Seq: %d\r\n\r\n%s", tag, seq, seq,
		strings.Repeat(fmt.Sprintf("%s message %d: body line of some length to give it weight\r\n", tag, seq), lines))
}

// maildirFiles lists the message files in a Maildir's new/ and cur/; a
// Maildir not created yet has none.
func maildirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				out = append(out, filepath.Join(dir, sub, e.Name()))
			}
		}
	}
	return out
}

func maildirCount(t *testing.T, dir string) int {
	t.Helper()
	return len(maildirFiles(t, dir))
}

// waitMaildir waits until dir holds at least n messages.
func waitMaildir(t *testing.T, dir string, n int, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d messages in %s", n, dir), func() bool { return maildirCount(t, dir) >= n })
}

// seqCounts counts the messages of dir by their X-Seq header.
func seqCounts(t *testing.T, dir string) map[int]int {
	t.Helper()
	seen := map[int]int{}
	for _, p := range maildirFiles(t, dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, []byte("\nX-Seq: "))
		if i < 0 {
			t.Fatalf("%s has no X-Seq header", p)
		}
		rest := b[i+len("\nX-Seq: "):]
		seq, err := strconv.Atoi(strings.TrimSpace(string(rest[:bytes.IndexByte(rest, '\n')])))
		if err != nil {
			t.Fatalf("%s: X-Seq: %v", p, err)
		}
		seen[seq]++
	}
	return seen
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
	// Jitter ≤ 1 s for a 10 s interval, plus the session itself.
	waitMaildir(t, maildir, 3, 5*time.Second)
	firstPoll := time.Since(start)
	// Delivered first, then DELE and QUIT, then the poll's log line.
	waitFor(t, 5*time.Second, "the first poll to end", func() bool { return len(d.log.lines("msg=\"poll done\"", "account=alice")) > 0 })
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
	if since := time.Since(start) - firstPoll; since > 9*time.Second {
		t.Errorf("popfetch now returned %v after the first poll; the test cannot tell it from the 10 s interval", since)
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
		if in := time.Until(next); in < 5*time.Second || in > 11*time.Second {
			t.Errorf("status NEXT POLL of alice is %v from now; want about the 10 s interval", in.Round(time.Second))
		}
	}
	if row["POLLS"] != "2" || row["DELIVERED TOTAL"] != "5" || row["NEW"] != "2" {
		t.Errorf("status of alice: POLLS %q, NEW %q, DELIVERED TOTAL %q; want 2, 2, 5\n%s", row["POLLS"], row["NEW"], row["DELIVERED TOTAL"], out)
	}
	if n := len(d.log.lines("msg=\"poll done\"", "account=alice")); n != 2 {
		t.Errorf("the log has %d \"poll done\" lines for alice; want 2 (one per poll)", n)
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
		waitMaildir(t, e.a.maildir, 1, 5*time.Second)
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
		// jittered by ≤ 1 s.
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

		waitFor(t, 5*time.Second, "the daemon to log that the rc file has errors", func() bool {
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
			t.Errorf("BUG (cmd/popfetch/daemon.go:119 controlPath loads the whole rc file): popfetch status while the rc file is broken = exit %d; want 0 "+
				"and the running daemon's status (generation 2): it needs only state_dir to find the socket\nstderr:\n%s", r.code, r.stderr)
		} else if g := generationRE.FindStringSubmatch(r.stdout); g == nil || g[1] != "2" {
			t.Errorf("popfetch status after a broken rc file: want generation 2 (unchanged):\n%s", r.stdout)
		}
		// Still polling with the old config: A and B are both there.
		e.mbA.Put(t, seqMsg("A", 2, 2))
		e.mbB.Put(t, seqMsg("B", 3, 2))
		r := daemonCLI(t, e.rc, "now")
		if r.code != 0 {
			t.Errorf("BUG (cmd/popfetch/daemon.go:119 controlPath loads the whole rc file): popfetch now while the rc file is broken = exit %d; want 0 "+
				"and a poll of A and B by the running daemon\nstderr:\n%s", r.code, r.stderr)
			// Make the daemon poll another way, to check the old config
			// still runs.
			if err := e.d.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
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
		waitFor(t, 5*time.Second, "the fixed rc file to be applied", func() bool {
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
}

// TestDaemonSIGTERMDuringBigFetch: SIGTERM in the middle of a 1000-message
// fetch stops the daemon quickly and cleanly (exit 0, the message in
// flight finished, QUIT sent), and a later `popfetch fetch` picks up
// exactly the rest: no message lost, none delivered twice.
func TestDaemonSIGTERMDuringBigFetch(t *testing.T) {
	const n = 1000
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "big", "pw-big")
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = seqMsg("big", i+1, 40) // ≈ 3.5 KB each
	}
	mb.Put(t, msgs...)
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "big", port: srv.PlainPort, user: mb.User, pass: mb.Pass, maildir: maildir}))

	d := startDaemon(t, rc)
	waitMaildir(t, maildir, 50, 10*time.Second)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	termAt := time.Now()
	atTerm := maildirCount(t, maildir)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("popfetch run did not exit within 5 s of SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("popfetch run exit status after SIGTERM = %d; want 0", code)
	}
	afterStop := maildirCount(t, maildir)
	t.Logf("SIGTERM with %d messages in the Maildir; exited after %v with %d", atTerm, time.Since(termAt).Round(time.Millisecond), afterStop)
	switch {
	case atTerm <= n-100 && afterStop-atTerm > 100:
		// At most the pipelined RETRs (a window of 16) are finished.
		t.Errorf("the daemon delivered %d more messages after SIGTERM; want only those in flight", afterStop-atTerm)
	case afterStop >= n:
		t.Logf("note: the fetch completed before SIGTERM took effect; the interruption was not exercised")
	}
	if len(d.log.lines("stopping after the messages in flight")) == 0 {
		t.Errorf("the log does not show the graceful stop")
	}
	if onServer := mb.Count(t); afterStop < n && onServer != n-afterStop {
		t.Errorf("after the graceful stop the server holds %d messages and the Maildir %d; want %d on the server (QUIT expunges what was delivered)",
			onServer, afterStop, n-afterStop)
	}

	r := daemonCLI(t, rc, "fetch")
	if r.code != 0 {
		t.Fatalf("popfetch fetch = exit %d; want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	seen := seqCounts(t, maildir)
	for i := 1; i <= n; i++ {
		switch c := seen[i]; {
		case c == 0:
			t.Errorf("message X-Seq %d lost", i)
		case c > 1:
			t.Errorf("message X-Seq %d delivered %d times", i, c)
		}
	}
	if len(seen) != n {
		t.Errorf("Maildir holds %d distinct messages; want %d", len(seen), n)
	}
	if got := mb.Count(t); got != 0 {
		t.Errorf("server mailbox holds %d messages after the fetch; want 0 (keep = false)", got)
	}
}

// TestDaemonDeadServerDoesNotDelayOthers: a server that accepts and never
// answers, and one that refuses connections, cost only their own accounts
// (their sessions run beside the healthy one's); each logs its error once,
// not once per retry, and status shows both in backoff.
func TestDaemonDeadServerDoesNotDelayOthers(t *testing.T) {
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
	dead := []string{`timeout = "2s"`}
	// All three accounts are on 127.0.0.1: raise the per-server limit so
	// that it is not what serializes them (different hosts in real life).
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), []string{"per_server = 4"},
		rcAccount{name: "dead-hang", port: hang.Port(), user: "user", pass: "pass", maildir: filepath.Join(dir, "MaildirHang"), extra: dead},
		rcAccount{name: "dead-refused", port: refusedPort, user: "user", pass: "pass", maildir: filepath.Join(dir, "MaildirRefused"), extra: dead},
		rcAccount{name: "healthy", port: srv.PlainPort, user: mb.User, pass: mb.Pass, maildir: maildir, extra: dead}))

	start := time.Now()
	d := startDaemon(t, rc)
	// First poll: jitter ≤ 1 s; a session serialized behind the hanging
	// one would add its 2 s timeout.
	waitMaildir(t, maildir, 2, 10*time.Second)
	took := time.Since(start)
	t.Logf("healthy mail fetched %v after start", took.Round(time.Millisecond))
	if took > 2500*time.Millisecond {
		t.Errorf("healthy mail fetched %v after start; want within the first cycle (jitter ≤ 1 s), not after the dead servers' timeouts", took)
	}

	failedLine := func(name string) []string {
		return d.log.lines("poll failed; will retry", "account="+name+" ")
	}
	waitFor(t, 8*time.Second, "both dead accounts to fail", func() bool {
		return len(failedLine("dead-hang")) > 0 && len(failedLine("dead-refused")) > 0
	})
	if l := failedLine("dead-refused"); !strings.Contains(l[0], "refused") {
		t.Errorf("dead-refused's error does not say the connection was refused: %s", l[0])
	}

	// Retry each dead account through `popfetch now` (the scheduled retry
	// is 30 s away): same error, so no new warning.
	for _, name := range []string{"dead-refused", "dead-refused", "dead-hang"} {
		r := daemonCLI(t, rc, "now", name)
		if r.code != exitFail || !strings.Contains(r.stdout, name+": ") || !strings.Contains(r.stdout, "error:") {
			t.Errorf("popfetch now %s = exit %d, %q; want exit %d and the error", name, r.code, r.stdout, exitFail)
		}
	}
	for name, polls := range map[string]int{"dead-refused": 3, "dead-hang": 2} {
		if got := len(d.log.lines("msg=\"poll done\"", "account="+name+" ")); got != polls {
			t.Errorf("%s was polled %d times; want %d", name, got, polls)
		}
		if got := len(failedLine(name)); got != 1 {
			t.Errorf("the log has %d \"poll failed; will retry\" lines for %s after %d failed polls; want 1 (logged once per change of error)\n%s\n"+
				"BUG (fetch/daemon.go:563): the error text compared with the last one contains the connection's local port, "+
				"so a server that times out or resets counts as a new error on every retry",
				got, name, polls, strings.Join(failedLine(name), "\n"))
		}
	}

	rows, out := statusRows(t, rc)
	for _, name := range []string{"dead-hang", "dead-refused"} {
		if row := rows[name]; row == nil || row["STATE"] != "backoff" || !timestampRE.MatchString(row["NEXT POLL"]) {
			t.Errorf("status of %s: want state backoff with a next poll time:\n%s", name, out)
		}
	}
	if row := rows["healthy"]; row == nil || row["STATE"] != "idle" || row["DELIVERED TOTAL"] != "2" {
		t.Errorf("status of healthy: want idle with 2 delivered:\n%s", out)
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
	dir, err := os.MkdirTemp("", "popfetch-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := popfetchBin
	if fi, err := os.Stat(filepath.Dir(popfetchBin)); err != nil || fi.Mode().Perm()&0o005 != 0o005 {
		bin = filepath.Join(dir, "popfetch")
		src, err := os.ReadFile(popfetchBin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, src, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, mb.Pass+"\n") // 0600, root's
	rc := filepath.Join(dir, "rc.hcl")
	maildir := filepath.Join(dir, "Maildir")
	if err := os.WriteFile(rc, []byte(rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "owner", port: srv.PlainPort, user: mb.User, passFile: pw, maildir: maildir})), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, rc)
	// Let the first scheduled poll pass: from then on, the next is 10 s
	// away, and only a `now` fetches new mail.
	waitFor(t, 5*time.Second, "the first poll", func() bool { return len(d.log.lines("msg=\"poll done\"", "account=owner")) > 0 })

	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	asNobody := func(args ...string) cliResult {
		return popfetchCmd(t, bin, nobody, append([]string{"-f", rc}, args...)...)
	}
	// Sanity: nobody can run the binary and read the rc file.
	if r := asNobody("check"); r.code != 0 {
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
				t.Errorf("%s: popfetch %s as nobody failed without saying why (want %q) in %d of %d runs, e.g.:\n%s"+
					"BUG (fetch/control.go:268 serveControlConn, :330 controlRoundTrip): the daemon answers a refused peer and closes "+
					"before reading its request, so the client's write races the close (EPIPE) and the reason is lost",
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
	// Several tries: whether the refusal's reason reaches the client is
	// a race (see the bug report in the message below).
	const tries = 10
	refused("peercred", tries, "uid 65534 may not control")
	if n := len(d.log.lines("control connection refused", "uid=65534")); n != 2*tries {
		t.Errorf("the daemon logged %d refused control connections of uid 65534; want %d (every status and now)", n, 2*tries)
	}
}

// TestDaemonAuthFailureHeld: a rejected password is logged once and puts
// the account on hold instead of retrying (which could lock it at the
// provider); `popfetch now` polls it anyway (exit status 3), and fixing
// the password in the rc file lifts the hold.
func TestDaemonAuthFailureHeld(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "carol", "right-password")
	mb.Put(t, seqMsg("carol", 1, 2))
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "rc.hcl")
	acct := rcAccount{name: "carol", port: srv.PlainPort, user: mb.User, pass: "wrong-password", maildir: maildir}
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, acct))

	d := startDaemon(t, rc)
	authLines := func() []string { return d.log.lines("authentication failed; not retrying", "account=carol") }
	waitFor(t, 5*time.Second, "the authentication failure in the log", func() bool { return len(authLines()) > 0 })
	if l := authLines(); len(l) != 1 {
		t.Errorf("the log has %d authentication failure lines; want 1:\n%s", len(l), strings.Join(l, "\n"))
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
	if polls := len(d.log.lines("msg=\"poll done\"", "account=carol")); polls != 1 {
		t.Errorf("carol was polled %d times on its own; want 1 (no retry in auth-hold)", polls)
	}

	r := daemonCLI(t, rc, "now", "carol")
	if r.code != exitAuth {
		t.Errorf("popfetch now carol = exit %d; want %d (authentication)\nstdout:\n%s\nstderr:\n%s", r.code, exitAuth, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "carol: 0 new") || !strings.Contains(r.stdout, "error:") {
		t.Errorf("popfetch now carol printed %q; want carol's result with the error", r.stdout)
	}
	if polls := len(d.log.lines("msg=\"poll done\"", "account=carol")); polls != 2 {
		t.Errorf("after `popfetch now` carol was polled %d times; want 2", polls)
	}
	if rows, out := statusRows(t, rc); rows["carol"] == nil || rows["carol"]["STATE"] != "auth-hold" {
		t.Errorf("status of carol after a failed `now`: want auth-hold again:\n%s", out)
	}
	if maildirCount(t, maildir) != 0 {
		t.Errorf("mail was fetched with a wrong password")
	}

	// Fixing the password changes the account: the hold is lifted and the
	// first poll comes within its jitter.
	acct.pass = mb.Pass
	tmp := rc + ".new"
	writeFile(t, tmp, rcText(filepath.Join(dir, "state"), nil, acct))
	if err := os.Rename(tmp, rc); err != nil {
		t.Fatal(err)
	}
	waitMaildir(t, maildir, 1, 8*time.Second)
	if rows, out := statusRows(t, rc); rows["carol"] == nil || rows["carol"]["STATE"] != "idle" {
		t.Errorf("status of carol after the fix: want idle:\n%s", out)
	}
}
