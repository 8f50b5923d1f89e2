package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// oauth2RC is an rc file whose one account "elsewhere" signs in with
// OAuth2 (at an identity provider that is never asked: status only reads
// the token file).
func oauth2RC(state string) string {
	return fmt.Sprintf(`
state_dir = %q
account "elsewhere" {
  server   = "127.0.0.1"
  port     = 1
  tls      = "none"
  username = "carol"
  oauth2 {
    provider      = "generic"
    client_id     = "id"
    client_secret = "secret"
    scopes        = ["pop"]
    flow          = "device"
    auth_url      = "https://idp.invalid/auth"
    token_url     = "https://idp.invalid/token"
    device_url    = "https://idp.invalid/device"
  }
  deliver { maildir = %q }
}
`, state, filepath.Join(state, "mail"))
}

// TestStatusStateDirReadsNoOtherRC: `popfetch status --state-dir DIR`
// without -f asks the daemon of DIR and reads no rc file: not the default
// one (under $XDG_CONFIG_HOME) nor $POPFETCH_CONFIG, which may belong to
// another daemon, so its OAuth2 accounts are not shown as if they were
// DIR's. With -f the named file's OAuth2 section is shown.
func TestStatusStateDirReadsNoOtherRC(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	rc := filepath.Join(dir, "popfetch.hcl")
	writeFile(t, rc, rcText(state, nil, rcAccount{name: "a", port: 1, user: "a", pass: "pw", maildir: filepath.Join(dir, "mail")}))
	startDaemon(t, rc)

	xdg := filepath.Join(dir, "xdg")
	other := filepath.Join(xdg, "popfetch", "popfetch.hcl")
	if err := os.MkdirAll(filepath.Dir(other), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, other, oauth2RC(filepath.Join(dir, "otherstate")))
	run := func(env []string, args ...string) cliResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, popfetchBin, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Env = append(os.Environ(), env...)
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cliResult{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
	}
	for _, tc := range []struct {
		name      string
		env, args []string
		oauth2    bool
	}{
		{"default rc file", []string{"XDG_CONFIG_HOME=" + xdg, "POPFETCH_CONFIG="}, []string{"status", "--state-dir", state}, false},
		{"POPFETCH_CONFIG", []string{"POPFETCH_CONFIG=" + other}, []string{"status", "--state-dir", state}, false},
		{"-f", []string{"POPFETCH_CONFIG="}, []string{"-f", other, "status", "--state-dir", state}, true},
	} {
		r := run(tc.env, tc.args...)
		if r.code != exitOK || !strings.Contains(r.stdout, "config "+rc+" ") {
			t.Errorf("%s: status = exit %d, want 0 and the daemon of %s\nstdout:\n%s\nstderr:\n%s", tc.name, r.code, state, r.stdout, r.stderr)
		}
		if got := strings.Contains(r.stdout, "elsewhere"); got != tc.oauth2 {
			t.Errorf("%s: the other rc file's OAuth2 account shown: %v, want %v\nstdout:\n%s", tc.name, got, tc.oauth2, r.stdout)
		}
	}
}
