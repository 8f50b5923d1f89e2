package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	milter "github.com/d--j/go-milter"
)

// routeMilter is a go-milter test server that decides by the Subject:
// "spam" adds X-Spam-Flag: YES (with an escape sequence in a second
// field), "reject" rejects with 550; anything else is accepted. It
// records the client and HELO it was told.
type routeMilter struct {
	mu   sync.Mutex
	seen []string
}

type routeMilterSession struct {
	milter.NoOpMilter
	rm      *routeMilter
	subject string
}

func (s *routeMilterSession) Connect(host, _ string, _ uint16, addr string, _ milter.Modifier) (*milter.Response, error) {
	s.rm.mu.Lock()
	s.rm.seen = append(s.rm.seen, "connect "+host+" "+addr)
	s.rm.mu.Unlock()
	return milter.RespContinue, nil
}

func (s *routeMilterSession) Helo(name string, _ milter.Modifier) (*milter.Response, error) {
	s.rm.mu.Lock()
	s.rm.seen = append(s.rm.seen, "helo "+name)
	s.rm.mu.Unlock()
	return milter.RespContinue, nil
}

func (s *routeMilterSession) Header(name, value string, _ milter.Modifier) (*milter.Response, error) {
	if strings.EqualFold(name, "Subject") {
		s.subject = strings.TrimSpace(value)
	}
	return milter.RespContinue, nil
}

func (s *routeMilterSession) EndOfMessage(m milter.Modifier) (*milter.Response, error) {
	switch {
	case strings.Contains(s.subject, "spam"):
		m.AddHeader("X-Spam-Flag", "YES")
		m.AddHeader("X-Note", "bad\x1b]0;owned\x07")
	case strings.Contains(s.subject, "reject"):
		return milter.RejectWithCodeAndReason(550, "5.7.1 spam \x1b[31mdetected")
	}
	return milter.RespAccept, nil
}

func startRouteMilter(t *testing.T) (*routeMilter, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rm := &routeMilter{}
	srv := milter.NewServer(milter.WithMilter(func() milter.Milter { return &routeMilterSession{rm: rm} }),
		milter.WithAction(milter.OptAddHeader))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rm, "inet:" + ln.Addr().String()
}

// routeFilterMsg is a message the provider's MX received from
// 203.0.113.25 (HELO mail.example.net), with a forged field below.
func routeFilterMsg(subject, body string) string {
	return "Return-Path: <alice@example.net>\r\n" +
		"Received: from mail.example.net (mail.example.net [203.0.113.25])\r\n" +
		"\tby mx.provider.example with ESMTPS id 1; Mon, 01 Jan 2024 08:00:01 +0000\r\n" +
		"Received: from forged.example (forged.example [192.0.2.66])\r\n\tby mail.example.net; Mon, 01 Jan 2024 08:00:00 +0000\r\n" +
		"From: alice@example.net\r\nTo: ann@example.com, bob@example.com\r\nSubject: " + subject + "\r\n\r\n" + body
}

// TestCheckRouteFilters: with filters configured, check --route prints
// the trusted Received field, runs the filters on the file with the
// poll's envelope (MAIL FROM the Return-Path, one RCPT TO per routed
// user, the client and HELO of the trusted field), prints each verdict
// and header change, and files by the rules on the filtered header: a
// header the milter adds sends the copies to the Junk folder, a reject
// goes to the postmaster with the reason, a filter that is down is
// printed with its on_unavailable policy, not fatal. Everything printed
// from the message or the filter is escaped, and the run creates or
// changes no file (the filtered copies' spools are in a private
// temporary directory, removed).
func TestCheckRouteFilters(t *testing.T) {
	rm, addr := startRouteMilter(t)
	dir := t.TempDir()
	down := filepath.Join(dir, "down.sock") // nothing listens
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	rc := filepath.Join(dir, "rc.hcl")
	account := func(name, filters string) string {
		return fmt.Sprintf(`account %q {
  server       = "pop.example.com"
  username     = "catchall-%s@example.com"
  password     = "x"
  deliver { maildir = "%s/vmail/{user}" }
  postmaster { maildir = "%s/vmail/postmaster" }
  multidrop {
    local_domains = ["example.com"]
    user "ann" {}
    user "bob" {}
  }
  trusted_received { by = "mx.provider.example" }
%s
  rule "spam" {
    header = "X-Spam-Flag"
    equals = "YES"
    folder = "Junk"
  }
}
`, name, name, dir, dir, filters)
	}
	writeFile(t, rc, fmt.Sprintf("state_dir = %q\n", filepath.Join(dir, "state"))+
		account("up", fmt.Sprintf(`  filter "down" {
    milter         = "unix:%s"
    on_unavailable = "accept"
  }
  filter "scan" {
    milter = %q
  }`, down, addr))+
		account("tempfail", fmt.Sprintf(`  filter "down" {
    milter = "unix:%s"
  }`, down)))
	os.Chmod(rc, 0o600)
	msgs := filepath.Join(dir, "msgs")
	os.Mkdir(msgs, 0o700)
	spam, reject, clean := filepath.Join(msgs, "spam.eml"), filepath.Join(msgs, "reject.eml"), filepath.Join(msgs, "clean.eml")
	// Larger than a spool keeps in memory: the filtered copy is a file.
	writeFile(t, spam, routeFilterMsg("buy spam", strings.Repeat("spam spam spam spam\r\n", 20000)))
	writeFile(t, reject, routeFilterMsg("reject me", "body\r\n"))
	writeFile(t, clean, routeFilterMsg("lunch", "body\r\n"))

	before := snapshotTree(t, dir)
	code, out, errs := runCLI(t, "-f", rc, "check", "--route", "--account", "up", spam, reject, clean)
	after := snapshotTree(t, dir)
	t.Logf("check --route:\n%s%s", out, errs)
	if code != exitOK {
		t.Fatalf("check --route = %d", code)
	}
	for p, v := range after {
		if w, ok := before[p]; !ok {
			t.Errorf("check --route created %s", p)
		} else if w != v {
			t.Errorf("check --route changed %s: %s -> %s", p, w, v)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("check --route removed %s", p)
		}
	}
	blocks := strings.Split(out, "\n\n")
	if len(blocks) != 3 {
		t.Fatalf("%d blocks, want 3", len(blocks))
	}
	want := [][]string{{
		"  received: field 1 by mx.provider.example: client 203.0.113.25, name mail.example.net, helo mail.example.net\n",
		"  filters: MAIL FROM <alice@example.net>, RCPT TO <ann@example.com>, RCPT TO <bob@example.com>\n",
		"  filter down: accept (unavailable; on_unavailable = \"accept\"): ",
		"  filter scan: accept\n    add X-Spam-Flag: YES\n    add X-Note: bad\\x1b]0;owned\\x07\n",
		"  user ann: address ann@example.com -> maildir " + dir + "/vmail/ann\n    rule spam (X-Spam-Flag: YES): folder Junk\n",
		"  user bob: address bob@example.com -> maildir " + dir + "/vmail/bob\n    rule spam (X-Spam-Flag: YES): folder Junk",
	}, {
		"  filter scan: reject: 550 5.7.1 spam ",
		"  user ann: address ann@example.com -> maildir " + dir + "/vmail/ann\n  user bob:",
		"  postmaster (maildir " + dir + "/vmail/postmaster): gets the message; X-Popfetch-Reason: rejected by scan: 550 5.7.1 spam ",
	}, {
		"  filter scan: accept\n  user ann: address ann@example.com -> maildir " + dir + "/vmail/ann\n  user bob: address bob@example.com -> maildir " + dir + "/vmail/bob",
	}}
	for i, ws := range want {
		for _, w := range ws {
			if !strings.Contains(blocks[i], w) {
				t.Errorf("block %d:\n%s\nlacks %q", i, blocks[i], w)
			}
		}
	}
	if strings.Contains(blocks[1], "rule spam") || strings.Contains(blocks[2], "rule spam") {
		t.Errorf("a rule filed a copy the filters did not flag:\n%s", out)
	}
	if strings.ContainsAny(out+errs, "\x1b\x07") {
		t.Errorf("check --route printed a control character:\n%q", out)
	}
	rm.mu.Lock()
	seen := strings.Join(rm.seen, "\n")
	rm.mu.Unlock()
	if !strings.Contains(seen, "connect mail.example.net 203.0.113.25") || !strings.Contains(seen, "helo mail.example.net") {
		t.Errorf("the milter was told:\n%s\nwant the trusted field's client and HELO", seen)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// The default on_unavailable: the message stays on the server; no
	// rule decides anything, and the check itself does not fail.
	code, out, errs = runCLI(t, "-f", rc, "check", "--route", "--account", "tempfail", clean)
	if code != exitOK || !strings.Contains(out, "  filter down: tempfail (unavailable; on_unavailable = \"tempfail\"): ") ||
		!strings.Contains(out, "  tempfail: the message stays on the server and is tried again at the next poll: ") ||
		strings.Contains(out, "rule spam") || strings.Contains(out, "postmaster (") {
		t.Errorf("check --route --account tempfail = %d\n%s%s", code, out, errs)
	}
}

// TestCheckRouteSingleDrop: check --route takes a single-drop account
// (the README's rspamd recipe): the filters are told the poll's envelope
// (MAIL FROM the Return-Path, one RCPT TO: the username, with @server
// when it is not an address), a header the milter adds makes the
// account's rule file the message into Junk, a reject goes to the
// postmaster with the reason, and a clean message goes to the deliver
// block. Everything from the message or the filter is escaped, and the
// run creates or changes no file.
func TestCheckRouteSingleDrop(t *testing.T) {
	_, addr := startRouteMilter(t)
	dir := t.TempDir()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, fmt.Sprintf(`state_dir = %q
account "home" {
  server   = "pop.example.com"
  username = "joe"
  password = "x"
  deliver { maildir = "%s/Maildir" }
  postmaster { maildir = "%s/postmaster" }
  trusted_received { by = "mx.provider.example" }
  filter "rspamd" {
    milter = %q
  }
  rule "spam" {
    header = "X-Spam-Flag"
    equals = "YES"
    folder = "Junk"
  }
}
account "work" {
  server   = "pop.example.com"
  username = "joe@example.com"
  password = "x"
  deliver { maildir = "%s/Work" }
}
`, filepath.Join(dir, "state"), dir, dir, addr, dir))
	os.Chmod(rc, 0o600)
	msgs := filepath.Join(dir, "msgs")
	os.Mkdir(msgs, 0o700)
	spam, reject, clean := filepath.Join(msgs, "spam.eml"), filepath.Join(msgs, "reject.eml"), filepath.Join(msgs, "clean.eml")
	writeFile(t, spam, routeFilterMsg("buy spam", "body\r\n"))
	writeFile(t, reject, routeFilterMsg("reject me", "body\r\n"))
	writeFile(t, clean, routeFilterMsg("lunch", "body\r\n"))

	before := snapshotTree(t, dir)
	code, out, errs := runCLI(t, "-f", rc, "check", "--route", "--account", "home", spam, reject, clean)
	after := snapshotTree(t, dir)
	t.Logf("check --route:\n%s%s", out, errs)
	if code != exitOK {
		t.Fatalf("check --route = %d", code)
	}
	for p, v := range after {
		if w, ok := before[p]; !ok || w != v {
			t.Errorf("check --route created or changed %s", p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("check --route removed %s", p)
		}
	}
	blocks := strings.Split(out, "\n\n")
	if len(blocks) != 3 {
		t.Fatalf("%d blocks, want 3", len(blocks))
	}
	env := "  filters: MAIL FROM <alice@example.net>, RCPT TO <joe@pop.example.com>\n"
	want := [][]string{{
		spam + ": account home (single-drop)\n",
		"  received: field 1 by mx.provider.example: client 203.0.113.25, name mail.example.net, helo mail.example.net\n",
		env,
		"  filter rspamd: accept\n    add X-Spam-Flag: YES\n    add X-Note: bad\\x1b]0;owned\\x07\n",
		"  deliver: maildir " + dir + "/Maildir\n    rule spam (X-Spam-Flag: YES): folder Junk",
	}, {
		env,
		"  filter rspamd: reject: 550 5.7.1 spam ",
		"  postmaster (maildir " + dir + "/postmaster): gets the message; X-Popfetch-Reason: rejected by rspamd: 550 5.7.1 spam ",
	}, {
		env,
		"  filter rspamd: accept\n  deliver: maildir " + dir + "/Maildir\n",
	}}
	for i, ws := range want {
		for _, w := range ws {
			if !strings.Contains(blocks[i], w) {
				t.Errorf("block %d:\n%s\nlacks %q", i, blocks[i], w)
			}
		}
	}
	if strings.Contains(blocks[1], "deliver:") || strings.Contains(blocks[1], "rule spam") || strings.Contains(blocks[2], "rule spam") {
		t.Errorf("a rejected or clean message was filed by a rule, or delivered:\n%s", out)
	}
	if strings.ContainsAny(out+errs, "\x1b\x07") {
		t.Errorf("check --route printed a control character:\n%q", out)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// An account without filters: the rules on the file's own header.
	code, out, errs = runCLI(t, "-f", rc, "check", "--route", "--account", "work", clean)
	if code != exitOK || !strings.Contains(out, "account work (single-drop)\n") || strings.Contains(out, "filters:") ||
		!strings.HasSuffix(out, "  deliver: maildir "+dir+"/Work\n") {
		t.Errorf("check --route --account work = %d\n%s%s", code, out, errs)
	}
	// Without --account and no multidrop account, several accounts are
	// a usage error.
	code, _, errs = runCLI(t, "-f", rc, "check", "--route", clean)
	if code != exitUsage || !strings.Contains(errs, "no multidrop account; choose a single-drop account with --account NAME") {
		t.Errorf("check --route without --account = %d\n%s", code, errs)
	}
}
