package rcfile

import (
	"bytes"
	"strings"
	"testing"
)

// TestFormatPathComment: the rc file's path goes into the header comment
// of Format's output on one line, whatever it holds: a newline in it
// would end the comment and put the rest of the path into the settings,
// so "popfetch check" printed text that does not parse, or parses as
// something else.
func TestFormatPathComment(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/etc/popfetch/rt.hcl", "# Effective settings of /etc/popfetch/rt.hcl, with every default applied."},
		{"rt.hcl", "# Effective settings of rt.hcl, with every default applied."},
		{"/tmp/a b/ünï.hcl", "# Effective settings of /tmp/a b/ünï.hcl, with every default applied."},
		{"/tmp/x\nstate_dir = \"/evil\"\n#.hcl", `# Effective settings of "/tmp/x\nstate_dir = \"/evil\"\n#.hcl", with every default applied.`},
		{"/tmp/x\r.hcl", `# Effective settings of "/tmp/x\r.hcl", with every default applied.`},
		{"/tmp/x\u2028y.hcl", `# Effective settings of "/tmp/x\u2028y.hcl", with every default applied.`},
		{"/tmp/x\x1b[2J.hcl", `# Effective settings of "/tmp/x\x1b[2J.hcl", with every default applied.`},
		{"/tmp/\xff.hcl", `# Effective settings of "/tmp/\xff.hcl", with every default applied.`},
	} {
		cfg, diags := Parse([]byte(roundTripSrc), tc.path)
		if diags.HasErrors() {
			t.Fatalf("%q: %s", tc.path, render(t, diags))
		}
		var out bytes.Buffer
		if err := cfg.Format(&out); err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(out.String(), "\n")
		if first != tc.want {
			t.Errorf("%q: first line %q; want %q", tc.path, first, tc.want)
		}
		cfg2, diags := Parse(out.Bytes(), "out.hcl")
		if diags.HasErrors() {
			t.Errorf("%q: Format output does not parse:\n%s\n%s", tc.path, render(t, diags), out.String())
			continue
		}
		if cfg2.StateDir != cfg.StateDir {
			t.Errorf("%q: state_dir %q read back as %q", tc.path, cfg.StateDir, cfg2.StateDir)
		}
	}
}

// QuotePath leaves a path that prints as one line as it is, and quotes
// anything else as a Go string literal.
func TestQuotePath(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/popfetch.hcl": "/etc/popfetch.hcl",
		"a b":               "a b",
		`a"b`:               `a"b`,
		"":                  "",
		"a\tb":              `"a\tb"`,
		"a\nb":              `"a\nb"`,
		"a\u200eb":          `"a\u200eb"`,
	} {
		if got := QuotePath(in); got != want {
			t.Errorf("QuotePath(%q) = %s; want %s", in, got, want)
		}
	}
}
