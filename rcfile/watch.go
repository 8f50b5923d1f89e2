package rcfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchSeams are what tests change in Watch: each test builds its own, so
// watch tests share no state and run in parallel.
type watchSeams struct {
	// pollInterval is the fallback check of the file's identity, for
	// file systems where inotify says nothing (NFS, some FUSE) or when
	// the inotify limits are exhausted.
	pollInterval time.Duration
	newWatcher   func() (*fsnotify.Watcher, error)
	watching     func() // if set, called once the watches are in place
}

func defaultWatchSeams() watchSeams {
	return watchSeams{pollInterval: 3 * time.Second, newWatcher: fsnotify.NewWatcher}
}

// Watch calls onChange when the rc file at path changes, until ctx is
// done; then it returns nil. Bursts of changes within debounce collapse
// into one call (editors write, rename and chmod in quick succession).
// onChange runs on Watch's goroutine, so it should be quick: load,
// validate, hand to the daemon. It is called for every change that may
// matter and the caller decides (a reload that fails keeps the old config).
//
// It watches the parent directory, not the file: editors save by writing
// a new file and renaming it over the old one, which a watch on the old
// inode would miss. Events are filtered by name. If path is a symlink, the
// directories along the link chain are watched too, and every event in
// them re-resolves the link: a swap like Kubernetes ConfigMaps do (..data
// renamed to point at a new directory) changes what path means without
// any event carrying its name. As a fallback where inotify is not
// available, the file's identity (resolved path, inode, size, mtime) is
// checked every few seconds, as mox does lazily.
func Watch(ctx context.Context, path string, debounce time.Duration, onChange func()) error {
	return defaultWatchSeams().watch(ctx, path, nil, debounce, onChange)
}

// Identity is what Watch compares to notice that the rc file changed,
// taken without reading the file.
type Identity struct{ id fileID }

// Identify returns path's identity now. Take it before loading the file
// and pass it to WatchSince: then an edit made between the load and the
// start of the watch (which runs on its own goroutine) is still seen.
func Identify(path string) Identity {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return Identity{identify(path)}
}

// WatchSince is Watch counting changes from since (see Identify) instead
// of from the moment the watch starts: if the file is no longer what
// since describes, onChange is called after the first debounce.
func WatchSince(ctx context.Context, path string, since Identity, debounce time.Duration, onChange func()) error {
	return defaultWatchSeams().watch(ctx, path, &since.id, debounce, onChange)
}

func (ws watchSeams) watch(ctx context.Context, path string, since *fileID, debounce time.Duration, onChange func()) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("watch rc file: %w", err)
	}
	last := identify(path)
	changed := false
	if since != nil && !since.equal(last) {
		last, changed = *since, true
	}

	var events chan fsnotify.Event
	var errs chan error
	w, err := ws.newWatcher()
	if err == nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
		syncWatches(w, path)
	}
	// else: inotify unavailable (or out of instances); polling alone works.

	tick := time.NewTicker(ws.pollInterval)
	defer tick.Stop()
	debounceTimer := time.NewTimer(time.Hour)
	debounceTimer.Stop()
	armed := false
	var firstAt time.Time
	arm := func() {
		now := time.Now()
		if !armed {
			armed, firstAt = true, now
		}
		// Trailing debounce, but a file that keeps changing is still
		// reported after 10 debounce periods.
		if now.Sub(firstAt) < 10*debounce {
			debounceTimer.Reset(debounce)
		}
	}
	if ws.watching != nil {
		ws.watching()
	}
	if changed {
		arm()
	}

	for {
		select {
		case <-ctx.Done():
			debounceTimer.Stop()
			return nil

		case ev, ok := <-events:
			if !ok {
				events = nil // watcher closed: keep polling
				continue
			}
			// Our own name in the parent directory always counts.
			// Anything else counts only if it changed what path resolves
			// to or the file behind it (symlink swaps, writes through a
			// link); that also ignores unrelated files in the directory.
			if ev.Name == filepath.Join(realDir(filepath.Dir(path)), filepath.Base(path)) || !identify(path).equal(last) {
				arm()
			}

		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				arm() // events were lost; assume ours was among them
			}

		case <-tick.C:
			if !identify(path).equal(last) {
				arm()
			}

		case <-debounceTimer.C:
			armed = false
			last = identify(path)
			if w != nil {
				syncWatches(w, path) // the link may point elsewhere now
			}
			onChange()
		}
	}
}

// fileID is what identifies the content behind path without reading it.
type fileID struct {
	target string      // path with every symlink resolved; "" if it does not resolve
	fi     fs.FileInfo // nil if path does not exist
}

func identify(path string) fileID {
	var id fileID
	if t, err := filepath.EvalSymlinks(path); err == nil {
		id.target = t
	}
	if fi, err := os.Stat(path); err == nil {
		id.fi = fi
	}
	return id
}

func (a fileID) equal(b fileID) bool {
	if a.target != b.target || (a.fi == nil) != (b.fi == nil) {
		return false
	}
	if a.fi == nil {
		return true
	}
	return os.SameFile(a.fi, b.fi) && a.fi.Size() == b.fi.Size() &&
		a.fi.ModTime().Equal(b.fi.ModTime()) && a.fi.Mode() == b.fi.Mode()
}

// realDir resolves symlinks in a directory name: inotify watches inodes,
// and event names carry the name the watch was added with.
func realDir(dir string) string {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return r
	}
	return dir
}

// watchDirs lists the directories to watch for path: its parent, the
// directory of every symlink along the chain, and the final file's.
func watchDirs(path string) map[string]bool {
	dirs := map[string]bool{realDir(filepath.Dir(path)): true}
	p := path
	for range 40 { // the kernel's own symlink limit
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			break
		}
		t, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		p = t
		dirs[realDir(filepath.Dir(p))] = true
	}
	if r, err := filepath.EvalSymlinks(path); err == nil {
		dirs[filepath.Dir(r)] = true
	}
	return dirs
}

// syncWatches makes the watcher's set match watchDirs(path). It asks the
// watcher what it watches, because a watch ends by itself when its
// directory is deleted; a directory recreated later is then added again.
// Failures are left to the polling fallback.
func syncWatches(w *fsnotify.Watcher, path string) {
	want := watchDirs(path)
	have := map[string]bool{}
	for _, d := range w.WatchList() {
		have[d] = true
		if !want[d] {
			w.Remove(d)
		}
	}
	for d := range want {
		if !have[d] {
			w.Add(d)
		}
	}
}
