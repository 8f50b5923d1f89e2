//go:build !linux

package deliver

import (
	"errors"
	"io/fs"
	"os"
)

// osFS needs Linux's O_PATH and *at system calls (see maildir_fs.go);
// elsewhere a Maildir delivery is a temporary failure.
type osFS struct{}

var errNoMaildir = errors.New("maildir delivery is only implemented on Linux")

func (osFS) OpenDir(*os.File, string, bool) (*os.File, error)            { return nil, errNoMaildir }
func (osFS) Mkdir(*os.File, string, fs.FileMode, *fileOwner) error       { return errNoMaildir }
func (osFS) OpenExcl(*os.File, string, fs.FileMode) (maildirFile, error) { return nil, errNoMaildir }
func (osFS) Link(*os.File, string, *os.File, string) error               { return errNoMaildir }
func (osFS) Rename(*os.File, string, *os.File, string) error             { return errNoMaildir }
func (osFS) DirID(*os.File, string) (dirID, error)                       { return dirID{}, errNoMaildir }
func (osFS) SyncKey(*os.File) (uint64, bool)                             { return 0, false }
func (osFS) SyncDir(*os.File) error                                      { return errNoMaildir }
func (osFS) Remove(*os.File, string) error                               { return errNoMaildir }

func cleanTmp(*os.File) error { return nil }

func renameUnsupported(error) bool { return false }
