package rcfile

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrUntrustedFile marks a file popfetch refuses to read because a user
// other than the one popfetch runs as, or root, can change it: the file
// itself, or a directory on its way that lets its entry be replaced. The
// rc file names commands (mda, password_command) that popfetch runs with
// its own rights (root for a system daemon) and the daemon reloads it on
// its own, so whoever can write it can run commands as popfetch; a
// password_file or aliases_file written by another user chooses the
// credentials sent or who receives the mail. fetchmail refuses such an rc
// file too.
var ErrUntrustedFile = errors.New("file can be changed by another user")

// OpenTrusted opens path for reading and returns it only if CheckTrusted
// accepts the opened file. The check is made on the descriptor (fstat),
// so the file read is the file checked.
func OpenTrusted(path string) (*os.File, error) {
	f, err := openNonBlock(path)
	if err != nil {
		return nil, err
	}
	if err := CheckTrusted(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openNonBlock opens path for reading without blocking on a FIFO (which
// CheckTrusted then refuses as not a regular file); for a regular file
// O_NONBLOCK changes nothing.
func openNonBlock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// CheckTrusted checks the open file f, opened as path:
//
//   - it is a regular file;
//   - it is owned by the user popfetch runs as (the effective uid) or by
//     root;
//   - it is not writable by others, nor by its group unless that group is
//     the owner's private group (its primary group, with no other member
//     listed in /etc/group: the user-private-group scheme of umask 002
//     systems, where group write grants nobody else anything);
//   - every directory from its real location (symlinks resolved) up to /
//     obeys the same owner and write rules, except that a directory with
//     the sticky bit (/tmp) may be writable by all: there only an entry's
//     owner can remove or rename it, so nobody else can replace the file.
//
// Errors wrap ErrUntrustedFile and say how to fix the problem.
func CheckTrusted(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return checkTrustedInfo(path, fi)
}

// checkTrustedInfo is CheckTrusted for a file already stat'ed: fi is
// the file's own status (fstat or stat), path how it was named.
func checkTrustedInfo(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s): %w", path, fi.Mode().Type(), ErrUntrustedFile)
	}
	if p := untrusted(fi, false); p != "" {
		return fmt.Errorf("%s %s: %w", path, problemFix(p, path), ErrUntrustedFile)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	// The name must still lead to the file checked; otherwise it was
	// replaced in between, and the directories below are not its own.
	if rfi, err := os.Stat(real); err != nil {
		return err
	} else if !os.SameFile(rfi, fi) {
		return fmt.Errorf("%s was replaced while popfetch checked it: %w", path, ErrUntrustedFile)
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		dfi, err := os.Lstat(dir)
		if err != nil {
			return err
		}
		if p := untrusted(dfi, true); p != "" {
			return fmt.Errorf("%s is in the directory %s, which %s, so that user can replace the file; %s: %w",
				path, dir, p, fixFor(p, dir), ErrUntrustedFile)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// untrusted says what is wrong with fi ("" if nothing). dir allows the
// sticky bit's exception.
func untrusted(fi fs.FileInfo, dir bool) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "" // not a Unix file system view; nothing to check
	}
	me := uint32(os.Geteuid())
	if st.Uid != 0 && st.Uid != me {
		if me == 0 {
			return fmt.Sprintf("is owned by %s, not by root", userName(st.Uid))
		}
		return fmt.Sprintf("is owned by %s, not by %s or root", userName(st.Uid), userName(me))
	}
	perm := fi.Mode().Perm()
	if dir && fi.Mode()&fs.ModeSticky != 0 {
		return ""
	}
	if perm&0o002 != 0 {
		return "is writable by every user"
	}
	if perm&0o020 != 0 && !privateGroup(st.Gid, st.Uid) {
		return fmt.Sprintf("is writable by the group %s", groupName(st.Gid))
	}
	return ""
}

// problemFix joins a problem and the command that fixes it.
func problemFix(problem, path string) string {
	return problem + "; " + fixFor(problem, path)
}

// fixFor is the shell command that removes problem from path.
func fixFor(problem, path string) string {
	q := shellQuote(path)
	if strings.HasPrefix(problem, "is owned by") {
		return fmt.Sprintf("check its content, then run \"chown %s %s\"", userName(uint32(os.Geteuid())), q)
	}
	return fmt.Sprintf("run \"chmod go-w %s\"", q)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+~") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return "uid " + strconv.FormatUint(uint64(uid), 10)
}

func groupName(gid uint32) string {
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		return g.Name
	}
	return "gid " + strconv.FormatUint(uint64(gid), 10)
}

// groupFile is a variable so tests can use their own.
var groupFile = "/etc/group"

// privateGroup says whether gid is the primary group of uid and has no
// other member listed in groupFile. A group that is not in groupFile (a
// directory service) is not known to be private, so it does not count.
func privateGroup(gid, uid uint32) bool {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil || u.Gid != strconv.FormatUint(uint64(gid), 10) {
		return false
	}
	f, err := os.Open(groupFile)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// name:password:gid:member,member
		fields := strings.Split(sc.Text(), ":")
		if len(fields) != 4 || fields[2] != u.Gid {
			continue
		}
		for _, m := range strings.Split(fields[3], ",") {
			if m != "" && m != u.Username {
				return false
			}
		}
		return true
	}
	return false
}
