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
	return SyncDirFd(int(dir.Fd()), dir.Name())
}

// SyncDirFd is SyncDirFile for a raw descriptor fd of the directory at
// name (for the errors), with raw system calls: no *os.File, whose
// creation alone costs an fcntl.
func SyncDirFd(fd int, name string) error {
	var (
		d   int
		err error
	)
	for {
		d, err = unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(d)
	for {
		err = unix.Fsync(d)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return &fs.PathError{Op: "fsync", Path: name, Err: err}
	}
	return nil
}
