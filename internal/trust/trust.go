package trust

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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
	for try := 1; ; try++ {
		f, err := OpenNonBlock(path)
		if err != nil {
			return nil, err
		}
		if afterOpen != nil {
			afterOpen(path)
		}
		err = CheckTrusted(f, path)
		if err == nil {
			return f, nil
		}
		f.Close()
		// popfetch itself replaces some trusted files atomically (the
		// learned routes, token files: a new file renamed over the old
		// one), and a replacement between the open and the check looks
		// like a swap. Open the new file and check it whole again; a
		// name that keeps changing is refused.
		if !errors.Is(err, errReplaced) || try == maxReplacedRetries {
			return nil, err
		}
	}
}

// errReplaced: the name led to another file once the checks were done
// (checkInfo). It wraps ErrUntrustedFile for callers.
var errReplaced = fmt.Errorf("replaced while popfetch checked it: %w", ErrUntrustedFile)

// afterOpen, when set by a test, runs between OpenTrusted's open and its
// checks: where a concurrent replacement of the file lands.
var afterOpen func(path string)

// maxReplacedRetries bounds OpenTrusted's attempts when the file keeps
// being replaced under it.
const maxReplacedRetries = 5

// maxTrustedRead bounds ReadTrusted: a CA bundle is a few hundred KB.
const maxTrustedRead = 16 << 20

// ReadTrusted reads the whole file at path through OpenTrusted, for a
// file popfetch hands to a library (a ca_file) rather than parses itself.
func ReadTrusted(path string) ([]byte, error) {
	f, err := OpenTrusted(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTrustedRead+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTrustedRead {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxTrustedRead)
	}
	return b, nil
}

// OpenNonBlock opens path for reading without blocking on a FIFO (which
// CheckTrusted then refuses as not a regular file); for a regular file
// O_NONBLOCK changes nothing.
func OpenNonBlock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// CheckTrusted checks the open file f, opened as path:
//
//   - it is a regular file;
//   - it is owned by the user popfetch runs as (the effective uid) or by
//     root;
//   - it is not writable by others, nor by its group unless that group is
//     the owner's private group (the user-private-group scheme of umask
//     002 systems, where group write grants nobody else anything): its
//     primary group, named as the user, the primary group of no other
//     user in /etc/passwd and with no other member in /etc/group;
//   - no POSIX ACL on it lets another user or group write it;
//   - every directory in which its name is looked up, symlinks followed
//     one by one (the directory of each link as well as the directories
//     of the file finally reached), up to /, obeys the same owner, write
//     and ACL rules, and no default ACL there grants others write,
//     except that a directory with the sticky bit (/tmp) may be writable
//     by all: there only an entry's owner can remove or rename it, so
//     nobody else can replace the file;
//   - every symlink followed is owned by root or the user popfetch runs
//     as (in a sticky directory its owner could replace it).
//
// Errors wrap ErrUntrustedFile and say how to fix the problem.
func CheckTrusted(f *os.File, path string) error {
	return systemDB().checkTrusted(f, path)
}

func (db userDB) checkTrusted(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return db.checkInfo(path, fi)
}

// CheckPath applies CheckTrusted's rules to the file path names now
// (symlinks followed), for a program about to be run or a file about to
// be named to another program. When path does not exist, the directory
// where its lookup stops and every directory above it must obey the
// directory rules, without the sticky bit's exception: then only root
// or the user popfetch runs as can create the file later, and a missing
// file is accepted (its use reports it).
func CheckPath(path string) error {
	return systemDB().checkPath(path)
}

func (db userDB) checkPath(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		_, err = db.resolveChecked(path, abs)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil {
			// Created in between: check what is there now.
			return db.checkPath(path)
		}
		return err
	}
	if err != nil {
		return err
	}
	return db.checkInfo(path, fi)
}

// CheckDir applies CheckTrusted's directory rules to the directory path
// itself (symlinks followed): it and every directory above it must be
// owned by root or the user popfetch runs as, and writable by nobody
// else, except that a directory with the sticky bit may be writable by
// all. For a directory in which popfetch creates and replaces files of
// its own (a state directory): whoever else can write there can rename
// them away or plant a symlink in their place.
func CheckDir(path string) error {
	return systemDB().checkDir(path)
}

func (db userDB) checkDir(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := db.resolveChecked(path, abs)
	if err != nil {
		return err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", path)
	}
	if p := db.untrusted(fi, true, real); p != "" {
		return fmt.Errorf("the directory %s %s: %w", path, problemFix(p, path), ErrUntrustedFile)
	}
	return nil
}

// CheckInfo is CheckTrusted for a file already stat'ed: fi is
// the file's own status (fstat or stat), path how it was named.
func CheckInfo(path string, fi fs.FileInfo) error {
	return systemDB().checkInfo(path, fi)
}

func (db userDB) checkInfo(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s): %w", path, fi.Mode().Type(), ErrUntrustedFile)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := db.resolveChecked(path, abs)
	if err != nil {
		return err
	}
	if p := db.untrusted(fi, false, real); p != "" {
		return fmt.Errorf("%s %s: %w", path, problemFix(p, path), ErrUntrustedFile)
	}
	// The name must still lead to the file checked; otherwise it was
	// replaced in between, and the directories checked are not its own.
	if rfi, err := os.Stat(real); err != nil {
		return err
	} else if !os.SameFile(rfi, fi) {
		return fmt.Errorf("%s was %w", path, errReplaced)
	}
	return nil
}

// maxLinks bounds the symbolic links followed for one name, as the
// kernel's own limit (40 on Linux) does.
const maxLinks = 40

// resolveChecked resolves the absolute name abs (given as path) the way
// the kernel does, one component at a time, and checks every directory in
// which it looks a name up and every symbolic link it follows: whoever
// can change any of them chooses which file the name leads to, not only
// whoever can change the directories of the file finally reached. It
// returns the real path. When a name on the way is missing it returns an
// error wrapping fs.ErrNotExist if the directory where the lookup stopped
// lets nobody else create it (the sticky bit's exception does not apply:
// in /tmp anybody can create a missing name), else ErrUntrustedFile.
func (db userDB) resolveChecked(path, abs string) (string, error) {
	checked := map[string]bool{}
	checkDir := func(dir string) (fs.FileInfo, error) {
		dfi, err := os.Lstat(dir)
		if err != nil {
			return nil, err
		}
		if checked[dir] {
			return dfi, nil
		}
		if p := db.untrusted(dfi, true, dir); p != "" {
			return nil, fmt.Errorf("%s is in the directory %s, which %s, so that user can replace the file; %s: %w",
				path, dir, p, fixFor(p, dir), ErrUntrustedFile)
		}
		checked[dir] = true
		return dfi, nil
	}
	cur := "/"
	rest := strings.Split(abs, "/")
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur) // cur is real: its parent was checked on the way down
			continue
		}
		dfi, err := checkDir(cur)
		if err != nil {
			return "", err
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			if p := db.untrusted(dfi, false, cur); p != "" {
				fix := fixFor(p, cur)
				if dfi.Mode()&fs.ModeSticky != 0 {
					// chmod would break /tmp for everybody else.
					fix = "create it first, or name a file in a directory nobody else can write"
				}
				return "", fmt.Errorf("%s does not exist, and the directory %s, where it would be created, %s, so that user can create it; %s: %w",
					path, cur, p, fix, ErrUntrustedFile)
			}
			return "", fmt.Errorf("%s: %w", path, err)
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		// A link cannot be changed, only replaced, which its directory
		// governs; but in a sticky directory its owner may replace it.
		if p := untrustedOwner(fi); p != "" {
			return "", fmt.Errorf("%s goes through the symbolic link %s, which %s, so that user chooses the file; check it, then run \"chown -h %s %s\": %w",
				path, next, p, userName(uint32(os.Geteuid())), shellQuote(next), ErrUntrustedFile)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return cur, nil
}

// untrustedOwner says what is wrong with fi's owner ("" if nothing).
func untrustedOwner(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	me := uint32(os.Geteuid())
	if st.Uid != 0 && st.Uid != me {
		if me == 0 {
			return fmt.Sprintf("is owned by %s, not by root", userName(st.Uid))
		}
		return fmt.Sprintf("is owned by %s, not by %s or root", userName(st.Uid), userName(me))
	}
	return ""
}

// untrusted says what is wrong with fi ("" if nothing), found at the
// real path real (for its ACLs). dir allows the sticky bit's exception.
func (db userDB) untrusted(fi fs.FileInfo, dir bool, real string) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "" // not a Unix file system view; nothing to check
	}
	if p := untrustedOwner(fi); p != "" {
		return p
	}
	perm := fi.Mode().Perm()
	if dir && fi.Mode()&fs.ModeSticky != 0 {
		return ""
	}
	if perm&0o002 != 0 {
		return "is writable by every user"
	}
	// With an access ACL the group bits are its mask, the most any
	// named user or group may get; the ACL itself says who does.
	if p := db.aclWriters(real, "system.posix_acl_access", st.Uid, st.Gid); p != "" {
		return p
	}
	if dir {
		// New entries inherit a default ACL: a file created here later
		// by root or the owner would be writable by those it names.
		if p := db.aclWriters(real, "system.posix_acl_default", st.Uid, st.Gid); p != "" {
			return p
		}
	}
	if perm&0o020 != 0 && !db.privateGroup(st.Gid, st.Uid) {
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

// userDB names the account files privateGroup reads; tests give their
// own instead of the system's.
type userDB struct {
	passwdFile, groupFile string
}

// systemDB is the system's account files.
func systemDB() userDB {
	return userDB{passwdFile: "/etc/passwd", groupFile: "/etc/group"}
}

// privateGroup says whether gid is the private group of uid in the
// user-private-group scheme: uid's primary group, named as the user, the
// primary group of no other user in passwdFile, with no other member
// listed in groupFile. A shared primary group (users, gid 100, whose
// members /etc/group does not list) is not private. A group that is not
// in groupFile (a directory service) is not known to be private, so it
// does not count.
func (db userDB) privateGroup(gid, uid uint32) bool {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil || u.Gid != strconv.FormatUint(uint64(gid), 10) {
		return false
	}
	// name:password:uid:gid:...
	others := false
	if !scanColon(db.passwdFile, func(f []string) bool {
		if len(f) >= 4 && f[3] == u.Gid && f[0] != u.Username {
			others = true
		}
		return others
	}) || others {
		return false
	}
	// name:password:gid:member,member
	private := false
	scanColon(db.groupFile, func(f []string) bool {
		if len(f) != 4 || f[2] != u.Gid {
			return false
		}
		private = f[0] == u.Username
		for _, m := range strings.Split(f[3], ",") {
			if m != "" && m != u.Username {
				private = false
			}
		}
		return true
	})
	return private
}

// scanColon calls line with the colon-separated fields of each line of
// the file name until it returns true. It returns false if the file could
// not be read whole.
func scanColon(name string, line func([]string) bool) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line(strings.Split(sc.Text(), ":")) {
			return true
		}
	}
	return sc.Err() == nil
}
