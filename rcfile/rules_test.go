package rcfile

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/rules"
)

// ruleRC is an account with a postmaster, a Maildir deliver target and
// the given rule blocks.
func ruleRC(rulesSrc string) string {
	return `account "a" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  deliver { maildir = "/var/mail/joe" }
  postmaster { maildir = "/var/mail/postmaster" }
` + rulesSrc + `
}
`
}

func TestRules(t *testing.T) {
	src := ruleRC(`
  rule "spam" {
    header = "X-Spam-Flag"
    equals = "YES"
    folder = "Junk"
  }
  rule "virus" {
    header     = "X-Virus-Status"
    contains   = "infected"
    postmaster = "virus found"
  }
  rule "lists" {
    header = "List-Id"
    matches = "<dev\\.lists\\.example\\.org>"
    deliver { maildir = "/var/mail/joe-lists" }
  }
  rule "noise" {
    header         = "Subject"
    contains       = "[ADV]"
    case_sensitive = true
    discard        = true
  }`)
	cfg, diags := parseOne(t, src)
	if diags.HasErrors() {
		t.Fatalf("%s", render(t, diags))
	}
	got := cfg.Accounts[0].Rules
	want := []rules.Spec{
		{Name: "spam", Field: "X-Spam-Flag", Op: rules.Equals, Value: "YES", Action: rules.Action{Kind: rules.Folder, Folder: "Junk"}},
		{Name: "virus", Field: "X-Virus-Status", Op: rules.Contains, Value: "infected", Action: rules.Action{Kind: rules.Postmaster, Reason: "virus found"}},
		{Name: "lists", Field: "List-Id", Op: rules.Matches, Value: `<dev\.lists\.example\.org>`, Action: rules.Action{Kind: rules.Deliver, Target: 2}},
		{Name: "noise", Field: "Subject", Op: rules.Contains, Value: "[ADV]", CaseSensitive: true, Action: rules.Action{Kind: rules.Discard}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d rules; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Spec != want[i] {
			t.Errorf("rule %d = %+v; want %+v", i, got[i].Spec, want[i])
		}
	}
	if d := got[2].Deliver; d == nil || d.Maildir != "/var/mail/joe-lists" {
		t.Errorf("deliver action destination = %+v", d)
	}
	var specs []rules.Spec
	for _, r := range got {
		specs = append(specs, r.Spec)
	}
	set, err := rules.Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := set.Eval([]byte("List-Id: Dev <dev.lists.example.org>\r\n\r\n")); !ok || d.Rule != "lists" {
		t.Errorf("Eval = %+v, %v; want rule lists", d, ok)
	}

	// Format prints them, and they parse back the same.
	var b bytes.Buffer
	if err := cfg.Format(&b); err != nil {
		t.Fatal(err)
	}
	cfg2, diags := parseOne(t, b.String())
	if diags.HasErrors() {
		t.Fatalf("Format output does not parse: %s\n%s", render(t, diags), b.String())
	}
	for i, r := range cfg2.Accounts[0].Rules {
		if r.Spec != want[i] {
			t.Errorf("after Format, rule %d = %+v; want %+v", i, r.Spec, want[i])
		}
	}
}

// Every mistake in a rule block is reported at its attribute.
func TestRuleErrors(t *testing.T) {
	tests := []struct {
		name, body string
		want       string // the diagnostic, with its line:col in ruleRC
	}{
		{"missing header", `rule "r" {
    equals = "YES"
    folder = "Junk"
  }`, `:7:3: error: Missing header`},
		{"bad header name", `rule "r" {
    header = "X-Spam-Flag:"
    equals = "YES"
    folder = "Junk"
  }`, `:8:5: error: Invalid header; rule "r": "X-Spam-Flag:" is not a header field name`},
		{"no condition", `rule "r" {
    header = "X-Spam-Flag"
    folder = "Junk"
  }`, `:7:3: error: Missing condition`},
		{"two conditions", `rule "r" {
    header   = "X-Spam-Flag"
    equals   = "YES"
    contains = "Y"
    folder   = "Junk"
  }`, `:10:5: error: Two conditions`},
		{"bad regexp", `rule "r" {
    header  = "Subject"
    matches = "(unclosed"
    folder  = "Junk"
  }`, `:9:5: error: Invalid matches; rule "r": not an RE2 regular expression`},
		{"case_sensitive with matches", `rule "r" {
    header         = "Subject"
    matches        = "x"
    case_sensitive = true
    folder         = "Junk"
  }`, `:10:5: error: Invalid case_sensitive`},
		{"no action", `rule "r" {
    header = "X-Spam-Flag"
    equals = "YES"
  }`, `:7:3: error: Missing action`},
		{"two actions", `rule "r" {
    header  = "X-Spam-Flag"
    equals  = "YES"
    folder  = "Junk"
    discard = true
  }`, `:11:5: error: Two actions`},
		{"dotted folder", `rule "r" {
    header = "X-Spam-Flag"
    equals = "YES"
    folder = ".Junk"
  }`, `:10:5: error: Invalid folder; rule "r": ".Junk" starts with a dot`},
		{"discard false", `rule "r" {
    header  = "X-Spam-Flag"
    equals  = "YES"
    discard = false
  }`, `:10:5: error: Invalid discard`},
		{"reason with newline", `rule "r" {
    header     = "X-Spam-Flag"
    equals     = "YES"
    postmaster = "a\nb"
  }`, `:10:5: error: Invalid postmaster; rule "r": the reason contains control character 0x0a`},
		{"empty reason", `rule "r" {
    header     = "X-Spam-Flag"
    equals     = "YES"
    postmaster = ""
  }`, `:10:5: error: Invalid postmaster`},
		{"duplicate name", `rule "r" {
    header = "A"
    equals = "x"
    discard = true
  }
  rule "r" {
    header = "B"
    equals = "y"
    discard = true
  }`, `:12:8: error: Duplicate rule name`},
		{"deliver placeholder in single drop", `rule "r" {
    header = "A"
    equals = "x"
    deliver { maildir = "/var/mail/{user}" }
  }`, `:10:15: error: Placeholder not allowed here`},
		{"regexp with interpolation", `rule "r" {
    header  = "A"
    matches = "${x}"
    discard = true
  }`, `:9:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := parseOne(t, ruleRC("  "+tt.body))
			out := string(render(t, diags))
			if !diags.HasErrors() || !strings.Contains(out, "test.hcl"+tt.want) {
				t.Errorf("got:\n%s\nwant an error containing %q", out, tt.want)
			}
		})
	}
}

// A folder action needs a Maildir to file in, a postmaster action a
// postmaster block.
func TestRuleTargets(t *testing.T) {
	folder := `
  rule "spam" {
    header = "X-Spam-Flag"
    equals = "YES"
    folder = "Junk"
  }`
	src := strings.Replace(ruleRC(folder), `deliver { maildir = "/var/mail/joe" }`, `deliver { mda = ["/usr/bin/procmail"] }`, 1)
	_, diags := parseOne(t, src)
	if out := string(render(t, diags)); !strings.Contains(out, "test.hcl:8:3: error: Folder needs a maildir") {
		t.Errorf("folder rule with an mda target: got\n%s", out)
	}
	pm := `
  rule "virus" {
    header     = "X-Virus-Status"
    contains   = "infected"
    postmaster = "virus"
  }`
	src = strings.Replace(ruleRC(pm), `  postmaster { maildir = "/var/mail/postmaster" }`+"\n", "", 1)
	_, diags = parseOne(t, src)
	if out := string(render(t, diags)); !strings.Contains(out, "test.hcl:7:3: error: No postmaster") {
		t.Errorf("postmaster rule without a postmaster: got\n%s", out)
	}
}

// A multidrop user may have its own rules; the account's apply to every
// user; defaults' rules are inherited by an account without any.
func TestRulesMultidropAndDefaults(t *testing.T) {
	src := `
defaults {
  rule "spam" {
    header = "X-Spam-Flag"
    equals = "YES"
    folder = "Junk"
  }
}
account "d" {
  server       = "pop.example.com"
  username     = "catchall@example.com"
  password_env = "PW"
  deliver { maildir = "/var/vmail/{domain}/{user}" }
  multidrop {
    local_domains = ["example.com"]
    user "joe" {
      rule "dev" {
        header  = "List-Id"
        matches = "(?i)<dev\\.example\\.org>"
        deliver { maildir = "/var/vmail/{domain}/{user}/dev" }
      }
    }
    user "ann" {
      deliver { mda = ["/usr/bin/procmail", "-d", "ann"] }
    }
  }
}
account "s" {
  server       = "pop.example.com"
  username     = "sam"
  password_env = "PW"
  deliver { maildir = "/var/mail/sam" }
  rule "mine" {
    header  = "To"
    contains = "sam"
    folder  = "Sam"
  }
}
`
	_, diags := parseOne(t, src)
	out := string(render(t, diags))
	// ann's own target is an mda: the inherited folder rule cannot
	// file her copies.
	if !strings.Contains(out, "error: Folder needs a maildir") || !strings.Contains(out, `user "ann"`) {
		t.Fatalf("got:\n%s\nwant the folder rule refused for ann's mda", out)
	}
	src = strings.Replace(src, `deliver { mda = ["/usr/bin/procmail", "-d", "ann"] }`, `deliver { maildir = "/var/vmail/ann" }`, 1)
	cfg, diags := parseOne(t, src)
	if diags.HasErrors() {
		t.Fatalf("%s", render(t, diags))
	}
	d, s := cfg.Accounts[0], cfg.Accounts[1]
	if len(d.Rules) != 1 || d.Rules[0].Spec.Name != "spam" {
		t.Errorf("account d rules = %+v; want the defaults' spam rule", d.Rules)
	}
	if len(s.Rules) != 1 || s.Rules[0].Spec.Name != "mine" {
		t.Errorf("account s rules = %+v; want only its own", s.Rules)
	}
	joe := d.Multidrop.Users[0]
	if len(joe.Rules) != 1 || joe.Rules[0].Deliver == nil || joe.Rules[0].Deliver.Maildir != "/var/vmail/{domain}/{user}/dev" {
		t.Errorf("joe's rules = %+v", joe.Rules)
	}
	var b bytes.Buffer
	if err := cfg.Format(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `rule "dev"`) || strings.Count(b.String(), `rule "spam"`) != 1 {
		t.Errorf("Format:\n%s", b.String())
	}
	cfg2, diags := parseOne(t, b.String())
	if diags.HasErrors() {
		t.Fatalf("Format output does not parse: %s", render(t, diags))
	}
	if got := fmt.Sprint(cfg2.Accounts[0].Multidrop.Users[0].Rules[0].Spec); got != fmt.Sprint(joe.Rules[0].Spec) {
		t.Errorf("after Format: %s; want %s", got, fmt.Sprint(joe.Rules[0].Spec))
	}
}
