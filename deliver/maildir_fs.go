//go:build linux

package deliver

import (
	"errors"
	"io"
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
	fd, err := openat(dirFd(dir), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: joinName(dir, name), Err: err}
	}
	return &rawFile{fd: fd, dir: dir, name: name}, nil
}

// rawFile is a message file written with raw system calls: an *os.File
// costs an fcntl pair to create and registers with the poller for
// nothing (a regular file never blocks in the poller's sense). Errors
// are *fs.PathError naming the file.
type rawFile struct {
	fd   int // -1 once closed
	dir  *os.File
	name string
}

func (f *rawFile) err(op string, err error) error {
	return &fs.PathError{Op: op, Path: joinName(f.dir, f.name), Err: err}
}

func (f *rawFile) Write(p []byte) (int, error) {
	if f.fd < 0 {
		return 0, f.err("write", fs.ErrClosed)
	}
	n := 0
	for n < len(p) {
		m, err := unix.Write(f.fd, p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, f.err("write", err)
		}
		if m == 0 {
			return n, f.err("write", io.ErrShortWrite)
		}
		n += m
	}
	return n, nil
}

func (f *rawFile) Chown(uid, gid int) error {
	if err := unix.Fchown(f.fd, uid, gid); err != nil {
		return f.err("chown", err)
	}
	return nil
}

func (f *rawFile) Sync() error {
	for {
		err := unix.Fsync(f.fd)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return f.err("fsync", err)
		}
		return nil
	}
}

// Fsync, SyncFS and CheckWriteback let a Maildir make the file durable
// together with others on its filesystem (groupSyncFile).
func (f *rawFile) Fsync() error { return f.Sync() }

// SyncFS syncs the file's filesystem through the file's own descriptor,
// and flushes the device through an fsync of its directory, tmp/ (see
// durable.SyncFilesystem).
func (f *rawFile) SyncFS() error {
	return durable.SyncFilesystem(f.fd, joinName(f.dir, f.name), dirFd(f.dir), f.dir.Name())
}

// linkedAt reports whether name in dir is this very file (not followed
// if a symlink).
func (f *rawFile) linkedAt(dir *os.File, name string) bool {
	var own, at unix.Stat_t
	if unix.Fstat(f.fd, &own) != nil || unix.Fstatat(dirFd(dir), name, &at, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return own.Dev == at.Dev && own.Ino == at.Ino
}

func (f *rawFile) CheckWriteback() error {
	if err := durable.CheckWriteback(f.fd); err != nil {
		return f.err("sync_file_range", err)
	}
	return nil
}

// Close reports a deferred write error (NFS, quota) as close(2) does; the
// descriptor is gone either way (Linux close(2): not to be retried).
func (f *rawFile) Close() error {
	if f.fd < 0 {
		return f.err("close", fs.ErrClosed)
	}
	err := unix.Close(f.fd)
	f.fd = -1
	if err != nil && err != unix.EINTR {
		return f.err("close", err)
	}
	return nil
}

func (osFS) Rename(olddir *os.File, oldname string, newdir *os.File, newname string) error {
	// RENAME_NOREPLACE: like link(2), it never replaces newname (EEXIST
	// instead), and it moves the name in one step without a second one
	// to remove from tmp/. Neither name is followed if a symlink.
	if err := unix.Renameat2(dirFd(olddir), oldname, dirFd(newdir), newname, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "rename", Old: joinName(olddir, oldname), New: joinName(newdir, newname), Err: err}
	}
	return nil
}

// renameUnsupported reports whether err says that renameat2 with
// RENAME_NOREPLACE is not available: a kernel before 3.15 (ENOSYS) or a
// filesystem that does not implement the flag (EINVAL; some FUSE and
// network filesystems EOPNOTSUPP).
func renameUnsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)
}

func (osFS) DirID(dir *os.File, name string) (dirID, error) {
	var st unix.Stat_t
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Fstatat(dirFd(dir), name, &st, flags); err != nil {
		return dirID{}, &fs.PathError{Op: "stat", Path: joinName(dir, name), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return dirID{}, &fs.PathError{Op: "stat", Path: joinName(dir, name), Err: unix.ENOTDIR}
	}
	return dirID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// SyncKey asks the directory, through its O_PATH descriptor (fstatfs
// and fstat work on one), what SharedSyncKey asks of a file: a file made
// in it is on its filesystem.
func (osFS) SyncKey(dir *os.File) (uint64, bool) { return durable.SharedSyncKey(int(dir.Fd())) }

func (osFS) Link(olddir *os.File, oldname string, newdir *os.File, newname string) error {
	// Flags 0: a symlink at oldname is not followed, and newname is
	// never followed.
	if err := unix.Linkat(dirFd(olddir), oldname, dirFd(newdir), newname, 0); err != nil {
		return &os.LinkError{Op: "link", Old: joinName(olddir, oldname), New: joinName(newdir, newname), Err: err}
	}
	return nil
}

func (osFS) SyncDir(dir *os.File) error {
	return durable.SyncDirFd(int(dir.Fd()), dir.Name())
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
