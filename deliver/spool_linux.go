package deliver

import "golang.org/x/sys/unix"

// openTmpfile creates a file without a name in the directory dfd
// (open(2) O_TMPFILE), mode 0600: nobody can open it by name, and a crash
// leaves nothing behind.
func openTmpfile(dfd int) (int, error) {
	return unix.Openat(dfd, ".", unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
}
