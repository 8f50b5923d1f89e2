package uidl

import (
	"os"
	"path/filepath"
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
