package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
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
	// The identities recorded, the big messages' digested as they
	// arrived (retrieve), are those of the messages as sent.
	st := openStore(t, a)
	for _, m := range mailbox {
		want := identityOf(int64(len(m.Data)), m.Data)
		if ids := st.Identities(m.UID); len(ids) != 1 || ids[0] != want {
			t.Errorf("%s: identities %v; want %v", m.UID, ids, want)
		}
	}
	st.Close()
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

// FuzzDigestTee: a message digested as it is written to its spool, in
// pieces of any size, has the identity its delivery would read back from
// the spool, and that of the message whole.
func FuzzDigestTee(f *testing.F) {
	f.Add([]byte(digestBase), uint16(1))
	f.Add([]byte(digestBase), uint16(7))
	f.Add([]byte("A: b\r\n c\r\r\n\r\nx\r\n.\r\n"), uint16(3))
	f.Add([]byte("no header\n"), uint16(2))
	f.Add([]byte(strings.Repeat("Subject: x\r\n", 100)+"\r\n"+strings.Repeat("body line\r\n", 40000)), uint16(4093))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, raw []byte, piece uint16) {
		sp := deliver.NewSpool(dir, 1)
		defer sp.Close()
		d := newDigester()
		defer d.free()
		w := &digestTee{sp: sp, d: d}
		step := int(piece)%8192 + 1
		for p := raw; len(p) > 0; {
			n := min(step, len(p))
			if _, err := w.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
			step = step*5%8191 + 1 // pieces of varying size
		}
		size := int64(len(raw))
		got := d.identity(size)
		back, err := messageIdentity(size, &deliver.Message{Spool: sp})
		if err != nil {
			t.Fatal(err)
		}
		if got != back || got != identityOf(size, raw) {
			t.Fatalf("digested on the way %v, read back %v, whole %v", got, back, identityOf(size, raw))
		}
	})
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
				// Opened once per poll, and closed with it.
				if n := spoolFDs(t, filepath.Dir(spoolDir(a))); n != 0 {
					t.Fatalf("the spool directory still open after the poll (%d descriptors in the state directory)", n)
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

// smallStateDir mounts a tmpfs of size bytes as a fresh directory and
// returns it: a disk that fills part-way through a message. It needs root.
func smallStateDir(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestPollSpoolDiskFull: a spool that fills the disk part-way through a
// message (ENOSPC in state_dir) leaves the message on the server,
// undelivered and unrecorded, sends no DELE, and on a server that may
// expire retrieved mail (EXPIRE 0) no QUIT either; messages before it in
// its round are not lost, and everything arrives once there is room.
func TestPollSpoolDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		capa []string
		keep bool
	}{
		{"expire 0, pipelined", []string{"USER", "UIDL", "PIPELINING", "EXPIRE 0"}, false},
		{"expire 0, one at a time", []string{"USER", "UIDL", "EXPIRE 0"}, false},
		{"keep", []string{"USER", "UIDL", "PIPELINING"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The big message fills the disk at a write, and the
			// one of 900 KiB at the flush that ends it (its last
			// 64 KiB).
			for _, size := range []int{3 << 20, 900 << 10} {
				mailbox := []pop3test.Message{msg(1), bigMsg(2, size), msg(3)}
				srv := pop3test.NewServer(t, pop3test.Options{Messages: mailbox, Capa: tc.capa})
				a := testAccount(t, srv)
				a.Keep = tc.keep
				a.StateDir = smallStateDir(t, "800k")
				// The journal and the spool directory take some room
				// first; what is left is less than the message.
				res := poller(nil).Poll(context.Background(), a)
				if res.Err == nil || !strings.Contains(res.Err.Error(), "spool") {
					t.Fatalf("size %d: Poll with a full disk = %+v", size, res)
				}
				if storeHas(t, a, mailbox[1].UID) || len(srv.Messages()) != 3 {
					t.Fatalf("size %d: the message was recorded or left the server: %q", size, srv.Commands())
				}
				for _, c := range srv.Commands() {
					if strings.HasPrefix(c, "DELE 2") || c == "QUIT" && !tc.keep {
						t.Fatalf("size %d: %q sent after the spool failed: %q", size, c, srv.Commands())
					}
				}
				if ents, _ := os.ReadDir(spoolDir(a)); len(ents) != 0 {
					t.Fatalf("size %d: spool directory holds %v", size, ents)
				}
				if n := spoolFDs(t, spoolDir(a)); n != 0 {
					t.Fatalf("size %d: %d spool files still open", size, n)
				}
				// Room again.
				exec.Command("mount", "-o", "remount,size=16m", a.StateDir).Run()
				for range 3 {
					if res = poller(nil).Poll(context.Background(), a); res.Err == nil && maildirCount(t, a) == 3 {
						break
					}
				}
				if res.Err != nil || maildirCount(t, a) != 3 {
					t.Fatalf("size %d: Poll with room again = %+v; %d delivered", size, res, maildirCount(t, a))
				}
				if !tc.keep && len(srv.Messages()) != 0 {
					t.Fatalf("size %d: %d messages left on the server", size, len(srv.Messages()))
				}
			}
		})
	}
}

// heapPeak runs f while sampling the heap in use and returns its growth
// at the peak, after a collection before f.
func heapPeak(f func()) int64 {
	defer debug.SetGCPercent(debug.SetGCPercent(1))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapInuse)
	var peak atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if d := int64(ms.HeapInuse) - base; d > peak.Load() {
				peak.Store(d)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(done)
	<-sampled
	return peak.Load()
}

// TestPollSpoolMemoryLyingSizes: a server whose LIST sizes are tiny and
// whose messages are as large as the reply budget allows them (2×size +
// 1 MiB) fits a whole round of messages into the memory window by their
// sizes. What their spools hold in memory together must still stay near
// that window, whether the messages fit a spool's memory (256 KiB) or are
// spooled to a file with a header that never ends (which a spool keeps to
// route the message by).
func TestPollSpoolMemoryLyingSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		data func(i int) []byte
	}{
		{"in memory", 256, func(i int) []byte {
			m := bigMsg(i, deliver.DefaultSpoolMem-200).Data
			return m[:deliver.DefaultSpoolMem-100]
		}},
		{"endless header", 48, func(i int) []byte {
			var b strings.Builder
			fmt.Fprintf(&b, "From: a@example.com\r\nSubject: %d\r\n", i)
			for b.Len() < 1<<20-100 {
				b.WriteString("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
			}
			return []byte(b.String())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			var mailbox []pop3test.Message
			for i := 1; i <= n; i++ {
				mailbox = append(mailbox, pop3test.Message{UID: fmt.Sprintf("uid-%d", i), Data: tc.data(i)})
			}
			srv := pop3test.NewServer(t, pop3test.Options{Messages: mailbox,
				Capa: []string{"USER", "UIDL", "PIPELINING"}, ListSize: func(pop3test.Message) int { return 10 }})
			a := testAccount(t, srv)
			a.Keep = true
			r := &recorder{}
			var res Result
			peak := heapPeak(func() { res = poller(r).Poll(context.Background(), a) })
			if res.Err != nil || res.Delivered != n {
				t.Fatalf("Poll = %+v", res)
			}
			t.Logf("heap peak +%.1f MiB", float64(peak)/(1<<20))
			// The window and the spools' shared memory (12 MiB), and
			// 20 MiB for what the test server copies as it sends and
			// the collector has not reached yet: the heap in use
			// peaks at 17-25 MiB here, live memory at about 12 MiB
			// (a heap profile). A round held whole would be 64 MiB.
			if limit := int64(memWindow + spoolMemShare + 20<<20); peak > limit {
				t.Fatalf("the heap grew by %.1f MiB for a round of %d messages listed at 10 bytes each; limit %.0f MiB", float64(peak)/(1<<20), n, float64(limit)/(1<<20))
			}
		})
	}
}

// TestPollSpoolDirReleasedOnPanic: a poll that panics after its spool
// directory was opened (here in closing its targets) still closes it: a
// daemon survives a panicking poll (runPoll recovers it) and polls again,
// and must not keep one descriptor per such poll.
func TestPollSpoolDirReleasedOnPanic(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{bigMsg(1, 300<<10)}})
	a := testAccount(t, srv)
	a.Keep = true
	p := poller(nil)
	p.Dispatcher = func(*rcfile.Account) (Dispatcher, error) { return panicClose{&recorder{}}, nil }
	func() {
		defer func() {
			if v := recover(); v == nil {
				t.Fatal("the poll did not panic")
			}
		}()
		p.Poll(context.Background(), a)
	}()
	if n := spoolFDs(t, filepath.Dir(spoolDir(a))); n != 0 {
		t.Fatalf("the spool directory still open after a poll that panicked (%d descriptors in the state directory)", n)
	}
}

// panicClose is a Dispatcher whose Close panics.
type panicClose struct{ *recorder }

func (panicClose) Close() error { panic("injected: Close of the targets") }
