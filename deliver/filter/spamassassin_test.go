package filter

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/filter/filtertest"
	"github.com/popfetch/popfetch/internal/testutil"
)

// spamcArgv is the command filter for spamd at addr: -x (no "safe
// fallback": an error is an exit status, not the unchecked message) and
// -X (spamd unreachable is EX_TEMPFAIL 75, not EX_UNAVAILABLE 69).
func spamcArgv(addr string) []string {
	host, port, _ := net.SplitHostPort(addr)
	spamc, _ := exec.LookPath("spamc") // its absence is a skip (filtertest.Spamd)
	return []string{spamc, "-x", "-X", "-d", host, "-p", port}
}

// spamcTempCodes: what spamc -x exits with when spamd is down (75 with
// -X), drops the connection or times out (EX_IOERR 74), or answers
// garbage (EX_PROTOCOL 76). None is the message's fault. spamc -x never
// exits non-zero for spam: its verdict is in the header it adds.
var spamcTempCodes = []int{74, 75, 76}

func copyText(t *testing.T, res Result) string {
	t.Helper()
	if res.Message == nil {
		t.Fatal("no filtered copy")
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(res.Message.Reader()); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// fieldValue is the unfolded value of the first field name in the
// message text, and whether it is there.
func fieldValue(msg, name string) (string, bool) {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	for i, l := range lines {
		n, v, ok := strings.Cut(l, ":")
		if !ok || !strings.EqualFold(n, name) {
			continue
		}
		for _, c := range lines[i+1:] {
			if c == "" || (c[0] != ' ' && c[0] != '\t') {
				break
			}
			v += " " + c
		}
		return strings.Join(strings.Fields(v), " "), true
	}
	return "", false
}

// TestSpamcCommand: spamc -x as a command filter against the private
// spamd; its headers are in the filtered copy, and a spamd that cannot
// answer is a tempfail (the message stays on the server).
func TestSpamcCommand(t *testing.T) {
	d := filtertest.Spamd(t)
	f, err := NewCommand("spamassassin", spamcArgv(d.Addr), CommandOptions{TempExitCodes: spamcTempCodes})
	if err != nil {
		t.Fatal(err)
	}
	steps := []Step{{Filter: f, Timeout: testutil.Slow(60 * time.Second)}}
	tests := []struct {
		name, raw, flag, status string
	}{
		{"gtube", withBody("Spam test\r\n" + gtube + "\r\n"), "YES", "Yes, score="},
		{"clean", sampleMessage, "", "No, score="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, m := sampleEnv(t, tt.raw)
			res, err := Run(context.Background(), steps, env, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			if res.Action != Accept {
				t.Fatalf("%v %q, want accept with headers", res.Action, res.Verdicts[0].Reply)
			}
			out := copyText(t, res)
			flag, _ := fieldValue(out, "X-Spam-Flag")
			status, _ := fieldValue(out, "X-Spam-Status")
			if flag != tt.flag || !strings.HasPrefix(status, tt.status) {
				t.Errorf("X-Spam-Flag %q, X-Spam-Status %q; want %q, %q...; copy:\n%s", flag, status, tt.flag, tt.status, out)
			}
			if tt.name == "gtube" && !strings.Contains(status, "GTUBE") {
				t.Errorf("X-Spam-Status %q does not name GTUBE", status)
			}
			// SpamAssassin reads the client from the message's own
			// Received fields: the first untrusted relay is the client
			// Gmail's MX saw.
			relays, _ := fieldValue(out, "X-Spam-Relays-Untrusted")
			if !strings.HasPrefix(relays, "[ ip=203.0.113.25 rdns=mail.example.net helo=mail.example.net by=mx.google.com ") {
				t.Errorf("X-Spam-Relays-Untrusted: %q", relays)
			}
			if !strings.HasSuffix(out, "\r\n\r\n"+strings.SplitN(tt.raw, "\r\n\r\n", 2)[1]) {
				t.Errorf("the body changed:\n%s", out)
			}
			t.Logf("X-Spam-Status: %s", status)
		})
	}
}

// TestSpamcUnavailable: every way spamc -x -X fails to get an answer
// from spamd is an exit status in spamcTempCodes, so a tempfail; with
// on_unavailable = accept the message passes unfiltered.
func TestSpamcUnavailable(t *testing.T) {
	if _, err := exec.LookPath("spamc"); err != nil {
		testutil.Unavailable(t, "spamc not installed (Debian package spamc)")
	}
	// fake answers each connection in its way after reading the request
	// line.
	fake := func(t *testing.T, answer func(c net.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.Read(make([]byte, 100))
					answer(c)
				}()
			}
		}()
		return ln.Addr().String()
	}
	tests := []struct {
		name string
		addr func(t *testing.T) string
		code int
	}{
		{"spamd down", func(t *testing.T) string {
			p, err := filtertest.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			return "127.0.0.1:" + strconv.Itoa(p)
		}, 75},
		{"connection dropped", func(t *testing.T) string { return fake(t, func(net.Conn) {}) }, 74},
		{"not spamd", func(t *testing.T) string {
			return fake(t, func(c net.Conn) { c.Write([]byte("HTTP/1.0 500 no\r\n\r\n")) })
		}, 76},
	}
	for _, tt := range tests {
		for _, policy := range []OnUnavailable{UnavailableTempFail, UnavailableAccept} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, policy), func(t *testing.T) {
				f, err := NewCommand("spamassassin", spamcArgv(tt.addr(t)), CommandOptions{TempExitCodes: spamcTempCodes})
				if err != nil {
					t.Fatal(err)
				}
				env, m := sampleEnv(t, sampleMessage)
				res, err := Run(context.Background(), []Step{{Filter: f, Timeout: testutil.Slow(30 * time.Second), OnUnavailable: policy}}, env, m, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Close()
				v := res.Verdicts[0]
				want := TempFail
				if policy == UnavailableAccept {
					want = Accept
				}
				if res.Action != want || !v.Unavailable || !strings.Contains(v.Reply, fmt.Sprintf("exit %d", tt.code)) {
					t.Errorf("%v unavailable=%v %q; want %v, unavailable, exit %d", res.Action, v.Unavailable, v.Reply, want, tt.code)
				}
				if res.Message != nil {
					t.Errorf("a copy was made: %s", copyText(t, res))
				}
			})
		}
	}
}

// TestSpamassMilter: spamass-milter, asking the private spamd, through
// NewMilter. By default it adds SpamAssassin's fields; with -r it
// rejects; SpamAssassin sees the client of the trusted Received field
// (in the Received field spamass-milter writes from the milter macros).
// With spamd down it passes the message unchecked, even with spamc's -x:
// the README says so.
func TestSpamassMilter(t *testing.T) {
	sd := filtertest.Spamd(t)
	spam := withBody("Spam test\r\n" + gtube + "\r\n")
	type want struct {
		action       Action
		flag, status string // of the filtered copy; status "" = no copy
		reply        string
	}
	tests := []struct {
		name   string
		spamd  string
		flags  []string
		clean  want
		gtube  want
		client bool // the POPFETCH_CLIENT rule must hit
	}{
		{"headers", sd.Addr, []string{"--"},
			want{Accept, "", "No, score=", ""}, want{Accept, "YES", "Yes, score=", ""}, true},
		{"reject", sd.Addr, []string{"-r", "15", "--"},
			want{Accept, "", "No, score=", ""}, want{Reject, "", "", "550 5.7.1 Blocked by SpamAssassin"}, true},
		{"spamd down", "", []string{"--", "-x"},
			want{Accept, "", "", ""}, want{Accept, "", "", ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spamd := tt.spamd
			if spamd == "" {
				p, err := filtertest.FreePort()
				if err != nil {
					t.Fatal(err)
				}
				spamd = "127.0.0.1:" + strconv.Itoa(p)
			}
			d := filtertest.SpamassMilter(t, spamd, tt.flags...)
			f, err := NewMilter("spamassassin", "inet:"+d.Addr, MilterOptions{LocalHost: "popfetch.test"})
			if err != nil {
				t.Fatal(err)
			}
			steps := []Step{{Filter: f, Timeout: testutil.Slow(60 * time.Second)}}
			for _, c := range []struct {
				raw string
				w   want
			}{{sampleMessage, tt.clean}, {spam, tt.gtube}} {
				res, v := runSteps(t, steps, c.raw)
				if res.Action != c.w.action || v.Reply != c.w.reply {
					t.Errorf("%v %q, want %v %q", res.Action, v.Reply, c.w.action, c.w.reply)
					continue
				}
				if c.w.status == "" {
					if res.Message != nil {
						t.Errorf("a filtered copy:\n%s", copyText(t, res))
					}
					continue
				}
				out := copyText(t, res)
				flag, _ := fieldValue(out, "X-Spam-Flag")
				status, _ := fieldValue(out, "X-Spam-Status")
				if flag != c.w.flag || !strings.HasPrefix(status, c.w.status) {
					t.Errorf("X-Spam-Flag %q, X-Spam-Status %q; want %q, %q...; copy:\n%s", flag, status, c.w.flag, c.w.status, out)
				}
				if tt.client && !strings.Contains(status, "POPFETCH_CLIENT") {
					t.Errorf("SpamAssassin did not see the client 203.0.113.25 (mail.example.net, HELO mail.example.net) first: X-Spam-Status %q", status)
				}
				if !strings.HasSuffix(out, "\r\n\r\n"+strings.SplitN(c.raw, "\r\n\r\n", 2)[1]) {
					t.Errorf("the body changed:\n%s", out)
				}
				t.Logf("X-Spam-Status: %s", status)
			}
		})
	}
}
