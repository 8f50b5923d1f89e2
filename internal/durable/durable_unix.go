//go:build unix

package durable

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// SyncDirFile fsyncs the directory dir is open on, without looking its
// path up again (a directory swapped for a symlink meanwhile is not the
// one synced). dir may be an O_PATH descriptor, which cannot be fsynced
// itself: the directory is opened again through it. Errors are
// *fs.PathError naming dir.Name().
func SyncDirFile(dir *os.File) error {
	var (
		fd  int
		err error
	)
	for {
		fd, err = unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir.Name(), Err: err}
	}
	d := os.NewFile(uintptr(fd), dir.Name())
	defer d.Close()
	return fsync(d, dir.Name())
}
