package deliver

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// waitExited blocks until process pid has exited, without reaping it
// (waitid with WNOWAIT), so that its pid stays reserved until cmd.Wait.
func waitExited(pid int) error {
	const pPID = 1     // idtype_t P_PID
	var info [128]byte // siginfo_t, unused
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if e != syscall.EINTR {
			if e != 0 {
				return e
			}
			return nil
		}
	}
}

// newCopyFile returns an anonymous file for one MDA copy: a memfd
// (memfd_create(2)), which has no name in any directory, so nobody else can
// open or change it and nothing is left behind when popfetch dies. It is
// created with sealing allowed, for sealCopy. Where memfd_create is
// unavailable (old kernel, seccomp) it falls back to an unlinked temporary
// file.
func newCopyFile() (*os.File, error) {
	fd, err := unix.MemfdCreate("popfetch-mda-copy", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return newUnlinkedTemp()
	}
	return os.NewFile(uintptr(fd), "memfd:popfetch-mda-copy"), nil
}

// sealCopy forbids every further change of the copy's content
// (fcntl(2) F_ADD_SEALS): the MDA gets it on a descriptor that could
// otherwise write. A plain file (the fallback) cannot be sealed, which is
// fine: it is 0600, unlinked and the MDA runs as popfetch's user anyway.
func sealCopy(f *os.File) {
	_, _ = unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL)
}

// markUnread sets the copy's access time to the epoch, so that readAny can
// tell afterwards whether anything read it. The offset alone cannot:
// dovecot-lda reads a regular-file stdin with pread(2), which leaves the
// offset at 0 (checked with strace against dovecot 2.3).
func markUnread(f *os.File) error {
	ts := [2]unix.Timespec{{Sec: 0, Nsec: 0}, {Nsec: unix.UTIME_OMIT}}
	// utimensat(fd, NULL, times, 0) changes the file fd refers to.
	_, _, e := syscall.Syscall6(unix.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// readAny reports whether the copy was read (read, pread or mmap) since
// markUnread: each of them sets the access time. A memfd's internal mount
// updates it on every access; a fallback temporary file on a "noatime"
// mount never does, which makes an MDA that uses pread look as if it did
// not read its input: a temporary failure, so the message stays on the
// server until the admin notices, never a loss.
func readAny(f *os.File) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return true // unknown: the offset check stays in force
	}
	return st.Atim.Sec != 0 || st.Atim.Nsec != 0
}
