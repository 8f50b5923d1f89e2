package uidl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/internal/trust"
)

// TestCheck: what Open would refuse or fail on, found without creating
// or writing anything; a state directory still to be created is fine.
func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		name   string
		setup  func(t *testing.T, state string) // state does not exist yet
		denied string                           // relative to state's parent: access(2) refuses W there
		want   string                           // "" = no problem
	}{
		{"missing state dir", func(*testing.T, string) {}, "", ""},
		{"existing journal", func(t *testing.T, s string) { mk(t, s+"/uidl", 0o700); put(t, s+"/uidl/j", 0o600) }, "", ""},
		{"parent not writable", func(*testing.T, string) {}, ".", "cannot be created: "},
		{"state dir a file", func(t *testing.T, s string) { put(t, s, 0o600) }, "", "is not a directory"},
		{"uidl dir not writable", func(t *testing.T, s string) { mk(t, s+"/uidl", 0o700) }, "state/uidl", "is not writable"},
		{"uidl dir group-writable", func(t *testing.T, s string) { mk(t, s+"/uidl", 0o770) }, "", "writable by group or others"},
		{"journal readable by others", func(t *testing.T, s string) { mk(t, s+"/uidl", 0o700); put(t, s+"/uidl/j", 0o644) }, "", "chmod 600"},
		{"journal a directory", func(t *testing.T, s string) { mk(t, s+"/uidl/j", 0o700) }, "", "not a regular file"},
		{"journal not writable", func(t *testing.T, s string) { mk(t, s+"/uidl", 0o700); put(t, s+"/uidl/j", 0o600) }, "state/uidl/j", "not readable and writable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			state := filepath.Join(parent, "state")
			tt.setup(t, state)
			before := tree(t, parent)
			access := func(p string, mode uint32) error {
				if tt.denied != "" && mode&trust.W != 0 && p == filepath.Join(parent, tt.denied) {
					return syscall.EACCES
				}
				return trust.EffectiveAccess(p, mode)
			}
			err := Check(filepath.Join(state, "uidl", "j"), access)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Check = %v; want %q", err, tt.want)
			}
			if strings.Contains(tt.want, "chmod") && !errors.Is(err, ErrInsecure) {
				t.Errorf("Check = %v; want ErrInsecure", err)
			}
			if after := tree(t, parent); after != before {
				t.Errorf("Check changed the file system:\n%s\nwas\n%s", after, before)
			}
		})
	}
}

func mk(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func put(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, nil, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// tree lists the names and modes under dir.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			b.WriteString(p + " " + fi.Mode().String() + "\n")
		}
		return nil
	})
	return b.String()
}
