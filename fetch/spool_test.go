package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// bigMsg returns message i of about size bytes: more than a spool keeps
// in memory.
func bigMsg(i, size int) pop3test.Message {
	var b strings.Builder
	fmt.Fprintf(&b, "From: a@example.com\r\nTo: b@example.com\r\nSubject: big %d\r\nMessage-ID: <big%d@example.com>\r\n\r\n", i, i)
	for n := 0; b.Len() < size; n++ {
		fmt.Fprintf(&b, "%d line %d of message %d, long enough to fill it soon\r\n", n%7, n, i)
	}
	b.WriteString(".dotted line\r\n")
	return pop3test.Message{UID: fmt.Sprintf("uid-big-%04d", i), Data: []byte(b.String())}
}

// spoolFDs counts this process's descriptors of files in dir (a spool
// file, unnamed, still shows its directory in /proc/self/fd).
func spoolFDs(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, dir+"/") {
			n++
		}
	}
	return n
}

// TestPollSpoolsLargeMessages: messages larger than the spool's memory
// go through a spool file in state_dir/spool and arrive intact; the
// directory is private and left empty.
func TestPollSpoolsLargeMessages(t *testing.T) {
	mailbox := []pop3test.Message{bigMsg(1, 300<<10), msg(2), bigMsg(3, 1<<20)}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: mailbox})
	a := testAccount(t, srv)
	res := poller(nil).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 3 {
		t.Fatalf("Poll = %+v", res)
	}
	got := delivertest.MaildirMessages(t, a.Deliver.Maildir, "new")
	for _, m := range mailbox {
		lf := bytes.ReplaceAll(m.Data, []byte("\r\n"), []byte("\n"))
		n := 0
		for _, b := range got {
			if bytes.HasSuffix(b, lf) && bytes.HasPrefix(b, []byte("Received: ")) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d intact copies", m.UID, n)
		}
	}
	dir := spoolDir(a)
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool directory %s: %v, %v", dir, fi, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("spool directory holds %v", ents)
	}
	if n := spoolFDs(t, dir); n != 0 {
		t.Errorf("%d spool files still open", n)
	}
}

// TestPollSpoolReleased: every spool is closed whatever becomes of its
// message: delivered, failed, found delivered before, or read in a round
// that broke off and never started.
func TestPollSpoolReleased(t *testing.T) {
	mailbox := []pop3test.Message{bigMsg(1, 300<<10), bigMsg(2, 300<<10), bigMsg(3, 300<<10), bigMsg(4, 300<<10)}
	for _, tc := range []struct {
		name   string
		faults []pop3test.Fault
		fail   string // a UID whose delivery fails
	}{
		{"delivered", nil, ""},
		{"delivery fails", nil, "uid-big-0002"},
		{"round breaks off after two read", []pop3test.Fault{{Cmd: "RETR", N: 3, Action: pop3test.Skip}}, ""},
		{"connection drops", []pop3test.Fault{{Cmd: "RETR", N: 4, Action: pop3test.Drop}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: mailbox, Faults: tc.faults,
				Capa: []string{"USER", "UIDL", "RESP-CODES", "PIPELINING"}})
			a := testAccount(t, srv)
			a.Timeout = time.Second
			a.Keep = true
			r := &recorder{fail: func(uid string) error {
				if uid == tc.fail {
					return errors.New("injected")
				}
				return nil
			}}
			for range 2 { // the second poll finds some delivered before
				poller(r).Poll(context.Background(), a)
				if n := spoolFDs(t, spoolDir(a)); n != 0 {
					t.Fatalf("%d spool files still open after the poll", n)
				}
			}
		})
	}
}

// TestPollSpoolDirRefused: a state_dir/spool that is a symlink is not
// used: a message that needs it stays on the server, undelivered and not
// recorded, and arrives once the directory is sound.
func TestPollSpoolDirRefused(t *testing.T) {
	big := bigMsg(1, 300<<10)
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{big}})
	a := testAccount(t, srv)
	elsewhere := t.TempDir()
	if err := os.MkdirAll(a.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, spoolDir(a)); err != nil {
		t.Fatal(err)
	}
	res := poller(nil).Poll(context.Background(), a)
	if res.Err == nil || res.Delivered != 0 || !strings.Contains(res.Err.Error(), "symlink") {
		t.Fatalf("Poll with a symlinked spool directory = %+v", res)
	}
	if len(srv.Messages()) != 1 || storeHas(t, a, big.UID) || maildirCount(t, a) != 0 {
		t.Fatal("the message left the server, or was delivered or recorded")
	}
	os.Remove(spoolDir(a))
	if res := poller(nil).Poll(context.Background(), a); res.Err != nil || res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll once the directory is sound = %+v", res)
	}
}
