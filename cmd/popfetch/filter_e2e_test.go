package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/filter/filtertest"
	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// providerMsg is a message as the provider's MX (mx.provider.example)
// received it from 203.0.113.25, HELO mail.example.net; the Received
// field below it is the sender's own claim and is not trusted.
func providerMsg(id, subject, body string, extraHead ...string) []byte {
	return []byte("Return-Path: <alice@example.net>\r\n" +
		"Received: from mail.example.net (mail.example.net [203.0.113.25])\r\n" +
		"\tby mx.provider.example with ESMTPS id " + id + "\r\n" +
		"\tfor <joe@provider.example>; Mon, 01 Jan 2024 08:00:01 +0000\r\n" +
		"Received: from forged.example (forged.example [192.0.2.66])\r\n\tby mail.example.net; Mon, 01 Jan 2024 08:00:00 +0000\r\n" +
		"From: Alice <alice@example.net>\r\nTo: joe@provider.example\r\nSubject: " + subject + "\r\n" +
		"Date: Mon, 01 Jan 2024 08:00:00 +0000\r\nMessage-ID: <" + id + "@example.net>\r\n" +
		strings.Join(extraHead, "") + "\r\n" + body)
}

func eicarBody() (head, body string) {
	return "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n",
		"--b1\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n" +
			"--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"eicar.com\"\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(filtertest.EICAR)) + "\r\n--b1--\r\n"
}

// TestFiltersEndToEnd: the real binary fetches from a real dovecot
// through a private rspamd (milter mode) and clamav-milter, as the rc
// file says: the clean message lands in the inbox with rspamd's fields,
// the GTUBE one (rspamd's "add header" test pattern) in .Junk by a rule on
// rspamd's X-Spam field, the EICAR one at the postmaster with the
// reason; all three leave the server. rspamd's own result shows the
// client and HELO of the provider's Received field.
func TestFiltersEndToEnd(t *testing.T) {
	rsp := filtertest.Rspamd(t)
	clam := filtertest.Clam(t)
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "joe", "joe-pass")
	eh, eb := eicarBody()
	mb.Put(t,
		providerMsg("clean1", "lunch", "Shall we have lunch on Tuesday?\r\n"),
		providerMsg("spam1", "cheap", "Spam test\r\n"+filtertest.GTUBEAddHeader+"\r\n"),
		providerMsg("virus1", "invoice", eb, eh),
	)
	dir := t.TempDir()
	inbox, pm := filepath.Join(dir, "Maildir"), filepath.Join(dir, "postmaster")
	rc := filepath.Join(dir, "popfetch.hcl")
	writeFile(t, rc, fmt.Sprintf(`state_dir = %q
account "joe" {
  server   = "127.0.0.1"
  port     = %d
  tls      = "none"
  username = "joe"
  password = "joe-pass"
  deliver { maildir = %q }
  postmaster { maildir = %q }

  trusted_received {
    by = "mx.provider.example"
  }
  filter "rspamd" {
    milter  = "inet:%s"
    timeout = "90s"
  }
  filter "clamav" {
    milter  = "inet:%s"
    timeout = "90s"
  }
  rule "spam" {
    header = "X-Spam"
    equals = "yes"
    folder = "Junk"
  }
}
`, filepath.Join(dir, "state"), srv.PlainPort, inbox, pm, rsp.Addr, clam.Addr))

	r := daemonCLI(t, rc, "-v", "fetch")
	t.Logf("popfetch fetch:\n%s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("fetch exit %d", r.code)
	}
	if n := mb.Count(t); n != 0 {
		t.Errorf("%d messages left on the server", n)
	}
	read := func(md string) []string {
		var out []string
		for _, f := range maildirFiles(t, md) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
		return out
	}
	in := read(inbox)
	if len(in) != 1 || !strings.Contains(in[0], "Subject: lunch") || !strings.Contains(in[0], "X-Spamd-Result:") {
		t.Fatalf("inbox = %q", in)
	}
	// What rspamd says it was told: the trusted field's client and HELO,
	// not popfetch's own connection (127.0.0.1) nor the forged field.
	if !strings.Contains(in[0], "POPFETCH_CLIENT(0.00)[ip=203.0.113.25,helo=mail.example.net,host=mail.example.net]") {
		t.Errorf("rspamd did not see the provider's client:\n%s", in[0])
	}
	junk := read(filepath.Join(inbox, ".Junk"))
	if len(junk) != 1 || !strings.Contains(junk[0], "Subject: cheap") || !regexp.MustCompile(`(?m)^X-Spam: [Yy]es$`).MatchString(junk[0]) {
		t.Fatalf(".Junk = %q", junk)
	}
	pmm := read(pm)
	if len(pmm) != 1 || !strings.Contains(pmm[0], "Subject: invoice") ||
		!regexp.MustCompile(`(?m)^X-Popfetch-Reason: rejected by clamav: 5\d\d .*Popfetch\.Test\.EICAR`).MatchString(pmm[0]) {
		t.Fatalf("postmaster = %q", pmm)
	}
	for _, w := range []string{"filter.1.name=rspamd filter.1.action=accept filter.2.name=clamav filter.2.action=accept",
		"filter.2.name=clamav filter.2.action=reject filter.2.reply="} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("log lacks %q", w)
		}
	}
}
