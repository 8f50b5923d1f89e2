package fetch

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/popfetch/popfetch/rcfile"
)

// TestSMTPCAFileTrusted: an SMTP/LMTP ca_file another user can change is
// not used: whoever can change the trust anchors can impersonate the
// server.
func TestSMTPCAFileTrusted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ca, 0o646); err != nil {
		t.Fatal(err)
	}
	_, err := newSMTPTarget(&rcfile.SMTP{Server: "127.0.0.1:25", CAFile: ca}, "h")
	if !errors.Is(err, rcfile.ErrUntrustedFile) {
		t.Fatalf("newSMTPTarget with an other-writable ca_file = %v; want ErrUntrustedFile", err)
	}
}
