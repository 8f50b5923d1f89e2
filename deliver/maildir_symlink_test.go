package deliver

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// nobody returns the uid and gid of "nobody" for files another local user
// owns, or -1 when there is no such user or popfetch is not root: the
// symlinks in these tests are then the test's own, which changes nothing
// for O_NOFOLLOW (it refuses a symlink whoever owns it). popfetch itself
// runs as root in the case that matters (the system daemon writing into
// users' directories), which is how the tests run in CI.
func nobody(t *testing.T) (int, int) {
	u, err := user.Lookup("nobody")
	if err != nil || os.Geteuid() != 0 {
		return -1, -1
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// symlinkAs makes a symlink owned by another local user where possible,
// as that user would have made it in a directory of their own.
func symlinkAs(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if uid, gid := nobody(t); uid >= 0 {
		if err := os.Lchown(link, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}

// maildirAndElsewhere makes a Maildir and, beside it, the empty directory
// a symlink is to point to.
func maildirAndElsewhere(t *testing.T) (dir, elsewhere string) {
	t.Helper()
	root := t.TempDir()
	dir = filepath.Join(root, "Maildir")
	makeMaildir(t, dir)
	elsewhere = filepath.Join(root, "elsewhere")
	if err := os.Mkdir(elsewhere, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir, elsewhere
}

// A tmp/, new/ or cur/ that is a symlink is refused, as a temporary failure
// naming it; nothing is written where it points. A Maildir root that is a
// symlink (the admin's choice) is fine.
func TestMaildirSymlinkedSubdir(t *testing.T) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		t.Run(sub, func(t *testing.T) {
			dir, elsewhere := maildirAndElsewhere(t)
			if err := os.Remove(filepath.Join(dir, sub)); err != nil {
				t.Fatal(err)
			}
			symlinkAs(t, elsewhere, filepath.Join(dir, sub))
			d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
			de := wantTemporary(t, d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0])
			if !strings.Contains(de.Error(), filepath.Join(dir, sub)) || !strings.Contains(de.Error(), "symbolic link") {
				t.Errorf("error %q does not name the symlink %s", de.Error(), filepath.Join(dir, sub))
			}
			if got := delivertest.Names(t, elsewhere); len(got) != 0 {
				t.Errorf("the symlink's target holds %q; want nothing", got)
			}
		})
	}

	root := t.TempDir()
	real := filepath.Join(root, "real")
	makeMaildir(t, real)
	link := filepath.Join(root, "Maildir")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	d := NewMaildir(link, MaildirOptions{LocalHost: "h"})
	if err := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0]; err != nil {
		t.Fatalf("Maildir root that is a symlink: %v", err)
	}
	wantClean(t, real, 1)
}

// Below a template's fixed prefix no symlink is followed: a user directory
// (or the Maildir in it) replaced by a symlink, which its owner can do, is
// refused. The fixed prefix is the admin's and may be a symlink.
func TestMaildirTemplateSymlink(t *testing.T) {
	root := t.TempDir()
	realBase := filepath.Join(root, "vmail-real")
	if err := os.Mkdir(realBase, 0o755); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(root, "vmail")
	if err := os.Symlink(realBase, base); err != nil { // the admin's prefix
		t.Fatal(err)
	}
	elsewhere := filepath.Join(root, "etc-cron.d") // where an attacker wants a file
	if err := os.Mkdir(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	makeMaildir(t, filepath.Join(elsewhere, "Maildir"))
	d := NewMaildir(filepath.Join(base, "{domain}", "{user}", "Maildir"), MaildirOptions{LocalHost: "h"})
	deliverTo := func(user string) error {
		return d.Deliver(context.Background(), testMessage(100), "", []Recipient{{User: user, Domain: "example.com", Address: user + "@example.com"}}, nil)[0]
	}

	// Created by popfetch below the prefix: fine.
	if err := deliverTo("alice"); err != nil {
		t.Fatal(err)
	}
	wantClean(t, filepath.Join(realBase, "example.com", "alice", "Maildir"), 1)

	// The user directory replaced by a symlink.
	uid, gid := nobody(t)
	if uid >= 0 {
		os.Chown(filepath.Join(realBase, "example.com"), uid, gid)
	}
	symlinkAs(t, elsewhere, filepath.Join(realBase, "example.com", "bob"))
	// The Maildir inside a real user directory replaced by one.
	carol := filepath.Join(realBase, "example.com", "carol")
	if err := os.Mkdir(carol, 0o700); err != nil {
		t.Fatal(err)
	}
	symlinkAs(t, filepath.Join(elsewhere, "Maildir"), filepath.Join(carol, "Maildir"))
	// The domain directory itself replaced by one.
	symlinkAs(t, elsewhere, filepath.Join(realBase, "example.net"))
	for _, tc := range []struct{ user, domain, link string }{
		{"bob", "example.com", filepath.Join(base, "example.com", "bob")},
		{"carol", "example.com", filepath.Join(base, "example.com", "carol", "Maildir")},
		{"dave", "example.net", filepath.Join(base, "example.net")},
	} {
		err := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{User: tc.user, Domain: tc.domain}}, nil)[0]
		de := wantTemporary(t, err)
		if !strings.Contains(de.Error(), tc.link) || !strings.Contains(de.Error(), "symbolic link") {
			t.Errorf("%s: error %q does not name the symlink %s", tc.user, de.Error(), tc.link)
		}
	}
	for _, dir := range []string{elsewhere, filepath.Join(elsewhere, "Maildir", "new"), filepath.Join(elsewhere, "Maildir", "tmp")} {
		for _, n := range delivertest.Names(t, dir) {
			if n != "Maildir" {
				t.Errorf("%s holds %s; want nothing delivered through a symlink", dir, n)
			}
		}
	}
}

// swapFS swaps new/ for a symlink right after popfetch opened it: another
// local user winning the race between check and use. The copy still lands
// in the directory that was opened, never where the symlink points.
type swapFS struct {
	osFS
	t         *testing.T
	elsewhere string
	done      bool
}

func (s *swapFS) OpenDir(dir *os.File, name string, follow bool) (*os.File, error) {
	f, err := s.osFS.OpenDir(dir, name, follow)
	if err == nil && name == "new" && !s.done {
		s.done = true
		p := f.Name()
		if err := os.Rename(p, p+".moved"); err != nil {
			s.t.Fatal(err)
		}
		symlinkAs(s.t, s.elsewhere, p)
	}
	return f, err
}

func TestMaildirSymlinkSwapRace(t *testing.T) {
	dir, elsewhere := maildirAndElsewhere(t)
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: &swapFS{t: t, elsewhere: elsewhere}})
	if err := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0]; err != nil {
		t.Fatal(err)
	}
	if got := delivertest.Names(t, elsewhere); len(got) != 0 {
		t.Errorf("the swapped-in symlink's target holds %q; want nothing", got)
	}
	if got := delivertest.Names(t, filepath.Join(dir, "new.moved")); len(got) != 1 {
		t.Errorf("the opened new/ holds %q; want the copy", got)
	}
}
