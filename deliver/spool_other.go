//go:build !linux

package deliver

import "errors"

// openTmpfile: O_TMPFILE is Linux only; createSpoolFile falls back to a
// name created exclusively and removed at once.
func openTmpfile(dfd int) (int, error) { return -1, errors.ErrUnsupported }
