//go:build linux

package deliver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// killFS stops the delivering goroutine (runtime.Goexit: nothing after
// the stop runs, as when the process is killed there) when the Maildir
// reaches the operation stop, before that operation happens.
type killFS struct {
	osFS
	stop   string // "rename", "link", "syncdir" or "remove"
	link   bool   // renameat2 unsupported: the link fallback
	killed bool
}

func (k *killFS) at(op string) {
	if op == k.stop {
		k.killed = true
		runtime.Goexit()
	}
}

func (k *killFS) Rename(olddir *os.File, oldname string, newdir *os.File, newname string) error {
	if k.link {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.ENOSYS}
	}
	k.at("rename")
	return k.osFS.Rename(olddir, oldname, newdir, newname)
}

func (k *killFS) Link(olddir *os.File, oldname string, newdir *os.File, newname string) error {
	k.at("link")
	return k.osFS.Link(olddir, oldname, newdir, newname)
}

func (k *killFS) SyncDir(dir *os.File) error {
	if filepath.Base(dir.Name()) == "new" {
		k.at("syncdir")
	}
	return k.osFS.SyncDir(dir)
}

func (k *killFS) Remove(dir *os.File, name string) error {
	k.at("remove")
	return k.osFS.Remove(dir, name)
}

// A delivery killed at each point of Commit, on both paths (renameat2 and
// the link fallback): new/ holds only complete copies, and what recovery
// asks after a crash (fetch resolves intents with Committed,
// ReadCommitted and SyncCommitted) tells a copy that made it into new/
// from one that did not. Committed must not miss a copy renamed before
// the kill: the intent would be dropped and the message fetched again
// (a duplicate); nor find one that is not there, which would record a
// message never delivered.
//
// Power failure: the file was fsynced before any name for it appeared in
// new/, so whichever of the unsynced directory changes (the rename or
// link, the removal of the tmp name) a power failure undoes, what is left
// is one of the states checked here: the copy in tmp/ only (as killed
// before the move), or complete in new/.
func TestMaildirCommitKilled(t *testing.T) {
	tests := []struct {
		name      string
		fs        *killFS
		committed bool // the copy is in new/
		tmpLeft   bool // and a name of it is still in tmp/
	}{
		{"rename: after the file fsync, before the rename", &killFS{stop: "rename"}, false, true},
		{"rename: after the rename, before the fsync of new/", &killFS{stop: "syncdir"}, true, false},
		{"link: after the file fsync, before the link", &killFS{stop: "link", link: true}, false, true},
		{"link: after the link, before the fsync of new/", &killFS{stop: "syncdir", link: true}, true, true},
		{"link: after the fsync of new/, before the tmp name is removed", &killFS{stop: "remove", link: true}, true, true},
	}
	// The same for a copy into a Maildir++ folder, whose intent names
	// the folder's new/.
	for _, folder := range []string{"", "Lists.dev"} {
		for _, tt := range tests {
			tt.fs = &killFS{stop: tt.fs.stop, link: tt.fs.link}
			name := tt.name
			if folder != "" {
				name = "folder " + folder + ": " + name
			}
			t.Run(name, func(t *testing.T) { commitKilled(t, folder, tt.fs, tt.committed, tt.tmpLeft) })
		}
	}
}

// commitKilled is one case of TestMaildirCommitKilled.
func commitKilled(t *testing.T, folder string, kfs *killFS, committed, tmpLeft bool) {
	tt := struct {
		fs                 *killFS
		committed, tmpLeft bool
	}{kfs, committed, tmpLeft}
	root := filepath.Join(t.TempDir(), "Maildir")
	makeMaildir(t, root)
	dir := root
	if folder != "" {
		dir = filepath.Join(root, "."+folder)
	}
	d := NewMaildir(root, MaildirOptions{LocalHost: "h", fs: tt.fs, Folder: folder})
	m := testMessage(10 << 10)
	p, err := d.Prepare(context.Background(), m, "", Recipient{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	intent := p.Path() // what the session records before Commit
	if got := filepath.Dir(intent); got != filepath.Join(dir, "new") {
		t.Fatalf("intent in %s; want %s", got, filepath.Join(dir, "new"))
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		done <- p.Commit()
	}()
	if err, returned := <-done; returned || !tt.fs.killed {
		t.Fatalf("Commit returned %v; want it killed at %s", err, tt.fs.stop)
	}

	// new/ holds complete copies only.
	for _, n := range delivertest.Names(t, filepath.Join(dir, "new")) {
		b, err := readCommitted(filepath.Join(dir, "new", n))
		if err != nil {
			t.Errorf("new/%s: %v", n, err)
		} else if !bytes.HasSuffix(b, []byte(lf(string(m.Raw)))) {
			t.Errorf("new/%s is not the complete copy", n)
		}
	}
	if got := Committed(intent); got != tt.committed {
		t.Fatalf("Committed(intent) = %v; want %v", got, tt.committed)
	}
	if got := len(delivertest.Names(t, filepath.Join(dir, "tmp"))); got != map[bool]int{false: 0, true: 1}[tt.tmpLeft] {
		t.Errorf("tmp/ holds %d files; want a name left there: %v", got, tt.tmpLeft)
	}
	if !tt.committed {
		if _, err := readCommitted(intent); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadCommitted of a copy never moved = %v; want not exist", err)
		}
		return
	}
	b, err := readCommitted(intent)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte(lf(string(m.Raw)))) {
		t.Error("ReadCommitted: not the copy")
	}
	if err := SyncCommitted(intent); err != nil {
		t.Errorf("SyncCommitted: %v", err)
	}
	// A mail reader that moved it to cur/ meanwhile.
	cur := filepath.Join(dir, "cur", filepath.Base(intent)+":2,S")
	if err := os.Rename(intent, cur); err != nil {
		t.Fatal(err)
	}
	if !Committed(intent) {
		t.Error("Committed after the move to cur/ = false")
	}
	if b, err := readCommitted(intent); err != nil || !bytes.HasSuffix(b, []byte(lf(string(m.Raw)))) {
		t.Errorf("ReadCommitted after the move to cur/ = %v", err)
	}
	if err := SyncCommitted(intent); err != nil {
		t.Errorf("SyncCommitted after the move to cur/: %v", err)
	}
}

// readCommitted reads the whole copy OpenCommitted finds at path.
func readCommitted(path string) ([]byte, error) {
	r, err := OpenCommitted(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}
