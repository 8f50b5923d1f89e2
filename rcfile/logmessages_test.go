package rcfile

import (
	"fmt"
	"strings"
	"testing"
)

// log_messages defaults to true, may be set in defaults and overridden
// per account, and a value that is not a bool is an error at its
// file:line:col.
func TestLogMessages(t *testing.T) {
	fixedEnv(t)
	for _, tc := range []struct {
		defaults, account string
		quiet             bool
	}{
		{"", "", false},
		{"", "log_messages = false", true},
		{"", "log_messages = true", false},
		{"log_messages = false", "", true},
		{"log_messages = false", "log_messages = true", false},
	} {
		src := strings.Replace(fmt.Sprintf(minimal, tc.account), "defaults {", "defaults {\n  "+tc.defaults, 1)
		cfg, diags := parseOne(t, src)
		if diags.HasErrors() {
			t.Errorf("defaults %q, account %q: %s", tc.defaults, tc.account, render(t, diags))
			continue
		}
		if got := cfg.Accounts[0].QuietMessages; got != tc.quiet {
			t.Errorf("defaults %q, account %q: QuietMessages = %v; want %v", tc.defaults, tc.account, got, tc.quiet)
		}
	}
	_, diags := parseOne(t, fmt.Sprintf(minimal, `log_messages = "sometimes"`))
	out := string(render(t, diags))
	if !diags.HasErrors() || !strings.Contains(out, "log_messages") || !strings.Contains(out, "test.hcl:11:") {
		t.Errorf("log_messages = \"sometimes\": diagnostics\n%s\nwant an error at test.hcl:11", out)
	}
}
