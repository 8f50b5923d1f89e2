package rcfile

import (
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver"
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

// A local domain and a user address are normalised by the router's own
// deliver.NormalizeDomain, so whatever form the rc file writes them in
// (Unicode, upper case, a trailing dot, A-labels) compares equal to what
// routing computes from a header in any of those forms.
func TestMultidropLocalDomainMatchesRouting(t *testing.T) {
	fixedEnv(t)
	for _, ld := range []string{"BÜCHER.Example.", "bücher.example", "XN--BCHER-KVA.example", "Bücher.EXAMPLE"} {
		cfg, diags := parseOne(t, mdAccount(`local_domains = ["`+ld+`"]
    fallback_headers = ["To"]
    user "ann" { addresses = ["Ann@BÜCHER.example."] }`))
		if diags.HasErrors() {
			t.Fatalf("%s: %s", ld, render(t, diags))
		}
		md := cfg.Accounts[0].Multidrop
		if got := strings.Join(md.LocalDomains, " "); got != "xn--bcher-kva.example" {
			t.Errorf("%s: LocalDomains = %q; want xn--bcher-kva.example", ld, got)
		}
		users := map[string][]string{}
		for _, u := range md.Users {
			users[u.Name] = u.Addresses
		}
		rules := &deliver.Rules{LocalDomains: md.LocalDomains, FallbackHeaders: md.FallbackHeaders,
			Directory: deliver.NewDirectory(users, md.CaseSensitive)}
		for _, to := range []string{"joe@bücher.example", "JOE@XN--BCHER-KVA.EXAMPLE.", "ann@Bücher.Example", "ann@xn--bcher-kva.example"} {
			rt := deliver.RouteHeader([]byte("To: "+to+"\r\n\r\nbody\r\n"), rules)
			want := strings.ToLower(to[:3])
			if len(rt.Rcpts) != 1 || rt.Rcpts[0].User != want || rt.Reason != "" {
				t.Errorf("local_domains = [%q], To: %s: route %+v; want user %s", ld, to, rt, want)
			}
		}
	}
}

// The rc file accepts a local domain or address domain exactly when the
// router can match it: a name with an empty label or a label over 63
// octets was accepted but never matched any mail; a label with "--" in
// positions 3 and 4 routes, and is accepted.
func TestMultidropDomainValidLikeRouting(t *testing.T) {
	fixedEnv(t)
	long := strings.Repeat("a", 64) + ".example"
	for _, tc := range []struct{ domain, want string }{
		{"a..example", "Invalid local domain"},
		{".example", "Invalid local domain"},
		{long, "Invalid local domain"},
		{"*." + long, "Invalid local domain"},
		{"[192.0.2.1]", "Invalid local domain"},
		{"ab--cd.example", ""},
		{"example.com", ""},
	} {
		_, diags := parseOne(t, mdAccount(`local_domains = ["`+tc.domain+`"]`))
		out := string(render(t, diags))
		if tc.want == "" && diags.HasErrors() || tc.want != "" && !strings.Contains(out, tc.want) {
			t.Errorf("local_domains = [%q]: got %s; want %q", tc.domain, out, tc.want)
		}
	}
	for _, tc := range []struct{ addr, want string }{
		{"ann@a..example", "Invalid address"},
		{"ann@" + long, "Invalid address"},
		{"ann@[192.0.2.1]", "Invalid address"},
		{"ann@example.com.", ""},
	} {
		_, diags := parseOne(t, mdAccount(`local_domains = ["example.com"]
    user "ann" { addresses = ["`+tc.addr+`"] }`))
		out := string(render(t, diags))
		if tc.want == "" && diags.HasErrors() || tc.want != "" && !strings.Contains(out, tc.want) {
			t.Errorf("address %q: got %s; want %q", tc.addr, out, tc.want)
		}
	}
}
