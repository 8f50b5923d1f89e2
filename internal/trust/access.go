package trust

import "golang.org/x/sys/unix"

// Access modes for EffectiveAccess.
const (
	R = unix.R_OK
	W = unix.W_OK
	X = unix.X_OK
)

// EffectiveAccess is access(2) for the effective user and groups of this
// process (AT_EACCESS), the ones its file operations use: whether popfetch
// may read, write or search/execute path (mode: R, W, X or'ed). It answers
// from the permission bits, ACLs and a read-only mount, without opening or
// creating anything, so `popfetch check` can ask it before a poll would
// fail. Root passes every W test except on a read-only file system.
func EffectiveAccess(path string, mode uint32) error {
	return unix.Faccessat(unix.AT_FDCWD, path, mode, unix.AT_EACCESS)
}
