//go:build linux

package deliver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// A Maildir's directories are opened once and reused: further copies
// into it do not walk its path again.
func TestMaildirOpensOnce(t *testing.T) {
	r := &recFS{t: t}
	dir, d := recMaildir(t, r)
	closeAtEnd(t, d)
	for range 5 {
		if err := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0]; err != nil {
			t.Fatal(err)
		}
	}
	if r.opens != 1 {
		t.Errorf("Maildir opened %d times for 5 copies; want 1", r.opens)
	}
	wantClean(t, dir, 5)
}

// A cached Maildir that changed under popfetch is noticed before the next
// copy: renamed away (and perhaps re-created), its new/ replaced or
// removed, or swapped for a symlink. The next copy goes where a fresh
// open puts it: into the Maildir the path now names, or nowhere (a
// symlink, refused as a temporary failure). A tmp/ changed while its
// descriptor still holds a live directory is not looked up again: the
// copy passes through the tmp/ that was opened and checked, never
// through a symlink, into the new/ the path names, and the next
// Maildir (the next poll's) opens tmp/ afresh, refusing a symlink; a
// removed tmp/ is opened afresh at once.
func TestMaildirCacheNoticesChange(t *testing.T) {
	mv := func(t *testing.T, from, to string) {
		t.Helper()
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		change func(t *testing.T, dir, elsewhere string)
		// the directory holding the first copy afterwards, relative to
		// dir's parent ("": removed with it); the second goes to new/
		first   string
		refused string // the symlink the second copy must be refused for
		kept    bool   // the cached directories serve the second copy
		// the symlink a fresh Maildir (the next poll's) is refused for
		nextRefused string
	}{
		{name: "maildir renamed away", change: func(t *testing.T, dir, _ string) { mv(t, dir, dir+".old") }, first: "Maildir.old/new"},
		{name: "maildir renamed away and re-created", change: func(t *testing.T, dir, _ string) {
			mv(t, dir, dir+".old")
			makeMaildir(t, dir)
		}, first: "Maildir.old/new"},
		{name: "new/ replaced", change: func(t *testing.T, dir, _ string) {
			mv(t, filepath.Join(dir, "new"), filepath.Join(dir, "new.old"))
			if err := os.Mkdir(filepath.Join(dir, "new"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, first: "Maildir/new.old"},
		{name: "new/ renamed away", change: func(t *testing.T, dir, _ string) {
			mv(t, filepath.Join(dir, "new"), filepath.Join(dir, "new.old"))
		}, first: "Maildir/new.old"},
		{name: "new/ removed", change: func(t *testing.T, dir, _ string) {
			if err := os.RemoveAll(filepath.Join(dir, "new")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "tmp/ replaced", change: func(t *testing.T, dir, _ string) {
			mv(t, filepath.Join(dir, "tmp"), filepath.Join(dir, "tmp.old"))
			if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, first: "Maildir/new", kept: true},
		{name: "tmp/ removed", change: func(t *testing.T, dir, _ string) {
			if err := os.Remove(filepath.Join(dir, "tmp")); err != nil {
				t.Fatal(err)
			}
		}, first: "Maildir/new"},
		{name: "tmp/ removed and re-created", change: func(t *testing.T, dir, _ string) {
			if err := os.Remove(filepath.Join(dir, "tmp")); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, first: "Maildir/new"},
		{name: "removed", change: func(t *testing.T, dir, _ string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "new/ swapped for a symlink", change: func(t *testing.T, dir, elsewhere string) {
			mv(t, filepath.Join(dir, "new"), filepath.Join(dir, "new.moved"))
			symlinkAs(t, elsewhere, filepath.Join(dir, "new"))
		}, first: "Maildir/new.moved", refused: "new", nextRefused: "new"},
		{name: "tmp/ swapped for a symlink", change: func(t *testing.T, dir, elsewhere string) {
			mv(t, filepath.Join(dir, "tmp"), filepath.Join(dir, "tmp.moved"))
			symlinkAs(t, elsewhere, filepath.Join(dir, "tmp"))
		}, first: "Maildir/new", kept: true, nextRefused: "tmp"},
		{name: "tmp/ removed and a symlink in its place", change: func(t *testing.T, dir, elsewhere string) {
			if err := os.Remove(filepath.Join(dir, "tmp")); err != nil {
				t.Fatal(err)
			}
			symlinkAs(t, elsewhere, filepath.Join(dir, "tmp"))
		}, first: "Maildir/new", refused: "tmp", nextRefused: "tmp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, elsewhere := maildirAndElsewhere(t)
			r := &recFS{t: t}
			d := NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: r})
			closeAtEnd(t, d)
			deliverOne := func(d *Maildir) error {
				return d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0]
			}
			if err := deliverOne(d); err != nil {
				t.Fatal(err)
			}
			tt.change(t, dir, elsewhere)
			err := deliverOne(d)
			if want := map[bool]int{false: 2, true: 1}[tt.kept]; r.opens != want {
				t.Errorf("Maildir opened %d times; want %d", r.opens, want)
			}
			if got := delivertest.Names(t, elsewhere); len(got) != 0 {
				t.Errorf("the symlink's target holds %q; want nothing", got)
			}
			// The next poll's Maildir looks at every path afresh.
			defer func() {
				next := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
				closeAtEnd(t, next)
				err := deliverOne(next)
				if tt.nextRefused == "" {
					if err != nil {
						t.Errorf("the next poll's copy: %v", err)
					}
					return
				}
				de := wantTemporary(t, err)
				if !strings.Contains(de.Error(), filepath.Join(dir, tt.nextRefused)) || !strings.Contains(de.Error(), "symbolic link") {
					t.Errorf("the next poll's error %q does not name the symlink", de.Error())
				}
				if got := delivertest.Names(t, elsewhere); len(got) != 0 {
					t.Errorf("the symlink's target holds %q; want nothing", got)
				}
			}()
			if tt.refused != "" {
				if got := delivertest.Names(t, filepath.Join(filepath.Dir(dir), tt.first)); len(got) != 1 {
					t.Errorf("%s = %q; want the first copy", tt.first, got)
				}
				de := wantTemporary(t, err)
				if !strings.Contains(de.Error(), filepath.Join(dir, tt.refused)) || !strings.Contains(de.Error(), "symbolic link") {
					t.Errorf("error %q does not name the symlink", de.Error())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, tmp := range []string{"tmp", "tmp.old", "tmp.moved"} {
				if got := delivertest.Names(t, filepath.Join(dir, tmp)); len(got) != 0 {
					t.Errorf("%s/ = %q; want empty", tmp, got)
				}
			}
			want := map[string]int{"Maildir/new": 1}
			if tt.first != "" {
				want[tt.first]++
			}
			for sub, n := range want {
				if got := delivertest.Names(t, filepath.Join(filepath.Dir(dir), sub)); len(got) != n {
					t.Errorf("%s = %q; want %d files", sub, got, n)
				}
			}
		})
	}
}

// Below a template's fixed prefix, a user's directory swapped for a
// symlink after popfetch cached the Maildir in it is refused as before,
// even when the symlink leads to a Maildir.
func TestMaildirCacheTemplateSymlinkSwap(t *testing.T) {
	base := t.TempDir()
	d := NewMaildir(filepath.Join(base, "{user}", "Maildir"), MaildirOptions{LocalHost: "h"})
	closeAtEnd(t, d)
	rc := []Recipient{{User: "joe"}}
	if err := d.Deliver(context.Background(), testMessage(100), "", rc, nil)[0]; err != nil {
		t.Fatal(err)
	}
	joe := filepath.Join(base, "joe")
	if err := os.Rename(joe, joe+".real"); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	makeMaildir(t, filepath.Join(other, "Maildir"))
	symlinkAs(t, other, joe)
	de := wantTemporary(t, d.Deliver(context.Background(), testMessage(100), "", rc, nil)[0])
	if !strings.Contains(de.Error(), "symbolic link") {
		t.Errorf("error %q; want the symlink refused", de.Error())
	}
	wantClean(t, filepath.Join(other, "Maildir"), 0)
	wantClean(t, filepath.Join(joe+".real", "Maildir"), 1)
}

// openFds counts this process's open descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

// The cache is bounded: a template serving many users keeps at most
// maxOpenMaildirs Maildirs open. A copy prepared in a Maildir that is
// evicted (or closed) meanwhile keeps its directories until it is
// committed, and Close gives back every descriptor.
func TestMaildirCacheBound(t *testing.T) {
	base := t.TempDir()
	d := NewMaildir(filepath.Join(base, "{user}", "Maildir"), MaildirOptions{LocalHost: "h"})
	deliverTo := func(user string) {
		t.Helper()
		if err := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{User: user}}, nil)[0]; err != nil {
			t.Fatal(err)
		}
	}
	deliverTo("warmup")
	d.Close()
	before := openFds(t)
	held, err := d.Prepare(context.Background(), testMessage(100), "", Recipient{User: "held"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxOpenMaildirs + 20 {
		deliverTo(fmt.Sprintf("u%d", i))
	}
	d.dirsMu.Lock()
	n := len(d.dirs)
	d.dirsMu.Unlock()
	if n > maxOpenMaildirs {
		t.Errorf("%d Maildirs cached; want at most %d", n, maxOpenMaildirs)
	}
	if got := openFds(t) - before; got > 3*(maxOpenMaildirs+1) {
		t.Errorf("%d more descriptors open; want at most %d", got, 3*(maxOpenMaildirs+1))
	}
	if err := held.Commit(); err != nil {
		t.Fatalf("Commit of a copy whose Maildir was evicted meanwhile: %v", err)
	}
	wantClean(t, filepath.Join(base, "held", "Maildir"), 1)

	held, err = d.Prepare(context.Background(), testMessage(100), "", Recipient{User: "held"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := held.Commit(); err != nil {
		t.Fatalf("Commit after Close: %v", err)
	}
	// More than before is a leak; fewer is an earlier test's descriptor
	// (a finalizer, an MDA's pipe) closed meanwhile.
	if got := openFds(t); got > before {
		t.Errorf("%d descriptors open after Close; want at most %d as before", got, before)
	}
	wantClean(t, filepath.Join(base, "held", "Maildir"), 2)
}

// slowSyncFS counts the fsyncs of new/ and makes each take a while, as on
// a real disk, so that concurrent Commits find one running.
type slowSyncFS struct {
	osFS
	syncs atomic.Int32
}

func (s *slowSyncFS) SyncDir(dir *os.File) error {
	if filepath.Base(dir.Name()) == "new" {
		s.syncs.Add(1)
		time.Sleep(2 * time.Millisecond)
	}
	return s.osFS.SyncDir(dir)
}

// Concurrent copies into one Maildir share the fsyncs of new/ (group
// commit) and are all delivered.
func TestMaildirGroupCommit(t *testing.T) {
	fsys := &slowSyncFS{}
	dir := filepath.Join(t.TempDir(), "Maildir")
	makeMaildir(t, dir)
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: fsys})
	closeAtEnd(t, d)
	const workers, each = 8, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if err := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0]; err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	wantClean(t, dir, workers*each)
	if n := fsys.syncs.Load(); n >= workers*each {
		t.Errorf("%d fsyncs of new/ for %d concurrent copies; want them shared", n, workers*each)
	} else {
		t.Logf("%d fsyncs of new/ for %d copies", n, workers*each)
	}
}

// reuseFS answers DirID for a path with what it answered the first time,
// as when a removed directory's inode number is reused by its
// replacement: the check in acquire cannot see the change.
type reuseFS struct {
	osFS
	seen map[string]dirID
}

func (r *reuseFS) DirID(dir *os.File, name string) (dirID, error) {
	key := name
	if dir != nil {
		key = filepath.Join(dir.Name(), name)
	}
	if id, ok := r.seen[key]; ok {
		return id, nil
	}
	id, err := r.osFS.DirID(dir, name)
	if err == nil {
		r.seen[key] = id
	}
	return id, err
}

// A Maildir removed and re-created so that the check cannot tell (inode
// numbers reused): the copy finds tmp/ gone when it creates its file, and
// Prepare opens the Maildir afresh once instead of failing.
func TestMaildirCacheInodeReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: &reuseFS{seen: map[string]dirID{}}})
	closeAtEnd(t, d)
	for i := range 2 {
		if err := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0]; err != nil {
			t.Fatalf("copy %d: %v", i+1, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0]; err != nil {
		t.Fatal(err)
	}
	wantClean(t, dir, 1)
}
