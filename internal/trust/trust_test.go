package trust

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/internal/testutil"
)

// TestCheckTrusted: CheckTrusted refuses a file another user can change,
// directly or by replacing it in its directory, and says how to fix it.
func TestCheckTrusted(t *testing.T) {
	t.Parallel()
	if err := CheckTrustedPath(t, "/etc/passwd"); err != nil {
		t.Skipf("this machine's own /etc is not trusted (%v); the rules cannot be tested here", err)
	}
	type setup func(t *testing.T, dir string) string
	file := func(mode os.FileMode, uid, gid int) setup {
		return func(t *testing.T, dir string) string {
			p := testutil.WriteFile(t, dir, "f", "x\n", mode)
			if uid >= 0 || gid >= 0 {
				testutil.NeedRoot(t)
				if err := os.Chown(p, uid, gid); err != nil {
					t.Fatal(err)
				}
			}
			return p
		}
	}
	dirMode := func(mode os.FileMode, uid int) setup {
		return func(t *testing.T, dir string) string {
			sub := filepath.Join(dir, "sub")
			if err := os.Mkdir(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(sub, mode); err != nil {
				t.Fatal(err)
			}
			if uid >= 0 {
				testutil.NeedRoot(t)
				if err := os.Chown(sub, uid, -1); err != nil {
					t.Fatal(err)
				}
			}
			return testutil.WriteFile(t, sub, "f", "x\n", 0o600)
		}
	}
	tests := []struct {
		name  string
		setup setup
		want  string // "" = trusted
	}{
		{"0600", file(0o600, -1, -1), ""},
		{"0644", file(0o644, -1, -1), ""},
		{"0400", file(0o400, -1, -1), ""},
		{"other-writable", file(0o602, -1, -1), "writable by every user; run \"chmod go-w "},
		{"group-writable, foreign group", file(0o620, -1, testutil.Nobody), "writable by the group nogroup; run \"chmod go-w "},
		{"owned by nobody", file(0o600, testutil.Nobody, -1), "is owned by nobody, not by root; check its content, then run \"chown root "},
		{"directory other-writable", dirMode(0o777, -1), "in the directory %s/sub, which is writable by every user, so that user can replace the file; run \"chmod go-w %[1]s/sub\""},
		{"directory group-writable, foreign group", func(t *testing.T, dir string) string {
			p := dirMode(0o770, -1)(t, dir)
			testutil.NeedRoot(t)
			if err := os.Chown(filepath.Dir(p), -1, testutil.Nobody); err != nil {
				t.Fatal(err)
			}
			return p
		}, "which is writable by the group nogroup"},
		{"directory sticky and other-writable", dirMode(0o777|os.ModeSticky, -1), ""},
		{"directory owned by nobody", dirMode(0o755, testutil.Nobody), "which is owned by nobody"},
		{"symlink into an unsafe directory", func(t *testing.T, dir string) string {
			target := dirMode(0o777, -1)(t, dir)
			link := filepath.Join(dir, "link")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "which is writable by every user"},
		{"symlink in a foreign directory", func(t *testing.T, dir string) string {
			target := testutil.WriteFile(t, dir, "f", "x\n", 0o600)
			return foreignLink(t, dir, target)
		}, "is in the directory %s/foreign, which is owned by nobody"},
		{"symlink to a symlink in a foreign directory", func(t *testing.T, dir string) string {
			target := testutil.WriteFile(t, dir, "f", "x\n", 0o600)
			link := filepath.Join(dir, "link")
			if err := os.Symlink(foreignLink(t, dir, target), link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "is in the directory %s/foreign, which is owned by nobody"},
		{"relative symlink in a trusted directory", func(t *testing.T, dir string) string {
			testutil.WriteFile(t, dir, "f", "x\n", 0o600)
			link := filepath.Join(dir, "link")
			if err := os.Symlink("../d/./f", link); err != nil {
				t.Fatal(err)
			}
			return link
		}, ""},
		{"foreign symlink in a sticky directory", func(t *testing.T, dir string) string {
			testutil.NeedRoot(t)
			target := testutil.WriteFile(t, dir, "f", "x\n", 0o600)
			sticky := filepath.Join(dir, "tmp")
			if err := os.Mkdir(sticky, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(sticky, "link")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(link, testutil.Nobody, testutil.Nobody); err != nil {
				t.Fatal(err)
			}
			return link
		}, "goes through the symbolic link %s/tmp/link, which is owned by nobody, not by root"},
		{"fifo", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "fifo")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is not a regular file"},
		{"directory itself", func(t *testing.T, dir string) string { return dir }, "is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testutil.PrivateDir(t)
			p := tt.setup(t, dir)
			err := CheckTrustedPath(t, p)
			want := tt.want
			if strings.Contains(want, "%") {
				want = fmt.Sprintf(want, dir)
			}
			switch {
			case want == "" && err != nil:
				t.Fatalf("CheckTrusted(%s) = %v; want nil", p, err)
			case want != "" && (!errors.Is(err, ErrUntrustedFile) || !strings.Contains(err.Error(), want)):
				t.Fatalf("CheckTrusted(%s) = %v; want ErrUntrustedFile containing %q", p, err, want)
			}
		})
	}
}

// foreignLink makes a symlink to target in dir/foreign, a directory
// owned by nobody, and returns its path.
func foreignLink(t *testing.T, dir, target string) string {
	t.Helper()
	testutil.NeedRoot(t)
	foreign := filepath.Join(dir, "foreign")
	if err := os.Mkdir(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(foreign, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(foreign, testutil.Nobody, testutil.Nobody); err != nil {
		t.Fatal(err)
	}
	return link
}

// CheckTrustedPath opens p without blocking (p may be a FIFO) and checks
// it with CheckTrusted.
func CheckTrustedPath(t *testing.T, p string) error {
	t.Helper()
	return checkTrustedPath(t, systemDB(), p)
}

// checkTrustedPath is CheckTrustedPath with the account files of db.
func checkTrustedPath(t *testing.T, db userDB, p string) error {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return db.checkTrusted(f, p)
}

// TestPrivateGroup: group write is harmless only where the group is the
// owner's private group: its primary group, named as the user, nobody
// else's primary group, and listing nobody else.
func TestPrivateGroup(t *testing.T) {
	t.Parallel()
	testutil.NeedRoot(t) // the file must belong to root, whose primary group is 0
	dir := testutil.PrivateDir(t)
	p := testutil.WriteFile(t, dir, "f", "x\n", 0o660)
	const rootPw = "root:x:0:0:root:/root:/bin/sh\n"
	for _, tt := range []struct {
		passwd, groups string
		ok             bool
	}{
		{rootPw, "root:x:0:\n", true},
		{rootPw, "root:x:0:root\n", true},
		{rootPw, "daemon:x:1:\nroot:x:0:root,eve\n", false},
		{rootPw, "daemon:x:1:\n", false}, // not listed: not known to be private
		{rootPw, "wheel:x:0:\n", false},  // not named as the user
		// Another user with the same primary group (users:x:100: on
		// most systems) can write it although /etc/group lists nobody.
		{rootPw + "eve:x:1000:0::/home/eve:/bin/sh\n", "root:x:0:\n", false},
	} {
		gf := testutil.WriteFile(t, t.TempDir(), "group", tt.groups, 0o644)
		pf := testutil.WriteFile(t, t.TempDir(), "passwd", tt.passwd, 0o644)
		err := checkTrustedPath(t, userDB{passwdFile: pf, groupFile: gf}, p)
		if (err == nil) != tt.ok {
			t.Errorf("/etc/passwd %q, /etc/group %q: CheckTrusted = %v; want ok %v", tt.passwd, tt.groups, err, tt.ok)
		}
	}
}

// TestReadTrusted: a ca_file is read only if it passes CheckTrusted.
func TestReadTrusted(t *testing.T) {
	t.Parallel()
	dir := testutil.PrivateDir(t)
	p := testutil.WriteFile(t, dir, "ca.pem", "pem\n", 0o644)
	if b, err := ReadTrusted(p); err != nil || string(b) != "pem\n" {
		t.Fatalf("ReadTrusted = %q, %v", b, err)
	}
	if err := os.Chmod(p, 0o646); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTrusted(p); !errors.Is(err, ErrUntrustedFile) {
		t.Fatalf("other-writable: ReadTrusted = %v; want ErrUntrustedFile", err)
	}
}

// TestOpenTrustedReplaced: a file replaced by rename between the open and
// the checks (popfetch's own atomic rewrites of learned routes and token
// files) is opened afresh and checked whole, so a reader racing a writer
// gets the new file; a name that keeps changing is refused. Not parallel:
// it sets the package's afterOpen hook.
func TestOpenTrustedReplaced(t *testing.T) {
	dir := testutil.PrivateDir(t)
	p := testutil.WriteFile(t, dir, "routes", "old\n", 0o600)
	n := 0
	replace := func(path string) {
		n++
		q := testutil.WriteFile(t, dir, fmt.Sprintf("new%d", n), fmt.Sprintf("new %d\n", n), 0o600)
		if err := os.Rename(q, path); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { afterOpen = nil })

	afterOpen = func(path string) {
		if n == 0 {
			replace(path)
		}
	}
	f, err := OpenTrusted(p)
	if err != nil {
		t.Fatalf("replaced once: OpenTrusted = %v; want the new file", err)
	}
	b := make([]byte, 16)
	k, _ := f.Read(b)
	f.Close()
	if got := string(b[:k]); got != "new 1\n" {
		t.Errorf("replaced once: read %q; want the replacement", got)
	}

	afterOpen = replace
	if _, err := OpenTrusted(p); !errors.Is(err, ErrUntrustedFile) || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("replaced every time: OpenTrusted = %v; want a refusal naming the replacement", err)
	}
	if n != 1+maxReplacedRetries {
		t.Errorf("replaced every time: %d opens; want %d", n-1, maxReplacedRetries)
	}
}
