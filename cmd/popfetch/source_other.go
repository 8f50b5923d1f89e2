//go:build !unix

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/popfetch/popfetch/internal/durable"
	"github.com/popfetch/popfetch/rcfile"
)

// sourceFile is a message file popfetch reroute delivers and then removes
// (see source_unix.go); without openat(2) it is found by its path again.
type sourceFile struct {
	path string
	fi   fs.FileInfo
	data []byte
}

func openSource(path string, max int64, owner int) (*sourceFile, error) {
	if err := inMaildirTmp(filepath.Dir(path)); err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, errors.New("is a symbolic link; give the path of the message file itself")
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ofi, err := f.Stat()
	if err != nil || !os.SameFile(fi, ofi) {
		return nil, errors.New("changed while being opened")
	}
	if ofi.Size() > max {
		return nil, fmt.Errorf("%d bytes, larger than the %d a message of this account may have", ofi.Size(), max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("grew past the %d bytes a message of this account may have while being read", max)
	}
	if err != nil {
		return nil, err
	}
	return &sourceFile{path: path, fi: ofi, data: data}, nil
}

func (s *sourceFile) remove() error {
	fi, err := os.Lstat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errGone
	case err != nil:
		return err
	case !os.SameFile(fi, s.fi):
		return errReplaced
	case fi.Size() != s.fi.Size() || !fi.ModTime().Equal(s.fi.ModTime()):
		return errChanged
	}
	if err := os.Remove(s.path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errGone
		}
		return err
	}
	if err := durable.SyncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("removed, but after a crash it may come back (a second copy for the user at worst): %w", err)
	}
	return nil
}

func (s *sourceFile) close() {}

// stateOwner: without Unix owners there is none (see source_unix.go).
func stateOwner(*rcfile.Account) int { return -1 }

// openListed opens a file popfetch postmaster lists (see source_unix.go).
func openListed(path string) (*os.File, error) { return os.Open(path) }
