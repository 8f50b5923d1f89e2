//go:build linux

package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSyncDir: both variants sync a directory, including one open only
// as an O_PATH descriptor (as package deliver holds its Maildir
// directories), which fsync(2) itself refuses with EBADF; a missing
// directory is an *fs.PathError naming it. fsync on tmpfs does nothing,
// so only the errors are observable here: package uidl and package
// deliver record the order of their fsyncs.
func TestSyncDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	openPath := func(t *testing.T, p string) *os.File {
		fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), p)
		t.Cleanup(func() { f.Close() })
		return f
	}
	openDir := func(t *testing.T, p string) *os.File {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	gone := func(t *testing.T) *os.File {
		// A directory removed after it was opened: the descriptor
		// still works, as for any open directory.
		p := filepath.Join(t.TempDir(), "gone")
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		f := openDir(t, p)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name    string
		sync    func(t *testing.T) error
		wantErr error // nil: success
	}{
		{"path", func(*testing.T) error { return SyncDir(dir) }, nil},
		{"missing path", func(*testing.T) error { return SyncDir(missing) }, fs.ErrNotExist},
		{"file", func(t *testing.T) error { return SyncDirFile(openDir(t, dir)) }, nil},
		{"O_PATH file", func(t *testing.T) error { return SyncDirFile(openPath(t, dir)) }, nil},
		{"removed after open", func(t *testing.T) error { return SyncDirFile(gone(t)) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sync(t)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("err = %v; want nil", err)
				}
				return
			}
			var pe *fs.PathError
			if !errors.Is(err, tt.wantErr) || !errors.As(err, &pe) || pe.Path != missing {
				t.Fatalf("err = %v; want an *fs.PathError for %s wrapping %v", err, missing, tt.wantErr)
			}
		})
	}
}
