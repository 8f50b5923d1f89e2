package rcfile

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestAuth: auth defaults to auto, takes each method in any case, is
// inherited from defaults, is written back by Format, and warns for APOP.
func TestAuth(t *testing.T) {
	fixedEnv(t)
	for _, tt := range []struct {
		src  string
		want AuthMethod
		warn string
	}{
		{fmt.Sprintf(minimal, ``), AuthAuto, ""},
		{fmt.Sprintf(minimal, `auth = "SCRAM-SHA-256"`), AuthSCRAMSHA256, ""},
		{fmt.Sprintf(minimal, `auth = "user"`), AuthUser, ""},
		{fmt.Sprintf(minimal, "auth = \"xoauth2\"\n  oauth2_token_command = [\"/bin/echo\", \"tok\"]"), AuthXOAUTH2, ""},
		{fmt.Sprintf(minimal, `auth = "apop"`), AuthAPOP, "APOP uses MD5"},
		{strings.Replace(fmt.Sprintf(minimal, ``), "defaults {", "defaults {\n  auth = \"plain\"", 1), AuthPlain, ""},
		{strings.Replace(fmt.Sprintf(minimal, "auth = \"oauthbearer\"\n  oauth2_token_command = [\"/bin/echo\", \"tok\"]"), "defaults {", "defaults {\n  auth = \"plain\"", 1), AuthOAUTHBEARER, ""},
	} {
		cfg, diags := parseOne(t, tt.src)
		if diags.HasErrors() {
			t.Errorf("%s: %s", tt.src, render(t, diags))
			continue
		}
		if got := cfg.Accounts[0].Auth; got != tt.want {
			t.Errorf("%s: Auth = %q; want %q", tt.src, got, tt.want)
		}
		if out := string(render(t, diags)); tt.warn != "" && !strings.Contains(out, tt.warn) || tt.warn == "" && out != "" {
			t.Errorf("%s: diagnostics %q; want %q", tt.src, out, tt.warn)
		}
		var b bytes.Buffer
		if err := cfg.Format(&b); err != nil {
			t.Fatal(err)
		}
		cfg2, diags := Parse(b.Bytes(), "formatted.hcl")
		if diags.HasErrors() || cfg2.Accounts[0].Auth != tt.want {
			t.Errorf("%s: Format does not keep auth: %s\n%s", tt.src, render(t, diags), b.Bytes())
		}
	}
}
