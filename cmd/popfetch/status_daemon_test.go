package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatusReloadRejected: after the rc file of a running daemon gets a
// syntax error, `popfetch status` still reaches the daemon (state_dir is
// read from the part of the file that parses) and shows the rejected
// reload with the error's file:line:col; `status --state-dir` and
// `-f moved.hcl status` reach it after the file has been moved away, and
// so does `now --state-dir`.
func TestStatusReloadRejected(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	rc := filepath.Join(dir, "popfetch.hcl")
	// Port 1: the polls fail, which does not matter here.
	good := rcText(state, nil, rcAccount{name: "a", port: 1, user: "a", pass: "pw", maildir: filepath.Join(dir, "mail")})
	writeFile(t, rc, good)
	d := startDaemon(t, rc)

	// A syntax error on the line after the good text, written at once (a
	// rename) so the watcher never sees half of it.
	badLine := strings.Count(good, "\n") + 1
	tmp := filepath.Join(dir, ".rc.tmp")
	writeFile(t, tmp, good+"account {{{\n")
	if err := os.Rename(tmp, rc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the rejected reload", func() bool { return len(d.log.lines("rc file has errors")) > 0 })

	where := fmt.Sprintf("popfetch.hcl:%d:", badLine)
	check := func(how string, r cliResult) {
		t.Helper()
		if r.code != exitOK || !strings.Contains(r.stdout, "reload rejected; generation 1 stays in effect") || !strings.Contains(r.stdout, where) {
			t.Errorf("%s = exit %d; want 0 and the rejected reload at %s\nstdout:\n%s\nstderr:\n%s", how, r.code, where, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "config "+rc+" ") {
			t.Errorf("%s does not name the rc file the daemon runs from (%s):\n%s", how, rc, r.stdout)
		}
	}
	check("popfetch status with a broken rc file", daemonCLI(t, rc, "status"))

	moved := filepath.Join(dir, "moved.hcl")
	if err := os.Rename(rc, moved); err != nil {
		t.Fatal(err)
	}
	check("popfetch status --state-dir", popfetchCmd(t, "", nil, "-f", filepath.Join(dir, "gone.hcl"), "status", "--state-dir", state))
	check("popfetch -f moved.hcl status", daemonCLI(t, moved, "status"))
	if r := popfetchCmd(t, "", nil, "now", "--state-dir", state); !strings.HasPrefix(r.stdout, "a: ") || strings.Contains(r.stderr, "cannot reach") {
		t.Errorf("popfetch now --state-dir = exit %d; want the poll's result for a\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}
