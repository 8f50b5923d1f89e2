package fetch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// Delivery faults end to end: a multidrop mailbox on the fake
// POP3 server holds one message for alice and bob; the real NewDispatcher
// delivers it to a real target (an in-process go-smtp server scripted per
// RCPT and per recipient after DATA, or an MDA script) with a Maildir
// postmaster. Each case polls once with a fault and checks that the message
// is on the server or fully delivered, never neither; then clears the fault,
// polls again, and checks that every recipient holds exactly one copy: the
// retry serves only whom the first poll missed.
//
// The target tests (deliver/smtp_test.go, deliver/mda_test.go) classify the
// faults; these prove the classification reaches the POP3 side: no DELE for
// a kept message, the UID unrecorded, per-recipient progress kept across
// sessions.

const faultUID = "m1"

func faultMailbox() []pop3test.Message {
	return []pop3test.Message{{UID: faultUID, Data: []byte("Return-Path: <s@example.net>\r\nFrom: s@example.net\r\n" +
		"To: alice@example.com, bob@example.com\r\nMessage-ID: <fault-1@example.net>\r\nX-Seq: 1\r\nSubject: fault\r\n\r\nbody\r\n")}}
}

// faultAccount is a multidrop account for srv with users alice and bob,
// delivering to d, with a Maildir postmaster.
func faultAccount(t *testing.T, srv *pop3test.Server, d rcfile.Destination) *rcfile.Account {
	t.Helper()
	a := testAccount(t, srv)
	a.Deliver = d
	a.Postmaster = &rcfile.Destination{Maildir: filepath.Join(t.TempDir(), "postmaster")}
	a.Multidrop = testMultidrop(mdUser("alice", "alice"), mdUser("bob", "bob"))
	return a
}

// faultPoll polls a through the real dispatcher; logs gets the poll's log.
func faultPoll(a *rcfile.Account, logs io.Writer) Result {
	p := &Poller{Log: slog.New(slog.NewTextHandler(logs, nil))}
	return p.Poll(context.Background(), a)
}

// checkKept asserts the first poll's side of the contract for a message
// that is not (fully) delivered: left on the server, no DELE sent, its UID
// not recorded, counted as failed.
func checkKept(t *testing.T, srv *pop3test.Server, a *rcfile.Account, res Result, logs *testutil.SyncBuffer) {
	t.Helper()
	if res.Err != nil || res.Failed != 1 || res.Delivered != 0 || res.Deleted != 0 {
		t.Errorf("Poll = %+v; want the message failed, not delivered or deleted", res)
	}
	if got := uidsOn(srv); !slices.Equal(got, []string{faultUID}) {
		t.Errorf("server holds %v; want %s kept", got, faultUID)
	}
	for _, c := range srv.Commands() {
		if strings.HasPrefix(c, "DELE") {
			t.Errorf("%s sent for an undelivered message", c)
		}
	}
	if storeHas(t, a, faultUID) {
		t.Errorf("UID %s recorded as delivered", faultUID)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "uid="+faultUID) {
		t.Errorf("no error logged for %s:\n%s", faultUID, l)
	}
}

// checkDeleted asserts that a poll delivered the message and deleted it.
func checkDeleted(t *testing.T, srv *pop3test.Server, res Result) {
	t.Helper()
	if res.Err != nil || res.Failed != 0 || res.Delivered != 1 || res.Deleted != 1 || len(srv.Messages()) != 0 {
		t.Errorf("Poll = %+v, server %v; want the message delivered and deleted", res, uidsOn(srv))
	}
}

// postmasterCopies returns the X-Popfetch-Reason of each postmaster copy.
func postmasterCopies(t *testing.T, a *rcfile.Account) []string {
	t.Helper()
	var out []string
	for _, c := range readCopies(t, a.Postmaster.Maildir) {
		if c.seq != "1" {
			t.Errorf("postmaster holds X-Seq %s", c.seq)
		}
		out = append(out, c.reason)
	}
	return out
}

// startFaultSink serves sink on a loopback TCP port and returns the
// destination block for it. The sink accepts only the test message, whole.
func startFaultSink(t *testing.T, sink *delivertest.Sink, lmtp bool) rcfile.Destination {
	t.Helper()
	sink.Check = func(b []byte) error {
		if !bytes.Contains(b, []byte("\r\nX-Seq: 1\r\n")) || !bytes.HasSuffix(b, []byte("\r\nbody\r\n")) {
			return fmt.Errorf("garbled message data: %q", b)
		}
		return nil
	}
	addr := sink.Start(t, delivertest.SinkOptions{LMTP: lmtp})
	return rcfile.Destination{SMTP: &rcfile.SMTP{Server: addr, LMTP: lmtp, Helo: "popfetch.test", Timeout: 5 * time.Second}}
}

var smtpErr = delivertest.SMTPError

const (
	alice = "alice@example.com"
	bob   = "bob@example.com"
)

func TestDeliveryFaultSMTP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		lmtp  bool
		fault func(s *delivertest.Sink)
		// perm: bob's failure is permanent; the postmaster gets the
		// message with a reason holding reason, and the first poll
		// deletes it. Otherwise it stays, and the log holds reason.
		perm   bool
		reason []string
		// after the first poll: copies per address
		alice, bob int
		// the RCPTs the retry sends: only those not yet served
		retry []string
	}{
		{
			name:   "lmtp-451-after-data",
			lmtp:   true,
			fault:  func(s *delivertest.Sink) { s.FailAfterData(bob, smtpErr(451, "bob's mailbox is busy")) },
			reason: []string{"user bob:", "451", "bob's mailbox is busy"},
			alice:  1, retry: []string{bob},
		},
		{
			name:   "smtp-451-rcpt",
			fault:  func(s *delivertest.Sink) { s.FailRcpt(bob, smtpErr(451, "bob's mailbox is busy")) },
			reason: []string{"user bob:", "451", "bob's mailbox is busy"},
			alice:  1, retry: []string{bob},
		},
		{
			name:   "smtp-550-rcpt",
			fault:  func(s *delivertest.Sink) { s.FailRcpt(bob, smtpErr(550, "no such user bob")) },
			perm:   true,
			reason: []string{"bob: SMTP 550", "no such user bob"},
			alice:  1,
		},
		{
			name:   "lmtp-550-after-data",
			lmtp:   true,
			fault:  func(s *delivertest.Sink) { s.FailAfterData(bob, smtpErr(550, "no such user bob")) },
			perm:   true,
			reason: []string{"bob: LMTP 550", "no such user bob"},
			alice:  1,
		},
		{
			name:   "smtp-drop-in-data",
			fault:  func(s *delivertest.Sink) { s.DropInData() },
			reason: []string{"user alice:", "user bob:", "temporary failure"},
			retry:  []string{alice, bob},
		},
		{
			name:   "lmtp-drop-in-data",
			lmtp:   true,
			fault:  func(s *delivertest.Sink) { s.DropInData() },
			reason: []string{"user alice:", "user bob:", "temporary failure"},
			retry:  []string{alice, bob},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := pop3test.NewServer(t, pop3test.Options{Messages: faultMailbox()})
			sink := &delivertest.Sink{}
			a := faultAccount(t, srv, startFaultSink(t, sink, tc.lmtp))
			tc.fault(sink)
			logs := &testutil.SyncBuffer{}
			res := faultPoll(a, logs)
			if tc.perm {
				checkDeleted(t, srv, res)
				pm := postmasterCopies(t, a)
				if len(pm) != 1 || !containsAll(pm[0], tc.reason) {
					t.Errorf("postmaster holds %q; want one copy whose reason mentions %q", pm, tc.reason)
				}
			} else {
				checkKept(t, srv, a, res, logs)
				if l := logs.String(); !containsAll(l, tc.reason) {
					t.Errorf("log does not mention %q:\n%s", tc.reason, l)
				}
				if pm := postmasterCopies(t, a); len(pm) != 0 {
					t.Errorf("postmaster got %q; a temporary failure is not the postmaster's", pm)
				}
			}
			if na, nb := sink.Copies(alice), sink.Copies(bob); na != tc.alice || nb != tc.bob {
				t.Fatalf("after the fault: alice %d, bob %d copies; want %d, %d", na, nb, tc.alice, tc.bob)
			}

			sink.Clear()
			before := len(sink.Tried())
			res = faultPoll(a, &testutil.SyncBuffer{})
			if tc.perm {
				if res.Err != nil || res.Messages != 0 || res.Delivered != 0 {
					t.Errorf("Poll after the fix = %+v; want an empty mailbox", res)
				}
				if na, nb := sink.Copies(alice), sink.Copies(bob); na != 1 || nb != 0 {
					t.Errorf("after the fix: alice %d, bob %d copies; want 1, 0 (bob's is the postmaster's)", na, nb)
				}
				return
			}
			checkDeleted(t, srv, res)
			if got := sink.TriedSince(before); !slices.Equal(got, tc.retry) {
				t.Errorf("the retry sent RCPT %v; want %v", got, tc.retry)
			}
			if na, nb := sink.Copies(alice), sink.Copies(bob); na != 1 || nb != 1 {
				t.Errorf("after the fix: alice %d, bob %d copies; want one each", na, nb)
			}
			if pm := postmasterCopies(t, a); len(pm) != 0 {
				t.Errorf("postmaster got %q", pm)
			}
		})
	}
}

// containsAll reports whether s contains every one of subs; "a|b" in subs
// is satisfied by either a or b.
func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !slices.ContainsFunc(strings.Split(sub, "|"), func(alt string) bool { return strings.Contains(s, alt) }) {
			return false
		}
	}
	return true
}

// keptPoll polls a with bob's fault in place: the message stays on the
// server, the log says why (every one of why), and alice alone has her
// copy.
func keptPoll(t *testing.T, srv *pop3test.Server, a *rcfile.Account, sink *delivertest.Sink, why ...string) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	res := faultPoll(a, logs)
	checkKept(t, srv, a, res, logs)
	if l := logs.String(); !containsAll(l, why) {
		t.Errorf("log does not say why the message stays:\n%s", l)
	}
	if na, nb := sink.Copies(alice), sink.Copies(bob); na != 1 || nb != 0 {
		t.Fatalf("after the fault: alice %d, bob %d copies; want 1, 0", na, nb)
	}
}

// retryPoll polls a once the fault is gone: the message is delivered and
// deleted, and the retry sent RCPT for retry alone.
func retryPoll(t *testing.T, srv *pop3test.Server, a *rcfile.Account, sink *delivertest.Sink, retry ...string) {
	t.Helper()
	before := len(sink.Tried())
	checkDeleted(t, srv, faultPoll(a, &testutil.SyncBuffer{}))
	if got := sink.TriedSince(before); !slices.Equal(got, retry) {
		t.Errorf("the retry sent RCPT %v; want only %v", got, retry)
	}
}

// A permanent failure whose postmaster delivery fails too is softbounced:
// the message stays on the server. alice's copy is recorded, so the retry
// (postmaster fixed) hands only bob's failure to the postmaster.
func TestDeliveryFaultPostmasterFails(t *testing.T) {
	t.Parallel()
	srv := pop3test.NewServer(t, pop3test.Options{Messages: faultMailbox()})
	sink := &delivertest.Sink{}
	a := faultAccount(t, srv, startFaultSink(t, sink, false))
	sink.FailRcpt(bob, smtpErr(550, "no such user bob"))
	// As root, permissions do not stop a write; a regular file where a
	// directory must be does: the postmaster's Maildir cannot be made.
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good := a.Postmaster.Maildir
	a.Postmaster = &rcfile.Destination{Maildir: filepath.Join(blocker, "postmaster")}
	keptPoll(t, srv, a, sink, "bob: SMTP 550", "postmaster delivery failed")

	a.Postmaster = &rcfile.Destination{Maildir: good}
	retryPoll(t, srv, a, sink, bob)
	if na := sink.Copies(alice); na != 1 {
		t.Errorf("alice has %d copies; want 1 (no duplicate on the retry)", na)
	}
	if pm := postmasterCopies(t, a); len(pm) != 1 || !strings.Contains(pm[0], "bob: SMTP 550") {
		t.Errorf("postmaster holds %q; want one copy for bob's 550", pm)
	}
}

// A permanent failure with no postmaster configured stays on the server
// and is logged as an error; once the fault is gone, bob gets his copy and
// alice no second one.
func TestDeliveryFaultNoPostmaster(t *testing.T) {
	t.Parallel()
	srv := pop3test.NewServer(t, pop3test.Options{Messages: faultMailbox()})
	sink := &delivertest.Sink{}
	a := faultAccount(t, srv, startFaultSink(t, sink, false))
	a.Postmaster = nil
	sink.FailRcpt(bob, smtpErr(550, "no such user bob"))
	keptPoll(t, srv, a, sink, "bob: SMTP 550", "no postmaster configured")

	sink.Clear()
	retryPoll(t, srv, a, sink, bob)
	if na, nb := sink.Copies(alice), sink.Copies(bob); na != 1 || nb != 1 {
		t.Errorf("after the fix: alice %d, bob %d copies; want one each", na, nb)
	}
}

// mdaCopies counts the copies of the test message the MDA stored for user.
func mdaCopies(t *testing.T, mda *delivertest.MDA, user string) int {
	t.Helper()
	n := 0
	for _, c := range copiesOf(t, mda.Messages(t, user)) {
		if c.seq != "1" {
			t.Errorf("%s holds X-Seq %s", user, c.seq)
		}
		n++
	}
	return n
}

func TestDeliveryFaultMDA(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		fault  string // bob's
		perm   bool
		reason []string // in the postmaster's reason (perm), else in the log
	}{
		{name: "exit-75", fault: "exit 75", reason: []string{"user bob:", "exit status 75"}},
		{name: "exit-1", fault: "exit 1", perm: true, reason: []string{"bob: MDA exit 1", "mailbox of bob is unavailable"}},
		{name: "killed", fault: "kill", reason: []string{"user bob:", "signal: killed"}},
		// The log shows the timeout's error or the reason naming it.
		{name: "hang", fault: "hang", reason: []string{"user bob:", "deadline exceeded|killed after"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mda := delivertest.NewMDA(t)
			srv := pop3test.NewServer(t, pop3test.Options{Messages: faultMailbox()})
			// The hanging MDA's: short enough for a quick test, long
			// enough for a loaded machine to start a shell script for
			// alice. The others end by themselves, and must be given
			// the time to on a loaded machine (under -race beside other
			// packages' tests, bob's "kill" was once timed out first).
			timeout := time.Minute
			if tc.fault == "hang" {
				timeout = 2 * time.Second
			}
			a := faultAccount(t, srv, rcfile.Destination{MDA: mda.Argv("{user}"), MDATimeout: timeout})
			mda.Fail(t, "bob", tc.fault)
			logs := &testutil.SyncBuffer{}
			res := faultPoll(a, logs)
			if tc.perm {
				checkDeleted(t, srv, res)
				if pm := postmasterCopies(t, a); len(pm) != 1 || !containsAll(pm[0], tc.reason) {
					t.Errorf("postmaster holds %q; want one copy whose reason mentions %q", pm, tc.reason)
				}
			} else {
				checkKept(t, srv, a, res, logs)
				if l := logs.String(); !containsAll(l, tc.reason) {
					t.Errorf("log does not mention %q:\n%s", tc.reason, l)
				}
			}
			if na, nb := mdaCopies(t, mda, "alice"), mdaCopies(t, mda, "bob"); na != 1 || nb != 0 {
				t.Fatalf("after the fault: alice %d, bob %d copies; want 1, 0", na, nb)
			}
			if tc.fault == "hang" {
				checkChildGone(t, mda.ChildPID())
			}

			mda.Fix(t, "bob")
			res = faultPoll(a, &testutil.SyncBuffer{})
			wantBob := 1
			if tc.perm {
				wantBob = 0 // the postmaster has bob's copy; the message is gone
				if res.Err != nil || res.Messages != 0 {
					t.Errorf("Poll after the fix = %+v; want an empty mailbox", res)
				}
			} else {
				checkDeleted(t, srv, res)
				if pm := postmasterCopies(t, a); len(pm) != 0 {
					t.Errorf("postmaster got %q; a temporary failure is not the postmaster's", pm)
				}
			}
			if na, nb := mdaCopies(t, mda, "alice"), mdaCopies(t, mda, "bob"); na != 1 || nb != wantBob {
				t.Errorf("after the fix: alice %d, bob %d copies; want 1, %d", na, nb, wantBob)
			}
		})
	}
}

// checkChildGone asserts that the process whose PID the hanging MDA wrote
// died with it: the timeout kills the MDA's whole process group. The kill
// is sent before the poll returns, but a process takes a moment to die, so
// this polls; a zombie (state Z, not yet reaped by init) counts as gone.
func checkChildGone(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the hanging MDA did not start its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("child.pid: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		alive, state := procAlive(pid)
		if !alive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the MDA's child %d (sleep 347) is still running (state %s): the process group was not killed", pid, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procAlive reports whether pid is still the test MDA's running child.
func procAlive(pid int) (bool, string) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false, "gone"
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false, "unreadable"
	}
	state := string(stat[i+2])
	if state == "Z" || state == "X" {
		return false, state
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Equal(cmd, []byte("sleep\x00347\x00")) {
		return false, "pid reused"
	}
	return true, state
}
