//go:build unix

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/internal/durable"
	"github.com/popfetch/popfetch/rcfile"
)

// sourceFile is a message file popfetch reroute delivers and then
// removes: read through a descriptor of its directory, so that what is
// removed is the file that was read, in the directory that was read.
type sourceFile struct {
	path string
	dir  *os.File
	base string
	st   unix.Stat_t // the file's status when it was read
	data []byte
}

// openSource reads the message file at path, at most max bytes. No
// component of the path may be a symbolic link, and every directory on
// the way must belong to root, the caller or owner (the user of the
// account's state directory, the daemon's, who writes the postmaster's
// Maildir; -1 for none): reroute runs as root and removes the file it
// read, so a link or a directory another user controls would let that
// user make it deliver, and then remove, a file of root's (or swap the
// file between the read and the removal). The directories are opened one
// by one with O_NOFOLLOW, so what is checked is what is used.
func openSource(path string, max int64, owner int) (*sourceFile, error) {
	dirPath, base := filepath.Split(path)
	if dirPath == "" {
		dirPath = "."
	}
	if base == "" || base == "." || base == ".." {
		return nil, errors.New("not a message file")
	}
	if err := inMaildirTmp(dirPath); err != nil {
		return nil, err
	}
	dfd, err := openDirNoFollow(dirPath, owner)
	if err != nil {
		return nil, err
	}
	s := &sourceFile{path: path, dir: os.NewFile(uintptr(dfd), filepath.Clean(dirPath)), base: base}
	fd, err := openRetry(func() (int, error) {
		// O_NONBLOCK: a FIFO planted there must not hang the open.
		return unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		s.close()
		if errors.Is(err, unix.ELOOP) {
			return nil, errors.New("is a symbolic link; give the path of the message file itself")
		}
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if err := unix.Fstat(fd, &s.st); err != nil {
		s.close()
		return nil, err
	}
	if s.st.Mode&unix.S_IFMT != unix.S_IFREG {
		s.close()
		return nil, errors.New("not a regular file")
	}
	if s.st.Size > max {
		s.close()
		return nil, fmt.Errorf("%d bytes, larger than the %d a message of this account may have", s.st.Size, max)
	}
	s.data, err = io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(s.data)) > max {
		err = fmt.Errorf("grew past the %d bytes a message of this account may have while being read", max)
	}
	if err == nil && int64(len(s.data)) != s.st.Size {
		err = errors.New("changed while being read (is it still being written?)")
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// openDirNoFollow opens the directory dir one component at a time from
// "/" (or the working directory), never following a symbolic link, and
// refuses a directory on the way that belongs to another user than root,
// the caller or owner (-1: none).
func openDirNoFollow(dir string, owner int) (int, error) {
	start := "."
	if filepath.IsAbs(dir) {
		start = "/"
	}
	fd, err := openRetry(func() (int, error) {
		return unix.Open(start, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: start, Err: err}
	}
	walked := start
	if err := checkDirOwner(fd, walked, owner); err != nil {
		unix.Close(fd)
		return -1, err
	}
	for _, c := range strings.Split(filepath.Clean(dir), "/") {
		if c == "" || c == "." {
			continue
		}
		walked = filepath.Join(walked, c)
		next, err := openRetry(func() (int, error) {
			return unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		})
		if err != nil {
			// Linux says ELOOP for a link, some systems ENOTDIR or
			// EMLINK: look at what is there.
			var st unix.Stat_t
			link := unix.Fstatat(fd, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
			unix.Close(fd)
			if link {
				return -1, fmt.Errorf("%s is a symbolic link, which reroute does not follow; give the real path (see realpath(1))", walked)
			}
			return -1, &os.PathError{Op: "open", Path: walked, Err: err}
		}
		unix.Close(fd)
		fd = next
		if err := checkDirOwner(fd, walked, owner); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// checkDirOwner refuses the open directory fd (named name) if it belongs
// to another user than root, the caller or owner.
func checkDirOwner(fd int, name string, owner int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Uid == 0 || int(st.Uid) == os.Geteuid() || owner >= 0 && int(st.Uid) == owner {
		return nil
	}
	return fmt.Errorf("the directory %s belongs to uid %d, neither root, nor the user reroute runs as, nor the owner of the account's state directory: that user could swap the file reroute reads and removes; move the message to a directory of yours first", name, st.Uid)
}

// stateOwner is the uid of the owner of account a's state directory (the
// user the daemon runs as), or -1 if it cannot be told.
func stateOwner(a *rcfile.Account) int {
	fi, err := os.Stat(a.StateDir)
	if err != nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// remove unlinks the file openSource read, if its name still holds that
// file, and fsyncs the directory, so that a crash after remove returned
// cannot bring it back.
func (s *sourceFile) remove() error {
	dfd := int(s.dir.Fd())
	var st unix.Stat_t
	err := unix.Fstatat(dfd, s.base, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return errGone
	case err != nil:
		return err
	case st.Dev != s.st.Dev || st.Ino != s.st.Ino:
		return errReplaced
	case st.Size != s.st.Size || st.Mtim != s.st.Mtim || st.Ctim != s.st.Ctim:
		return errChanged
	}
	if err := unix.Unlinkat(dfd, s.base, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return errGone
		}
		return err
	}
	if err := durable.SyncDirFile(s.dir); err != nil {
		return fmt.Errorf("removed, but after a crash it may come back (a second copy for the user at worst): %w", err)
	}
	return nil
}

func (s *sourceFile) close() { s.dir.Close() }

// openListed opens a file popfetch postmaster lists: never through a
// symbolic link (O_NOFOLLOW) and without blocking on a FIFO (O_NONBLOCK).
func openListed(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, errors.New("is a symbolic link")
	}
	return f, err
}

func openRetry(open func() (int, error)) (int, error) {
	for {
		fd, err := open()
		if err != unix.EINTR {
			return fd, err
		}
	}
}
