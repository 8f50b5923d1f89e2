package fetchmailrc

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// hostile recipients and senders: spaces, globs, quotes of both kinds,
// command substitution, backslashes, an empty value, a leading dash.
var hostileArgs = []string{
	"a b*@x", `x'y"z`, "$(touch pwned)@x", "`id`", `\'\"`, "", "-n", "*", "a\tb\nc", "${HOME}",
}

// runSh runs /bin/sh -c script sh args... in dir and returns the lines
// it printed.
func runSh(t *testing.T, dir, script string, args ...string) ([]string, bool) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
	cmd.Dir = dir
	// The format of the printer comes from the environment: fetchmail
	// would replace a %s written in the command.
	// V and E are for ${V} and ${E}: a value the shell splits and
	// globs outside quotes, and an empty one, whose unquoted ${E}
	// makes no word at all.
	cmd.Env = []string{"PATH=/usr/bin:/bin", `P=%s\0`, "V=v a* l", "E="}
	out, err := cmd.Output()
	if err != nil {
		return nil, false
	}
	return strings.Split(string(out), "\x00"), true
}

// checkMDA converts the fetchmail MDA `printf "$P" WORDS` and checks
// that the generated script, given hostile values, prints the words
// fetchmail's shell made of WORDS (see fetchmailExpand) when the values
// were harmless tokens, with the tokens replaced by the values: each
// placeholder stays inside the one word it was written in, as the values
// themselves.
func checkMDA(t *testing.T, dir, words string) {
	t.Helper()
	cmd := `printf "$P" ` + words
	argv, why := mdaArgv(cmd, "{user}")
	if why != "" {
		return // refused: disabled with a note, nothing to run
	}
	plain := fetchmailExpand(cmd, "XTOKTX", "XTOKFX")
	want, ok := runSh(t, dir, plain)
	if !ok {
		return // not valid shell in the first place
	}
	if argv[0] != "/bin/sh" || argv[1] != "-c" || argv[3] != "sh" {
		t.Fatalf("%q: argv %q", cmd, argv)
	}
	for _, rcpt := range hostileArgs {
		for _, sender := range []string{"b c?@y", `'"`, "$(id)"} {
			var args []string
			if len(argv) > 4 {
				args = []string{rcpt, sender}
			}
			got, ok := runSh(t, dir, argv[2], args...)
			exp := make([]string, len(want))
			for i, w := range want {
				exp[i] = strings.NewReplacer("XTOKTX", rcpt, "XTOKFX", sender).Replace(w)
			}
			if !ok || !slices.Equal(got, exp) {
				t.Fatalf("fetchmail mda %q -> script %q with $1=%q $2=%q printed %q; want %q", cmd, argv[2], rcpt, sender, got, exp)
			}
		}
	}
}

// TestMDAQuoting: %T and %F alone, inside larger words, in each kind of
// quoting and across quote changes stay the one word they were part of.
func TestMDAQuoting(t *testing.T) {
	dir := t.TempDir()
	for _, words := range []string{
		`%T`, `%F %T`, `'%T'`, `from=%F`, `'from=%F'`, `'a b'%T"c d"`, `'%T%F'`, `%T%F`, `a\ b%T`,
		`-f %F -- '%T' x`, `'it'"'"'s' %T`, `'%F'%T`, `%%T`, `"%"T`, `%s`, `'%s'`, `x%sy%F`, `'a'%T'b'`,
		`'=%T-'`, `'$%T'`, `"a b"%T'c'`, `"#"%T`,
	} {
		checkMDA(t, dir, words)
	}
}

// TestMDARefused: quoting not followed with certainty disables the MDA.
func TestMDARefused(t *testing.T) {
	for _, cmd := range []string{
		`deliver "$(echo %T)"`, "deliver `echo %F`", `deliver ${X:-%T}`, `deliver \%T`, `deliver "%T`, `deliver '%F`,
		"deliver <<EOF\n%T\nEOF",
		// Inside double quotes fetchmail's own single quotes around
		// the address were literal.
		`deliver "%T"`, `deliver -f "%F"`, `deliver "a\%T"`, `deliver "x'%s'y"`,
		// A single-quoted command line for another shell.
		`su joe -c 'procmail -d %T'`, `ssh h 'deliver;%F'`,
		// The positional parameters the script now has.
		`deliver $# %T`, `deliver %T $1`, `deliver "$@" %F`, `deliver $*%T`, "deliver $\\\n# %T",
		`set -- x; deliver %T`, `shift; deliver %T`, `s'e't x; deliver %T`, `for a do deliver $a; done %T`, `getopts f: o %F`,
		// Text run as shell code in this shell.
		`eval deliver %T`, `trap 'deliver' EXIT %F`,
		// A comment hides a quote; bash's $'...' quoting; a line
		// continuation joins < and < into a here-document.
		"deliver #'\n%T #'", `deliver $%T`, `deliver $'\'' %T '`, "deliver <\\\n<E %T\nx\nE",
		// popfetch's own placeholders would paste a value into the
		// script, or make the configuration invalid.
		`deliver -f {sender}`, `deliver %T {sender}`, `maildrop -d '${USER}'`, `deliver "\${HOME}"`,
		`deliver $${HOME}`, `deliver ${1}`, `deliver ${USER:-x} %T`,
	} {
		if argv, why := mdaArgv(cmd, "{user}"); why == "" {
			t.Errorf("mdaArgv(%q) = %q, ok; want refused", cmd, argv)
		}
	}
	// Without a placeholder nothing is pasted: the command stays.
	for _, cmd := range []string{`procmail -a "$(date)"`, `deliver "$1" $# # x`, "set -- a; eval deliver; $USER"} {
		if argv, why := mdaArgv(cmd, "x"); why != "" || argv[2] != cmd || len(argv) != 4 {
			t.Errorf("command without placeholders %q: %q %s", cmd, argv, why)
		}
	}
}

// TestMDABracedVariables: ${NAME}, which popfetch would read as its own
// {NAME} placeholder, becomes $NAME, with "" before what would run into
// the name; the shell makes the same words of it, outside quotes (split,
// globbed, or no word at all when empty) and inside double quotes.
func TestMDABracedVariables(t *testing.T) {
	for in, want := range map[string]string{
		`maildrop -d ${USER}`:            `maildrop -d $USER`,
		`procmail -m ${HOME}/.rc %T`:     `procmail -m $HOME/.rc "$1"`,
		`x${A_1}y "${B}z" ${C}`:          `x$A_1""y "$B""z" $C`,
		"a ${D}\\\nb":                    "a $D\"\"\\\nb",
		`'${USER}x' ${USER}`:             ``, // refused: the single-quoted one stays literal
		`deliver ${USER}$${HOME} %T`:     ``,
		`printf "${V}" $$ ${E}${E}-${E}`: `printf "$V" $$ $E$E-$E`,
	} {
		argv, why := mdaArgv(in, "{user}")
		if want == "" {
			if why == "" {
				t.Errorf("mdaArgv(%q) = %q; want refused", in, argv)
			}
			continue
		}
		if why != "" || argv[2] != want {
			t.Errorf("mdaArgv(%q) = %q (%s); want script %q", in, argv, why, want)
		}
	}
	dir := t.TempDir()
	for _, words := range []string{
		`${V}`, `${V}x`, `x${V}`, `"${V}"`, `"a${V}b"`, `${E}`, `${E}x`, `"${E}"`, `${E}${E}`, `${V}%T`, `%T${V}`,
		`"${V}"'%T'`, `${V}\ b`, `'x'${V}`, `${V}"q"`, `${NOPE}`, "${V}\\\nx", "\"${V}\\\nx\"", `${E}\ `, `${V_}`,
	} {
		checkMDA(t, dir, words)
	}
}

// FuzzMDAQuoting: printf of words built from quotes, backslashes, spaces
// and placeholders (no other shell syntax, so the fuzzer runs nothing but
// printf). TestMDAExhaustive checks every such command up to a length.
func FuzzMDAQuoting(f *testing.F) {
	for _, s := range []string{`%T`, `'a%T'`, `"%F x"`, `a\ %T`, `"\"%T"`, `'%T'"%F"`, `%s`} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, words string) {
		if len(words) > 64 || strings.Trim(words, `'" \%TFsab=-`) != "" {
			return
		}
		checkMDA(t, dir, words)
	})
}

// TestImportMDARefusedNote: a refused MDA is converted into one that
// fails temporarily, with a note naming the line and the reason, and the
// configuration loads (a {name} in the script made it invalid before).
func TestImportMDARefusedNote(t *testing.T) {
	for _, tc := range []struct{ mda, why string }{
		{"deliver `echo %F`", "quoting popfetch cannot follow"},
		{`maildrop -d '${USER}'`, "{USER}, which popfetch would read as its own placeholder"},
		{`deliver -f {sender}`, "{sender}, which popfetch"},
		{`procmail -d \"%T\"`, "inside double quotes"},
		{`set -- x; deliver %T`, "positional parameters"},
	} {
		res, cfg := convertParse(t, "poll pop.example.com proto pop3 user u pass p ssl mda \""+tc.mda+"\"\n")
		mda := cfg.Accounts[0].Deliver.MDA
		if len(mda) != 4 || !strings.Contains(mda[2], "exit 75") || strings.Contains(mda[2], "{") {
			t.Errorf("mda = %q\n%s", mda, res.HCL)
		}
		if !strings.Contains(string(res.HCL), "fetchmailrc:1: ") || !strings.Contains(string(res.HCL), "the MDA is disabled") || !strings.Contains(string(res.HCL), tc.why) {
			t.Errorf("%s: no note saying %q:\n%s", tc.mda, tc.why, res.HCL)
		}
	}
}

// TestParseSecretNotShown: the second word of an unquoted password with a
// space is not quoted in the error, which says what to do.
func TestParseSecretNotShown(t *testing.T) {
	for _, src := range []string{
		"poll pop.example.com proto pop3 user u pass hunter2 s3cr3tword\n",
		"poll pop.example.com proto pop3 user u password hunter2 s3cr3tword keep\n",
		"poll pop.example.com proto pop3 user u esmtppassword hunter2 s3cr3tword\n",
		"poll pop.example.com proto pop3 user u pass hunter2 42s3cr3tword\n",
	} {
		_, err := Parse([]byte(src))
		if err == nil || strings.Contains(err.Error(), "s3cr3tword") || !strings.Contains(err.Error(), "line 1:") || !strings.Contains(err.Error(), "a password with a space must be quoted") {
			t.Errorf("%q: %v", src, err)
		}
	}
	// Elsewhere the unknown word is named.
	if _, err := Parse([]byte("poll pop.example.com proto pop3 user u keep bogusword\n")); err == nil || !strings.Contains(err.Error(), `"bogusword"`) {
		t.Errorf("unknown keyword: %v", err)
	}
}
