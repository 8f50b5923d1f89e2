package main

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// TestDaemonAlertsLMTP: with the real binary, an alert block whose only
// target is a real dovecot-lmtpd (over its unix socket) gets a wrong
// password's auth-hold alert and, after the fix and SIGHUP, its recovery
// notice: two messages in the postmaster's mailbox, as dovecot stored
// them, with dovecot's own trace field and none of popfetch's "with POP3"
// (popfetch wrote them; it retrieved nothing), and no password.
func TestDaemonAlertsLMTP(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{LMTP: true})
	mb := srv.AddUser(t, "erin", "erin-right")
	mb.Put(t, seqMsg("erin", 1, 2))
	pm := srv.AddUser(t, "postmaster", "pm-pass")
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	pw := filepath.Join(dir, "erin.pw")
	writeFile(t, pw, "erin-wrong\n")
	top := []string{
		"alert {",
		`  to = "postmaster@example.com"`,
		"  smtp {",
		"    server = " + quote(srv.LMTPSocket),
		"    lmtp   = true",
		"  }",
		"}",
	}
	erin := rcAccount{name: "erin", port: srv.PlainPort, user: mb.User, passFile: pw, maildir: filepath.Join(dir, "Maildir")}
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), top, erin))

	d := startDaemon(t, rc)
	waitFor(t, daemonWait, "the auth-hold alert over LMTP", func() bool { return pm.Count(t) >= 1 })
	writeFile(t, pw, mb.Pass+"\n")
	d.signal(t, syscall.SIGHUP)
	waitMaildir(t, erin.maildir, 1, daemonWait)
	waitFor(t, daemonWait, "the recovery notice over LMTP", func() bool { return pm.Count(t) >= 2 })
	// The copy is in the mailbox before the line that logs it.
	waitFor(t, daemonWait, "two \"alert sent\" lines", func() bool { return len(d.log.lines("alert sent", "target=smtp")) >= 2 })
	if n := len(d.log.lines("alert sent", "target=smtp")); n != 2 {
		t.Errorf("%d \"alert sent\" lines for the LMTP target; want 2", n)
	}

	msgs := pm.Messages(t)
	var subjects []string
	subj := regexp.MustCompile(`(?m)^Subject: (.*)$`)
	for _, b := range msgs {
		m := string(b)
		if s := subj.FindStringSubmatch(m); s != nil {
			subjects = append(subjects, s[1])
		}
		for _, h := range []string{"\nDelivered-To: postmaster@example.com\n", "\nFrom: \"popfetch\" <popfetch@", "\nTo: <postmaster@example.com>\n",
			"\nMessage-Id: <alert.", "\nAuto-Submitted: auto-generated\n", "\nX-Popfetch-Alert: "} {
			if !strings.Contains("\n"+m, h) {
				t.Errorf("alert as dovecot stored it lacks %q:\n%s", strings.TrimSpace(h), m)
			}
		}
		if !strings.Contains(m, "with LMTP") {
			t.Errorf("no trace field of dovecot's LMTP delivery:\n%s", m)
		}
		if strings.Contains(m, "with POP3") || strings.Contains(m, "(account ") {
			t.Errorf("an alert claims it was retrieved over POP3:\n%s", m)
		}
		if strings.Contains(m, "erin-wrong") || strings.Contains(m, mb.Pass) {
			t.Errorf("an alert shows a password:\n%s", m)
		}
	}
	want := []string{"[popfetch] ALERT: account erin: authentication hold", "[popfetch] RESOLVED: account erin: authentication hold"}
	if !slices.Equal(subjects, want) {
		t.Errorf("postmaster's subjects %q; want %q", subjects, want)
	}
}
