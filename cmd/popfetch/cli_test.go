package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != exitOK || !strings.Contains(out, "Usage:") {
		t.Fatalf("--help = %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, "--version"); code != exitOK || !strings.HasPrefix(out, "popfetch ") {
		t.Fatalf("--version = %d %q", code, out)
	}
	if code, _, _ := runCLI(t); code != exitUsage {
		t.Fatalf("no command = %d; want %d", code, exitUsage)
	}
	if code, _, _ := runCLI(t, "frobnicate"); code != exitUsage {
		t.Fatalf("unknown command = %d; want %d", code, exitUsage)
	}
	if code, _, _ := runCLI(t, "fetch", "--no-such-flag"); code != exitUsage {
		t.Fatalf("unknown flag = %d; want %d", code, exitUsage)
	}
	// Asking for help is not a usage error, whichever command it follows.
	for _, cmd := range []string{"fetch", "check", "run", "now", "status", "demo", "postmaster", "reroute"} {
		for _, flag := range []string{"--help", "-h"} {
			if code, out, errs := runCLI(t, cmd, flag); code != exitOK || !strings.Contains(out, "Usage:") || errs != "" {
				t.Errorf("%s %s = %d, usage on stdout %v, stderr %q; want %d and the usage on stdout", cmd, flag, code, strings.Contains(out, "Usage:"), errs, exitOK)
			}
		}
	}
	// --version is a global flag: after a command too, it prints the
	// version and does nothing else.
	for _, cmd := range []string{"fetch", "check", "run", "status", "postmaster"} {
		if code, out, errs := runCLI(t, "-f", "/nonexistent/rc.hcl", cmd, "--version"); code != exitOK || !strings.HasPrefix(out, "popfetch ") || errs != "" {
			t.Errorf("%s --version = %d %q, stderr %q; want %d and the version", cmd, code, out, errs, exitOK)
		}
	}
}

// A password_file found readable by others when the account is polled (it
// was missing or private when the rc file was loaded) is a configuration
// error, like one found at load time.
func TestExitCodeInsecurePasswordFile(t *testing.T) {
	res := fetch.Result{Account: "x", Err: fmt.Errorf("account x: password: password_file /p has mode 0644: %w", rcfile.ErrInsecureFile)}
	if got := exitCodeFor(res); got != exitConfig {
		t.Fatalf("exitCodeFor(%v) = %d; want %d", res.Err, got, exitConfig)
	}
	if got := exitCodeFor(fetch.Result{Err: errors.New("connection refused")}); got != exitFail {
		t.Fatalf("exitCodeFor(connection refused) = %d; want %d", got, exitFail)
	}
}

// A delivered message the server keeps refusing to delete is its own exit
// status, below a failure (mail not delivered) and above success, also
// across accounts.
func TestExitCodeUndeletable(t *testing.T) {
	tests := []struct {
		sum  fetch.PollSummary
		want int
	}{
		{fetch.PollSummary{Undeletable: 1}, exitUndeletable},
		{fetch.PollSummary{Undeletable: 1, Failed: 1}, exitFail},
		{fetch.PollSummary{Undeletable: 1, Err: "connection reset"}, exitFail},
		{fetch.PollSummary{Undeletable: 1, AuthFailed: true, Err: "auth"}, exitAuth},
		{fetch.PollSummary{Deleted: 3}, exitOK},
	}
	for _, tt := range tests {
		if got := exitCodeForSummary(tt.sum); got != tt.want {
			t.Errorf("exitCodeForSummary(%+v) = %d; want %d", tt.sum, got, tt.want)
		}
	}
	if got := exitCodeFor(fetch.Result{Undeletable: 2}); got != exitUndeletable {
		t.Errorf("exitCodeFor(Undeletable: 2) = %d; want %d", got, exitUndeletable)
	}
	for _, c := range [][3]int{{exitOK, exitUndeletable, exitUndeletable}, {exitUndeletable, exitFail, exitFail}, {exitFail, exitUndeletable, exitFail}, {exitUndeletable, exitOK, exitUndeletable}} {
		if got := worse(c[0], c[1]); got != c[2] {
			t.Errorf("worse(%d, %d) = %d; want %d", c[0], c[1], got, c[2])
		}
	}
	if line := summaryLine(fetch.PollSummary{Account: "a", Undeletable: 2}); !strings.Contains(line, "2 the server refuses to delete") {
		t.Errorf("summary line %q does not show the undeletable messages", line)
	}
}

// A refused login is exit status 3 whether or not the server said [AUTH]:
// the login failed either way.
func TestExitCodeLoginRefused(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("account x: %w: PASS: -ERR [AUTH] bad", fetch.ErrAuth),
		fmt.Errorf("account x: %w: PASS: -ERR message is damaged", fetch.ErrLoginRefused),
	} {
		if got := exitCodeFor(fetch.Result{Account: "x", Err: err}); got != exitAuth {
			t.Errorf("exitCodeFor(%v) = %d; want %d", err, got, exitAuth)
		}
	}
}

// The help text and popfetch(1) must not drift apart: every command the
// help lists has a section in the man page, and every exit status too.
func TestHelpMatchesManPage(t *testing.T) {
	man, err := os.ReadFile("../../man/popfetch.1")
	if err != nil {
		t.Fatal(err)
	}
	cmds := regexp.MustCompile(`(?m)^  ([a-z]+) `).FindAllStringSubmatch(usage, -1)
	if len(cmds) < 6 {
		t.Fatalf("found only %d commands in the usage text", len(cmds))
	}
	for _, c := range cmds {
		if c[1] == "popfetch" {
			continue // the synopsis line
		}
		if !regexp.MustCompile(`(?m)^\.TP\n\.BI? "?` + c[1] + `\b`).Match(man) {
			t.Errorf("command %q is in --help but has no entry in man/popfetch.1", c[1])
		}
	}
	for _, code := range []int{exitOK, exitFail, exitUsage, exitAuth, exitConfig, exitUndeletable, exitTempFail} {
		if !bytes.Contains(man, []byte(fmt.Sprintf(".B %d\n", code))) {
			t.Errorf("exit status %d is not documented in man/popfetch.1", code)
		}
	}
}

// Every example rc file passes `popfetch check`.
func TestCheckExamples(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/rc/*.hcl")
	if len(files) < 5 {
		t.Fatalf("only %d example rc files", len(files))
	}
	dir := t.TempDir()
	for _, f := range files {
		// A copy this user owns: the checkout may belong to another
		// user (a CI container runs the tests as root on a runner's
		// files), and popfetch refuses an rc file another user owns.
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		f = filepath.Join(dir, filepath.Base(f))
		writeFile(t, f, string(b))
		code, out, errs := runCLI(t, "check", "-f", f)
		if code != exitOK || !strings.Contains(out, "account ") {
			t.Errorf("check %s = %d\n%s%s", f, code, out, errs)
		}
	}
}

func TestExitCodes(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{{UID: "a", Data: []byte("Subject: x\r\n\r\nhi\r\n")}}})
	dir := t.TempDir()
	rc := func(pass string) string {
		p := filepath.Join(dir, "rc-"+pass+".hcl")
		writeFile(t, p, rcText(filepath.Join(dir, "state"), nil,
			rcAccount{name: "fake", port: srv.Port(), user: "user", pass: pass, maildir: filepath.Join(dir, "Maildir")}))
		return p
	}
	code, out, errs := runCLI(t, "-f", rc("wrong"), "fetch")
	if code != exitAuth || !strings.Contains(out, "authentication failed") {
		t.Fatalf("wrong password: %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI(t, "fetch", "-f", rc("pass"))
	if code != exitOK || !strings.Contains(out, "fake: 1 new, 1 delivered, 1 deleted") {
		t.Fatalf("fetch: %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "fetch", "-f", rc("pass"), "nosuchaccount"); code != exitUsage {
		t.Fatalf("unknown account = %d", code)
	}
	// An inline password in a file others can read is a config error.
	p := rc("pass")
	os.Chmod(p, 0o644)
	code, _, errs = runCLI(t, "fetch", "-f", p)
	if code != exitConfig || !strings.Contains(errs, "chmod 600") {
		t.Fatalf("world-readable rc file: %d\n%s", code, errs)
	}
	os.Chmod(p, 0o600)
	bad := filepath.Join(dir, "bad.hcl")
	writeFile(t, bad, "account \"x\" {\n  sever = \"pop.example.com\"\n}\n")
	code, _, errs = runCLI(t, "check", "-f", bad)
	if code != exitConfig || !strings.Contains(errs, "bad.hcl:2:3") {
		t.Fatalf("invalid rc file: %d\n%s", code, errs)
	}
	// Connection refused: an account failure.
	srv.Close()
	code, out, _ = runCLI(t, "fetch", "-f", rc("pass"))
	if code != exitFail || !strings.Contains(out, "error:") {
		t.Fatalf("dead server: %d\n%s", code, out)
	}
}

// `popfetch fetch` from cron against a server that refuses DELE: exit 0
// while the refusals are new, then 7 (and an ERROR on stderr) from the
// third run in a row on, while the message stays on the server.
func TestFetchExitUndeletable(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{
		Messages: []pop3test.Message{{UID: "a", Data: []byte("Subject: x\r\n\r\nhi\r\n")}},
		Faults:   []pop3test.Fault{{Cmd: "DELE", Action: pop3test.Reply, Reply: "-ERR [SYS/PERM] mailbox is read-only"}},
	})
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(dir, nil, rcAccount{name: "fake", port: srv.Port(), user: "user", pass: "pass", maildir: filepath.Join(dir, "M")}))
	for run, want := range []int{exitOK, exitOK, exitUndeletable, exitUndeletable} {
		code, out, errs := runCLI(t, "fetch", "-f", rc)
		if code != want {
			t.Fatalf("run %d: exit %d; want %d\n%s%s", run+1, code, want, out, errs)
		}
		if want == exitUndeletable && !strings.Contains(out, "1 the server refuses to delete") {
			t.Errorf("run %d: summary does not show it: %s", run+1, out)
		}
		if run == 2 && !strings.Contains(errs, "level=ERROR") {
			t.Errorf("run %d: no ERROR on stderr:\n%s", run+1, errs)
		}
	}
	if len(srv.Messages()) != 1 {
		t.Fatalf("server has %d messages; want the undeletable one", len(srv.Messages()))
	}
}

func TestCheckConnect(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{{UID: "a", Data: []byte("Subject: x\r\n\r\nhi\r\n")}, {UID: "b", Data: []byte("Subject: y\r\n\r\nhi\r\n")}}})
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(dir, nil, rcAccount{name: "fake", port: srv.Port(), user: "user", pass: "pass", maildir: filepath.Join(dir, "M")}))
	code, out, errs := runCLI(t, "check", "--connect", "-f", rc)
	if code != exitOK || !strings.Contains(out, "2 messages on the server, 2 new") || strings.Contains(out, `"pass"`) {
		t.Fatalf("check --connect = %d\n%s%s", code, out, errs)
	}
	if len(srv.Messages()) != 2 {
		t.Fatal("check --connect deleted mail")
	}
	for _, c := range srv.Commands() {
		if strings.HasPrefix(c, "RETR") || strings.HasPrefix(c, "DELE") {
			t.Fatalf("check --connect sent %q", c)
		}
	}
}

func TestDemo(t *testing.T) {
	code, out, errs := runCLI(t, "demo")
	if code != exitOK {
		t.Fatalf("demo = %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"personal: 3 new, 3 delivered, 3 deleted",
		"example.com: 5 new, 5 delivered, 5 deleted",
		"vmail/carol/Maildir/         Blind copy for Carol",
		"X-Popfetch-Reason: unknown user mallory@example.com",
		"personal: 0 new",
		"example.com: 0 new",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if m := regexp.MustCompile(`Everything is in (\S+) `).FindStringSubmatch(out); m != nil {
		os.RemoveAll(m[1])
	}
}
