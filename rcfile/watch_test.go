package rcfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// The debounce must outlast a scheduling stall between the steps of one
// save (truncate, write) on a loaded CI machine, or one save is reported
// twice; 250ms held on 2 shared cores with -race.
const (
	watchDebounce = 250 * time.Millisecond
	watchWait     = 5 * time.Second // bounds waits that only matter on failure
)

// startWatch runs Watch on path and returns the channel of its calls. It
// returns once the watches are in place, so later changes are seen.
func startWatch(t *testing.T, path string) (calls chan struct{}, stop func() error) {
	t.Helper()
	return startWatchSeams(t, path, defaultWatchSeams())
}

// startWatchSeams is startWatch with Watch's seams given.
func startWatchSeams(t *testing.T, path string, ws watchSeams) (calls chan struct{}, stop func() error) {
	t.Helper()
	ready := make(chan struct{})
	ws.watching = func() { close(ready) }
	calls = make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ws.watch(ctx, path, nil, watchDebounce, func() { calls <- struct{}{} }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch = %v before it was ready", err)
	case <-time.After(watchWait):
		t.Fatalf("Watch not ready")
	}
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(watchWait):
			return errors.New("Watch did not return after cancel")
		}
	})
	t.Cleanup(func() { stop() })
	return calls, stop
}

// expectCalls waits for want calls, then makes sure no more follow within
// a few debounce periods (the only way to see "exactly one").
func expectCalls(t *testing.T, calls chan struct{}, want int) {
	t.Helper()
	for i := range want {
		select {
		case <-calls:
		case <-time.After(watchWait):
			t.Fatalf("got %d onChange calls; want %d", i, want)
		}
	}
	select {
	case <-calls:
		t.Fatalf("more than %d onChange calls", want)
	case <-time.After(3 * watchDebounce):
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// k8sLayout builds what a Kubernetes ConfigMap volume looks like:
// dir/popfetch.hcl → ..data/popfetch.hcl, ..data → ..v1 (a directory).
func k8sLayout(t *testing.T, dir string) string {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, "..v1"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "..v1", "popfetch.hcl"), "v1")
	symlink(t, "..v1", filepath.Join(dir, "..data"))
	path := filepath.Join(dir, "popfetch.hcl")
	symlink(t, filepath.Join("..data", "popfetch.hcl"), path)
	return path
}

func TestWatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  func(t *testing.T, dir string) string // returns the watched path
		change func(t *testing.T, dir, path string)
		want   int
	}{
		{"in-place write", plainFile, func(t *testing.T, dir, path string) {
			write(t, path, "changed in place")
		}, 1},
		{"write new then rename", plainFile, func(t *testing.T, dir, path string) {
			tmp := filepath.Join(dir, ".popfetch.hcl.swp")
			write(t, tmp, "new version")
			rename(t, tmp, path)
		}, 1},
		{"burst of writes", plainFile, func(t *testing.T, dir, path string) {
			for range 5 {
				write(t, path, "again")
				time.Sleep(watchDebounce / 10)
			}
		}, 1},
		{"unrelated file", plainFile, func(t *testing.T, dir, path string) {
			write(t, filepath.Join(dir, "other.hcl"), "x")
			write(t, filepath.Join(dir, "tmp"), "y")
			rename(t, filepath.Join(dir, "tmp"), filepath.Join(dir, "other.hcl"))
		}, 0},
		{"symlink swap", k8sLayout, func(t *testing.T, dir, path string) {
			if err := os.Mkdir(filepath.Join(dir, "..v2"), 0o700); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(dir, "..v2", "popfetch.hcl"), "v2")
			symlink(t, "..v2", filepath.Join(dir, "..data_tmp"))
			rename(t, filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
		}, 1},
		{"write through symlink", k8sLayout, func(t *testing.T, dir, path string) {
			write(t, filepath.Join(dir, "..v1", "popfetch.hcl"), "v1 edited")
		}, 1},
		{"unrelated file next to symlink", k8sLayout, func(t *testing.T, dir, path string) {
			write(t, filepath.Join(dir, "..v1", "other"), "x")
			write(t, filepath.Join(dir, "other"), "x")
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := tt.setup(t, dir)
			calls, _ := startWatch(t, path)
			tt.change(t, dir, path)
			expectCalls(t, calls, tt.want)
		})
	}
}

func plainFile(t *testing.T, dir string) string {
	path := filepath.Join(dir, "popfetch.hcl")
	write(t, path, "v1")
	return path
}

// TestWatchSecondSwap: after a swap, the new target is watched (and the
// old one no longer matters).
func TestWatchSecondSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := k8sLayout(t, dir)
	calls, _ := startWatch(t, path)
	for _, v := range []string{"..v2", "..v3"} {
		if err := os.Mkdir(filepath.Join(dir, v), 0o700); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, v, "popfetch.hcl"), v)
		symlink(t, v, filepath.Join(dir, "..data_tmp"))
		rename(t, filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
		expectCalls(t, calls, 1)
	}
	write(t, filepath.Join(dir, "..v3", "popfetch.hcl"), "v3 edited")
	expectCalls(t, calls, 1)
	write(t, filepath.Join(dir, "..v1", "popfetch.hcl"), "stale edit")
	expectCalls(t, calls, 0)
}

// TestWatchPollingFallback: without inotify the periodic identity check
// still reports a change, once.
func TestWatchPollingFallback(t *testing.T) {
	t.Parallel()
	ws := watchSeams{
		pollInterval: 20 * time.Millisecond,
		newWatcher:   func() (*fsnotify.Watcher, error) { return nil, errors.New("inotify: too many instances") },
	}
	dir := t.TempDir()
	path := plainFile(t, dir)
	calls, _ := startWatchSeams(t, path, ws)
	tmp := filepath.Join(dir, "new")
	write(t, tmp, "new version")
	rename(t, tmp, path)
	expectCalls(t, calls, 1)
	write(t, filepath.Join(dir, "other"), "x")
	expectCalls(t, calls, 0)
}

func TestWatchCancel(t *testing.T) {
	t.Parallel()
	_, stop := startWatch(t, plainFile(t, t.TempDir()))
	if err := stop(); err != nil {
		t.Fatalf("Watch after cancel = %v; want nil", err)
	}
}

// TestWatchSince: a change made after the identity was taken but before
// the watch started (the daemon loads the file, then starts the watch on
// another goroutine) is reported once; an unchanged file reports nothing.
func TestWatchSince(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change bool
		want   int
	}{
		{"changed before the watch", true, 1},
		{"unchanged", false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "rc.hcl")
			write(t, path, "a = 1\n")
			since := Identify(path)
			if tt.change {
				tmp := path + ".new"
				write(t, tmp, "a = 22\n")
				if err := os.Rename(tmp, path); err != nil {
					t.Fatal(err)
				}
			}
			calls := make(chan struct{}, 10)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- WatchSince(ctx, path, since, watchDebounce, func() { calls <- struct{}{} }) }()
			expectCalls(t, calls, tt.want)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
