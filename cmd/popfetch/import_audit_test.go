package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAuditImportWriteNew: the output is never written through a symlink
// (dangling or not) or over an existing file without --force, --force
// replaces the link itself, not its target, and the file is 0600.
func TestAuditImportWriteNew(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "out.hcl")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.hcl")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, dangling, target} {
		if err := writeNew(p, []byte("new"), false); err == nil {
			t.Errorf("%s: written without --force", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nowhere")); err == nil {
		t.Errorf("written through a dangling symlink")
	}
	if err := writeNew(link, []byte("new"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Errorf("--force wrote through the symlink: target now %q", b)
	}
	fi, err := os.Lstat(link)
	if err != nil || fi.Mode().Type() != 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("--force result: %v %v; want a regular 0600 file", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Errorf("temporary files left: %v", ents)
	}
}
