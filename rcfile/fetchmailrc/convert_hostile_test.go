package fetchmailrc

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/rcfile"
)

// convertParse converts src and parses the output as popfetch does.
func convertParse(t *testing.T, src string) (*Result, *rcfile.Config) {
	t.Helper()
	res, err := Convert([]byte(src), Options{User: "me"})
	if err != nil {
		t.Fatalf("convert: %v", err)
	}
	cfg, diags := rcfile.Parse(res.HCL, "out.hcl")
	if diags.HasErrors() {
		t.Fatalf("output does not parse: %v\n%s", diags, res.HCL)
	}
	return res, cfg
}

// TestImportHCLInjection: quotes, ${...}, %{...}, heredoc markers,
// newlines and comment characters in a fetchmailrc's strings come out as
// the same string values, never as HCL syntax.
func TestImportHCLInjection(t *testing.T) {
	for _, pw := range []string{
		`a"b`, `${file("/etc/shadow")}`, `%{if true}x%{endif}`, `<<EOT`, `# not a comment`, `$${x}`, `a"} keep = false #`,
	} {
		// fetchmail's quoted strings take \" and \n escapes; the converter
		// unescapes them, so compare with what its lexer read.
		src := "poll pop.example.com proto pop3 user \"u\" pass \"" + strings.ReplaceAll(pw, `"`, `\"`) + "\" ssl keep\n"
		res, cfg := convertParse(t, src)
		if len(cfg.Accounts) != 1 {
			t.Fatalf("%q: %d accounts\n%s", pw, len(cfg.Accounts), res.HCL)
		}
		a := cfg.Accounts[0]
		f, _ := Parse([]byte(src))
		want := ""
		for _, o := range f.Polls[0].Users[0].Opts {
			if o.Key == "pass" {
				want = o.Args[0]
			}
		}
		if a.Password.Inline != want || !a.Keep || a.TLS != rcfile.TLSImplicit {
			t.Errorf("%q: password %q keep %v tls %v; want %q true implicit\n%s", pw, a.Password.Inline, a.Keep, a.TLS, want, res.HCL)
		}
	}
}

// TestImportSecretInError: an unquoted password with a space (a
// fetchmailrc mistake) must not print the password's second word to
// stderr in the parse error.
func TestImportSecretInError(t *testing.T) {
	_, err := Convert([]byte("poll pop.example.com proto pop3 user u pass hunter2 s3cr3tword\n"), Options{User: "me"})
	if err != nil && strings.Contains(err.Error(), "s3cr3tword") {
		t.Errorf("the error shows part of the password: %v", err)
	}
}

// TestImportMDASenderQuoting: fetchmail's %F inside a larger quoted
// word must stay one quoted shell word; the sender is the sending
// server's (attacker's) choice. Run the converted argv with a sender
// holding a space and a glob, and check the script sees it as one
// argument, unchanged.
func TestImportMDASenderQuoting(t *testing.T) {
	// %b, not %s: fetchmail replaces %s as it does %T. A placeholder
	// inside double quotes is refused (see TestMDARefused).
	for _, mda := range []string{
		`printf '%b\n' %F`,
		`printf '%b\n' from=%F`,
		`printf '%b\n' 'from=%F'`,
	} {
		src := "poll pop.example.com proto pop3 user u pass p ssl mda \"" + strings.ReplaceAll(mda, `"`, `\"`) + "\"\n"
		_, cfg := convertParse(t, src)
		argv := slices.Clone(cfg.Accounts[0].Deliver.MDA)
		sender := "a b*@x"
		for i := range argv {
			argv[i] = strings.ReplaceAll(argv[i], "{sender}", sender)
		}
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "zz_file"), nil, 0o600)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%q: %v", argv, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		wantLine := strings.ReplaceAll(strings.ReplaceAll(strings.Trim(mda[len(`printf '%b\n' `):], `'"`), "%F", sender), `"`, "")
		if len(lines) != 1 || lines[0] != wantLine {
			t.Errorf("fetchmailrc mda %q -> %q: the script printed %q (words), want one word %q", mda, argv, lines, wantLine)
		}
	}
}
