package main

// `popfetch login`, and a poll before any login, with a state directory
// that every user can write (0777, no sticky bit) and a symlink planted
// at the token lock: both refuse the directory, and neither creates the
// file the link points to (see fetch/oauth's TestLockSymlinkRefused).

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/oauthtest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

func TestLoginWorldWritableStateDir(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.ClientSecret = "cli-s3cret-value"
	rc, state := loginRC(t, idp, "device")
	if err := os.MkdirAll(state, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(state, 0o777)
	planted := filepath.Join(t.TempDir(), "root-created")
	os.Symlink(planted, filepath.Join(state, "oauth2-work.json.lock"))
	out := &syncLines{}
	var errb lockedBuffer
	done := runLoginErr(t, out, &errb, "-f", rc, "login", "work")
	var code int
	select {
	case code = <-done: // refused before asking the human: the right thing
	case <-time.After(3 * time.Second):
		idp.Approve(out.await(t, regexp.MustCompile(`enter the code (\S+)`)))
		code = <-done
	}
	if code == exitOK || !strings.Contains(errb.String(), "writable by every user") {
		t.Errorf("login into a world-writable state dir = %d; want a refusal naming the problem\n%s%s", code, out.String(), errb.String())
	}
	if _, err := os.Lstat(planted); err == nil {
		t.Errorf("login followed the planted lock symlink and created %s", planted)
	}
	// The poll path, before any login (no token file: readTokens checks
	// nothing), against a server offering XOAUTH2: Token takes the lock
	// before it finds there is no refresh token.
	srv := pop3test.NewServer(t, pop3test.Options{User: "alice", Capa: []string{"USER", "UIDL", "SASL XOAUTH2"}})
	b, _ := os.ReadFile(rc)
	os.WriteFile(rc, []byte(strings.Replace(string(b), "port     = 1\n", fmt.Sprintf("port     = %d\n", srv.Port()), 1)), 0o600)
	os.Remove(filepath.Join(state, "oauth2-work.json"))
	os.Remove(planted)
	os.Remove(filepath.Join(state, "oauth2-work.json.lock"))
	os.Symlink(planted, filepath.Join(state, "oauth2-work.json.lock"))
	c, o, e := runCLI(t, "-f", rc, "fetch", "work")
	if c == exitOK {
		t.Errorf("fetch with a world-writable state dir succeeded:\n%s%s", o, e)
	}
	if _, err := os.Lstat(planted); err == nil {
		t.Errorf("fetch followed the planted lock symlink and created %s", planted)
	}
}
