//go:build unix

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/internal/durable"
)

// sourceFile is a message file popfetch reroute delivers and then
// removes: read through a descriptor of its directory, so that what is
// removed is the file that was read, in the directory that was read.
type sourceFile struct {
	path string
	dir  *os.File
	base string
	ino  uint64
	dev  uint64
	data []byte
}

// openSource reads the message file at path, at most max bytes. Its last
// component must be a regular file, not a symbolic link (O_NOFOLLOW): the
// path names the message itself, in the postmaster's Maildir, and a link
// there would make reroute deliver, and then remove the link to, a file
// of someone else's choosing. The directories on the way are the
// caller's and are followed.
func openSource(path string, max int64) (*sourceFile, error) {
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
	dfd, err := openRetry(func() (int, error) {
		return unix.Open(dirPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Clean(dirPath), Err: err}
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
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		s.close()
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		s.close()
		return nil, errors.New("not a regular file")
	}
	if st.Size > max {
		s.close()
		return nil, fmt.Errorf("%d bytes, larger than the %d a message of this account may have", st.Size, max)
	}
	s.dev, s.ino = uint64(st.Dev), uint64(st.Ino)
	s.data, err = io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(s.data)) > max {
		err = fmt.Errorf("grew past the %d bytes a message of this account may have while being read", max)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
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
	case uint64(st.Dev) != s.dev || uint64(st.Ino) != s.ino:
		return errReplaced
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

func openRetry(open func() (int, error)) (int, error) {
	for {
		fd, err := open()
		if err != unix.EINTR {
			return fd, err
		}
	}
}
