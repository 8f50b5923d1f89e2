//go:build !linux

package deliver

import (
	"errors"
	"os"
)

// waitExited is only implemented on Linux (waitid with WNOWAIT). Without
// it the MDA's process group is not killed after a normal exit: killing a
// group whose leader has been reaped could hit a reused group id.
func waitExited(pid int) error {
	return errors.ErrUnsupported
}

// newCopyFile returns an unlinked temporary file for one MDA copy (there is
// no memfd outside Linux).
func newCopyFile() (*os.File, error) { return newUnlinkedTemp() }

func sealCopy(*os.File) {}

func markUnread(*os.File) error { return nil }

// readAny cannot tell outside Linux; only the offset check applies.
func readAny(*os.File) bool { return true }
