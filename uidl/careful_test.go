package uidl

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCarefulMark(t *testing.T) {
	dir := t.TempDir()
	j := filepath.Join(dir, "a@b.uidl")
	if Careful(j) {
		t.Fatal("mark before any was set")
	}
	for _, step := range []struct {
		on   bool
		want bool
	}{{true, true}, {true, true}, {false, false}, {false, false}, {true, true}} {
		if err := SetCareful(j, step.on); err != nil {
			t.Fatalf("SetCareful(%v): %v", step.on, err)
		}
		if got := Careful(j); got != step.want {
			t.Fatalf("after SetCareful(%v) Careful = %v", step.on, got)
		}
	}
	fi, err := os.Stat(j + carefulSuffix)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mark %v, %v; want a 0600 file", fi, err)
	}
	// Someone else's symlink is neither followed nor taken for the mark.
	k := filepath.Join(dir, "c@d.uidl")
	target := filepath.Join(dir, "elsewhere")
	if err := os.Symlink(target, k+carefulSuffix); err != nil {
		t.Fatal(err)
	}
	if Careful(k) {
		t.Error("a symlink taken for the mark")
	}
	if err := SetCareful(k, true); err != nil {
		t.Logf("SetCareful over a symlink: %v", err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("SetCareful created the symlink's target")
	}
}

// TestCarefulMarkNotAFile: something other than a regular file under the
// mark's name (a directory, a FIFO, a symlink) is never taken for the
// mark, nor followed or opened; setting the mark then fails, so that the
// caller can say the next one-shot run will not be careful, instead of
// reporting a mark that is not there.
func TestCarefulMarkNotAFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		make func(p string) error
	}{
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"symlink", func(p string) error { return os.Symlink(filepath.Join(dir, "elsewhere"), p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := filepath.Join(dir, tc.name+"@b.uidl")
			if err := tc.make(j + carefulSuffix); err != nil {
				t.Fatal(err)
			}
			if err := SetCareful(j, true); err == nil {
				t.Errorf("SetCareful(true) over a %s reported the mark set", tc.name)
			}
			if Careful(j) {
				t.Errorf("a %s taken for the mark", tc.name)
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(dir, "elsewhere")); err == nil {
		t.Error("SetCareful created the symlink's target")
	}
}
