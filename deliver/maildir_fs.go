//go:build linux

package deliver

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/popfetch/popfetch/internal/durable"
	"golang.org/x/sys/unix"
)

// osFS is the real filesystem, through openat(2) and friends on directory
// descriptors opened with O_PATH (which needs no read permission, as a
// path lookup does not).
type osFS struct{}

func dirFd(dir *os.File) int {
	if dir == nil {
		return unix.AT_FDCWD
	}
	return int(dir.Fd())
}

func joinName(dir *os.File, name string) string {
	if dir == nil {
		return name
	}
	return filepath.Join(dir.Name(), name)
}

func (osFS) OpenDir(dir *os.File, name string, follow bool) (*os.File, error) {
	flags := unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	path := joinName(dir, name)
	fd, err := openat(dirFd(dir), name, flags, 0)
	if err != nil {
		if !follow && (errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)) {
			var st unix.Stat_t
			if unix.Fstatat(dirFd(dir), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = errSymlink
			}
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func (osFS) Mkdir(dir *os.File, name string, perm fs.FileMode, own *fileOwner) error {
	path := joinName(dir, name)
	if err := unix.Mkdirat(dirFd(dir), name, uint32(perm)); err != nil {
		return &fs.PathError{Op: "mkdir", Path: path, Err: err}
	}
	// The umask may have narrowed perm, and a Maildir the owner cannot
	// enter is useless; chmod never widens it beyond perm. Through a
	// descriptor opened without following a symlink, so that a swap
	// cannot make it chmod something else.
	fd, err := openat(dirFd(dir), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	// A directory left with the wrong owner or mode would never be fixed
	// (an existing directory is used as it is): remove it, so the next
	// try creates it again. It is empty: nothing was created inside yet.
	undo := func(op string, err error) error {
		unix.Unlinkat(dirFd(dir), name, unix.AT_REMOVEDIR)
		return &fs.PathError{Op: op, Path: path, Err: err}
	}
	if own != nil {
		// Before anything is created inside: a directory of its user's
		// Maildir, which root created.
		if err := unix.Fchown(fd, own.uid, own.gid); err != nil {
			return undo("chown", err)
		}
	}
	if err := unix.Fchmod(fd, uint32(perm)); err != nil {
		return undo("chmod", err)
	}
	return nil
}

func (osFS) OpenExcl(dir *os.File, name string, perm fs.FileMode) (maildirFile, error) {
	path := joinName(dir, name)
	fd, err := openat(dirFd(dir), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func (osFS) Link(olddir *os.File, oldname string, newdir *os.File, newname string) error {
	// Flags 0: a symlink at oldname is not followed, and newname is
	// never followed.
	if err := unix.Linkat(dirFd(olddir), oldname, dirFd(newdir), newname, 0); err != nil {
		return &os.LinkError{Op: "link", Old: joinName(olddir, oldname), New: joinName(newdir, newname), Err: err}
	}
	return nil
}

func (osFS) SyncDir(dir *os.File) error {
	return durable.SyncDirFile(dir)
}

func (osFS) Remove(dir *os.File, name string) error {
	if err := unix.Unlinkat(dirFd(dir), name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: joinName(dir, name), Err: err}
	}
	return nil
}

// openat retries on EINTR.
func openat(dirfd int, name string, flags int, perm uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, perm)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// cleanTmp removes the files in tmp/ older than staleTmp, through the
// directory's descriptor and without following symlinks.
func cleanTmp(tmp *os.File) error {
	fd, err := openat(int(tmp.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	dir := os.NewFile(uintptr(fd), tmp.Name())
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	cutoff := time.Now().Add(-staleTmp).Unix()
	for _, n := range names {
		var st unix.Stat_t
		if unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
			continue
		}
		if st.Mtim.Sec < cutoff {
			if err := unix.Unlinkat(fd, n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return &fs.PathError{Op: "remove", Path: filepath.Join(tmp.Name(), n), Err: err}
			}
		}
	}
	return nil
}
