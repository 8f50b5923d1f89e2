package rcfile

import (
	"fmt"
	"strings"
	"testing"
)

// A maildir path's placeholders are read with deliver.MaildirPlaceholders,
// the syntax the Maildir target expands (and the MDA's): braces around
// anything but a name are literal directory names there, so they are
// accepted here too; "{{user}" holds the placeholder {user}; an unknown
// name is an error, and {user} or {domain} outside a multidrop account's
// deliver and user blocks too.
func TestMaildirPlaceholderSyntax(t *testing.T) {
	fixedEnv(t)
	multidrop := "multidrop {\nlocal_domains = [\"example.com\"]\nuser \"joe\" {}\n}\n"
	for _, tt := range []struct {
		multidrop bool
		path      string
		want      string // "" = no diagnostic at all
	}{
		{false, "/var/mail/{}/x", ""},
		{false, "/var/mail/a{b c}", ""},
		{false, "/var/mail/{a.b}", ""},
		{false, "/var/mail/{a/b}", ""},
		{false, "/var/mail/{not closed", ""},
		{false, "/var/mail/{User}", "Unknown placeholder"},
		{false, "/var/mail/{address}", "Unknown placeholder"},
		{false, "/var/mail/{{user}", "Placeholder not allowed here"},
		{true, "/var/mail/{{user}/{}", ""},
		{true, "/var/vmail/{domain}/{a b}/{user}", ""},
		{true, "/var/vmail/{domain}/{user_1}", "Unknown placeholder"},
	} {
		body := "deliver {\nmaildir = \"" + tt.path + "\"\n}"
		if tt.multidrop {
			body = multidrop + body
		}
		_, diags := parseOne(t, fmt.Sprintf(minimal, body))
		out := string(render(t, diags))
		if tt.want == "" && len(diags) != 0 || tt.want != "" && (!diags.HasErrors() || !strings.Contains(out, tt.want)) {
			t.Errorf("maildir = %q (multidrop %v): diagnostics:\n%s\nwant %q", tt.path, tt.multidrop, out, tt.want)
		}
	}
}
