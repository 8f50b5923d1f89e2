package main

import (
	"io"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

func TestFlagsFirst(t *testing.T) {
	g := &globals{stdout: io.Discard, stderr: io.Discard}
	fs := g.flags("check")
	fs.Bool("connect", false, "")
	fs.String("listen", "", "")
	tests := []struct{ in, want []string }{
		{[]string{"isp", "-v"}, []string{"-v", "--", "isp"}},
		{[]string{"--connect", "isp", "-v"}, []string{"--connect", "-v", "--", "isp"}},
		{[]string{"isp", "-f", "rc.hcl", "work"}, []string{"-f", "rc.hcl", "--", "isp", "work"}},
		{[]string{"isp", "--config=rc.hcl"}, []string{"--config=rc.hcl", "--", "isp"}},
		{[]string{"isp", "--listen", "-weird"}, []string{"--listen", "-weird", "--", "isp"}},
		{[]string{"isp", "--", "-v", "--connect"}, []string{"--", "isp", "-v", "--connect"}},
		{[]string{"-", "isp"}, []string{"--", "-", "isp"}},
		{[]string{"isp", "--no-such-flag"}, []string{"--no-such-flag", "--", "isp"}},
		{[]string{"isp", "-f"}, []string{"-f"}}, // the missing value is flag's error
	}
	for _, tt := range tests {
		if got := flagsFirst(fs, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("flagsFirst(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
	// What package flag then makes of them.
	fs2 := g.flags("fetch")
	if err := fs2.Parse(flagsFirst(fs2, []string{"isp", "-v", "--", "-x"})); err != nil || !g.verbose || !slices.Equal(fs2.Args(), []string{"isp", "-x"}) {
		t.Errorf("parse: err %v, verbose %v, args %q", err, g.verbose, fs2.Args())
	}
	if err := fs2.Parse(flagsFirst(fs2, []string{"isp", "-f"})); err == nil {
		t.Error("-f without a value parsed")
	}
}

// TestCLIArgsAnywhere: flags after account names work for fetch and
// check; "--" ends the flags; the one-shot fetch does not warn about the
// daemon's poll interval while check (which validates the file for the
// daemon too) does; check exits as popfetch(1) says.
func TestCLIArgsAnywhere(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{{UID: "a", Data: []byte("Subject: x\r\n\r\nhi\r\n")}}})
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, // interval 30s: the short interval warning
		rcAccount{name: "isp", port: srv.Port(), user: "user", pass: "pass", keep: true, maildir: filepath.Join(dir, "M")}))

	code, out, errs := runCLI(t, "fetch", "isp", "-v", "-f", rc)
	if code != exitOK || !strings.Contains(out, "isp: 1 new, 1 delivered") || !strings.Contains(errs, "level=DEBUG") {
		t.Errorf("fetch isp -v -f rc = %d\n%s%s\nwant 0, the summary and debug logging", code, out, errs)
	}
	if strings.Contains(errs, "Short poll interval") {
		t.Errorf("one-shot fetch warned about the daemon's interval:\n%s", errs)
	}
	code, out, errs = runCLI(t, "check", "--connect", "isp", "-v", "-f", rc)
	if code != exitOK || !strings.Contains(out, "isp: logged in with USER") || !strings.Contains(errs, "level=DEBUG") {
		t.Errorf("check --connect isp -v = %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "Short poll interval") {
		t.Errorf("check did not warn about the interval:\n%s", errs)
	}
	if code, _, errs := runCLI(t, "fetch", "-f", rc, "--", "-v"); code != exitUsage || !strings.Contains(errs, `no account "-v"`) {
		t.Errorf("fetch -- -v = %d %q; want %d and no account \"-v\"", code, errs, exitUsage)
	}
}

// TestCheckExitStatus: popfetch(1) COMMANDS/check and EXIT STATUS.
func TestCheckExitStatus(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{{UID: "a", Data: []byte("Subject: x\r\n\r\nhi\r\n")}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	rc := func(name string, port int, pass string) string {
		p := filepath.Join(dir, name+".hcl")
		writeFile(t, p, rcText(filepath.Join(dir, "state"), nil,
			rcAccount{name: "isp", port: port, user: "user", pass: pass, keep: true, maildir: filepath.Join(dir, "M")}))
		return p
	}
	bad := filepath.Join(dir, "bad.hcl")
	writeFile(t, bad, "account \"x\" {\n  sever = \"pop.example.com\"\n}\n")
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"valid", []string{"check", "-f", rc("ok", srv.Port(), "pass")}, exitOK},
		{"valid, account named", []string{"check", "-f", rc("ok", srv.Port(), "pass"), "isp"}, exitOK},
		{"unknown account", []string{"check", "-f", rc("ok", srv.Port(), "pass"), "nosuch"}, exitUsage},
		{"unknown account, connect", []string{"check", "--connect", "-f", rc("ok", srv.Port(), "pass"), "nosuch"}, exitUsage},
		{"invalid", []string{"check", "-f", bad}, exitConfig},
		{"connect", []string{"check", "--connect", "-f", rc("ok", srv.Port(), "pass")}, exitOK},
		{"connect, wrong password", []string{"check", "--connect", "-f", rc("wrong", srv.Port(), "wrong")}, exitAuth},
		{"connect, refused", []string{"check", "--connect", "-f", rc("refused", closed, "pass")}, exitFail},
		{"bad flag", []string{"check", "--frobnicate"}, exitUsage},
	}
	for _, tt := range tests {
		if code, out, errs := runCLI(t, tt.args...); code != tt.want {
			t.Errorf("%s: popfetch %s = %d; want %d\n%s%s", tt.name, strings.Join(tt.args, " "), code, tt.want, out, errs)
		}
	}
}

// FuzzFlagsFirst: flagsFirst only moves arguments (none lost, none made
// up but the "--" it adds), and what follows its "--" is read as account
// names, never as flags.
func FuzzFlagsFirst(f *testing.F) {
	f.Add("isp\x00-v\x00-f\x00rc")
	f.Add("--connect\x00--\x00-v")
	f.Add("-f")
	f.Add("-\x00--config=x\x00a")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		g := &globals{stdout: io.Discard, stderr: io.Discard}
		fs := g.flags("check")
		fs.Bool("connect", false, "")
		out := flagsFirst(fs, args)
		count := func(s []string) map[string]int {
			m := map[string]int{}
			for _, a := range s {
				if a != "--" {
					m[a]++
				}
			}
			return m
		}
		in, got := count(args), count(out)
		for a, n := range got {
			if n > in[a] {
				t.Fatalf("flagsFirst(%q) = %q: %q made up", args, out, a)
			}
		}
		// The "--" that ends the flags, as package flag finds it: a
		// flag's value may be "--" too ("-f --" names the rc file --).
		i := -1
		for j := 0; j < len(out); j++ {
			if out[j] == "--" {
				i = j
				break
			}
			name := strings.TrimLeft(out[j], "-")
			if fl := fs.Lookup(name); fl != nil && strings.HasPrefix(out[j], "-") && !isBoolFlag(fl) {
				j++ // its value
			}
		}
		if i < 0 {
			if !maps.Equal(in, got) && len(out) >= len(args) {
				t.Fatalf("flagsFirst(%q) = %q", args, out)
			}
			return
		}
		if !maps.Equal(in, got) {
			t.Fatalf("flagsFirst(%q) = %q: arguments lost", args, out)
		}
		if err := fs.Parse(out); err == nil && !slices.Equal(fs.Args(), out[i+1:]) {
			t.Fatalf("flagsFirst(%q) = %q: flag reads %q as the names", args, out, fs.Args())
		}
	})
}
