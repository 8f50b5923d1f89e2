//go:build !linux

package deliver

import "errors"

// waitExited is only implemented on Linux (waitid with WNOWAIT). Without
// it the MDA's process group is not killed after a normal exit: killing a
// group whose leader has been reaped could hit a reused group id.
func waitExited(pid int) error {
	return errors.ErrUnsupported
}
