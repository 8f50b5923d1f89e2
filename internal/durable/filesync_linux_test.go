//go:build linux

package durable

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSharedSyncKey: a file on a filesystem outside the allowlist (procfs,
// a pipe) is not given to syncfs; a file on an allowlisted one is, keyed
// by its device; and the Linux calls behind SyncFS and CheckWriteback
// succeed on a real file, the flush through an O_PATH directory.
func TestSharedSyncKey(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "msg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("Subject: x\n\nbody\n"); err != nil {
		t.Fatal(err)
	}
	proc, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for _, tt := range []struct {
		name string
		f    *os.File
	}{{"procfs", proc}, {"pipe", pr}} {
		if _, ok := SharedSyncKey(int(tt.f.Fd())); ok {
			t.Errorf("%s: SharedSyncKey says yes; want fsync", tt.name)
		}
	}

	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		t.Fatal(err)
	}
	dev, ok := SharedSyncKey(int(f.Fd()))
	if !syncfsTrusted[int64(sfs.Type)] {
		if ok {
			t.Errorf("filesystem %#x: SharedSyncKey says yes", sfs.Type)
		}
		t.Skipf("TMPDIR on filesystem %#x, not one syncfs is used on", sfs.Type)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if !ok || dev != uint64(st.Dev) {
		t.Fatalf("SharedSyncKey = %d, %v; want %d, true", dev, ok, st.Dev)
	}
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	if err := SyncFilesystem(int(f.Fd()), f.Name(), dfd, dir); err != nil {
		t.Errorf("SyncFilesystem: %v", err)
	}
	if err := CheckWriteback(int(f.Fd())); err != nil {
		t.Errorf("CheckWriteback: %v", err)
	}
}
