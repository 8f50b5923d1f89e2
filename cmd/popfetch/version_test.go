package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionFromBuildInfo: --version reports the VCS revision go build
// recorded when the binary is built in a git checkout (with the module's
// pseudo-version derived from it, not "devel"), and says there is none
// when built with -buildvcs=false. The tree is copied into a fresh git
// repository: a git worktree (a .git file) gets no VCS stamp from go build.
func TestVersionFromBuildInfo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds popfetch twice")
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() && (d.Name() == ".git" || rel != "." && strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() || d.Name() == ".git" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(repo, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org",
			"GOFLAGS=-buildvcs=auto")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run(git, "init", "-q", ".")
	run(git, "add", "-A")
	run(git, "commit", "-q", "-m", "test")
	rev := run(git, "rev-parse", "HEAD")
	bin := filepath.Join(t.TempDir(), "popfetch")
	// No -trimpath: it would rebuild the standard library and every
	// dependency under new cache keys (minutes on a fresh machine); without
	// it only popfetch's own packages, at their temporary path, are built.
	run("go", "build", "-buildvcs=true", "-o", bin, "./cmd/popfetch")
	got := run(bin, "--version")
	if !strings.Contains(got, "git "+rev) || strings.Contains(got, "devel") || strings.Contains(got, "with local changes") {
		t.Errorf("--version in a git checkout = %q; want the revision git %s, a version other than devel, no local changes", got, rev)
	}
	if want := "-" + rev[:12]; !strings.Contains(got, want) {
		t.Errorf("--version = %q; want the pseudo-version ending in %s", got, want)
	}
	run("go", "build", "-buildvcs=false", "-o", bin, "./cmd/popfetch")
	got = run(bin, "--version")
	if !strings.HasPrefix(got, "popfetch devel (no VCS revision") || !strings.Contains(got, "go1.") {
		t.Errorf("--version without VCS information = %q; want it to say so, with the Go version", got)
	}
}
