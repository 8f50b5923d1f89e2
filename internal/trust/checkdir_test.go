package trust

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCheckDir(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o700, true},
		{0o755, true},
		{0o777, false},
		{0o777 | os.ModeSticky, true},
		{0o707, false},
	} {
		dir := filepath.Join(t.TempDir(), "state")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, tt.mode); err != nil {
			t.Fatal(err)
		}
		err := CheckDir(dir)
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrUntrustedFile) {
			t.Errorf("CheckDir(%v) = %v; want ok %v", tt.mode, err, tt.ok)
		}
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if err := CheckDir(f); err == nil {
		t.Error("CheckDir(a regular file) = nil")
	}
}
