package deliver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMaildirMounts: a Maildir whose tmp/ or new/ is, or becomes while it
// is cached (mid-poll), a filesystem of its own (a tmpfs, or a bind mount
// of the directory on itself). A copy made through the held tmp/ that
// cannot be renamed into the new/ the path leads to (another mount:
// EXDEV) fails as a temporary error and leaves no file in tmp/ nor new/;
// one whose tmp/ got a mount on top after it was opened still passes
// through the directory opened, and is delivered. Needs root (mount).
func TestMaildirMounts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		midPoll bool // mounted after a first copy, while the Maildir is cached
		sub     string
		bind    bool
		wantErr bool
	}{
		{"tmpfs on tmp/ mid-poll", true, "tmp", false, false},
		{"tmpfs on new/ mid-poll", true, "new", false, true},
		{"tmpfs on tmp/ before", false, "tmp", false, true},
		{"tmpfs on new/ before", false, "new", false, true},
		{"tmp/ bound on itself before", false, "tmp", true, true},
		{"tmp/ bound on itself mid-poll", true, "tmp", true, false},
		// Still the directory opened (same device and inode), on
		// the mount the held tmp/ is on: delivered.
		{"new/ bound on itself mid-poll", true, "new", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "Maildir")
			makeMaildir(t, dir)
			d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
			closeAtEnd(t, d)
			sub := filepath.Join(dir, tc.sub)
			mount := func() {
				args := []string{"-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", sub}
				if tc.bind {
					args = []string{"--bind", sub, sub}
				}
				if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
					t.Skipf("cannot mount (needs root): %v: %s", err, out)
				}
				t.Cleanup(func() { exec.Command("umount", "-l", sub).Run() })
			}
			deliver := func() error {
				p, err := d.Prepare(context.Background(), testMessage(100), "", Recipient{}, nil)
				if err != nil {
					return err
				}
				return p.Commit()
			}
			before := 0
			if tc.midPoll {
				if err := deliver(); err != nil {
					t.Fatal(err)
				}
				before = 1
			}
			mount()
			for i := range 2 {
				err := deliver()
				if (err != nil) != tc.wantErr {
					t.Fatalf("copy %d after the mount: %v; want an error: %v", i+1, err, tc.wantErr)
				}
				if err != nil && IsPermanent(err) {
					t.Fatalf("copy %d after the mount: %v is not temporary", i+1, err)
				}
			}
			count := func(sub string) int {
				es, err := os.ReadDir(filepath.Join(dir, sub))
				if err != nil {
					t.Fatal(err)
				}
				return len(es)
			}
			wantNew := before + 2
			if tc.wantErr {
				wantNew = before
				if tc.sub == "new" && !tc.bind {
					wantNew = 0 // the tmpfs hides the first copy
				}
			}
			if n := count("tmp"); n != 0 {
				t.Errorf("tmp/ holds %d files, want none", n)
			}
			if n := count("new"); n != wantNew {
				t.Errorf("new/ holds %d files, want %d", n, wantNew)
			}
		})
	}
}
