package main

// The harness of the tests that run the popfetch binary (built once by
// TestMain) against a real or scripted POP3 server: rc files, runs of
// `popfetch fetch` killed at chosen moments, the daemon, and reading the
// Maildirs they deliver to.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/internal/testutil"
)

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer is the daemon's stderr: written by os/exec's copier,
// read by the test while the daemon runs.
type lockedBuffer struct{ testutil.SyncBuffer }

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

// startDaemon starts `popfetch -f rc [flags...] run` and waits until it
// serves its control socket. t.Cleanup stops it with SIGTERM and requires
// exit status 0 within 20 s.
func startDaemon(t *testing.T, rc string, flags ...string) *daemonProc {
	t.Helper()
	return startDaemonArgs(t, rc, nil, append(append([]string{"-f", rc}, flags...), "run")...)
}

// startDaemonArgs is startDaemon for `popfetch args...` (which must run
// the daemon on rc), with env added to the environment.
func startDaemonArgs(t *testing.T, rc string, env []string, args ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{rc: rc, log: &lockedBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(popfetchBin, args...)
	d.cmd.Env = append(os.Environ(), env...)
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

// startCmd starts cmd with its output and errors going to out, and
// returns a channel that gets what cmd.Wait returns.
func startCmd(t *testing.T, cmd *exec.Cmd, out *bytes.Buffer) <-chan error {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return done
}

// signal sends sig to the daemon.
func (d *daemonProc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitExit fails the test unless the daemon exits within the given time
// of the event named by after.
func (d *daemonProc) waitExit(t *testing.T, within time.Duration, after string) {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(within):
		t.Fatalf("popfetch run did not exit within %v of %s", within, after)
	}
}

func (d *daemonProc) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// daemonWait bounds a wait for something the daemon will do soon (a poll
// within its first-poll jitter of 3 s, a log line): a safety net only, as
// a loaded 2-core CI machine running the race-enabled tests beside the
// daemon and dovecot has taken more than 10 s for such a step.
const daemonWait = 60 * time.Second

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
	if os.Getenv("POPFETCH_TEST_TRANSCRIPT") != "" {
		// For closing notes and bug reports: what the admin would see.
		t.Logf("$ popfetch %s\n%s%s(exit %d)", strings.Join(args, " "), r.stdout, r.stderr, r.code)
	}
	return r
}

// daemonCLI runs `popfetch -f rc args...` as the current user.
func daemonCLI(t *testing.T, rc string, args ...string) cliResult {
	t.Helper()
	return popfetchCmd(t, "", nil, append([]string{"-f", rc}, args...)...)
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
	deliver  string // the deliver block's body, instead of maildir
	keep     bool
	extra    []string // more attribute lines, e.g. `timeout = "2s"`
}

// rcText renders an rc file: state_dir, top-level lines, then accounts,
// each polled every 30 s (the minimum; first poll within 3 s of start)
// unless extra says otherwise.
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
			fmt.Fprintln(&b, `  interval = "30s"`)
		}
		for _, l := range a.extra {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		deliver := a.deliver
		if deliver == "" {
			deliver = fmt.Sprintf("maildir = %q", a.maildir)
		}
		fmt.Fprintf(&b, "  deliver { %s }\n}\n", deliver)
	}
	return b.String()
}

// seqMsg is a message with an X-Seq header and lines body lines.
func seqMsg(tag string, seq, lines int) []byte {
	return fmt.Appendf(nil, "From: a@example.net\r\nTo: b@example.com\r\nSubject: %s %d\r\nX-Seq: %d\r\n\r\n%s", tag, seq, seq,
		strings.Repeat(fmt.Sprintf("%s message %d: body line of some length to give it weight\r\n", tag, seq), lines))
}

// The Maildir reader is deliver/delivertest's.
var (
	maildirFiles = delivertest.MaildirFiles
	maildirCount = delivertest.MaildirCount
)

func waitMaildir(t *testing.T, dir string, n int, timeout time.Duration) {
	t.Helper()
	delivertest.WaitMaildir(t, dir, n, timeout)
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

// checkComplete requires every message 1..n in the Maildir exactly once.
func checkComplete(t *testing.T, maildir string, n int) {
	t.Helper()
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
}

// killLoop runs `popfetch -f rc fetch` again and again. Each run is
// killed with SIGKILL once count() reaches target(base, kills), where base
// is count() when the run starts and kills the number of kills so far; a
// target below 0 lets the run complete, which ends the loop. afterKill,
// if set, runs after each kill. It returns count() at each kill. A run
// that fails, still runs after 2 minutes, or more than maxRuns runs fail t.
func killLoop(t *testing.T, rc string, maxRuns int, count func() int, target func(base, kills int) int, afterKill func()) (killedAt []int) {
	t.Helper()
	for run := 0; ; run++ {
		if run >= maxRuns {
			t.Fatalf("popfetch did not complete in %d runs", maxRuns)
		}
		tgt := target(count(), len(killedAt))
		cmd := exec.Command(popfetchBin, "-f", rc, "fetch")
		var out bytes.Buffer
		done := startCmd(t, cmd, &out)
		tick := time.NewTicker(2 * time.Millisecond)
		giveUp := time.After(2 * time.Minute)
		killed := false
	watch:
		for {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("popfetch fetch failed: %v\n%s", err, out.String())
				}
				break watch
			case <-tick.C:
				if c := count(); tgt >= 0 && c >= tgt {
					cmd.Process.Signal(syscall.SIGKILL)
					<-done
					killedAt = append(killedAt, c)
					killed = true
					break watch
				}
			case <-giveUp:
				cmd.Process.Signal(syscall.SIGKILL)
				<-done
				t.Fatalf("popfetch fetch still running after 2 minutes, count at %d\n%s", count(), out.String())
			}
		}
		tick.Stop()
		if !killed {
			return killedAt
		}
		if afterKill != nil {
			afterKill()
		}
	}
}
