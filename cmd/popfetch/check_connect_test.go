package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// TestCheckConnectSMTP: check --connect opens dovecot's LMTP server (TCP
// and unix socket) with LHLO and QUIT, delivering nothing, and reports
// an SMTP target on a closed port as an error (exit 1), next to the POP3
// login it made before.
func TestCheckConnectSMTP(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{LMTP: true})
	alice := srv.AddUser(t, "alice", "pw")
	before := alice.Count(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	for _, tt := range []struct {
		name, deliver, postmaster string
		code                      int
		want                      []string
	}{
		{"lmtp tcp", fmt.Sprintf("\n    smtp {\n      server = %q\n      lmtp = true\n    }\n  ", srv.LMTPAddr), "", exitOK,
			[]string{"a: lmtp " + srv.LMTPAddr + ": ok (LHLO, QUIT)", "a: logged in with "}},
		{"lmtp socket, smtp postmaster on a closed port", fmt.Sprintf("\n    smtp {\n      server = %q\n      lmtp = true\n    }\n  ", srv.LMTPSocket),
			fmt.Sprintf("postmaster {\n    smtp {\n      server = %q\n    }\n  }", closed), exitFail,
			[]string{"a: lmtp " + srv.LMTPSocket + ": ok (LHLO, QUIT)", "a: smtp " + closed + ": error: smtp tcp:" + closed + ": connect: ", "connection refused", "a: logged in with "}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rc := filepath.Join(dir, "rc.hcl")
			writeFile(t, rc, rcText(state, nil, rcAccount{name: "a", port: srv.PlainPort, user: "alice", pass: "pw", deliver: tt.deliver, extra: []string{tt.postmaster}}))
			code, out, errs := runCLI(t, "-f", rc, "check", "--connect")
			t.Logf("check --connect:\n%s", out[strings.LastIndex(out, "}\n")+2:])
			if code != tt.code {
				t.Errorf("check --connect = %d; want %d\n%s%s", code, tt.code, out, errs)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("check --connect output lacks %q:\n%s%s", w, out, errs)
				}
			}
		})
	}
	if n := alice.Count(t); n != before {
		t.Errorf("alice has %d messages after check; want %d (nothing delivered)", n, before)
	}
	if log := srv.Log(t); !strings.Contains(log, "lmtp") && testing.Verbose() {
		t.Logf("dovecot log:\n%s", log)
	}
}
