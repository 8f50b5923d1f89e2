package rcfile

import (
	"strings"
	"testing"
)

// mdAccount is a multidrop account with the given lines inside its
// multidrop block.
func mdAccount(lines string) string {
	return `
account "d" {
  server       = "pop.example.com"
  username     = "catchall@example.com"
  password_env = "PW"
  deliver { maildir = "/var/vmail/{domain}/{user}" }
  multidrop {
    user "joe" {}
` + lines + `
  }
}
`
}

func TestMultidropEnvelopeIgnore(t *testing.T) {
	fixedEnv(t)
	cfg, diags := parseOne(t, mdAccount(`
    local_domains   = ["example.com"]
    envelope_ignore = ["CatchAll@Example.COM", "old-box@bücher.example."]`))
	if diags.HasErrors() {
		t.Fatal(string(render(t, diags)))
	}
	got := strings.Join(cfg.Accounts[0].Multidrop.EnvelopeIgnore, " ")
	if want := "catchall@example.com old-box@xn--bcher-kva.example"; got != want {
		t.Errorf("EnvelopeIgnore = %q; want %q", got, want)
	}

	cfg, diags = parseOne(t, mdAccount(`local_domains = ["example.com"]`))
	if diags.HasErrors() || cfg.Accounts[0].Multidrop.EnvelopeIgnore != nil {
		t.Errorf("default EnvelopeIgnore = %q, %s; want none (fetch adds the username)", cfg.Accounts[0].Multidrop.EnvelopeIgnore, render(t, diags))
	}

	for _, tc := range []struct{ list, want string }{
		{`["catchall"]`, "Invalid envelope_ignore"},
		{`["a b@example.com"]`, "Invalid address"},
		{`["catchall@"]`, "Invalid address"},
		{`["x@ex ample.com"]`, "Invalid address"},
	} {
		_, diags := parseOne(t, mdAccount(`local_domains = ["example.com"]
    envelope_ignore = `+tc.list))
		if !diags.HasErrors() || !strings.Contains(string(render(t, diags)), tc.want) {
			t.Errorf("envelope_ignore = %s: got %s; want error %q", tc.list, render(t, diags), tc.want)
		}
	}
}

// "*.example.com" is the subdomains of example.com, not example.com
// itself, here as in deliver's router (testdata/route/cases.txt,
// wildcard-domain-subdomains-only): an address at the apex warns that it
// never matches unless the apex is listed too.
func TestMultidropWildcardIsSubdomainsOnly(t *testing.T) {
	fixedEnv(t)
	user := `user "ann" { addresses = ["ann@example.com", "ann@sub.example.com"] }`
	_, diags := parseOne(t, mdAccount(`local_domains = ["*.example.com"]
    `+user))
	out := string(render(t, diags))
	if diags.HasErrors() || strings.Count(out, "Address never matches") != 1 || !strings.Contains(out, `"ann@example.com"`) {
		t.Errorf("wildcard only: got %s; want one warning, for ann@example.com", out)
	}
	_, diags = parseOne(t, mdAccount(`local_domains = ["example.com", "*.example.com"]
    `+user))
	if len(diags) != 0 {
		t.Errorf("apex and wildcard: got %s; want no diagnostics", render(t, diags))
	}
}
