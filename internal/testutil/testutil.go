// Package testutil holds the fixtures that tests of several packages
// share: a private directory, a file with an exact mode, another user to
// own files, a directory and a program copy that other user can reach,
// a log buffer safe for concurrent use, and the one rule for a real part
// (dovecot, slapd, procmail, promtool) that is missing: a skip here, a
// failure in CI. Only tests and test harnesses import it, so the popfetch
// binary links none of it.
package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

// SyncBuffer is a bytes.Buffer that a logger or a child process's output
// copier may write from several goroutines while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// OpenDir is a fresh 0755 directory, removed when the test ends, that
// another user can enter (t.TempDir's parent is 0700).
func OpenDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// CopyExecutable copies the program src into dir as name, mode 0755, so
// that another user can run it, and returns the copy's path.
func CopyExecutable(t testing.TB, src, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Slow scales d, a bound on how long some work may take, for the race
// detector (which slows code down 2-20 times) and a shared machine. Use
// it for bounds that catch pathological slowness, never for a deadline
// that is itself the subject of a test.
func Slow(d time.Duration) time.Duration {
	if Race {
		return 10 * d
	}
	return d
}

// RealPartsRequired reports whether a missing real part (dovecot, slapd,
// the interop servers, procmail, promtool, fetchmail's example rc file)
// fails a test instead of skipping it: in CI (CI=true) and with
// POPFETCH_REQUIRE_DOVECOT=1, so that CI cannot pass by skipping the
// tests against real servers.
func RealPartsRequired() bool {
	return os.Getenv("POPFETCH_REQUIRE_DOVECOT") == "1" || os.Getenv("CI") == "true"
}

// Unavailable skips t saying msg (what is missing and how to install it),
// or fails it where RealPartsRequired.
func Unavailable(t testing.TB, msg string) {
	t.Helper()
	if RealPartsRequired() {
		t.Fatal(msg + " (required: CI=true or POPFETCH_REQUIRE_DOVECOT=1)")
	}
	t.Skip(msg)
}

// PromtoolCheck validates a Prometheus exposition with `promtool check
// metrics` (Debian package prometheus). Without promtool the check is
// left out, except where RealPartsRequired.
func PromtoolCheck(t testing.TB, text string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if RealPartsRequired() {
			t.Fatal("promtool not installed (Debian package prometheus)")
		}
		t.Log("promtool not installed; exposition not validated")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
