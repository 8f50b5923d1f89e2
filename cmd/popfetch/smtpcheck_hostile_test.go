package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// misbehavingSMTP serves every connection with serve and returns its
// address; closing the returned func drops every connection.
func misbehavingSMTP(t *testing.T, serve func(c net.Conn)) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go serve(c)
		}
	}()
	stop := func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// TestCheckConnectSMTPMisbehaves: `check --connect` against an SMTP
// target that never greets, answers EHLO with 5xx, or sends an endless
// multiline reply ends in reasonable time (a check is interactive) with
// an error, exit 1, and output free of control characters.
func TestCheckConnectSMTPMisbehaves(t *testing.T) {
	read := func(c net.Conn) { c.Read(make([]byte, 4096)) }
	for _, tt := range []struct {
		name  string
		serve func(c net.Conn)
	}{
		{"silent", func(c net.Conn) { c.Read(make([]byte, 1)) }},
		{"5xx to EHLO", func(c net.Conn) {
			c.Write([]byte("220 hi\r\n"))
			read(c)
			c.Write([]byte("554 \x1b[2Jgo away\r\n"))
			read(c)
			c.Write([]byte("554 no\r\n"))
			read(c)
		}},
		{"endless multiline", func(c net.Conn) {
			c.Write([]byte("220 hi\r\n"))
			read(c)
			for {
				if _, err := c.Write([]byte("250-" + strings.Repeat("x", 500) + "\r\n")); err != nil {
					return
				}
			}
		}},
		{"endless line", func(c net.Conn) {
			c.Write([]byte("220 hi\r\n"))
			read(c)
			for {
				if _, err := c.Write([]byte(strings.Repeat("2", 4096))); err != nil {
					return
				}
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, stop := misbehavingSMTP(t, tt.serve)
			srv := pop3test.NewServer(t, pop3test.Options{})
			dir := t.TempDir()
			rc := filepath.Join(dir, "rc.hcl")
			writeFile(t, rc, fmt.Sprintf(`state_dir = %q
account "a" {
  server   = "127.0.0.1"
  port     = %d
  tls      = "none"
  username = "user"
  password = "pass"
  deliver {
    smtp {
      server = %q
    }
  }
}
`, filepath.Join(dir, "state"), srv.Port(), addr))
			os.Chmod(rc, 0o600)
			type res struct {
				code     int
				out, err string
			}
			done := make(chan res, 1)
			start := time.Now()
			go func() {
				code, out, errs := runCLI(t, "-f", rc, "check", "--connect")
				done <- res{code, out, errs}
			}()
			select {
			case r := <-done:
				if r.code != exitFail {
					t.Errorf("check --connect = %d; want %d\n%s%s", r.code, exitFail, r.out, r.err)
				}
				if strings.ContainsAny(r.out+r.err, "\x1b\x07") {
					t.Errorf("control characters in output: %q", r.out+r.err)
				}
				t.Logf("%s: %s", time.Since(start).Round(time.Millisecond), lastLines(r.out, 3))
			case <-time.After(20 * time.Second):
				stop()
				<-done
				t.Errorf("check --connect waited %s on a misbehaving SMTP target (the smtp block's delivery timeout, 5m by default, applies to the check's greeting and EHLO)", time.Since(start).Round(time.Second))
			}
		})
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
