package learned

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestAddDiskFull: Add and Forget on a full file system (a 64 KiB
// tmpfs) fail with an error and leave the old file whole, no temporary
// file behind; once there is room again Add works. Regression probe.
func TestAddDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	path := filepath.Join(mnt, "learned", "box.routes")
	if _, err := Add(path, "a@example.com", "alice", "first"); err != nil {
		t.Fatal(err)
	}
	// Fill the file system.
	f, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// A little more with a byte at a time, to the last block.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
	f.Close()
	if _, err := Add(path, "b@example.com", "bob", strings.Repeat("c", 300)); err == nil {
		t.Error("Add on a full file system = nil error")
	}
	if _, err := Forget(path, "a@example.com"); err == nil {
		// A smaller file may fit in the page freed; then it must be right.
		if rs, err := Read(path); err != nil || len(rs) != 0 {
			t.Errorf("Forget on a full fs succeeded but Read = %v, %v", rs, err)
		}
		if _, err := Add(path, "a@example.com", "alice", "first"); err != nil {
			t.Logf("re-Add on a full fs: %v", err)
		}
	}
	rs, err := Read(path)
	if err != nil || len(rs) > 1 || len(rs) == 1 && (rs[0].Key != "a@example.com" || rs[0].User != "alice") {
		t.Errorf("after ENOSPC Read = %+v, %v; want the old route whole", rs, err)
	}
	if m, _ := filepath.Glob(path + ".tmp*"); len(m) > 0 {
		t.Errorf("temporary files left: %q", m)
	}
	os.Remove(filepath.Join(mnt, "filler"))
	if _, err := Add(path, "b@example.com", "bob", ""); err != nil {
		t.Errorf("Add after freeing space: %v", err)
	}
}
