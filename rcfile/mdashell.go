package rcfile

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// shells are the base names of programs that run their -c argument as a
// shell script. busybox and env are handled by shellScript: "busybox sh"
// and "env [NAME=value ...] sh" run the shell named next.
var shells = map[string]bool{
	"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "mksh": true,
	"ksh93": true, "pdksh": true, "oksh": true, "yash": true, "ash": true, "posh": true,
	"fish": true, "csh": true, "tcsh": true, "rc": true, "es": true,
}

// shellScript returns the index in argv of the script a shell runs with
// -c (including option clusters such as -ec or -lc), or -1 when argv does
// not run a shell that way. Recognised: argv[0] whose base name is a shell
// (sh, bash, dash, zsh, ksh, mksh ...), "busybox sh" and "env [-i] [NAME=value
// ...] sh". A program that starts a shell by other means (sudo, su -c,
// xargs) is not recognised; the rule is for the common way of writing a
// pipeline as an mda.
func shellScript(argv []string) int {
	i := 0
	if len(argv) > 0 && filepath.Base(argv[0]) == "env" {
		i = 1
		for i < len(argv) && (strings.HasPrefix(argv[i], "-") || strings.Contains(argv[i], "=")) {
			i++
		}
	}
	if i < len(argv) && filepath.Base(argv[i]) == "busybox" {
		i++
	}
	if i >= len(argv) || !shells[filepath.Base(argv[i])] {
		return -1
	}
	c := false
loop:
	for i++; i < len(argv); i++ {
		switch a := argv[i]; {
		case a == "--" || a == "-":
			i++
			break loop
		case a == "-o" || a == "+o" || a == "-O" || a == "+O" || a == "--rcfile" || a == "--init-file":
			i++ // takes a value
		case strings.HasPrefix(a, "--"):
		case len(a) > 1 && (a[0] == '-' || a[0] == '+'):
			c = c || a[0] == '-' && strings.Contains(a, "c")
		default:
			break loop
		}
	}
	if !c || i >= len(argv) {
		return -1
	}
	return i
}

// mdaListHint suggests the list form of a fetchmail-style command line
// written as one string (mda = "procmail -d %T"). fetchmail ran it with
// /bin/sh -c after pasting %T (the recipient) and %F (the sender) into it;
// the safe equivalent passes them as positional parameters of the shell.
// A line of plain words becomes those words without a shell.
func mdaListHint(cmd string) string {
	const meta = "'\"`$\\|&;<>()*?[]#~!{}\n\t"
	words := strings.Fields(cmd)
	var argv []string
	if len(words) > 0 && !strings.ContainsAny(cmd, meta) {
		for _, w := range words {
			w = strings.ReplaceAll(w, "%T", "{user}")
			argv = append(argv, strings.ReplaceAll(w, "%F", "{sender}"))
		}
	} else {
		script := cmd
		for _, q := range []string{"'%T'", "\"%T\"", "%T"} {
			script = strings.ReplaceAll(script, q, `"$1"`)
		}
		for _, q := range []string{"'%F'", "\"%F\"", "%F"} {
			script = strings.ReplaceAll(script, q, `"$2"`)
		}
		argv = []string{"/bin/sh", "-c", script, "sh"}
		if strings.Contains(script, `"$1"`) || strings.Contains(script, `"$2"`) {
			argv = append(argv, "{user}", "{sender}")
		}
	}
	guessed := len(argv) > 0 && !filepath.IsAbs(argv[0])
	if guessed {
		argv[0] = "/usr/bin/" + argv[0]
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = hclQuote(a)
	}
	hint := "mda = [" + strings.Join(q, ", ") + "]"
	if guessed {
		hint += fmt.Sprintf(" (with the program's real absolute path: see `command -v %s`)", filepath.Base(argv[0]))
	}
	return hint
}

// hclQuote quotes s as an HCL string literal: Go's escapes, plus $${ and
// %%{ so that no template sequence is read.
func hclQuote(s string) string {
	q := strconv.Quote(s)
	q = strings.ReplaceAll(q, "${", "$${")
	return strings.ReplaceAll(q, "%{", "%%{")
}
