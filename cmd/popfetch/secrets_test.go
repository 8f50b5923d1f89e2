package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cliSecret is the password of the rc files below; its fragments must not
// show either.
const cliSecret = "Zq9x-Hunter2-Plugh7"

var cliFragments = []string{cliSecret, "Hunter2", "Zq9x"}

// brokenRC are rc files with an error around an inline password (%[1]s);
// %[2]s is the state directory. The rcfile package tests many more shapes;
// these go through every command and log format.
var brokenRC = []struct{ name, src string }{
	{"same line", "state_dir = %[2]q\naccount \"a\" { password = \"%[1]s\" }\n"},
	{"invalid escape", "state_dir = %[2]q\naccount \"a\" {\n  password = \"%[1]s\\q\"\n}\n"},
	{"unterminated string", "state_dir = %[2]q\naccount \"a\" {\n  password = \"%[1]s\n  server = \"x\"\n}\n"},
	{"heredoc", "state_dir = %[2]q\naccount \"a\" {\n  server = 5\n  password = <<EOT\n%[1]s\nEOT\n}\n"},
	{"misspelt", "state_dir = %[2]q\naccount \"a\" {\n  passwrd = \"%[1]s\"\n}\n"},
	{"in password_env", "state_dir = %[2]q\naccount \"a\" {\n  password_env = \"%[1]s\"\n}\n"},
	{"on the line below", "state_dir = %[2]q\naccount \"a\" {\n  password =\n    '%[1]s'\n}\n"},
}

func leakedCLI(s string) string {
	for _, f := range cliFragments {
		if strings.Contains(s, f) {
			return f
		}
	}
	return ""
}

// TestNoSecretInOutput: a broken rc file with an inline password, run
// through check, fetch and run (text and JSON logs), and a readable one,
// never shows the password on stdout or stderr.
func TestNoSecretInOutput(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	type rcFile struct {
		name, path string
	}
	var files []rcFile
	for i, b := range brokenRC {
		p := filepath.Join(dir, fmt.Sprintf("broken%d.hcl", i))
		writeFile(t, p, fmt.Sprintf(b.src, cliSecret, state))
		files = append(files, rcFile{b.name, p})
	}
	readable := filepath.Join(dir, "readable.hcl")
	writeFile(t, readable, rcText(state, nil, rcAccount{name: "a", port: 1, user: "joe", pass: cliSecret, maildir: filepath.Join(dir, "Maildir")}))
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}
	files = append(files, rcFile{"readable", readable})

	for _, f := range files {
		for _, args := range [][]string{
			{"check"},
			{"check", "--connect"},
			{"fetch"},
			{"--log-format", "json", "fetch"},
		} {
			code, out, errs := runCLI(t, append([]string{"-f", f.path}, args...)...)
			if code != exitConfig {
				t.Errorf("%s: popfetch %s = %d; want %d\n%s%s", f.name, strings.Join(args, " "), code, exitConfig, out, errs)
			}
			if l := leakedCLI(out + errs); l != "" {
				t.Errorf("%s: popfetch %s shows %q:\nstdout:\n%s\nstderr:\n%s", f.name, strings.Join(args, " "), l, out, errs)
			}
		}
		for _, format := range []string{"text", "json"} {
			r := popfetchCmd(t, "", nil, "-f", f.path, "--log-format", format, "run")
			if r.code != exitConfig || !strings.Contains(r.stderr, "rc.hcl") && !strings.Contains(r.stderr, ".hcl:") {
				t.Errorf("%s: popfetch run (%s) = %d; want %d and the diagnostics\n%s", f.name, format, r.code, exitConfig, r.stderr)
			}
			if l := leakedCLI(r.stdout + r.stderr); l != "" {
				t.Errorf("%s: popfetch run (%s) shows %q:\n%s%s", f.name, format, l, r.stdout, r.stderr)
			}
		}
	}
}

// TestNoSecretInRefusedReload: the daemon, running on a good rc file
// whose password is cliSecret, refuses each broken version in turn; its
// log (text and JSON) never shows the password, and it keeps running.
func TestNoSecretInRefusedReload(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			state := filepath.Join(dir, "state")
			rc := filepath.Join(dir, "rc.hcl")
			good := rcText(state, nil, rcAccount{name: "a", port: deadPort, user: "joe", pass: cliSecret, maildir: filepath.Join(dir, "Maildir")})
			writeFile(t, rc, good)
			d := startDaemon(t, rc, "--log-format", format)
			for i, b := range brokenRC {
				tmp := rc + ".new"
				writeFile(t, tmp, fmt.Sprintf(b.src, cliSecret, state))
				if err := os.Rename(tmp, rc); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 30*time.Second, b.name+": the daemon to refuse the broken rc file", func() bool {
					return len(d.log.lines("stays in effect")) > i
				})
			}
			// A last refusal of another kind: the broken file made
			// readable by others as well.
			if err := os.Chmod(rc, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(rc, rc+".x"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(rc+".x", rc); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "the daemon to refuse the readable rc file", func() bool {
				return len(d.log.lines("stays in effect")) > len(brokenRC)
			})
			if d.exited() {
				t.Fatalf("the daemon exited")
			}
			if g := statusGeneration(t, rc); g != 1 {
				t.Errorf("generation = %d; want 1 (every broken version refused)", g)
			}
			if l := leakedCLI(d.log.String()); l != "" {
				t.Errorf("the daemon's log shows %q:\n%s", l, d.log.String())
			}
		})
	}
}
