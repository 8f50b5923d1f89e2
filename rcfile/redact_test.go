package rcfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/popfetch/popfetch/internal/testutil"
)

// testSecret is the password of the broken rc files below; leakFragments
// are pieces of it that must not show either.
const testSecret = "Zq9x-Hunter2-Plugh7"

var leakFragments = []string{testSecret, "Hunter2", "Zq9x", "Plugh7"}

// BrokenSecretFiles are rc files with an error somewhere near an inline
// password testSecret; the cmd tests run them through the real CLI too.
// Each %s is the password (or a fragment of it where the test is about
// a fragment).
var brokenSecretFiles = []struct{ name, src string }{
	{"other error on the same line", `account "a" { password = "%s" }` + "\n"},
	{"error in the same block", "account \"a\" {\n  server = 5\n  password = \"%s\"\n}\n"},
	{"invalid escape in the password", "account \"a\" {\n  password = \"%s\\q\"\n}\n"},
	{"interpolation in the password", "account \"a\" {\n  password = \"x${%s}\"\n}\n"},
	{"function call in the password", "account \"a\" {\n  password = \"${%s(1)}\"\n}\n"},
	{"unterminated string", "account \"a\" {\n  password = \"%s\n  server = \"pop.example.com\"\n}\n"},
	{"unterminated string before", "account \"a\" {\n  server = \"pop.example.com\n  password = \"%s\"\n}\n"},
	{"heredoc", "account \"a\" {\n  server = 5\n  password = <<EOT\n%s\nEOT\n}\n"},
	{"heredoc with a template error", "account \"a\" {\n  password = <<EOT\n%s ${\nEOT\n}\n"},
	{"unterminated heredoc", "account \"a\" {\n  password = <<EOT\n%s\n"},
	{"misspelt name", "account \"a\" {\n  passwrd = \"%s\"\n}\n"},
	{"colon", "account \"a\" {\n  password: \"%s\"\n}\n"},
	{"no equals sign", "account \"a\" {\n  password \"%s\"\n}\n"},
	{"wrong type", "account \"a\" {\n  password = [\"%s\"]\n}\n"},
	{"number", "account \"a\" {\n  password = %s\n}\n"},
	{"CR in the password", "account \"a\" {\n  password = \"%s\\r\"\n}\n"},
	{"password in password_env", "account \"a\" {\n  password_env = \"%s\"\n}\n"},
	{"defaults", "defaults {\n  password = \"%s\" }\naccount \"a\" {\n  server = 5\n}\n"},
	{"commented out", "account \"a\" {\n  # password = \"%s\"\n  server = 5 # here\n}\n"},
	{"garbage after", "account \"a\" {\n  password = \"%s\" junk\n}\n"},
	{"block comment", "account \"a\" {\n  /* x */ password = \"%s\" = 1\n}\n"},
	{"one-line block", `account "a" { server = "x" username = "u" password = "%s" }` + "\n"},
	{"second attribute on the line", "account \"a\" {\n  server = \"x\"\n  limit = 5 password = \"%s\"\n  deliver { maildir = \"/tmp/x\" }\n}\n"},
	{"after a semicolon", "account \"a\" {\n  server = \"x\"; password = \"%s\"\n}\n"},
	{"after a comma", "account \"a\" {\n  server = \"x\", password = \"%s\"\n}\n"},
	{"no-break space", "account \"a\" {\n  server = \"x\"\n  \u00a0password = \"%s\"\n  deliver { maildir = \"/tmp/x\" }\n}\n"},
	{"form feed", "account \"a\" {\n  server = \"x\"\n  \fpassword = \"%s\"\n  deliver { maildir = \"/tmp/x\" }\n}\n"},
	{"CR line endings", "account \"a\" {\r  server = \"x\"\r  username = \"u\"\r  password = \"%s\"\r  deliver { maildir = \"/tmp/x\" }\r}\r"},
	{"zero-width space in the name", "account \"a\" {\n  server = \"x\"\n  pass\u200bword = \"%s\"\n}\n"},
	{"zero-width space and no equals sign", "account \"a\" {\n  server = 5\n  pass\u200bword \"%s\"\n}\n"},
	{"ldap bind password", "account \"a\" {\n  multidrop {\n    ldap {\n      url = 5\n      password = \"%s\"\n    }\n  }\n}\n"},
	{"second password after a one-line block", `account "a" { password = "x" }" password = "%s"` + "\n"},
	{"secret name without equals before an unknown attribute", "account \"a\" {\n  x password \"%s\" bogus = 1\n}\n"},
	{"value on the line below", "account \"a\" {\n  password =\n    '%s'\n}\n"},
	{"name alone on its line", "account \"a\" {\n  password\n  = \"%s\" &\n}\n"},
	{"name ending the line of another attribute", "account \"a\" {\n  server = \"x\" password\n  = \"%s\" &\n}\n"},
	{"block comment spanning lines after the name", "account \"a\" {\n  server = \"x\" password /*\n  */ = \"%s\" &\n}\n"},
	{"zero-width space in a name ending its line", "account \"a\" {\n  server = \"x\" pass\u200bword\n  = \"%s\" &\n}\n"},
	{"lone CR after the name", "account \"a\" {\n  server = \"x\" password\r= \"%s\" &\n}\n"},
	{"string in a function call in the password", "account \"a\" {\n  password = env(\"%s\")\n}\n"},
	{"second secret name ending the line", "account \"a\" {\n  password = \"a\" api_token =\n  '%s'\n}\n"},
	{"operator ending the line", "account \"a\" {\n  password = \"a\" +\n  '%s'\n}\n"},
	{"misspelt name, value on the line below", "account \"a\" {\n  passwrd =\n    '%s'\n}\n"},
	{"misspelt name alone on its line", "account \"a\" {\n  passwrd\n  = \"%s\" &\n}\n"},
	{"unknown name, value on the line below", "account \"a\" {\n  pw =\n    \"%s\" &\n}\n"},
	{"misspelt name, operator ending the line", "account \"a\" {\n  passwrd = \"a\" +\n  '%s'\n}\n"},
	{"ldap bind password on the bind_dn line", "account \"a\" {\n  multidrop {\n    ldap { bind_dn = \"x\" password = \"%s\" }\n  }\n}\n"},
}

// secretFor fills a broken file's %s: the password, or where the
// password must be an identifier, a fragment that must not leak either.
func secretFor(name string) string {
	switch name {
	case "interpolation in the password", "function call in the password", "number":
		return "Hunter2"
	}
	return testSecret
}

func leaked(s string) string {
	for _, f := range leakFragments {
		if strings.Contains(s, f) {
			return f
		}
	}
	return ""
}

// TestDiagnosticsMaskSecrets: whatever is broken around a password, the
// rendered diagnostics (one-line and with source snippets) never show it.
func TestDiagnosticsMaskSecrets(t *testing.T) {
	fixedEnv(t)
	for _, tt := range brokenSecretFiles {
		t.Run(tt.name, func(t *testing.T) {
			src := []byte(fmt.Sprintf(tt.src, secretFor(tt.name)))
			_, diags := parseAs(src, "rc.hcl", testEUID)
			if len(diags) == 0 {
				t.Fatalf("no diagnostics for\n%s", src)
			}
			var b bytes.Buffer
			WriteDiagnostics(&b, diags, map[string]*hcl.File{"rc.hcl": {Bytes: src}})
			for _, d := range diags {
				fmt.Fprintln(&b, FormatDiagnostic(d), d.Error())
			}
			if f := leaked(b.String()); f != "" {
				t.Errorf("diagnostics show %q:\n%s", f, b.String())
			}
			if !strings.Contains(b.String(), "rc.hcl:") {
				t.Errorf("diagnostics without position:\n%s", b.String())
			}
		})
	}
}

// TestLoadReadableMasksSnippet: the error about an inline password in a
// readable file points at the password line; its snippet shows ***.
func TestLoadReadableMasksSnippet(t *testing.T) {
	fixedEnv(t)
	p := testutil.WriteFile(t, testutil.PrivateDir(t), "rc.hcl", fmt.Sprintf(minimal, `password = "`+testSecret+`"`), 0o644)
	_, diags := loadAs(p, testEUID)
	var b bytes.Buffer
	WriteDiagnostics(&b, diags, SourceFiles(diags))
	out := b.String()
	if !strings.Contains(out, "Password in a readable file") || !strings.Contains(out, "\t  password = ***\n\t  ^^^^^^^^^^^^^^\n") {
		t.Errorf("Load(0644 rc with a password) diagnostics:\n%s\nwant the masked password line with carets under it", out)
	}
	if f := leaked(out); f != "" {
		t.Errorf("diagnostics show %q:\n%s", f, out)
	}
}

// TestWriteDiagnosticsMaskedCarets: masking a secret earlier on the line
// moves the carets with the text after it.
func TestWriteDiagnosticsMaskedCarets(t *testing.T) {
	fixedEnv(t)
	src := "account \"a\" { password = \"" + testSecret + "\" }\n"
	diags := hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "X", Subject: &hcl.Range{Filename: "rc.hcl",
		Start: hcl.Pos{Line: 1, Column: 48, Byte: 47}, End: hcl.Pos{Line: 1, Column: 49, Byte: 48}}}} // the "}"
	var b bytes.Buffer
	WriteDiagnostics(&b, diags, map[string]*hcl.File{"rc.hcl": {Bytes: []byte(src)}})
	want := "\taccount \"a\" { password = *** }\n\t" + strings.Repeat(" ", len(`account "a" { password = *** `)) + "^\n"
	if !strings.HasSuffix(b.String(), want) {
		t.Errorf("WriteDiagnostics =\n%s\nwant the snippet\n%s", b.String(), want)
	}
}

// TestMaskSourceKeepsOthers: only secrets and unknown attributes' values
// are masked; everything else, including password_file paths, stays.
func TestMaskSourceKeepsOthers(t *testing.T) {
	t.Parallel()
	src := "account \"a\" {\n  server = \"pop.example.com\"\n  password_file = \"/etc/pw\"\n  password = <<EOT\nsecret one\n  two\nEOT\n  api_token = \"t0k\"\n  bogus = \"b\"\n  deliver { maildir = \"/m\" }\n}\n"
	want := "account \"a\" {\n  server = \"pop.example.com\"\n  password_file = \"/etc/pw\"\n  password = ***\n***\n***\n***\n  api_token = ***\n  bogus = ***\n  deliver { maildir = \"/m\" }\n}\n"
	if got := string(maskSource([]byte(src)).text); got != want {
		t.Errorf("maskSource =\n%s\nwant\n%s", got, want)
	}
}

// TestMaskSourceCommentAfterValue: a # or // comment ends the line of
// the value it follows; the next line is not part of the value.
func TestMaskSourceCommentAfterValue(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"#", "//"} {
		src := "account \"a\" {\n  password = \"x\" " + c + " note\n  server = \"pop.example.com\"\n}\n"
		want := "account \"a\" {\n  password = ***\n  server = \"pop.example.com\"\n}\n"
		if got := string(maskSource([]byte(src)).text); got != want {
			t.Errorf("maskSource =\n%s\nwant\n%s", got, want)
		}
	}
}

// FuzzMaskSource: masking never panics, keeps every line where it was,
// and a password line appended to anything is masked; the diagnostics
// never show a password appended on the last line either.
func FuzzMaskSource(f *testing.F) {
	for _, tt := range brokenSecretFiles {
		f.Add([]byte(fmt.Sprintf(tt.src, "x")))
	}
	seeds, _ := filepath.Glob(filepath.Join(rcDir, "*.hcl"))
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		for bytes.Contains(src, []byte(testSecret)) {
			// Only the appended line may hold it.
			src = bytes.ReplaceAll(src, []byte(testSecret), nil)
		}
		_, diags := parseAs(append(src, " password = \""+testSecret+"\"\n"...), "fuzz.hcl", testEUID)
		var b bytes.Buffer
		WriteDiagnostics(&b, diags, map[string]*hcl.File{"fuzz.hcl": {Bytes: append(src, " password = \""+testSecret+"\"\n"...)}})
		for _, d := range diags {
			fmt.Fprintln(&b, FormatDiagnostic(d))
		}
		if bytes.Contains(b.Bytes(), []byte(testSecret)) {
			t.Fatalf("the diagnostics show the password appended on the same line:\n%s", b.String())
		}
		src = append(src, "\n  password = \""+testSecret+"\"\n"...)
		m := maskSource(src)
		if bytes.Count(m.text, []byte("\n")) != bytes.Count(src, []byte("\n")) {
			t.Fatalf("masking changed the line count:\n%q\n%q", src, m.text)
		}
		if bytes.Contains(m.text, []byte(testSecret)) {
			t.Fatalf("the password survives masking:\n%q", m.text)
		}
		prev := -1
		for o := 0; o <= len(src); o++ {
			n := m.offset(o)
			if n < prev || n > len(m.text) {
				t.Fatalf("offset(%d) = %d after %d (len %d)", o, n, prev, len(m.text))
			}
			prev = n
		}
		_, diags = parseAs(src, "fuzz.hcl", testEUID)
		b.Reset()
		WriteDiagnostics(&b, diags, map[string]*hcl.File{"fuzz.hcl": {Bytes: src}})
		if bytes.Contains(b.Bytes(), []byte(testSecret)) {
			t.Fatalf("the diagnostics show the password:\n%s", b.String())
		}
	})
}

// TestSnippetHidesUnmasked: a snippet line that still shows a secret's
// name with something other than the mask after it (as the fallback sees
// it: through zero-width and no-break spaces, CR as a line break) is not
// printed, whatever the masking before missed.
func TestSnippetHidesUnmasked(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		line string
		hide bool
	}{
		{`  password = ***`, false},
		{`  password_file = "/etc/pw"`, false},
		{`  password_command = ["pass", "show", "x"]`, false},
		{`  server = "x" # password = ***`, false},
		{`  password = "S"`, true},
		{`  limit = 5, api_token: "S"`, true},
		{"  pass\u200bword = \"S\"", true},
		{"  \u00a0secret \"S\"", true},
		{"  server = \"x\"\r  password = \"S\"", true},
	} {
		m := &maskedSource{text: []byte(tt.line + "\n"), lines: []int{0, len(tt.line) + 1}}
		line, _, _, ok := m.snippet(&hcl.Range{Start: hcl.Pos{Line: 1, Column: 1}, End: hcl.Pos{Line: 1, Column: 2, Byte: 1}})
		if !ok || (line == hiddenLine) != tt.hide {
			t.Errorf("snippet(%q) = %q, %v; want hidden %v", tt.line, line, ok, tt.hide)
		}
	}
}
