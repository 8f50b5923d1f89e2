//go:build linux

package deliver

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/internal/durable"
)

// syncFS is the real filesystem whose tmp files count how they are made
// durable and fail the shared sync or a file's writeback check on demand.
type syncFS struct {
	osFS
	shareable bool  // what SyncKey says of every directory
	syncfsErr error // the result of every SyncFS
	// wbErr is the writeback error of the n-th file created (from 1).
	wbErr  error
	wbFile int

	mu                       sync.Mutex
	created, fsyncs, syncfss int
	checks                   int
}

func (s *syncFS) OpenExcl(dir *os.File, name string, perm fs.FileMode) (maildirFile, error) {
	f, err := s.osFS.OpenExcl(dir, name, perm)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created++
	sf := &syncFile{rawFile: f.(*rawFile), s: s}
	if s.created == s.wbFile {
		sf.wbErr = s.wbErr
	}
	return sf, nil
}

type syncFile struct {
	*rawFile
	s     *syncFS
	wbErr error
}

func (f *syncFile) count(n *int) {
	f.s.mu.Lock()
	*n++
	f.s.mu.Unlock()
}

func (s *syncFS) SyncKey(dir *os.File) (uint64, bool) {
	dev, ok := s.osFS.SyncKey(dir)
	return dev, ok && s.shareable
}

func (f *syncFile) Sync() error {
	f.count(&f.s.fsyncs)
	return f.rawFile.Sync()
}

func (f *syncFile) Fsync() error { return f.Sync() }

func (f *syncFile) SyncFS() error {
	f.count(&f.s.syncfss)
	if f.s.syncfsErr != nil {
		return f.s.syncfsErr
	}
	return f.rawFile.SyncFS()
}

func (f *syncFile) CheckWriteback() error {
	f.count(&f.s.checks)
	if f.wbErr != nil {
		return f.wbErr
	}
	return f.rawFile.CheckWriteback()
}

// TestMaildirFileSync: copies written at once into one filesystem share
// one syncfs and each checks its own file; a failing syncfs fails every
// copy it covered, a file's writeback error fails exactly its copy, and a
// failed copy leaves nothing in tmp/ or new/. A lone copy, and every copy
// on a filesystem syncfs is not trusted on, is fsynced as before.
func TestMaildirFileSync(t *testing.T) {
	eio := syscall.EIO
	tests := []struct {
		name      string
		copies    int
		shareable bool
		syncfsErr error
		wbFile    int // the file whose check fails, 0 none
		wantFail  int
		// want counts: fsyncs, syncfs calls, checks
		fsyncs, syncfss, checks int
	}{
		{name: "shared", copies: 3, shareable: true, syncfss: 1, checks: 3},
		{name: "lone copy", copies: 1, shareable: true, fsyncs: 1},
		{name: "not trusted", copies: 3, fsyncs: 3},
		{name: "syncfs fails", copies: 3, shareable: true, syncfsErr: eio, wantFail: 3, syncfss: 1},
		{name: "one file's writeback fails", copies: 3, shareable: true, wbFile: 2, wantFail: 1, syncfss: 1, checks: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &syncFS{shareable: tt.shareable, syncfsErr: tt.syncfsErr, wbErr: eio, wbFile: tt.wbFile}
			dir := filepath.Join(t.TempDir(), "Maildir")
			makeMaildir(t, dir)
			d := NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: s})
			closeAtEnd(t, d)
			// A long gather: the copies, started together, share a round.
			d.files = &durable.FileSync[uint64]{Gather: 500 * time.Millisecond}
			errs := make(chan error, tt.copies)
			for range tt.copies {
				go func() {
					errs <- d.Deliver(context.Background(), testMessage(3000), "", []Recipient{{}}, nil)[0]
				}()
			}
			failed := 0
			for range tt.copies {
				if err := <-errs; err != nil {
					failed++
					if e := wantTemporary(t, err); !errors.Is(e, eio) {
						t.Errorf("copy failed with %v; want EIO", err)
					}
				}
			}
			if failed != tt.wantFail {
				t.Errorf("%d copies failed; want %d", failed, tt.wantFail)
			}
			wantClean(t, dir, tt.copies-tt.wantFail)
			if s.fsyncs != tt.fsyncs || s.syncfss != tt.syncfss || s.checks != tt.checks {
				t.Errorf("fsyncs, syncfs, checks = %d, %d, %d; want %d, %d, %d",
					s.fsyncs, s.syncfss, s.checks, tt.fsyncs, tt.syncfss, tt.checks)
			}
		})
	}
}

// TestMaildirSyncKey: the key a Maildir shares its files' syncs by is
// asked of tmp/ once, when the Maildir is opened, and is what it would be
// of each file made there (durable.SharedSyncKey): tmp/'s filesystem,
// also when tmp/ is on another filesystem than the rest of the Maildir (a
// tmpfs mounted on it, which needs root), or the whole Maildir is (on
// /dev/shm).
func TestMaildirSyncKey(t *testing.T) {
	mountedTmp := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "Maildir")
		makeMaildir(t, dir)
		tmp := filepath.Join(dir, "tmp")
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", tmp).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", tmp).Run() })
		return dir
	}
	tests := []struct {
		name    string
		maildir func(t *testing.T) string
	}{
		{"TMPDIR", func(t *testing.T) string { return filepath.Join(t.TempDir(), "Maildir") }},
		{"/dev/shm", func(t *testing.T) string {
			base, err := os.MkdirTemp("/dev/shm", "maildir")
			if err != nil {
				t.Skip(err)
			}
			t.Cleanup(func() { os.RemoveAll(base) })
			return filepath.Join(base, "Maildir")
		}},
		{"tmp/ a mount of its own", mountedTmp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.maildir(t)
			d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
			closeAtEnd(t, d)
			var rootDev uint64
			for i := range 3 {
				p, err := d.Prepare(context.Background(), testMessage(100), "", Recipient{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				f, err := os.Open(filepath.Join(dir, "tmp", p.tmpName))
				if err != nil {
					t.Fatal(err)
				}
				dev, ok := durable.SharedSyncKey(int(f.Fd()))
				var st syscall.Stat_t
				if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
					t.Fatal(err)
				}
				f.Close()
				if ok && dev != uint64(st.Dev) {
					t.Fatalf("SharedSyncKey of the file = %d; its device is %d", dev, st.Dev)
				}
				if p.md.syncShared != ok || ok && p.md.syncDev != dev {
					t.Errorf("copy %d: Maildir's key %d, %v; the file's %d, %v", i+1, p.md.syncDev, p.md.syncShared, dev, ok)
				}
				if err := syscall.Stat(dir, &st); err != nil {
					t.Fatal(err)
				}
				rootDev = uint64(st.Dev)
				p.Abort()
			}
			if tt.name == "tmp/ a mount of its own" && tmpDev(t, dir) == rootDev {
				t.Fatal("tmp/ is not on a filesystem of its own")
			}
		})
	}
}

// tmpDev is the device of dir's tmp/.
func tmpDev(t *testing.T, dir string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "tmp"), &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Dev)
}
