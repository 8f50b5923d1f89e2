package rcfile

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// mdaDeliver is an account body whose deliver block is an MDA with extra
// attributes.
func mdaDeliver(attrs string) string {
	return "deliver {\nmda = [\"/usr/bin/procmail\", \"-d\", \"{user}\"]\n" + attrs + "\n}"
}

func TestMDATempExitCodes(t *testing.T) {
	fixedEnv(t)
	for _, tt := range []struct {
		body string
		want []int
		warn string // "" = no diagnostic at all
	}{
		{mdaDeliver(""), []int{75}, ""},
		{mdaDeliver("mda_temp_exit_codes = [75, 73, 74]"), []int{75, 73, 74}, ""},
		{mdaDeliver("mda_temp_exit_codes = [255, 75, 1]"), []int{255, 75, 1}, ""},
		{mdaDeliver("mda_temp_exit_codes = [73]"), []int{73}, "does not contain 75"},
	} {
		cfg, diags := parseOne(t, fmt.Sprintf(minimal, tt.body))
		out := string(render(t, diags))
		if diags.HasErrors() || (tt.warn == "") != (len(diags) == 0) || !strings.Contains(out, tt.warn) {
			t.Errorf("Parse(%s) diagnostics:\n%s\nwant none or only a warning containing %q", tt.body, out, tt.warn)
			continue
		}
		if got := cfg.Accounts[0].Deliver.MDATempExitCodes; !slices.Equal(got, tt.want) {
			t.Errorf("Parse(%s): MDATempExitCodes = %v; want %v", tt.body, got, tt.want)
		}
	}
}

func TestMDATempExitCodesErrors(t *testing.T) {
	fixedEnv(t)
	for _, tt := range []struct{ body, want string }{
		{mdaDeliver("mda_temp_exit_codes = [0]"), "0 is not an exit status"},
		{mdaDeliver("mda_temp_exit_codes = [75, 256]"), "256 is not an exit status"},
		{mdaDeliver("mda_temp_exit_codes = [-75]"), "-75 is not an exit status"},
		{mdaDeliver("mda_temp_exit_codes = []"), "needs at least one exit status"},
		{mdaDeliver("mda_temp_exit_codes = [75.5]"), "mda_temp_exit_codes"},
		{mdaDeliver(`mda_temp_exit_codes = "75"`), "mda_temp_exit_codes"},
		{"deliver {\nmaildir = \"/var/mail/joe\"\nmda_temp_exit_codes = [75]\n}", "only apply to an mda target"},
	} {
		wantParseError(t, tt.body, tt.want)
	}
}

// The rc file reads MDA placeholders with deliver.MDAPlaceholders, the
// syntax the MDA target expands: braces around anything but a name are
// literal text there, so they are accepted here too; "{{user}" holds the
// placeholder {user}; an unknown name and a program path with '{' are
// errors.
func TestMDAPlaceholderSyntax(t *testing.T) {
	fixedEnv(t)
	for _, tt := range []struct{ argv, want string }{
		{`["/usr/bin/x", "{}", "a{b c}", "{a/b}", "{not closed"]`, ""},
		{`["/usr/bin/x", "-d", "{{user}"]`, ""},
		{`["/usr/bin/x", "{{address}"]`, "Placeholder not allowed here"},
		{`["/usr/bin/x", "{recipient}"]`, "Unknown placeholder"},
		{`["/usr/bin/x", "{User}"]`, "Unknown placeholder"},
		{`["/usr/bin/{user}"]`, "Placeholder not allowed here"},
		{`["/usr/bin/{}"]`, "must not contain '{'"},
	} {
		body := "deliver {\nmda = " + tt.argv + "\n}"
		_, diags := parseOne(t, fmt.Sprintf(minimal, body))
		out := string(render(t, diags))
		if tt.want == "" && len(diags) != 0 || tt.want != "" && (!diags.HasErrors() || !strings.Contains(out, tt.want)) {
			t.Errorf("mda = %s: diagnostics:\n%s\nwant %q", tt.argv, out, tt.want)
		}
	}
}
