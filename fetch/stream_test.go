package fetch

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// dirNames lists dir, failing the test if it cannot.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// intactOnce checks that the Maildir holds exactly one copy, in new/, of
// m, and nothing in tmp/.
func intactOnce(t *testing.T, maildir string, m pop3test.Message) {
	t.Helper()
	got := delivertest.MaildirMessages(t, maildir, "new")
	lf := bytes.ReplaceAll(m.Data, []byte("\r\n"), []byte("\n"))
	if len(got) != 1 || !bytes.HasSuffix(got[0], lf) || !bytes.HasPrefix(got[0], []byte("Received: ")) {
		t.Fatalf("new/ holds %d copies; want one intact copy", len(got))
	}
	if names := dirNames(t, filepath.Join(maildir, "tmp")); len(names) != 0 {
		t.Fatalf("tmp/ holds %v", names)
	}
}

// TestPollStreamedRetrCut: a large message of a single-drop Maildir
// account is written into tmp/ as it arrives (deliver.Maildir.Stream);
// a RETR reply cut mid-body leaves nothing in tmp/ or new/, the message
// is not recorded, and the next poll delivers it once, intact.
func TestPollStreamedRetrCut(t *testing.T) {
	big := bigMsg(1, streamMin+1<<20)
	seen := make(chan []string, 1) // tmp/ while the reply was half sent
	maildir := make(chan string, 1)
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{big}, Faults: []pop3test.Fault{{
		Cmd: "RETR", N: 1, Session: 1, Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
			a0 := <-maildir
			ans := c.Answer()
			c.Write(ans[:len(ans)/2])
			var midway []string
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if ents, _ := os.ReadDir(filepath.Join(a0, "tmp")); len(ents) > 0 {
					for _, e := range ents {
						midway = append(midway, e.Name())
					}
					break
				}
			}
			seen <- midway
			c.Close()
		},
	}}})
	a := testAccount(t, srv)
	maildir <- a.Deliver.Maildir
	res := poller(nil).Poll(context.Background(), a)
	if res.Err == nil || res.Delivered != 0 {
		t.Fatalf("first poll = %+v; want the cut to fail it", res)
	}
	if midway := <-seen; len(midway) != 1 {
		t.Fatalf("tmp/ while the body arrived: %v; want the streamed copy", midway)
	}
	if names := dirNames(t, filepath.Join(a.Deliver.Maildir, "tmp")); len(names) != 0 {
		t.Fatalf("tmp/ after the cut: %v", names)
	}
	if names := dirNames(t, filepath.Join(a.Deliver.Maildir, "new")); len(names) != 0 {
		t.Fatalf("new/ after the cut: %v", names)
	}
	if storeHas(t, a, big.UID) {
		t.Fatal("the cut message is recorded")
	}
	res = poller(nil).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 1 {
		t.Fatalf("second poll = %+v", res)
	}
	intactOnce(t, a.Deliver.Maildir, big)
	// A run killed between the commit of the streamed copy and its
	// record finds it as its own (recover: ourCopy with the identity
	// the intent recorded), and does not deliver it again.
	st := openStore(t, a)
	ids := st.Identities(big.UID)
	st.Close()
	names := dirNames(t, filepath.Join(a.Deliver.Maildir, "new"))
	if len(ids) != 1 || len(names) != 1 {
		t.Fatalf("identities %v, new/ %v", ids, names)
	}
	if err := ourCopy(filepath.Join(a.Deliver.Maildir, "new", names[0]), ids[0]); err != nil {
		t.Fatalf("recovery would not know the streamed copy: %v", err)
	}
}

// TestPollStreamedDiskFull: a Maildir that fills up while a large message
// streams into it: nothing is left in tmp/ or new/, the message is not
// recorded and stays on the server, and once there is room the next poll
// delivers it once, intact.
func TestPollStreamedDiskFull(t *testing.T) {
	big := bigMsg(1, streamMin+1<<20)
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{big}})
	a := testAccount(t, srv)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", 64*os.Getpagesize())); err != nil {
		t.Skipf("cannot mount tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	a.Deliver.Maildir = filepath.Join(mnt, "Maildir")

	res := poller(nil).Poll(context.Background(), a)
	if res.Delivered != 0 || res.Failed != 1 {
		t.Fatalf("first poll = %+v; want the delivery to fail", res)
	}
	for _, sub := range []string{"tmp", "new"} {
		if names := dirNames(t, filepath.Join(a.Deliver.Maildir, sub)); len(names) != 0 {
			t.Fatalf("%s/ after the full disk: %v", sub, names)
		}
	}
	if storeHas(t, a, big.UID) || len(uidsOn(srv)) != 1 {
		t.Fatal("the message is recorded, or gone from the server")
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT, "size=32m"); err != nil {
		t.Fatalf("remount: %v", err)
	}
	res = poller(nil).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 1 {
		t.Fatalf("second poll = %+v", res)
	}
	intactOnce(t, a.Deliver.Maildir, big)
}
