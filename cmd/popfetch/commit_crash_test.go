package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// crashBin is popfetch built with the crash points of
// internal/crashpoint, built on first use.
var crashBin = sync.OnceValues(func() (string, error) {
	dir := filepath.Dir(popfetchBin)
	bin := filepath.Join(dir, "popfetch-crashtest")
	build := exec.Command("go", "build", "-tags", "crashtest", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building popfetch -tags crashtest: %v\n%s", err, out)
	}
	return bin, nil
})

// commitCrashSteps are the points inside a batch where the crash tests
// kill a fetch: the nth time the step is reached, with up to 32 copies
// at other steps meanwhile.
var commitCrashSteps = []crashStep{
	{"file-synced", 40},   // between file fsyncs: copies written, none or some moved
	{"moved", 40},         // between renames: copies in new/, new/ not fsynced
	{"dir-synced", 40},    // after the fsync of new/, before the journal record
	{"journal-synced", 1}, // after the batch's journal fsync, before its DELEs
	{"journal-synced", 2}, // the same a batch later, after the first batch's DELEs
	{"dir-synced", 150},   // late in the mailbox, after DELEs of earlier batches
}

// crashStep is where a crash test kills a fetch: the nth time it reaches
// step (internal/crashpoint).
type crashStep struct {
	step string
	n    int
}

// crashServer is what a commit crash test fetches from: the fake server
// or a dovecot mailbox.
type crashServer struct {
	port  int
	user  string
	count func() int     // messages on the server
	seqs  func() []int   // X-Seq of each message on the server
	put   func([][]byte) // fills the mailbox
}

// fakeCrashServer is the fake server srv as a crashServer for the user
// "user", its messages named uid-1, uid-2, ...
func fakeCrashServer(srv *pop3test.Server) crashServer {
	return crashServer{
		port:  srv.Port(),
		user:  "user",
		count: func() int { return len(srv.Messages()) },
		put: func(raw [][]byte) {
			var msgs []pop3test.Message
			for i, r := range raw {
				msgs = append(msgs, pop3test.Message{UID: fmt.Sprintf("uid-%d", i+1), Data: r})
			}
			srv.SetMessages(msgs)
		},
	}
}

// fakeCrashServerSeqs is fakeCrashServer with seqs: the X-Seq of every
// message on srv.
func fakeCrashServerSeqs(t *testing.T, srv *pop3test.Server) crashServer {
	crash := fakeCrashServer(srv)
	crash.seqs = func() []int {
		var out []int
		for _, m := range srv.Messages() {
			out = append(out, xSeq(t, m.Data))
		}
		return out
	}
	return crash
}

// dovecotCrashServer is the mailbox mb of a dovecot srv as a crashServer.
func dovecotCrashServer(t *testing.T, srv *dovecottest.Server, mb *dovecottest.Mailbox) crashServer {
	return crashServer{
		port:  srv.PlainPort,
		user:  mb.User,
		count: func() int { return mb.Count(t) },
		put:   func(raw [][]byte) { mb.Put(t, raw...) },
	}
}

// TestCommitCrashFake kills a real `popfetch fetch` at each named step
// inside a 32-wide batch (internal/crashpoint), in single-drop and
// multidrop Maildir, keep and delete, against the fake server, then runs
// it again to completion, and checks the promise: nothing lost, nothing
// deleted from the server without its copy, no duplicate for a
// single-drop Maildir (intents), at most the copies in flight (32) for
// multidrop.
func TestCommitCrashFake(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds a second binary, many runs")
	}
	for _, multi := range []bool{false, true} {
		for _, keep := range []bool{false, true} {
			for _, cs := range commitCrashSteps {
				t.Run(fmt.Sprintf("multidrop=%v/keep=%v/%s:%d", multi, keep, cs.step, cs.n), func(t *testing.T) {
					srv := pop3test.NewServer(t, pop3test.Options{User: "user", Pass: "pass"})
					runCommitCrash(t, fakeCrashServerSeqs(t, srv), multi, keep, cs.step, cs.n)
				})
			}
		}
	}
}

// TestCommitPowerFailFake is TestCommitCrashFake with a power failure
// after the kill: the journal's unsynced tail is lost (powerFail), the
// intents and records since its last fsync with it. Multidrop records
// each copy with an fsync, so at most the 32 copies in flight come
// again; a single-drop Maildir repeats the messages recorded since the
// last fsync (up to 64) and the 32 in flight. Nothing is lost, and no
// DELE was sent for a message whose record was not synced.
func TestCommitPowerFailFake(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds a second binary, many runs")
	}
	for _, multi := range []bool{false, true} {
		for _, cs := range commitCrashSteps {
			t.Run(fmt.Sprintf("multidrop=%v/%s:%d", multi, cs.step, cs.n), func(t *testing.T) {
				srv := pop3test.NewServer(t, pop3test.Options{})
				runCommitCrashPower(t, fakeCrashServer(srv), multi, false, cs.step, cs.n, true)
			})
		}
	}
}

// TestCommitCrashDovecot is TestCommitCrashFake's kill between the fsync
// of new/ and the journal record, and after the journal fsync before
// DELE, against a real dovecot.
func TestCommitCrashDovecot(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	steps := []crashStep{{"dir-synced", 40}, {"journal-synced", 2}}
	dovecotCrashRuns(t, "cc", steps, func(t *testing.T, crash crashServer, multi bool, cs crashStep) {
		runCommitCrash(t, crash, multi, false, cs.step, cs.n)
	})
}

// dovecotCrashRuns starts a dovecot and calls run for each of steps, in
// single-drop and multidrop, with a mailbox of its own (prefix1,
// prefix2, ...).
func dovecotCrashRuns(t *testing.T, prefix string, steps []crashStep, run func(t *testing.T, crash crashServer, multi bool, cs crashStep)) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	i := 0
	for _, multi := range []bool{false, true} {
		for _, cs := range steps {
			t.Run(fmt.Sprintf("multidrop=%v/%s:%d", multi, cs.step, cs.n), func(t *testing.T) {
				i++
				mb := srv.AddUser(t, fmt.Sprintf("%s%d", prefix, i), "pass")
				run(t, dovecotCrashServer(t, srv, mb), multi, cs)
			})
		}
	}
}

func xSeq(t *testing.T, b []byte) int {
	t.Helper()
	i := bytes.Index(b, []byte("\nX-Seq: "))
	if i < 0 {
		t.Fatalf("no X-Seq in %q", b)
	}
	var n int
	fmt.Sscanf(string(b[i+len("\nX-Seq: "):]), "%d", &n)
	return n
}

// powerFail models a power failure after the kill: the journal loses
// what was written after its last fsync, as its length mark tells (the
// mark is rewritten, without an fsync of its own, after every fsync of
// the journal, so after a kill it holds exactly the synced length).
func powerFail(t *testing.T, stateDir string) {
	t.Helper()
	marks, _ := filepath.Glob(filepath.Join(stateDir, "uidl", "*.uidl.len"))
	if len(marks) != 1 {
		t.Fatalf("length marks %v; want one", marks)
	}
	b, err := os.ReadFile(marks[0])
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	if _, err := fmt.Sscanf(string(b), "popfetch-uidl-len 1 %d", &size); err != nil {
		t.Fatalf("%s: %v", marks[0], err)
	}
	journal := strings.TrimSuffix(marks[0], ".len")
	if err := os.Truncate(journal, size); err != nil {
		t.Fatal(err)
	}
}

func runCommitCrash(t *testing.T, srv crashServer, multi, keep bool, step string, n int) {
	runCommitCrashPower(t, srv, multi, keep, step, n, false)
}

func runCommitCrashPower(t *testing.T, srv crashServer, multi, keep bool, step string, n int, power bool) {
	runCommitCrashFolder(t, srv, multi, keep, step, n, power, "")
}

// TestCommitCrashFolderFake is TestCommitCrashFake for copies delivered
// into a Maildir++ folder (folder = "Lists.dev"): the intents name the
// folder's new/, and the next run finds the copies there, so a
// single-drop account gets no duplicate and nothing is lost; the inbox
// stays empty.
func TestCommitCrashFolderFake(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds a second binary, many runs")
	}
	for _, multi := range []bool{false, true} {
		for _, cs := range commitCrashSteps[:3] {
			t.Run(fmt.Sprintf("multidrop=%v/%s:%d", multi, cs.step, cs.n), func(t *testing.T) {
				srv := pop3test.NewServer(t, pop3test.Options{User: "user", Pass: "pass"})
				runCommitCrashFolder(t, fakeCrashServer(srv), multi, false, cs.step, cs.n, false, "Lists.dev")
			})
		}
	}
}

// runCommitCrashFolder is runCommitCrashPower delivering into folder of
// each Maildir ("" its inbox).
func runCommitCrashFolder(t *testing.T, srv crashServer, multi, keep bool, step string, n int, power bool, folder string) {
	runCommitCrashMessages(t, srv, multi, keep, step, n, power, folder, batchMessages)
}

// crashMessages makes the messages of a commit crash test, their To
// field to; mayDup marks (by X-Seq) those a single-drop account may get
// twice after a kill, once each, as documented.
type crashMessages func(to string) (raw [][]byte, mayDup map[int]bool)

// batchMessages are 200 small messages, every third with a bare CR in
// its body.
func batchMessages(to string) ([][]byte, map[int]bool) {
	var raw [][]byte
	for i := 1; i <= 200; i++ {
		body := strings.Repeat("body line\r\n", i%7+1)
		if i%3 == 0 {
			// A bare CR, which the Maildir copy turns into a line end:
			// the next run must still know the copy for the message's.
			body += "bare\rCR\r\r\n"
		}
		raw = append(raw, fmt.Appendf(nil, "From: a@example.net\r\nTo: %s\r\nSubject: batch %d\r\nMessage-ID: <b-%d@example.net>\r\nX-Seq: %d\r\n\r\n%s", to, i, i, i, body))
	}
	return raw, nil
}

// runCommitCrashMessages is runCommitCrashFolder with the messages gen
// makes.
func runCommitCrashMessages(t *testing.T, srv crashServer, multi, keep bool, step string, n int, power bool, folder string, gen crashMessages) {
	bin, err := crashBin()
	if err != nil {
		t.Fatal(err)
	}
	users := []string{"u0", "u1", "u2"}
	to := "b@example.com"
	if multi {
		to = "u0@example.com, u1@example.com, u2@example.com"
	}
	raw, mayDup := gen(to)
	msgs := len(raw)
	srv.put(raw)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	acct := rcAccount{name: "cc", port: srv.port, user: srv.user, pass: "pass", keep: keep}
	maildirs := []string{filepath.Join(out, "Maildir")}
	if multi {
		acct.deliver = fmt.Sprintf("maildir = %q", filepath.Join(out, "{user}"))
		var blocks []string
		maildirs = nil
		for _, u := range users {
			blocks = append(blocks, fmt.Sprintf("    user %q {}", u))
			maildirs = append(maildirs, filepath.Join(out, u))
		}
		acct.extra = []string{fmt.Sprintf("multidrop {\n    local_domains    = [\"example.com\"]\n    fallback_headers = [\"To\"]\n%s\n  }", strings.Join(blocks, "\n"))}
	} else {
		acct.maildir = maildirs[0]
	}
	inboxes := maildirs
	if folder != "" {
		acct.deliver = fmt.Sprintf("\n    maildir = %q\n    folder  = %q\n  ", filepath.Join(out, "Maildir"), folder)
		if multi {
			acct.deliver = fmt.Sprintf("\n    maildir = %q\n    folder  = %q\n  ", filepath.Join(out, "{user}"), folder)
		}
		var in []string
		for _, md := range maildirs {
			in = append(in, filepath.Join(md, "."+folder))
		}
		maildirs = in
	}
	rc := filepath.Join(dir, "popfetch.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, acct))

	// The killed run.
	cmd := exec.Command(bin, "-f", rc, "fetch")
	cmd.Env = append(os.Environ(), fmt.Sprintf("POPFETCH_CRASH_AT=%s:%d", step, n))
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("popfetch was not killed at %s:%d: %v\n%s", step, n, err, buf.String())
	}
	// No message gone from the server without its copy in every Maildir.
	if srv.seqs != nil {
		on := map[int]bool{}
		for _, s := range srv.seqs() {
			on[s] = true
		}
		for _, md := range maildirs {
			got := seqCounts(t, md)
			for s := 1; s <= msgs; s++ {
				if !on[s] && got[s] == 0 {
					t.Errorf("message %d deleted from the server with no copy in %s", s, md)
				}
			}
		}
	}
	if power {
		powerFail(t, filepath.Join(dir, "state"))
	}
	inFlight := 0
	for _, md := range maildirs {
		for _, c := range seqCounts(t, md) {
			inFlight += c
		}
	}

	// The next poll completes.
	res := popfetchCmd(t, "", nil, "-f", rc, "fetch")
	if res.code != exitOK {
		t.Fatalf("fetch after the kill: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	dups, allowed := 0, 0
	for _, md := range maildirs {
		counts := seqCounts(t, md)
		for s := 1; s <= msgs; s++ {
			switch c := counts[s]; {
			case c == 0:
				t.Errorf("%s: message %d lost", md, s)
			case c > 1 && mayDup[s] && !multi:
				// Documented: not shown to be the copy, fetched
				// again once.
				allowed++
				if c > 2 {
					t.Errorf("%s: message %d delivered %d times; want at most twice", md, s, c)
				}
			case c > 1:
				dups += c - 1
			}
		}
	}
	limit := 32 // the copies in flight: one per message being delivered
	switch {
	case !multi && power:
		// Intents and records since the journal's last fsync are lost:
		// up to a batch of 64 recorded, and the 32 in flight.
		limit = 64 + 32
	case !multi:
		limit = 0 // intents name every copy in flight
	}
	t.Logf("killed at %s:%d with %d copies delivered; %d duplicates, %d more of messages documented to come twice", step, n, inFlight, dups, allowed)
	if dups > limit {
		t.Errorf("%d duplicates after a kill at %s:%d; want at most %d", dups, step, n, limit)
	}
	want := 0
	if keep {
		want = msgs
	}
	if got := srv.count(); got != want {
		t.Errorf("server holds %d messages; want %d", got, want)
	}
	if folder != "" {
		for _, md := range inboxes {
			if got := len(seqCounts(t, md)); got != 0 {
				t.Errorf("inbox %s holds %d messages; want them all in the folder", md, got)
			}
		}
	}
}
