//go:build linux

package deliver

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

func TestValidFolder(t *testing.T) {
	tests := []struct {
		name string
		want string // "" valid, else a piece of the error
	}{
		{"Junk", ""},
		{"Lists.dev", ""},
		{"Lists.dev.announce", ""},
		{"Sent Items", ""},
		{"a-b_c+d", ""},
		{"inboxes", ""},
		{strings.Repeat("x", MaxFolderLen), ""},
		{"", "empty"},
		{strings.Repeat("x", MaxFolderLen+1), "longer than"},
		{".Junk", "starts with a dot"},
		{"..", "starts with a dot"},
		{"Lists/dev", "contains '/'"},
		{"../etc", "starts with a dot"},
		{"a..b", "empty level"},
		{"Junk.", "empty level"},
		{"a\x00b", "control character"},
		{"a\nb", "control character"},
		{"a\x7fb", "control character"},
		{"Entwürfe", "printable ASCII"},
		{"A&B", "'&'"},
		{"INBOX", "inbox is the Maildir"},
		{"inbox.sub", "inbox is the Maildir"},
	}
	for _, tt := range tests {
		err := ValidFolder(tt.name)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidFolder(%q) = %v; want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrBadFolder)):
			t.Errorf("ValidFolder(%q) = %v; want an ErrBadFolder saying %q", tt.name, err, tt.want)
		}
	}
}

// A copy for a folder lands in the Maildir++ folder's new/, which is
// created with its maildirfolder marker and tmp/, new/, cur/ (and the
// Maildir's own, for readers to see a Maildir), each new directory and
// the marker followed by an fsync of their parent before the copy is
// written; the inbox stays empty.
func TestMaildirFolderDeliver(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "Maildir")
	r := &recFS{t: t}
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: r, Folder: "Lists.dev"})
	closeAtEnd(t, d)
	m := testMessage(100)
	if errs := d.Deliver(context.Background(), m, "", []Recipient{{}}, nil); errs[0] != nil {
		t.Fatal(errs[0])
	}
	want := []string{
		"mkdir Maildir", "syncdir " + filepath.Base(root),
		"mkdir tmp", "syncdir Maildir",
		"mkdir new", "syncdir Maildir",
		"mkdir cur", "syncdir Maildir",
		"mkdir .Lists.dev", "syncdir Maildir",
		"create .Lists.dev", "close .Lists.dev", "syncdir .Lists.dev",
		"mkdir tmp", "syncdir .Lists.dev",
		"mkdir new", "syncdir .Lists.dev",
		"mkdir cur", "syncdir .Lists.dev",
		"create tmp",
	}
	if len(r.ops) < len(want) || !slicesEqual(r.ops[:len(want)], want) {
		t.Errorf("operations = %q; want them to start %q", r.ops, want)
	}
	folder := filepath.Join(dir, ".Lists.dev")
	wantClean(t, folder, 1)
	wantClean(t, dir, 0)
	if fi, err := os.Lstat(filepath.Join(folder, "maildirfolder")); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Errorf("maildirfolder marker: %v, %v; want an empty file", fi, err)
	}
	for _, p := range []string{folder, filepath.Join(folder, "cur"), filepath.Join(dir, "cur")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want a directory of mode 0700", p, fi, err)
		}
	}
	files := delivertest.MaildirFiles(t, folder, "new")
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), lf(string(m.Raw))) {
		t.Error("the folder's copy is not the message")
	}

	// A second Maildir target for the same folder (a fresh process):
	// everything exists, nothing is created, the marker is left alone.
	r = &recFS{t: t}
	d2 := NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: r, Folder: "Lists.dev"})
	closeAtEnd(t, d2)
	if errs := d2.Deliver(context.Background(), m, "", []Recipient{{}}, nil); errs[0] != nil {
		t.Fatal(errs[0])
	}
	for _, op := range r.ops {
		if strings.HasPrefix(op, "mkdir") || op == "close .Lists.dev" || op == "syncdir .Lists.dev" {
			t.Errorf("existing folder: %s", op)
		}
	}
	wantClean(t, folder, 2)
}

// A failure creating the folder or its marker is temporary, delivers
// nothing, and the next copy tries again.
func TestMaildirFolderFailures(t *testing.T) {
	for _, op := range []string{"mkdir .Junk", "create .Junk", "syncdir .Junk"} {
		t.Run(op, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "Maildir")
			makeMaildir(t, dir)
			r := &recFS{t: t, fail: map[string]error{op: errors.New("injected")}}
			d := NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: r, Folder: "Junk"})
			closeAtEnd(t, d)
			de := wantTemporary(t, d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0])
			if !strings.Contains(de.Target, ".Junk") {
				t.Errorf("target %q does not name the folder", de.Target)
			}
			wantClean(t, dir, 0)
			delete(r.fail, op)
			if errs := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil); errs[0] != nil {
				t.Fatal(errs[0])
			}
			wantClean(t, filepath.Join(dir, ".Junk"), 1)
			if _, err := os.Lstat(filepath.Join(dir, ".Junk", "maildirfolder")); err != nil {
				t.Errorf("marker missing after the retry: %v", err)
			}
		})
	}
	// An invalid name (the rc file refuses it first) is a temporary
	// failure: the message waits on the server.
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h", Folder: "../x"})
	de := wantTemporary(t, d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0])
	if !errors.Is(de, ErrBadFolder) {
		t.Errorf("error %v does not wrap ErrBadFolder", de)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Maildir created for an invalid folder: %v", err)
	}
}

// A folder that is a symlink is refused as tmp/ is (temporary, nothing
// written through it), and one replaced by a symlink after it was cached
// is noticed by the cache's check.
func TestMaildirFolderSymlink(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "Maildir")
	makeMaildir(t, dir)
	elsewhere := filepath.Join(base, "elsewhere")
	makeMaildir(t, elsewhere)
	if err := os.Symlink(elsewhere, filepath.Join(dir, ".Junk")); err != nil {
		t.Fatal(err)
	}
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h", Folder: "Junk"})
	closeAtEnd(t, d)
	de := wantTemporary(t, d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0])
	if !errors.Is(de, errSymlink) {
		t.Errorf("error %v; want errSymlink", de)
	}
	wantClean(t, elsewhere, 0)

	// Now a real folder, cached, then swapped for the symlink.
	if err := os.Remove(filepath.Join(dir, ".Junk")); err != nil {
		t.Fatal(err)
	}
	if errs := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if err := os.Rename(filepath.Join(dir, ".Junk"), filepath.Join(base, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, ".Junk")); err != nil {
		t.Fatal(err)
	}
	wantTemporary(t, d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0])
	wantClean(t, elsewhere, 0)
	wantClean(t, filepath.Join(base, "old"), 1)
}

// A folder removed after it was cached is created again, marker and all.
func TestMaildirFolderRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h", Folder: "Junk"})
	closeAtEnd(t, d)
	for i := range 2 {
		if errs := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil); errs[0] != nil {
			t.Fatal(errs[0])
		}
		wantClean(t, filepath.Join(dir, ".Junk"), 1)
		if _, err := os.Lstat(filepath.Join(dir, ".Junk", "maildirfolder")); err != nil {
			t.Errorf("delivery %d: marker: %v", i, err)
		}
		if err := os.RemoveAll(filepath.Join(dir, ".Junk")); err != nil {
			t.Fatal(err)
		}
	}
}

// The folder, used through a multidrop template, is the user's Maildir's.
func TestMaildirFolderTemplate(t *testing.T) {
	base := t.TempDir()
	d := NewMaildir(filepath.Join(base, "{user}", "Maildir"), MaildirOptions{LocalHost: "h", Folder: "Junk"})
	closeAtEnd(t, d)
	errs := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{User: "ann"}, {User: "bob"}}, nil)
	checkResults(t, errs, "", "")
	for _, u := range []string{"ann", "bob"} {
		wantClean(t, filepath.Join(base, u, "Maildir", ".Junk"), 1)
		wantClean(t, filepath.Join(base, u, "Maildir"), 0)
	}
}

// Through a {user} template as root, the folder, its marker, its tmp/,
// new/, cur/ and the copy belong to the user, as the inbox's do.
func TestMaildirFolderOwnedByUser(t *testing.T) {
	me := func(name string) (*user.User, error) {
		return &user.User{Username: name, Uid: "4242", Gid: "4343"}, nil
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can give files away")
	}
	base := t.TempDir()
	d := NewMaildir(filepath.Join(base, "{user}", "Maildir"), MaildirOptions{LocalHost: "h", asRoot: true, lookupUser: me, Folder: "Junk"})
	closeAtEnd(t, d)
	checkResults(t, d.Deliver(context.Background(), testMessage(100), "", []Recipient{{User: "joe"}}, nil), "")
	md := filepath.Join(base, "joe", "Maildir")
	folder := filepath.Join(md, ".Junk")
	paths := []string{md, folder, filepath.Join(folder, "maildirfolder")}
	for _, sub := range []string{"tmp", "new", "cur"} {
		paths = append(paths, filepath.Join(md, sub), filepath.Join(folder, sub))
	}
	paths = append(paths, delivertest.MaildirFiles(t, folder, "new")...)
	for _, p := range paths {
		if u, g := ownerOf(t, p); u != 4242 || g != 4343 {
			t.Errorf("%s owned by %d:%d; want the user's 4242:4343", p, u, g)
		}
	}
}
