package fetchmailrc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fetchmailExpand is what fetchmail (sink.c, open_mda_sink, 6.3 and 6.4)
// does to an mda command before popen runs it with /bin/sh -c: %T and its
// older spelling %s become the local recipients, %F the sender, each put
// in single quotes after any single quote in the value is replaced by
// '_'. There is no escape: "%%T" is "%" and then %T. The expansion is one
// pass, so a value is never expanded again.
func fetchmailExpand(cmd, to, from string) string {
	to = "'" + strings.ReplaceAll(to, "'", "_") + "'"
	from = "'" + strings.ReplaceAll(from, "'", "_") + "'"
	var b strings.Builder
	for i := 0; i < len(cmd); i++ {
		if cmd[i] == '%' && i+1 < len(cmd) {
			switch cmd[i+1] {
			case 'T', 's':
				b.WriteString(to)
				i++
				continue
			case 'F':
				b.WriteString(from)
				i++
				continue
			}
		}
		b.WriteByte(cmd[i])
	}
	return b.String()
}

// mdaCase is one command for mdaBatch: the fetchmail command line, the
// script mdaArgv made of it, and after the run the output of each.
type mdaCase struct {
	cmd, script string
	plain       []byte
	plainOK     bool
	got         [][]byte
	gotOK       []bool
}

// mdaValues are the recipient and sender pairs the converted scripts run
// with: every character the shell treats specially, blanks that split,
// globs that match (the run directory holds files named a and b), an
// empty value and a leading dash.
var mdaValues = [][2]string{
	{"a  b*?[ab]\t'\"$(echo I)`echo J`\\\\n${K}%T\n", "$1 'x' \"y\" \\ * ? %F"},
	{"", "-n"},
	{"-e", ""},
}

// mdaBatch runs the cases in one /bin/sh, each through "command eval",
// so a syntax error ends only that case (POSIX XCU 2.8.1: command keeps a
// special built-in's error from ending the shell). The alphabet of the
// cases cannot assign, redirect or change the shell's state. The
// printer pr prints each argument followed by NUL. The fetchmail form
// runs with tokens for the values; the converted one once per pair of
// mdaValues as "$1" and "$2".
func mdaBatch(t *testing.T, dir string, cases []*mdaCase) {
	t.Helper()
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	var sc strings.Builder
	sc.WriteString("pr() { for _pa do printf '%s\\0' \"$_pa\"; done; }\n")
	for i, c := range cases {
		plain := fetchmailExpand(c.cmd, "XTOKTX", "XTOKFX")
		fmt.Fprintf(&sc, "printf '\\001%d.p\\002'; set --; command eval %s; printf '\\003%%d\\004' $?\n", i, q(plain))
		for j, v := range mdaValues {
			fmt.Fprintf(&sc, "printf '\\001%d.%d\\002'; set -- %s %s; command eval %s; printf '\\003%%d\\004' $?\n", i, j, q(v[0]), q(v[1]), q(c.script))
		}
	}
	// A file, not a pipe: a command that is not found must not take
	// the rest of the script from a shared standard input.
	script := filepath.Join(t.TempDir(), "batch.sh")
	if err := os.WriteFile(script, []byte(sc.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", script)
	cmd.Dir = dir
	// No PATH: the words of a case (ss, as) must not run programs.
	cmd.Env = []string{"PATH=" + dir + "/nonexistent"}
	out, err := cmd.Output()
	if err != nil {
		k := bytes.LastIndexByte(out, 1)
		id, _, _ := strings.Cut(string(out[k+1:]), ".")
		i, _ := strconv.Atoi(id)
		t.Fatalf("batch: %v; at %q -> %q", err, cases[i].cmd, cases[i].script)
	}
	for _, c := range cases {
		c.got = make([][]byte, len(mdaValues))
		c.gotOK = make([]bool, len(mdaValues))
	}
	for len(out) > 0 {
		s := bytes.IndexByte(out, 1)
		e := bytes.IndexByte(out, 2)
		m := bytes.IndexByte(out, 3)
		z := bytes.IndexByte(out, 4)
		if s != 0 || e < s || m < e || z < m {
			t.Fatalf("batch output out of frame at %q", out[:min(len(out), 200)])
		}
		id, run, _ := strings.Cut(string(out[1:e]), ".")
		i, _ := strconv.Atoi(id)
		body := out[e+1 : m]
		ok := string(out[m+1:z]) == "0"
		if run == "p" {
			cases[i].plain, cases[i].plainOK = body, ok
		} else {
			j, _ := strconv.Atoi(run)
			cases[i].got[j], cases[i].gotOK[j] = body, ok
		}
		out = out[z+1:]
	}
}

// checkMDABatch converts each "pr WORDS" and reports every command whose
// script, given hostile values, does not print what fetchmail's shell
// printed with tokens for them, the tokens replaced by the values.
func checkMDABatch(t *testing.T, dir string, words []string) (converted, mismatches int) {
	t.Helper()
	var cases []*mdaCase
	for _, w := range words {
		cmd := "pr " + w
		argv, why := mdaArgv(cmd, "{user}")
		if why != "" {
			continue
		}
		cases = append(cases, &mdaCase{cmd: cmd, script: argv[2]})
	}
	converted = len(cases)
	for len(cases) > 0 {
		n := min(len(cases), 2000)
		batch := cases[:n]
		cases = cases[n:]
		mdaBatch(t, dir, batch)
		for _, c := range batch {
			if !c.plainOK {
				continue // not valid shell in the first place
			}
			for j, v := range mdaValues {
				want := strings.NewReplacer("XTOKTX", v[0], "XTOKFX", v[1]).Replace(string(c.plain))
				if !c.gotOK[j] || string(c.got[j]) != want {
					mismatches++
					if mismatches <= 20 {
						t.Errorf("fetchmail mda %q -> script %q with $1=%q $2=%q printed %q (ok %v); want %q", c.cmd, c.script, v[0], v[1], c.got[j], c.gotOK[j], want)
					}
					break
				}
			}
		}
	}
	return converted, mismatches
}

// TestMDAExhaustive: every word list up to 5 characters over quotes,
// backslash, blanks, newline, the placeholders, '#' and '$' (21774 with a
// placeholder, 2 seconds) converts into a script that passes the values
// as fetchmail's shell did, or is refused. POPFETCH_MDA_EXHAUSTIVE=N
// checks lengths up to N: 6 (325065 lists) takes about 20 seconds, 7
// (4.6 million) about 4 minutes.
func TestMDAExhaustive(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	maxLen := 5
	if s := os.Getenv("POPFETCH_MDA_EXHAUSTIVE"); s != "" {
		maxLen, _ = strconv.Atoi(s)
	}
	dir := t.TempDir()
	for _, f := range []string{"a", "b"} {
		if err := os.WriteFile(dir+"/"+f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const alphabet = "'\" \\%TFsa#$\n"
	var words []string
	var gen func(prefix string)
	gen = func(prefix string) {
		if strings.Contains(prefix, "%T") || strings.Contains(prefix, "%F") || strings.Contains(prefix, "%s") {
			words = append(words, prefix)
		}
		if len(prefix) == maxLen {
			return
		}
		for i := 0; i < len(alphabet); i++ {
			gen(prefix + alphabet[i:i+1])
		}
	}
	gen("")
	conv, bad := checkMDABatch(t, dir, words)
	t.Logf("%d word lists with a placeholder, %d converted, %d mismatches", len(words), conv, bad)
}
