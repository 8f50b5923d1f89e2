package fetchmailrc

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// exampleRC is fetchmail's own example, installed by Debian's fetchmail
// package (.ci/run installs it).
const exampleRC = "/usr/share/doc/fetchmail/examples/fetchmailrc.example"

// TestGolden converts every testdata/*.rc (and fetchmail's example) and
// compares the HCL and the notes with the golden files; every output
// must be a valid popfetch rc file.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.rc")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	cases := map[string]string{}
	for _, f := range files {
		cases[strings.TrimSuffix(filepath.Base(f), ".rc")] = f
	}
	if _, err := os.Stat(exampleRC); err == nil {
		cases["fetchmailrc.example"] = exampleRC
	} else if testutil.RealPartsRequired() {
		t.Errorf("%s is missing: install Debian's fetchmail package", exampleRC)
	}
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Convert(src, Options{User: "me"})
			if err != nil {
				t.Fatalf("Convert: %v", err)
			}
			var got bytes.Buffer
			got.Write(res.HCL)
			got.WriteString("\n# ---- stderr ----\n")
			for _, n := range res.Notes {
				got.WriteString("# " + n.String() + "\n")
			}
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("output differs from %s (go test -update rewrites it):\n%s", golden, got.String())
			}
			// The output must be a valid popfetch rc file. One without
			// an account (fetchmail's example has none) gets one, so
			// that the rest of it is checked too.
			hcl := res.HCL
			if res.Accounts == 0 {
				hcl = append(hcl, "account \"t\" {\nserver = \"h\"\nusername = \"u\"\npassword_env = \"P\"\ndeliver {\nmaildir = \"/m\"\n}\n}\n"...)
			}
			if _, diags := rcfile.Parse(hcl, "/etc/popfetch/popfetch.hcl"); diags.HasErrors() {
				t.Errorf("output does not parse: %v\n%s", diags, res.HCL)
			}
		})
	}
}

func TestLexEscapes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"a\tb"`, "a\tb"},
		{`"a\nb"`, "a\nb"},
		{`"\"q\""`, `"q"`},
		{`"back\\slash"`, `back\slash`},
		{`"\x41\x4a"`, "AJ"},
		{"\"\\65\"", "A"},    // decimal
		{"\"\\065\"", "5"},   // a leading 0: octal
		{"\"\\0101\"", "A"},  // octal
		{"\"a\\\nb\"", "ab"}, // backslash at the line end joins
		{"\"a\nb\"", "a\nb"}, // a line end inside quotes stays
		{`'single "x"'`, `single "x"`},
	} {
		toks, err := lex([]byte(tc.in))
		if err != nil || len(toks) != 1 || toks[0].kind != tString || toks[0].text != tc.want {
			t.Errorf("lex(%q) = %+v, %v; want one string %q", tc.in, toks, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`poll`, "line 1: poll needs a server name"},
		{"poll x\nuser", "line 2: user needs a name"},
		{`poll x user a pass`, "pass needs a value"},
		{`poll x frobnicate`, `unknown keyword "frobnicate"`},
		{`keep`, "expected poll, skip, defaults or set"},
		{"poll x user \"a", "line 1: quoted string not terminated"},
		{`poll x user a b`, "takes one server user name"},
		{`poll x envelope 2`, "envelope needs a header name after the count"},
		{`set daemon`, "set daemon needs a value"},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v; want an error with %q", tc.in, err, tc.want)
		}
	}
}

// TestParseUsers pins the user description grammar: remote and local
// names, mappings, "*", and the noise words.
func TestParseUsers(t *testing.T) {
	f, err := Parse([]byte(`poll h with proto pop3
	  user joe here is jsmith there and wants keep
	  user "r" there has password "p" is a b=c * here options fetchall
	  nokeep`))
	if err != nil {
		t.Fatal(err)
	}
	u := f.Polls[0].Users
	if len(u) != 2 {
		t.Fatalf("users = %+v", u)
	}
	if u[0].Remote != "jsmith" || len(u[0].Locals) != 1 || u[0].Locals[0].Local != "joe" || u[0].Opts[0].Key != "keep" {
		t.Errorf("user 0 = %+v", u[0])
	}
	if u[1].Remote != "r" || !u[1].Wildcard || len(u[1].Locals) != 2 || u[1].Locals[1] != (Mapping{Remote: "b", Local: "c"}) {
		t.Errorf("user 1 = %+v", u[1])
	}
	if o := u[1].Opts[len(u[1].Opts)-1]; o.Key != "keep" || !o.No {
		t.Errorf("nokeep = %+v", o)
	}
}

// TestNoSecretInNotes: a password never appears in a note (stderr).
func TestNoSecretInNotes(t *testing.T) {
	res, err := Convert([]byte(`poll h proto imap user u password "hunter2" esmtppassword "smtpsecret"`), Options{User: "me"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range res.Notes {
		if strings.Contains(n.Text, "hunter2") || strings.Contains(n.Text, "smtpsecret") {
			t.Errorf("note shows a secret: %s", n)
		}
	}
}

// TestCommentInjection: a value with a line end cannot end a comment and
// add settings.
func TestCommentInjection(t *testing.T) {
	res, err := Convert([]byte("poll h proto pop3 user u pass p folder \"x\nkeep = true\"\n"), Options{User: "me"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, diags := rcfile.Parse(res.HCL, "/x.hcl")
	if diags.HasErrors() {
		t.Fatalf("%v\n%s", diags, res.HCL)
	}
	if cfg.Accounts[0].Keep {
		t.Errorf("a folder name set keep:\n%s", res.HCL)
	}
}

func TestMDAArgv(t *testing.T) {
	for _, tc := range []struct {
		cmd, rcpt string
		want      []string
	}{
		{"/usr/bin/procmail -d %T", "{user}", []string{"/bin/sh", "-c", `/usr/bin/procmail -d "$1"`, "sh", "{user}", "{sender}"}},
		{"sendmail -i -f '%F' -- %T", "joe", []string{"/bin/sh", "-c", `sendmail -i -f "$2" -- "$1"`, "sh", "joe", "{sender}"}},
		// %s is fetchmail's older spelling of %T.
		{"/usr/bin/procmail -d %s", "{user}", []string{"/bin/sh", "-c", `/usr/bin/procmail -d "$1"`, "sh", "{user}", "{sender}"}},
		{"deliver 'to=%T' x'%F'", "{user}", []string{"/bin/sh", "-c", `deliver 'to='"$1"'' x"$2"`, "sh", "{user}", "{sender}"}},
		{"/usr/bin/procmail", "x", []string{"/bin/sh", "-c", "/usr/bin/procmail", "sh"}},
	} {
		got, _ := mdaArgv(tc.cmd, tc.rcpt)
		if strings.Join(got, "\x00") != strings.Join(tc.want, "\x00") {
			t.Errorf("mdaArgv(%q) = %q; want %q", tc.cmd, got, tc.want)
		}
	}
}

// TestValuesRoundTrip: values with HCL template introducers, quotes,
// backslashes and non-ASCII bytes reach popfetch's parser unchanged.
func TestValuesRoundTrip(t *testing.T) {
	pass := "a${b}%{c}\\\"d\u00e9 $HOME ~"
	user := "u${x}"
	src := "poll pop.example.com proto pop3 ssl user " + strconv.Quote(user) + " pass " + strconv.Quote(pass) + "\n"
	res, err := Convert([]byte(src), Options{User: "me"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, diags := rcfile.Parse(res.HCL, "/x.hcl")
	if diags.HasErrors() {
		t.Fatalf("%v\n%s", diags, res.HCL)
	}
	a := cfg.Accounts[0]
	if a.Password.Inline != pass || a.Username != user {
		t.Errorf("got user %q password %q; want %q %q\n%s", a.Username, a.Password.Inline, user, pass, res.HCL)
	}
}
