package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/uidl"
)

// fillTmpfs mounts a small tmpfs at dir (skipping the test where mount is
// not allowed) and returns a function that fills it up, so that a journal
// already on it can grow only to the end of its current page.
func fillTmpfs(t *testing.T, dir string) (fill, free func()) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("size=%d,mode=0700", 16*os.Getpagesize())
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("cannot mount tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	fill = func() {
		f, err := os.OpenFile(filler, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		page := make([]byte, os.Getpagesize())
		for {
			if _, err := f.Write(page); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				return
			}
		}
	}
	free = func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}
	return fill, free
}

// maildirCopies counts the copies of each message (by its Message-ID) in
// the Maildir's new/.
func maildirCopies(t *testing.T, maildir string) map[int]int {
	t.Helper()
	if _, err := os.Stat(filepath.Join(maildir, "new")); err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, b := range delivertest.MaildirMessages(t, maildir, "new") {
		i := bytes.Index(b, []byte("Message-ID: <"))
		var n int
		if i < 0 {
			t.Fatalf("no Message-ID:\n%.400s", b)
		}
		if _, err := fmt.Sscanf(string(b[i:]), "Message-ID: <%d@", &n); err != nil {
			t.Fatalf("%v:\n%.400s", err, b)
		}
		out[n]++
	}
	return out
}

// TestPollJournalDiskFull runs out of space on the state disk in the
// middle of a session (the journal lives on a tmpfs that is full but for
// the rest of its page), with the Maildir elsewhere. The session must stop
// with the error and delete nothing; once space is back, the next poll
// delivers the rest, and every message is in the Maildir once: the records
// and intents written before the failure are kept, and a copy whose
// intent cannot be written is withdrawn instead of committed (it could
// not be recorded either), so no copy is delivered twice.
func TestPollJournalDiskFull(t *testing.T) {
	// The journal can grow to the end of its page, about 200 bytes per
	// message (intent and record): fill it about three times over.
	n := max(60, 3*os.Getpagesize()/200)
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(n)})
	a := testAccount(t, srv)
	fill, free := fillTmpfs(t, a.StateDir)
	s := openStore(t, a)
	s.Close()
	fill()

	res := poller(nil).Poll(context.Background(), a)
	if !errors.Is(res.Err, syscall.ENOSPC) {
		t.Fatalf("Poll on a full state disk = %+v; want ENOSPC", res)
	}
	if left := len(srv.Messages()); left != n {
		t.Fatalf("server has %d messages after the failed poll; want all %d (no DELE takes effect)", left, n)
	}
	first := maildirCopies(t, a.Deliver.Maildir)
	if len(first) == 0 || len(first) == n {
		t.Fatalf("first poll delivered %d messages; the test wants the disk to fill part-way", len(first))
	}

	free()
	res = poller(nil).Poll(context.Background(), a)
	if res.Err != nil {
		t.Fatalf("Poll after freeing space = %+v", res)
	}
	if left := srv.Messages(); len(left) != 0 {
		t.Fatalf("server still has %v", uidsOn(srv))
	}
	dups := delivertest.Duplicates(t, maildirCopies(t, a.Deliver.Maildir), n)
	t.Logf("first poll delivered %d, duplicates %d", len(first), dups)
	if dups != 0 {
		t.Errorf("%d duplicates; want none (a copy whose intent cannot be written is not committed)", dups)
	}
}

// A keep mode mailbox whose journal lost records (here: emptied, or cut
// to a valid prefix) is refused with the fix in the error, instead of
// being fetched again in full; restoring the journal lets it flow again.
func TestPollShortenedJournalRefused(t *testing.T) {
	for _, cut := range []string{"emptied", "prefix"} {
		t.Run(cut, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(4)})
			a := testAccount(t, srv)
			a.Keep = true
			rec := &recorder{}
			if res := poller(rec).Poll(context.Background(), a); res.Err != nil || res.Delivered != 4 {
				t.Fatalf("first poll = %+v", res)
			}
			path := uidl.Path(a.StateDir, a.Mailbox())
			whole, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			short := []byte{}
			if cut == "prefix" {
				short = whole[:bytes.IndexByte(whole, '\n')+1] // the header
				short = append(short, whole[len(short):][:bytes.IndexByte(whole[len(short):], '\n')+1]...)
			}
			if err := os.WriteFile(path, short, 0o600); err != nil {
				t.Fatal(err)
			}
			res := poller(rec).Poll(context.Background(), a)
			if !errors.Is(res.Err, uidl.ErrShortened) || !errors.Is(res.Err, uidl.ErrCorrupt) ||
				!strings.Contains(res.Err.Error(), "remove "+path+".len") {
				t.Fatalf("poll with a shortened journal = %+v; want ErrShortened telling the fix", res)
			}
			if len(rec.got) != 4 || res.Delivered != 0 {
				t.Fatalf("deliveries %v after the refused poll; want the 4 of the first poll only", rec.got)
			}
			if err := os.WriteFile(path, whole, 0o600); err != nil {
				t.Fatal(err)
			}
			if res := poller(rec).Poll(context.Background(), a); res.Err != nil || res.New != 0 {
				t.Fatalf("poll with the journal restored = %+v", res)
			}
		})
	}
}
