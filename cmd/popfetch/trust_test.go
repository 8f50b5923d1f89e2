package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/internal/testutil"
)

// TestCheckUntrustedAsNobody: run as an ordinary user (nobody), popfetch
// accepts rc files owned by itself or root and refuses one another user
// owns or can replace, with the fix; a group-writable file of its
// primary group nogroup, which is no user's private group, is refused.
func TestCheckUntrustedAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a command as user nobody and to give files to other users")
	}
	const nobody, daemonUID = 65534, 1
	dir := testutil.OpenDir(t, "popfetch-trust-")
	bin := testutil.CopyExecutable(t, popfetchBin, dir, "popfetch")
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	rcBody := fmt.Sprintf("state_dir = %q\naccount \"a\" {\n  server = \"pop.example.com\"\n  username = \"joe\"\n  password_env = \"PW\"\n  deliver { maildir = %q }\n}\n",
		state, filepath.Join(state, "Maildir")) // where nobody can create it (check says so otherwise)
	// place writes the rc file into a new directory of the given owner
	// and mode, then gives the file its owner, group and mode.
	n := 0
	place := func(dirUID int, fileUID, fileGID int, mode os.FileMode) string {
		n++
		d := filepath.Join(dir, fmt.Sprintf("d%d", n))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, dirUID, -1); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, "rc.hcl")
		writeFile(t, p, rcBody)
		if err := os.Chown(p, fileUID, fileGID); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name string
		rc   string
		want string // "" = accepted
	}{
		{"own file", place(0, nobody, nobody, 0o600), ""},
		{"root's file", place(0, 0, 0, 0o644), ""},
		// nogroup is nobody's primary group but not named as the user:
		// not a private group, so group write is refused.
		{"own primary group nogroup may write", place(0, nobody, nobody, 0o660), "is writable by the group nogroup; run \"chmod go-w "},
		{"another user's file", place(0, daemonUID, daemonUID, 0o644), "is owned by daemon, not by nobody or root; check its content, then run \"chown nobody "},
		{"writable by all", place(0, nobody, nobody, 0o606), "is writable by every user; run \"chmod go-w "},
		{"in another user's directory", place(daemonUID, nobody, nobody, 0o600), "which is owned by daemon, not by nobody or root, so that user can replace the file"},
	} {
		r := popfetchCmd(t, bin, &syscall.Credential{Uid: nobody, Gid: nobody}, "-f", tt.rc, "check")
		if tt.want == "" {
			if r.code != exitOK {
				t.Errorf("%s: check as nobody = %d; want %d\n%s", tt.name, r.code, exitOK, r.stderr)
			}
			continue
		}
		if r.code != exitConfig || !strings.Contains(r.stderr, "Unsafe rc file") || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%s: check as nobody = %d\n%s\nwant %d and %q", tt.name, r.code, r.stderr, exitConfig, tt.want)
		}
	}
}
