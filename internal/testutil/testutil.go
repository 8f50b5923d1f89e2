// Package testutil holds the file-system fixtures that tests of several
// packages share: a private directory, a file with an exact mode, and
// another user to own files. Only _test.go files import it, so the
// popfetch binary links none of it.
package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// Nobody is the uid and gid tests give files that must belong to someone
// else (nobody/nogroup on Debian).
const Nobody = 65534

// NeedRoot skips a test that must chown files to another user.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
}

// PrivateDir is a fresh 0700 directory whose own ancestors are trusted
// (t.TempDir is under the sticky /tmp, or wherever TMPDIR points).
func PrivateDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WriteFile creates name in dir with exactly the given mode (chmod after
// create, because the umask would mask the mode given to os.WriteFile)
// and returns its path.
func WriteFile(t testing.TB, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}
