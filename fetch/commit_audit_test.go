package fetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/uidl"
)

// TestPollMaildirDiskFullMidBatch fills the Maildir's disk (a small tmpfs)
// in the middle of a 32-wide batch: the copies that failed are left on
// the server, every message deleted has its copy in new/, nothing is left
// in tmp/, and once there is space the next poll delivers the rest with
// no duplicate.
func TestPollMaildirDiskFullMidBatch(t *testing.T) {
	const n = 300
	var ms []pop3test.Message
	for i := 1; i <= n; i++ {
		m := msg(i)
		m.Data = append(m.Data, []byte(strings.Repeat("filler line of the body\r\n", 40))...)
		ms = append(ms, m)
	}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: ms})
	a := testAccount(t, srv)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	a.Deliver.Maildir = filepath.Join(mnt, "Maildir")
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", 100*os.Getpagesize())); err != nil {
		t.Skipf("cannot mount tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })

	res := poller(nil).Poll(context.Background(), a)
	if res.Err != nil {
		t.Fatalf("Poll = %+v", res)
	}
	first := maildirCopies(t, a.Deliver.Maildir)
	if res.Failed == 0 || len(first) == 0 || len(first) == n {
		t.Fatalf("first poll: %+v, %d copies; the test wants the disk to fill part-way", res, len(first))
	}
	on := map[string]bool{}
	for _, u := range uidsOn(srv) {
		on[u] = true
	}
	for i := 1; i <= n; i++ {
		if !on[fmt.Sprintf("uid-%04d", i)] && first[i] != 1 {
			t.Errorf("message %d deleted from the server with %d copies in new/", i, first[i])
		}
	}
	if tmp := delivertest.Names(t, filepath.Join(a.Deliver.Maildir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ holds %d files after the failed copies", len(tmp))
	}
	t.Logf("first poll %+v, %d on the server", res, len(on))

	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT, fmt.Sprintf("size=%d", 4000*os.Getpagesize())); err != nil {
		t.Fatal(err)
	}
	if res := poller(nil).Poll(context.Background(), a); res.Err != nil || res.Failed != 0 {
		t.Fatalf("Poll with space = %+v", res)
	}
	if left := srv.Messages(); len(left) != 0 {
		t.Fatalf("server still has %d messages", len(left))
	}
	if dups := delivertest.Duplicates(t, maildirCopies(t, a.Deliver.Maildir), n); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestPollMultidropManyMaildirsFds delivers to more {user} Maildirs than
// a Maildir keeps open (64), poll after poll, as a daemon does: the
// process's descriptors do not grow.
func TestPollMultidropManyMaildirsFds(t *testing.T) {
	const users = 100
	var rcpts []string
	var us []*rcfile.User
	for i := range users {
		rcpts = append(rcpts, fmt.Sprintf("u%03d@example.com", i))
		us = append(us, mdUser(fmt.Sprintf("u%03d", i), fmt.Sprintf("u%03d", i)))
	}
	put := func(srv *pop3test.Server, poll int) {
		var ms []pop3test.Message
		for i := 1; i <= 5; i++ {
			ms = append(ms, pop3test.Message{UID: fmt.Sprintf("p%d-%d", poll, i), Data: fmt.Appendf(nil,
				"From: a@example.net\r\nTo: %s\r\nSubject: %d\r\nMessage-ID: <%d.%d@example.net>\r\n\r\nbody\r\n", strings.Join(rcpts, ",\r\n "), i, poll, i)})
		}
		srv.SetMessages(ms)
	}
	srv := pop3test.NewServer(t, pop3test.Options{})
	a := testAccount(t, srv)
	out := filepath.Join(filepath.Dir(a.Deliver.Maildir), "out")
	a.Deliver.Maildir = filepath.Join(out, "{user}")
	a.Multidrop = testMultidrop(us...)
	p := poller(nil)
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip(err)
		}
		return len(ents)
	}
	var before int
	for poll := range 6 {
		put(srv, poll)
		if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != 5 {
			t.Fatalf("poll %d = %+v", poll, res)
		}
		if poll == 0 {
			before = fds()
		}
	}
	if after := fds(); after > before+2 {
		t.Errorf("%d descriptors after 6 polls, %d after the first", after, before)
	}
	for i := range users {
		if c := delivertest.MaildirCount(t, filepath.Join(out, fmt.Sprintf("u%03d", i)), "new"); c != 30 {
			t.Errorf("u%03d has %d copies; want 30", i, c)
		}
	}
}

// stateDiskFullMessages is how many messages spoolDiskFull's server holds.
const stateDiskFullMessages = 40

// spoolDiskFull returns a server with stateDiskFullMessages messages,
// every fourth one large enough to be spooled to the state disk, and an
// account whose state_dir is a tmpfs too small to spool them all at once.
func spoolDiskFull(t *testing.T) (*pop3test.Server, *rcfile.Account) {
	t.Helper()
	var ms []pop3test.Message
	for i := 1; i <= stateDiskFullMessages; i++ {
		m := msg(i)
		if i%4 == 0 { // spooled to the state disk
			m.Data = append(m.Data, []byte(strings.Repeat("a spooled body line of the message\r\n", 9000))...)
		}
		ms = append(ms, m)
	}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: ms})
	a := testAccount(t, srv)
	if err := os.MkdirAll(a.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", a.StateDir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", 200*os.Getpagesize())); err != nil {
		t.Skipf("cannot mount tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(a.StateDir, syscall.MNT_DETACH) })
	return srv, a
}

// TestPollStateDiskFullOneShot is TestPollStateDiskFullWithSpool for
// one-shot runs (cron's `popfetch fetch`): each poll is a new Poller, with
// no memory of the last. The broken round is remembered beside the
// journal, so the next run is careful too and gets through; without that
// every run broke off at the same RETR and no mail arrived at all.
func TestPollStateDiskFullOneShot(t *testing.T) {
	const n = stateDiskFullMessages
	srv, a := spoolDiskFull(t)

	if res := poller(nil).Poll(context.Background(), a); res.Err == nil {
		t.Fatalf("Poll on a filling state disk = %+v; want an error", res)
	}
	for run := 2; len(srv.Messages()) > 0; run++ {
		left := len(srv.Messages())
		res := poller(nil).Poll(context.Background(), a)
		t.Logf("run %d on the small disk: %d delivered, %d deleted, err %v", run, res.Delivered, res.Deleted, res.Err)
		if res.Delivered == 0 && len(srv.Messages()) == left {
			t.Fatalf("one-shot run %d on the small disk made no progress: %+v", run, res)
		}
		if run > 10 {
			t.Fatalf("%d messages still on the server after %d runs", len(srv.Messages()), run)
		}
	}
	if dups := delivertest.Duplicates(t, maildirCopies(t, a.Deliver.Maildir), n); dups > maildirPar {
		t.Errorf("%d duplicates; want at most %d", dups, maildirPar)
	}
	if m := uidl.Path(a.StateDir, a.Mailbox()) + ".careful"; func() bool { _, err := os.Lstat(m); return err == nil }() {
		t.Errorf("%s left after a run that got through", m)
	}
}

// TestPollStateDiskFullWithSpool fills the state disk, where messages
// larger than the spool's memory are spooled, in the middle of a session
// that delivers 32 at once: nothing is deleted without its copy, and the
// next polls of the same Poller, careful, deliver the rest on the same
// disk, repeating at most the deliveries in flight.
func TestPollStateDiskFullWithSpool(t *testing.T) {
	const n = stateDiskFullMessages
	srv, a := spoolDiskFull(t)

	p := poller(nil)
	res := p.Poll(context.Background(), a)
	first := map[int]int{}
	if _, err := os.Stat(a.Deliver.Maildir); err == nil {
		first = maildirCopies(t, a.Deliver.Maildir)
	}
	t.Logf("first poll: %d copies, %d left on the server, err %v", len(first), len(srv.Messages()), res.Err)
	if res.Err == nil {
		t.Fatalf("Poll on a filling state disk = %+v; want an error", res)
	}
	on := map[string]bool{}
	for _, u := range uidsOn(srv) {
		on[u] = true
	}
	for i := 1; i <= n; i++ {
		if !on[fmt.Sprintf("uid-%04d", i)] && first[i] == 0 {
			t.Errorf("message %d deleted from the server with no copy", i)
		}
	}
	// The same Poller (a daemon) polls carefully after the broken
	// session: one RETR per round, each message delivered before the next
	// is read, so each fits the disk on its own.
	// Several polls at most: the deliveries still running when the next
	// message is read keep their spools too.
	for poll := 2; len(srv.Messages()) > 0; poll++ {
		left := len(srv.Messages())
		res := p.Poll(context.Background(), a)
		t.Logf("poll %d on the small disk: %d delivered, %d deleted", poll, res.Delivered, res.Deleted)
		if res.Failed != 0 || res.Delivered == 0 && len(srv.Messages()) == left {
			t.Fatalf("careful poll %d on the small disk made no progress: %+v", poll, res)
		}
		if poll > 10 {
			t.Fatalf("%d messages still on the server after %d polls", len(srv.Messages()), poll)
		}
	}
	if left := srv.Messages(); len(left) != 0 {
		t.Fatalf("server still has %d messages", len(left))
	}
	if dups := delivertest.Duplicates(t, maildirCopies(t, a.Deliver.Maildir), n); dups > maildirPar {
		t.Errorf("%d duplicates; want at most %d", dups, maildirPar)
	}
}
