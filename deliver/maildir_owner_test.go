//go:build linux

package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// ownerOf returns the uid and gid of path.
func ownerOf(t *testing.T, path string) (int, int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

// A multidrop Maildir that popfetch, running as root, creates for a user
// belongs to that user: from the {user} component on, tmp/, new/, cur/ and
// the message. Left to root (0700 directories, 0600 files) the user could
// not read mail that was already deleted from the server. Directories
// before {user} (here {domain}, shared by the domain's users) and the ones
// that existed already stay as they are; a routed user that is no system
// user leaves root's files, with one warning.
func TestMaildirOwnedByUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can give files away")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no system user nobody:", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	if uid == 0 {
		t.Skip("nobody is uid 0")
	}
	base := t.TempDir()
	// The test's directories, for nobody to pass through.
	for _, dir := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var logBuf bytes.Buffer
	d := NewMaildir(filepath.Join(base, "{domain}", "{user}", "Maildir"), MaildirOptions{LocalHost: "h",
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	msg := smtpMsg("Subject: x\r\n\r\nb\r\n")
	const ghost = "pf-no-such-user-7"
	errs := d.Deliver(context.Background(), msg, "", []Recipient{{User: "nobody", Domain: "example.com"}, {User: ghost, Domain: "example.com"}}, nil)
	checkResults(t, errs, "", "")

	dom := filepath.Join(base, "example.com")
	if u, g := ownerOf(t, dom); u != 0 || g != 0 {
		t.Errorf("%s (the {domain} level, shared) owned by %d:%d; want root's", dom, u, g)
	}
	if fi, err := os.Stat(dom); err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("%s: mode %v (%v); want 0711, for its users to pass through", dom, fi.Mode(), err)
	}
	home := filepath.Join(dom, "nobody")
	paths := []string{home, filepath.Join(home, "Maildir")}
	for _, sub := range []string{"tmp", "new", "cur"} {
		paths = append(paths, filepath.Join(home, "Maildir", sub))
	}
	files := delivertest.MaildirFiles(t, filepath.Join(home, "Maildir"), "new")
	if len(files) != 1 {
		t.Fatalf("new/ holds %v; want one message", files)
	}
	paths = append(paths, files...)
	for _, p := range paths {
		if u, g := ownerOf(t, p); u != uid || g != gid {
			t.Errorf("%s owned by %d:%d; want nobody's %d:%d", p, u, g, uid, gid)
		}
	}
	// The user can read the message (as nobody, through the real
	// permission checks).
	if err := readAs(t, files[0], uid, gid); err != nil {
		t.Errorf("nobody cannot read its message: %v", err)
	}

	ghostFiles := delivertest.MaildirFiles(t, filepath.Join(dom, ghost, "Maildir"), "new")
	if len(ghostFiles) != 1 {
		t.Fatalf("ghost's new/ holds %v; want one message", ghostFiles)
	}
	if u, _ := ownerOf(t, ghostFiles[0]); u != 0 {
		t.Errorf("%s owned by uid %d; want root's (no such system user)", ghostFiles[0], u)
	}
	// A second copy: no second warning, and an existing directory is not
	// given away.
	if err := os.Chown(home, 0, 0); err != nil {
		t.Fatal(err)
	}
	errs = d.Deliver(context.Background(), msg, "", []Recipient{{User: "nobody", Domain: "example.com"}, {User: ghost, Domain: "example.com"}}, nil)
	checkResults(t, errs, "", "")
	if u, _ := ownerOf(t, home); u != 0 {
		t.Errorf("existing %s was given to uid %d", home, u)
	}
	files = delivertest.MaildirFiles(t, filepath.Join(home, "Maildir"), "new")
	for _, f := range files {
		if u, g := ownerOf(t, f); u != uid || g != gid {
			t.Errorf("%s owned by %d:%d; want %d:%d", f, u, g, uid, gid)
		}
	}
	if n := strings.Count(logBuf.String(), "no system user"); n != 1 {
		t.Errorf("%d warnings about %s; want 1:\n%s", n, ghost, logBuf.String())
	}
}

// readAs reads path in a child process running as uid:gid.
func readAs(t *testing.T, path string, uid, gid int) error {
	t.Helper()
	cmd := exec.Command("/bin/cat", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// Without {user} (a single-drop Maildir, or one per domain) nothing is
// given away, and a failing owner lookup keeps the copy back.
func TestMaildirOwnerRules(t *testing.T) {
	base := t.TempDir()
	lookups := 0
	fail := func(string) (*user.User, error) { lookups++; return nil, errors.New("nss down") }
	d := NewMaildir(filepath.Join(base, "{domain}", "Maildir"), MaildirOptions{LocalHost: "h", asRoot: true, lookupUser: fail})
	errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{User: "nobody", Domain: "example.com"}}, nil)
	checkResults(t, errs, "")
	if lookups != 0 {
		t.Errorf("owner looked up %d times for a template without {user}", lookups)
	}
	d = NewMaildir(filepath.Join(base, "{user}", "Maildir"), MaildirOptions{LocalHost: "h", asRoot: true, lookupUser: fail})
	errs = d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{User: "nobody"}}, nil)
	checkResults(t, errs, "temp:open maildir: look up the owner")
	if _, err := os.Stat(filepath.Join(base, "nobody")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Maildir created although its owner is unknown: %v", err)
	}
}

// The message file gets its owner through its descriptor, before it is
// written and linked into new/; a failing chown is a temporary failure
// that leaves nothing in new/.
func TestMaildirOwnerOrder(t *testing.T) {
	me := func(name string) (*user.User, error) {
		return &user.User{Username: name, Uid: strconv.Itoa(os.Getuid()), Gid: strconv.Itoa(os.Getgid())}, nil
	}
	base := t.TempDir()
	r := &recFS{t: t}
	d := NewMaildir(filepath.Join(base, "{user}", "Maildir"), MaildirOptions{LocalHost: "h", fs: r, asRoot: true, lookupUser: me})
	errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{User: "joe"}}, nil)
	checkResults(t, errs, "")
	got := strings.Join(compact(r.ops), ", ")
	if !strings.HasSuffix(got, "create tmp, chown tmp, write tmp, sync tmp, close tmp, rename tmp, syncdir new") {
		t.Errorf("ops %s; want chown right after create", got)
	}

	r = &recFS{t: t, fail: map[string]error{"chown tmp": syscall.EPERM}}
	d = NewMaildir(filepath.Join(base, "{user}", "Maildir"), MaildirOptions{LocalHost: "h", fs: r, asRoot: true, lookupUser: me})
	errs = d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{User: "ann"}}, nil)
	checkResults(t, errs, "temp:chown tmp file")
	for _, sub := range []string{"tmp", "new"} {
		if names := delivertest.Names(t, filepath.Join(base, "ann", "Maildir", sub)); len(names) != 0 {
			t.Errorf("%s/ holds %v after a failed chown", sub, names)
		}
	}
}
