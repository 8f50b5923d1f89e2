package rcfile

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// folder names a Maildir++ folder of a maildir target, in a deliver,
// postmaster or multidrop user block; a bad name or a folder without a
// maildir is an error at the attribute's file:line:col.
func TestFolder(t *testing.T) {
	tests := []struct {
		name, body string
		want       string // "" valid; else the diagnostic, position and all
		folder     string
	}{
		{"inbox", `deliver { maildir = "/m" }`, "", ""},
		{"folder", `deliver {
    maildir = "/m"
    folder  = "Lists.dev"
  }`, "", "Lists.dev"},
		{"dotted", `deliver {
    maildir = "/m"
    folder  = ".Junk"
  }`, `test.hcl:13:5: error: Invalid folder; folder = ".Junk": ".Junk" starts with a dot`, ""},
		{"slash", `deliver {
    maildir = "/m"
    folder  = "Lists/dev"
  }`, `test.hcl:13:5: error: Invalid folder; folder = "Lists/dev": "Lists/dev" contains '/'`, ""},
		{"dotdot", `deliver {
    maildir = "/m"
    folder  = "a..b"
  }`, "test.hcl:13:5: error: Invalid folder", ""},
		{"empty", `deliver {
    maildir = "/m"
    folder  = ""
  }`, "test.hcl:13:5: error: Invalid folder; folder = \"\": empty", ""},
		{"control", `deliver {
    maildir = "/m"
    folder  = "a\tb"
  }`, "control character 0x09", ""},
		{"long", fmt.Sprintf(`deliver {
    maildir = "/m"
    folder  = %q
  }`, strings.Repeat("x", 201)), "longer than 200 bytes", ""},
		{"mda", `deliver {
    mda    = ["/usr/bin/procmail"]
    folder = "Junk"
  }`, "test.hcl:13:5: error: Option needs maildir", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parseOne(t, fmt.Sprintf(minimal, tt.body))
			out := string(render(t, diags))
			if tt.want == "" {
				if diags.HasErrors() {
					t.Fatalf("unexpected diagnostics:\n%s", out)
				}
				if got := cfg.Accounts[0].Deliver.Folder; got != tt.folder {
					t.Errorf("Folder = %q; want %q", got, tt.folder)
				}
				return
			}
			if !diags.HasErrors() || !strings.Contains(out, tt.want) {
				t.Errorf("got:\n%s\nwant an error containing %q", out, tt.want)
			}
		})
	}
}

// A multidrop user's own deliver block and the postmaster may name a
// folder too, and Format keeps it.
func TestFolderUserAndFormat(t *testing.T) {
	src := mdAccount(`    local_domains = ["example.com"]
    user "ann" {
      deliver {
        maildir = "/var/vmail/ann"
        folder  = "Junk"
      }
    }`)
	src = strings.Replace(src, `deliver { maildir = "/var/vmail/{domain}/{user}" }`,
		"deliver {\n    maildir = \"/var/vmail/{domain}/{user}\"\n    folder = \"Lists.dev\"\n  }", 1)
	cfg, diags := parseOne(t, src)
	if diags.HasErrors() {
		t.Fatalf("%s", render(t, diags))
	}
	a := cfg.Accounts[0]
	if a.Deliver.Folder != "Lists.dev" {
		t.Errorf("account folder = %q", a.Deliver.Folder)
	}
	var ann *User
	for _, u := range a.Multidrop.Users {
		if u.Name == "ann" {
			ann = u
		}
	}
	if ann == nil || ann.Deliver == nil || ann.Deliver.Folder != "Junk" {
		t.Fatalf("user ann's deliver = %+v; want folder Junk", ann)
	}
	var b strings.Builder
	if err := cfg.Format(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Lists.dev", "Junk"} {
		if !regexp.MustCompile(`\n +folder += "` + regexp.QuoteMeta(want) + `"\n`).MatchString(b.String()) {
			t.Errorf("Format lost folder %q:\n%s", want, b.String())
		}
	}
	cfg2, diags := parseOne(t, b.String())
	if diags.HasErrors() {
		t.Fatalf("Format output does not parse: %s", render(t, diags))
	}
	if got := cfg2.Accounts[0].Deliver.Folder; got != "Lists.dev" {
		t.Errorf("folder after Format and Parse = %q", got)
	}
}
