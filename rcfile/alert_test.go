package rcfile

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAlertParse: the top-level block is the default, an account's own
// block (or the defaults block's) replaces it whole, and the values reach
// the Config.
func TestAlertParse(t *testing.T) {
	t.Parallel()
	src := `
alert {
  maildir = "/var/mail/postmaster/Maildir"
  command = ["/usr/local/bin/notify", "popfetch"]
}
` + fmt.Sprintf(minimal, `
  keep = true
  alert {
    smtp {
      server = "localhost:24"
      lmtp   = true
    }
    to               = "postmaster@example.com"
    after            = "6h"
    mailbox_messages = 2000
    mailbox_size     = "1GB"
  }`) + `
account "b" {
  username = "ann"
}
`
	cfg, diags := parseOne(t, src)
	if diags.HasErrors() {
		t.Fatalf("%s", render(t, diags))
	}
	top := cfg.AlertFor("")
	if top == nil || top.Maildir != "/var/mail/postmaster/Maildir" || !slices.Equal(top.Command, []string{"/usr/local/bin/notify", "popfetch"}) || top.After != 0 {
		t.Errorf("top-level alert %+v", top)
	}
	if b := cfg.AlertFor("b"); b != top {
		t.Errorf("account b without a block: %+v, want the top-level one", b)
	}
	a := cfg.AlertFor("a")
	if a == nil || a.SMTP == nil || a.SMTP.Server != "localhost:24" || !a.SMTP.LMTP || a.To != "postmaster@example.com" ||
		a.After != 6*time.Hour || a.MailboxMessages != 2000 || a.MailboxSize != 1000*1000*1000 || a.Maildir != "" || a.Command != nil {
		t.Errorf("account a's alert %+v", a)
	}
	// Where alerts go is not part of the account: a reload that changes
	// it must not look like a change of the account.
	if cfg2, _ := parseOne(t, strings.Replace(src, `after            = "6h"`, `after = "7h"`, 1)); cfg2 == nil || !SameAccount(cfg.Accounts[0], cfg2.Accounts[0]) {
		t.Error("changing the alert block changed the account")
	}
}

// TestAlertErrors: every mistake is reported at its file:line:col.
func TestAlertErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ body, want string }{
		{`command = ["notify"]`, `test.hcl:3:3: error: Invalid command`},
		{`command = []`, `test.hcl:3:3: error: Invalid command`},
		{`maildir = "/var/mail/{user}"`, `test.hcl:3:3: error: Placeholder not allowed here`},
		{`to = "Postmaster <pm@example.com>"`, `test.hcl:3:3: error: Invalid to`},
		{`to = "nobody"`, `test.hcl:3:3: error: Invalid to`},
		{"smtp {\n    server = \"localhost:25\"\n  }", `test.hcl:3:3: error: Missing to`},
		{`after = "10s"`, `test.hcl:3:3: error: Invalid after`},
		{`after = "soon"`, `test.hcl:3:3: error: Invalid duration`},
		{`mailbox_messages = -1`, `test.hcl:3:3: error: Invalid mailbox_messages`},
		{`mailbox_size = "lots"`, `test.hcl:3:3: error: Invalid mailbox_size`},
		{`after = "1h"`, `test.hcl:2:1: warning: Alert block without a target`},
	} {
		src := "\nalert {\n  " + tt.body + "\n}\n" + fmt.Sprintf(minimal, "")
		_, diags := parseOne(t, src)
		if out := string(render(t, diags)); !strings.Contains(out, tt.want) {
			t.Errorf("alert { %s }:\n%s\nwant %q", tt.body, out, tt.want)
		}
	}
}

// TestAlertFormat: Format writes the alert blocks, and what it writes
// reads back as the same settings (an account's after made explicit).
func TestAlertFormat(t *testing.T) {
	t.Parallel()
	src := `
alert {
  maildir = "/var/mail/postmaster/Maildir"
  command = ["/usr/local/bin/notify"]
}
` + fmt.Sprintf(minimal, `
  keep = true
  alert {
    smtp {
      server = "localhost:25"
    }
    to           = "pm@example.com"
    mailbox_size = "2GB"
  }`)
	cfg, diags := parseOne(t, src)
	if diags.HasErrors() {
		t.Fatalf("%s", render(t, diags))
	}
	var b strings.Builder
	if err := cfg.Format(&b); err != nil {
		t.Fatal(err)
	}
	back, diags := parseOne(t, b.String())
	if diags.HasErrors() {
		t.Fatalf("Format's output does not parse:\n%s\n%s", b.String(), render(t, diags))
	}
	if !same(cfg.Alert, back.Alert) {
		t.Errorf("top-level alert: %+v, read back %+v", cfg.Alert, back.Alert)
	}
	want := *cfg.AlertFor("a")
	want.After = DefaultAlertAfter(cfg.Accounts[0].Interval)
	if got := back.AlertFor("a"); !same(&want, got) {
		t.Errorf("account alert read back %+v, want %+v\n%s", got, want, b.String())
	}
}
