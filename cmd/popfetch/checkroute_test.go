package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateCheckRoute = flag.Bool("update-check-route", false, "rewrite testdata/route/golden.txt")

// TestCheckRoute: `check --route` prints one block per message file with
// the header used, each user with the address that matched and the
// target, unknown addresses and the postmaster's reason, as the poll's
// routing decides (testdata/route/*.eml: the topmost Delivered-To naming
// only the catch-all mailbox, To/Cc with an unknown user, nothing local,
// a sub-address, a user with an own mda, CRLF lines).
func TestCheckRoute(t *testing.T) {
	src, err := os.ReadFile("testdata/route/rc.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, strings.ReplaceAll(string(src), "STATE", filepath.Join(dir, "state")))
	msgs, _ := filepath.Glob("testdata/route/*.eml")
	if len(msgs) < 5 {
		t.Fatalf("only %d messages", len(msgs))
	}
	code, out, errs := runCLI(t, append([]string{"-f", rc, "check", "--route", "--account", "corp"}, msgs...)...)
	if code != exitOK {
		t.Fatalf("check --route = %d\n%s%s", code, out, errs)
	}
	golden := "testdata/route/golden.txt"
	if *updateCheckRoute {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("check --route output:\n%s\nwant (%s):\n%s", out, golden, want)
	}

	// The other account's rules route the same file differently.
	code, out, _ = runCLI(t, "-f", rc, "check", "--route", "--account", "other", "testdata/route/2-headers-unknown.eml")
	if code != exitOK || !strings.Contains(out, "account other\n") || !strings.Contains(out, "no local recipient, and no postmaster: the message stays on the server") {
		t.Errorf("check --route --account other = %d\n%s", code, out)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"testdata/route/1-envelope.eml"}, exitUsage, "several multidrop accounts (corp, other); choose one with --account NAME"},
		{[]string{"--account", "nope", "testdata/route/1-envelope.eml"}, exitUsage, `no account "nope"`},
		{[]string{"--account", "corp"}, exitUsage, "needs message files"},
		{[]string{"--account", "corp", filepath.Join(dir, "missing.eml")}, exitFail, "missing.eml: error: open "},
	} {
		code, out, errs := runCLI(t, append([]string{"-f", rc, "check", "--route"}, tt.args...)...)
		if code != tt.code || !strings.Contains(out+errs, tt.want) {
			t.Errorf("check --route %q = %d\n%s%s\nwant %d and %q", tt.args, code, out, errs, tt.code, tt.want)
		}
	}
}

// check --route names the filing rule that decides each user's copy: a
// user's own rule first, then the account's.
func TestCheckRouteRules(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, fmt.Sprintf(`state_dir = %q
account "d" {
  server       = "pop.example.com"
  username     = "catchall@example.com"
  password_env = "PW"
  deliver { maildir = "/var/vmail/{user}" }
  postmaster { maildir = "/var/vmail/postmaster" }
  multidrop {
    local_domains = ["example.com"]
    user "ann" {}
    user "bob" {
      rule "bob-spam" {
        header  = "X-Spam-Score"
        matches = "^[5-9]"
        deliver { maildir = "/var/vmail/bob-spam" }
      }
    }
    user "cid" {}
  }
  rule "spam" {
    header = "X-Spam-Flag"
    equals = "YES"
    folder = "Junk"
  }
}
`, filepath.Join(dir, "state")))
	msg := filepath.Join(dir, "m.eml")
	writeFile(t, msg, "To: ann@example.com, bob@example.com, cid@example.com\r\nX-Spam-Flag: yes\r\nX-Spam-Score: 7.1\r\n\r\nbody\r\n")
	t.Setenv("PW", "x")
	code, out, errs := runCLI(t, "-f", rc, "check", "--route", msg)
	if code != exitOK {
		t.Fatalf("check --route = %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"  user ann: address ann@example.com -> maildir /var/vmail/ann\n    rule spam (X-Spam-Flag: yes): folder Junk\n",
		"  user bob: address bob@example.com -> maildir /var/vmail/bob\n    rule bob-spam (X-Spam-Score: 7.1): deliver to maildir /var/vmail/bob-spam\n",
		"  user cid: address cid@example.com -> maildir /var/vmail/cid\n    rule spam (X-Spam-Flag: yes): folder Junk\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check --route output:\n%s\nwant %q", out, want)
		}
	}
}
