package main

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// errRC writes an rc file with one account "isp" at 127.0.0.1:port (or
// server) with the given tls line, user and password, delivering to a Maildir in
// dir, and returns its path.
func errRC(t *testing.T, dir, server string, port int, tls, user, pass string, extra ...string) string {
	t.Helper()
	if server == "" {
		server = "127.0.0.1"
	}
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, fmt.Sprintf(`state_dir = %q
account "isp" {
  server   = %q
  port     = %d
  %s
  username = %q
  password = %q
  timeout  = "5s"
  %s
  deliver { maildir = %q }
}
`, filepath.Join(dir, "state"), server, port, tls, user, pass, strings.Join(extra, "\n  "), filepath.Join(dir, "Maildir")))
	return rc
}

// repeatedPrefix returns an error prefix that a line of out says twice
// ("tls policy not met: tls policy not met: ...", "account x: ... account
// x: ..."): a part of the line before a ": " that occurs again as such.
func repeatedPrefix(out string) string {
	for _, ln := range strings.Split(out, "\n") {
		parts := strings.Split(ln, ": ")
		seen := map[string]bool{}
		for _, p := range parts[:len(parts)-1] {
			p = strings.TrimSpace(p)
			if i := strings.LastIndexAny(p, ";=\""); i >= 0 {
				p = p[i+1:] // a log line's key or a summary's "; error"
			}
			if len(p) < 4 {
				continue
			}
			if seen[p] {
				return p
			}
			seen[p] = true
		}
	}
	return ""
}

// TestFailureOutput: the output of `popfetch fetch` and `check --connect`
// in common failures says each thing once: no prefix repeated, no
// err=<nil> on a log line, the error not printed twice, and the advice
// each failure needs.
func TestFailureOutput(t *testing.T) {
	plain := pop3test.NewServer(t, pop3test.Options{Greeting: "+OK Dovecot ready.", Messages: []pop3test.Message{{UID: "a", Data: []byte("Subject: x\r\n\r\nhi\r\n")}}})
	_, selfSigned, _ := pop3test.GenerateCert(t, "localhost")
	tlsSrv := pop3test.NewServer(t, pop3test.Options{Implicit: true, TLS: selfSigned, Messages: []pop3test.Message{{UID: "a", Data: []byte("Subject: x\r\n\r\nhi\r\n")}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	tests := []struct {
		name   string
		server string
		port   int
		tls    string
		pass   string
		code   int
		want   []string // in the output; the first exactly once
		// maildirFile: the Maildir path is a file, so delivery fails
		maildirFile bool
	}{
		{name: "tls mismatch", port: plain.Port(), tls: `tls = "implicit"`, pass: "pass", code: exitFail,
			want: []string{`answered in plain text ("+OK Dovecot ready.")`, `tls = "starttls"`}},
		{name: "untrusted certificate", server: "localhost", port: tlsSrv.Port(), tls: `tls = "implicit"`, pass: "pass", code: exitFail,
			want: []string{"its name matches localhost", `tls_fingerprint = "sha256:` + pop3test.SPKIPin(t, selfSigned) + `"`}},
		{name: "wrong password", port: plain.Port(), tls: `tls = "none"`, pass: "wrong", code: exitAuth,
			want: []string{"authentication failed"}},
		{name: "connection refused", port: closedPort, tls: `tls = "none"`, pass: "pass", code: exitFail,
			want: []string{fmt.Sprintf("connect 127.0.0.1:%d: connection refused", closedPort)}},
		{name: "delivery failure", port: plain.Port(), tls: `tls = "none"`, pass: "pass", code: exitFail, maildirFile: true,
			want: []string{"1 failed", "delivery failed"}},
		{name: "dns failure", server: "no-such-host.invalid", port: 995, tls: `tls = "implicit"`, pass: "pass", code: exitFail,
			want: []string{"connect no-such-host.invalid:995: DNS lookup failed: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			rc := errRC(t, dir, tt.server, tt.port, tt.tls, "user", tt.pass)
			if tt.maildirFile {
				writeFile(t, filepath.Join(dir, "Maildir"), "not a directory\n")
			}
			runs := [][]string{{"fetch"}, {"-v", "fetch"}, {"check", "--connect"}}
			if tt.maildirFile {
				runs = runs[:2] // check --connect delivers nothing
			}
			for _, args := range runs {
				r := daemonCLI(t, rc, args...)
				out := r.stdout + r.stderr
				t.Logf("popfetch %s: exit %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
				if r.code != tt.code {
					t.Errorf("popfetch %s: exit %d; want %d", strings.Join(args, " "), r.code, tt.code)
				}
				for _, w := range tt.want {
					if !strings.Contains(out, w) {
						t.Errorf("popfetch %s: output lacks %q", strings.Join(args, " "), w)
					}
				}
				if m := repeatedPrefix(out); m != "" {
					t.Errorf("popfetch %s: repeated prefix %q", strings.Join(args, " "), m)
				}
				if strings.Contains(out, "err=<nil>") || strings.Contains(out, `"err":null`) {
					t.Errorf("popfetch %s: err=<nil> in the output", args[0])
				}
				// The error once, naming the account once.
				if n := strings.Count(out, tt.want[0]); n != 1 {
					t.Errorf("popfetch %s: %q printed %d times", strings.Join(args, " "), tt.want[0], n)
				}
				for _, ln := range strings.Split(out, "\n") {
					if strings.Contains(ln, "error") && strings.Count(ln, "isp") > 1 {
						t.Errorf("popfetch %s: account named twice: %q", strings.Join(args, " "), ln)
					}
				}
			}
		})
	}
}

var pinLine = regexp.MustCompile(`tls_fingerprint = "sha256:[0-9a-f]{64}"`)

// TestTLSAdviceDovecot: against a real dovecot, implicit TLS on its plain
// POP3 port says the port speaks plain text and names tls = "starttls";
// its certificate (from a CA popfetch is not told about) is refused with a
// tls_fingerprint line, and that line, pasted into the account, makes the
// next fetch deliver; with tls_check_name = true too, as the certificate
// names 127.0.0.1.
func TestTLSAdviceDovecot(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "tlsadvice", "pw")
	mb.Put(t, []byte("From: a@example.net\r\nTo: b@example.com\r\nSubject: pin\r\n\r\nbody\r\n"))
	dir := t.TempDir()

	r := daemonCLI(t, errRC(t, dir, srv.Host, srv.PlainPort, `tls = "implicit"`, mb.User, "pw"), "fetch")
	if r.code != exitFail || !strings.Contains(r.stdout, `answered in plain text ("+OK`) || !strings.Contains(r.stdout, `set tls = "starttls"`) {
		t.Fatalf("implicit TLS on the plain port: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	rc := errRC(t, dir, srv.Host, srv.TLSPort, `tls = "implicit"`, mb.User, "pw")
	r = daemonCLI(t, rc, "fetch")
	line := pinLine.FindString(r.stdout)
	if r.code != exitFail || line == "" || !strings.Contains(r.stdout, "its name matches "+srv.Host) {
		t.Fatalf("unknown CA: exit %d, no pin line or name\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Count(r.stdout, line) != 1 {
		t.Errorf("the pin line is printed %d times", strings.Count(r.stdout, line))
	}
	rc = errRC(t, dir, srv.Host, srv.TLSPort, `tls = "implicit"`, mb.User, "pw", line, "tls_check_name = true", "keep = true")
	r = daemonCLI(t, rc, "fetch")
	if r.code != exitOK || !strings.Contains(r.stdout, "1 new, 1 delivered") {
		t.Fatalf("with %s: exit %d\n%s%s", line, r.code, r.stdout, r.stderr)
	}
}
