package rcfile

import (
	"fmt"
	"strings"
	"testing"
)

// A placeholder inside the script of a shell's -c is refused at its
// position in the rc file; as a positional parameter after the script it
// is accepted.
func TestMDAShellScriptPlaceholder(t *testing.T) {
	fixedEnv(t)
	for _, tt := range []struct{ argv, want string }{
		{`["/bin/sh", "-c", "procmail -d {user}"]`, "Placeholder in a shell script"},
		{`["/bin/bash", "-ec", "exec procmail -d '{user}'"]`, "Placeholder in a shell script"},
		{`["/usr/bin/dash", "-e", "-c", "x {sender}"]`, "Placeholder in a shell script"},
		{`["/bin/zsh", "-o", "pipefail", "-c", "x {user}"]`, "Placeholder in a shell script"},
		{`["/usr/bin/env", "LC_ALL=C", "sh", "-c", "x {user}"]`, "Placeholder in a shell script"},
		{`["/bin/busybox", "sh", "-c", "x {user}"]`, "Placeholder in a shell script"},
		{`["/bin/mksh", "-c", "x {user}"]`, "Placeholder in a shell script"},
		{`["/bin/ksh", "-lc", "x {user}", "ksh"]`, "Placeholder in a shell script"},
		// The safe form: the script names "$1", the value follows it.
		{`["/bin/sh", "-c", "procmail -d \"$1\"", "sh", "{user}"]`, ""},
		{`["/bin/sh", "-c", "procmail -f \"$2\" -d \"$1\"", "sh", "{user}", "{sender}"]`, ""},
		// No -c: the argument is a script file's name or its parameter.
		{`["/bin/sh", "/usr/local/bin/deliver.sh", "{user}"]`, ""},
		{`["/usr/bin/procmail", "-c", "{user}"]`, ""}, // not a shell
		{`["/bin/sh", "-c", "procmail -d joe"]`, ""},
	} {
		body := "deliver {\nmda = " + tt.argv + "\n}"
		_, diags := parseOne(t, fmt.Sprintf(minimal, body))
		out := string(render(t, diags))
		if tt.want == "" && len(diags) != 0 || tt.want != "" && (!diags.HasErrors() || !strings.Contains(out, tt.want)) {
			t.Errorf("mda = %s: diagnostics:\n%s\nwant %q", tt.argv, out, tt.want)
		}
		if tt.want != "" && !strings.Contains(out, "test.hcl:") {
			t.Errorf("mda = %s: diagnostic without file position:\n%s", tt.argv, out)
		}
	}
}

// A fetchmail-style mda string gets one error that shows the list form.
func TestMDAStringHint(t *testing.T) {
	fixedEnv(t)
	for _, tt := range []struct{ mda, want string }{
		{`"procmail -d %T"`, `mda = ["/usr/bin/procmail", "-d", "{user}"]`},
		{`"/usr/bin/procmail -f %F -d %T"`, `mda = ["/usr/bin/procmail", "-f", "{sender}", "-d", "{user}"]`},
		{`"/usr/bin/procmail -d '%T' | logger"`, `mda = ["/bin/sh", "-c", "/usr/bin/procmail -d \"$1\" | logger", "sh", "{user}", "{sender}"]`},
		{`"/usr/sbin/sendmail -oi joe"`, `mda = ["/usr/sbin/sendmail", "-oi", "joe"]`},
	} {
		body := "deliver {\nmda = " + tt.mda + "\n}"
		_, diags := parseOne(t, fmt.Sprintf(minimal, body))
		out := string(render(t, diags))
		if len(diags) != 1 || !strings.Contains(out, tt.want) {
			t.Errorf("mda = %s: diagnostics:\n%s\nwant one error containing %s", tt.mda, out, tt.want)
		}
	}
}

func FuzzShellScript(f *testing.F) {
	f.Add("/bin/sh\x00-c\x00x {user}")
	f.Add("/usr/bin/env\x00-i\x00A=b\x00busybox\x00sh\x00-o\x00x\x00-c")
	f.Fuzz(func(t *testing.T, s string) {
		argv := strings.Split(s, "\x00")
		if i := shellScript(argv); i >= len(argv) || i == 0 || i < -1 {
			t.Fatalf("shellScript(%q) = %d", argv, i)
		}
		_ = mdaListHint(s)
	})
}
