package rcfile

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/popfetch/popfetch/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/rc and rcfile/testdata")

const rcDir = "../testdata/rc"

// fixedEnv makes Parse's environment-dependent defaults (home, state
// directory) the same on every machine, so golden files are stable; the
// euid is pinned by parsing with testEUID.
func fixedEnv(t *testing.T) {
	t.Helper()
	t.Setenv("HOME", "/home/joe")
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	for _, v := range []string{"LAB_CA_FILE", "STATE_DIRECTORY", "POPFETCH_CONFIG"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
}

// testEUID is the effective user ID the tests parse as: a user, not root,
// so the default state_dir is under $HOME on every machine.
const testEUID = 1000

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./rcfile -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s mismatch (go test ./rcfile -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

var diagLine = regexp.MustCompile(`^[^:\s]+:\d+:\d+: (error|warning): \S`)

func render(t *testing.T, diags hcl.Diagnostics) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteDiagnostics(&b, diags, nil); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l != "" && !diagLine.MatchString(l) {
			t.Errorf("diagnostic line without file:line:col: %q", l)
		}
	}
	return b.Bytes()
}

// TestGood parses every example: no errors allowed, and the effective
// settings (Format) plus any warnings must match NAME.golden.
func TestGood(t *testing.T) {
	fixedEnv(t)
	files, _ := filepath.Glob(filepath.Join(rcDir, "*.hcl"))
	if len(files) < 6 {
		t.Fatalf("found %d examples in %s, want at least 6", len(files), rcDir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(src, []byte("# ")) {
				t.Errorf("%s: no header comment explaining the use case", f)
			}
			if len(inlinePasswords(src, f)) > 0 {
				t.Errorf("%s: examples must not contain inline passwords (git does not keep 0600)", f)
			}
			cfg, diags := parseAs(src, filepath.Base(f), testEUID)
			out := render(t, diags)
			if diags.HasErrors() {
				t.Fatalf("Parse(%s) errors:\n%s", f, out)
			}
			var b bytes.Buffer
			b.Write(out)
			if err := cfg.Format(&b); err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(f, ".hcl")+".golden", b.Bytes())

			// The effective settings must themselves be a valid file
			// that means the same thing.
			cfg2, diags2 := parseAs(b.Bytes()[len(out):], filepath.Base(f), testEUID)
			if diags2.HasErrors() {
				t.Fatalf("Format output does not parse:\n%s", render(t, diags2))
			}
			if diff := cmp.Diff(cfg, cfg2, ignorePositions); diff != "" {
				t.Errorf("Format output parses to another Config (-want +got):\n%s", diff)
			}
			var b2 bytes.Buffer
			cfg2.Format(&b2)
			if !bytes.Equal(b2.Bytes(), b.Bytes()[len(out):]) {
				t.Errorf("Format is not a fixed point:\n%s\n---\n%s", b.Bytes()[len(out):], b2.Bytes())
			}
		})
	}
}

// TestBad checks the rendered diagnostics of each broken file.
func TestBad(t *testing.T) {
	fixedEnv(t)
	files, _ := filepath.Glob(filepath.Join(rcDir, "bad", "*.hcl"))
	if len(files) < 14 {
		t.Fatalf("found %d bad examples, want at least 14", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, diags := parseAs(src, filepath.Base(f), testEUID)
			if !diags.HasErrors() || cfg != nil {
				t.Errorf("Parse(%s) = %v, no error; want errors", f, cfg)
			}
			golden(t, strings.TrimSuffix(f, ".hcl")+".golden", render(t, diags))
		})
	}
}

// parseOne parses a small file built from an account body.
func parseOne(t *testing.T, src string) (*Config, hcl.Diagnostics) {
	t.Helper()
	return parseAs([]byte(src), "/etc/popfetch/test.hcl", testEUID)
}

// minimal puts the required settings in defaults, so that the account
// body (%s) can override any of them.
const minimal = `
defaults {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  deliver {
    maildir = "/var/mail/joe"
  }
}
account "a" {
  %s
}
`

// TestValues checks normalisation and defaults of single attributes.
func TestValues(t *testing.T) {
	fixedEnv(t)
	t.Setenv("MAILROOT", "/srv/mail")
	tests := []struct {
		body  string
		check func(a *Account) any // returns the value compared with want
		want  any
	}{
		{``, func(a *Account) any { return a.Port }, 995},
		{`tls = "starttls"`, func(a *Account) any { return a.Port }, 110},
		{`tls = "NONE"`, func(a *Account) any { return fmt.Sprintf("%s %d", a.TLS, a.Port) }, "none 110"},
		{`tls = "starttls"` + "\n" + `port = 1110`, func(a *Account) any { return a.Port }, 1110},
		{``, func(a *Account) any { return fmt.Sprint(a.Timeout, a.Interval, a.Limit, a.Keep) }, "1m0s 5m0s 0 false"},
		{`limit = 1000`, func(a *Account) any { return a.Limit }, int64(1000)},
		{`limit = "10MB"`, func(a *Account) any { return a.Limit }, int64(10_000_000)},
		{`limit = "512KiB"`, func(a *Account) any { return a.Limit }, int64(512 << 10)},
		{`limit = "1G"`, func(a *Account) any { return a.Limit }, int64(1 << 30)},
		{`tls_fingerprint = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"`,
			func(a *Account) any { return a.Fingerprint }, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{`tls_fingerprint = "SHA256:9f:86:d0:81:88:4c:7d:65:9a:2f:ea:a0:c5:5a:d0:15:a3:bf:4f:1b:2b:0b:82:2c:d1:5d:6c:15:b0:f0:0a:08"`,
			func(a *Account) any { return a.Fingerprint }, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{`ca_file = "~/ca.pem"`, func(a *Account) any { return a.CAFile }, "/home/joe/ca.pem"},
		{`ca_file = "certs/ca.pem"`, func(a *Account) any { return a.CAFile }, "/etc/popfetch/certs/ca.pem"},
		{`ca_file = "$MAILROOT/ca.pem"`, func(a *Account) any { return a.CAFile }, "/srv/mail/ca.pem"},
		{`ca_file = "$${MAILROOT}/ca.pem"`, func(a *Account) any { return a.CAFile }, "/srv/mail/ca.pem"},
		{`ca_file = "${env("MAILROOT")}/ca.pem"`, func(a *Account) any { return a.CAFile }, "/srv/mail/ca.pem"},
		{`ca_file = env("NOPE_UNSET", "/x.pem")`, func(a *Account) any { return a.CAFile }, "/x.pem"},
		{``, func(a *Account) any { return a.StateDir }, "/home/joe/.local/state/popfetch"},
		{`state_dir = "/var/tmp/pf"`, func(a *Account) any { return a.StateDir }, "/var/tmp/pf"},
		{`server = "bücher.example"`, func(a *Account) any { return a.Server }, "xn--bcher-kva.example"},
		{`interval = "1h30m"`, func(a *Account) any { return a.Interval }, 90 * time.Minute},
	}
	for _, tt := range tests {
		cfg, diags := parseOne(t, fmt.Sprintf(minimal, tt.body))
		if diags.HasErrors() {
			t.Errorf("Parse(%s): %s", tt.body, render(t, diags))
			continue
		}
		if got := tt.check(cfg.Accounts[0]); got != tt.want {
			t.Errorf("Parse(%s) = %v; want %v", tt.body, got, tt.want)
		}
	}
}

// TestErrors checks one-line cases not worth a golden file: each must be
// an error whose text contains want.
func TestErrors(t *testing.T) {
	fixedEnv(t)
	tests := []struct{ body, want string }{
		{`port = 0`, "between 1 and 65535"},
		{`port = 70000`, "between 1 and 65535"},
		{`limit = "10 parsecs"`, "Invalid limit"},
		{`limit = -1`, "Invalid limit"},
		{`limit = true`, "Invalid limit"},
		{`fetch_limit = -1`, "fetch_limit"},
		{`timeout = "0.5s"`, "between 1s and 1h"},
		{`interval = "25h"`, "between 30s and 24h"},
		{`interval = "29s"`, "between 30s and 24h"},
		{`ca_file = "$NOPE_UNSET/x"`, "NOPE_UNSET"},
		{`ca_file = env("NOPE_UNSET")`, "NOPE_UNSET is not set"},
		{`ca_file = HOME`, "Variables not allowed"},
		{`ca_file = "~bob/x"`, "~user"},
		{`username = "` + strings.Repeat("x", 256) + `"`, "at most 255"},
		{`password_file = "/x"` + "\n" + `password_env = "A"`, "Two password sources"},
		{`password_command = []`, "program and its arguments"},
		{`password_command = ["bin/pw"]`, "absolute path or a bare name"},
		{`server = "[::1]:995"`, "Invalid server"},
		{`server = "[192.0.2.1]"`, "Invalid server"},
		{`server = "pop..example.com"`, "Invalid server"}, // an empty label: deliver.NormalizeDomain's rules
		{`server = "mail.example.com:110"`, "port = 110"},
		{`frobnicate = 1`, "Unsupported argument"},
		{`mailbox_id = "joe@pop.example.com"`, "Invalid mailbox_id"}, // could equal another account's USERNAME@SERVER
		{`mailbox_id = ""`, "Invalid mailbox_id"},
		{`mailbox_id = "-x"`, "Invalid mailbox_id"},
		{`mailbox_id = "a/b"`, "Invalid mailbox_id"},
		{"deliver {\nmaildir = \"/a\"\n}\ndeliver {\nmaildir = \"/b\"\n}", "Duplicate deliver block"},
	}
	for _, tt := range tests {
		wantParseError(t, tt.body, tt.want)
	}
}

// wantParseError requires that the minimal rc file with body in its
// account fails to parse, with an error containing want.
func wantParseError(t *testing.T, body, want string) {
	t.Helper()
	_, diags := parseOne(t, fmt.Sprintf(minimal, body))
	out := string(render(t, diags))
	if !diags.HasErrors() || !strings.Contains(out, want) {
		t.Errorf("Parse(%s) diagnostics:\n%s\nwant an error containing %q", body, out, want)
	}
}

// TestWarnings: legal but dubious settings give a warning and a Config.
func TestWarnings(t *testing.T) {
	fixedEnv(t)
	tests := []struct{ body, want string }{
		{`interval = "30s"`, "Short poll interval"},
		{`tls = "none"`, "Password sent in clear text"},
		{`tls = "none"` + "\n" + `server = "127.0.0.1"`, ""},
		{`tls = "none"` + "\n" + `server = "localhost"`, ""},
		{`interval = "1m"`, ""},
		{"keep = true\nfetch_all = true", `fetch_all with keep fetches everything again; Account "a" keeps its mail`},
		{"fetch_all = true", ""},
		{"keep = true\nfetch_all = false", ""},
	}
	for _, tt := range tests {
		cfg, diags := parseOne(t, fmt.Sprintf(minimal, tt.body))
		out := string(render(t, diags))
		if cfg == nil || diags.HasErrors() || (tt.want == "") != (len(diags) == 0) || !strings.Contains(out, tt.want) {
			t.Errorf("Parse(%s) diagnostics:\n%s\nwant only a warning containing %q", tt.body, out, tt.want)
		}
	}
}

func TestDefaultsInheritance(t *testing.T) {
	fixedEnv(t)
	cfg, diags := parseOne(t, `
defaults {
  username      = "joe"
  password_file = "/etc/pw"
  keep          = true
  tls           = "starttls"
  interval      = "10m"
  deliver {
    maildir = "/var/mail/joe"
  }
  postmaster {
    maildir = "/var/mail/pm"
  }
}
account "inherits" {
  server = "a.example"
}
account "overrides" {
  server        = "b.example"
  username      = "bob"
  keep          = false
  tls           = "implicit"
  password_file = null
  password_env  = "PW"
  deliver {
    mda = ["/usr/bin/procmail"]
  }
}
`)
	if diags.HasErrors() {
		t.Fatal(string(render(t, diags)))
	}
	a, b := cfg.Accounts[0], cfg.Accounts[1]
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"a.Username", a.Username, "joe"},
		{"a.Password", a.Password.String(), `password_file = "/etc/pw"`},
		{"a.Keep", a.Keep, true},
		{"a.TLS", a.TLS, TLSStartTLS},
		{"a.Port", a.Port, 110},
		{"a.Interval", a.Interval, 10 * time.Minute},
		{"a.Deliver", a.Deliver.Maildir, "/var/mail/joe"},
		{"a.Postmaster", a.Postmaster.Maildir, "/var/mail/pm"},
		{"b.Username", b.Username, "bob"},
		{"b.Password", b.Password.String(), `password_env = "PW"`},
		{"b.Keep", b.Keep, false},
		{"b.Port", b.Port, 995},
		{"b.Interval", b.Interval, 10 * time.Minute},
		{"b.Deliver.Maildir", b.Deliver.Maildir, ""}, // blocks are inherited whole
		{"b.Deliver.MDA", strings.Join(b.Deliver.MDA, " "), "/usr/bin/procmail"},
		{"b.Postmaster", b.Postmaster.Maildir, "/var/mail/pm"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestMultidrop(t *testing.T) {
	fixedEnv(t)
	cfg, diags := parseOne(t, `
account "d" {
  server = "pop.example.com"
  username = "all"
  password_env = "PW"
  deliver { maildir = "/var/vmail/{domain}/{user}" }
  multidrop {
    local_domains   = ["Example.COM", "*.bücher.example"]
    envelope_header = "x-original-to"
    fallback_headers = []
    user "joe" {}
    user "ann" {
      addresses = ["Ann", "ANN.Smith@Example.com"]
      deliver { mda = ["/usr/bin/procmail", "-d", "{user}"] }
    }
  }
}
`)
	if diags.HasErrors() {
		t.Fatal(string(render(t, diags)))
	}
	m := cfg.Accounts[0].Multidrop
	got := fmt.Sprintln(m.LocalDomains, m.EnvelopeHeader, m.EnvelopeCount, m.FallbackHeaders, m.DetailDelimiter,
		m.Users[0].Addresses, m.Users[1].Addresses, m.Users[0].Deliver == nil, m.Users[1].Deliver.MDA)
	want := "[example.com *.xn--bcher-kva.example] X-Original-To 1 [] + [joe] [ann ann.smith@example.com] true [/usr/bin/procmail -d {user}]"
	if got = strings.TrimSpace(got); got != want {
		t.Errorf("multidrop = %s\nwant       %s", got, want)
	}

	// A maildir without {user}: legal, but a warning.
	_, diags = parseOne(t, `
account "d" {
  server = "pop.example.com"
  username = "all"
  password_env = "PW"
  deliver { maildir = "/var/vmail/shared" }
  multidrop {
    local_domains = ["example.com"]
    user "joe" {}
  }
}
`)
	if diags.HasErrors() || !strings.Contains(string(render(t, diags)), "All users share one mailbox") {
		t.Errorf("shared maildir: got %s; want only a warning", render(t, diags))
	}
}

func TestLoadPermissions(t *testing.T) {
	fixedEnv(t)
	dir := t.TempDir()
	inline := `
defaults {
  password = "hunter2"
}
account "a" {
  server   = "pop.example.com"
  username = "joe"
  deliver { maildir = "/var/mail/joe" }
}
`
	pwFile := func(mode os.FileMode) string {
		return fmt.Sprintf(minimal, `password_file = "`+testutil.WriteFile(t, dir, fmt.Sprintf("pw%o", mode), "pw\n", mode)+`"`)
	}
	tests := []struct {
		name, src string
		mode      os.FileMode
		wantErr   string // "" = no error
		wantLine  int    // line of the diagnostic's Subject
	}{
		{"inline 0644", inline, 0o644, "chmod 600", 3},
		{"inline 0640", inline, 0o640, "chmod 600", 3},
		{"inline 0600", inline, 0o600, "", 0},
		{"inline 0400", inline, 0o400, "", 0},
		{"no password 0644", fmt.Sprintf(minimal, ""), 0o644, "", 0},
		{"password_file 0644", pwFile(0o644), 0o644, "chmod 600", 11},
		{"password_file 0600", pwFile(0o600), 0o644, "", 0},
		{"password_file missing", fmt.Sprintf(minimal, `password_file = "missing"`), 0o644, "", 0},
	}
	for _, tt := range tests {
		p := testutil.WriteFile(t, dir, "rc.hcl", tt.src, tt.mode)
		cfg, diags := loadAs(p, testEUID)
		out := string(render(t, diags))
		if tt.wantErr == "" {
			if diags.HasErrors() || cfg == nil {
				t.Errorf("%s: Load errors:\n%s", tt.name, out)
			}
			continue
		}
		if cfg != nil || !strings.Contains(out, tt.wantErr) {
			t.Errorf("%s: Load diagnostics:\n%s\nwant an error containing %q", tt.name, out, tt.wantErr)
			continue
		}
		d := diags[0]
		if d.Subject.Start.Line != tt.wantLine || !errors.Is(d.Extra.(error), ErrInsecureFile) {
			t.Errorf("%s: diagnostic at line %d, Extra %v; want line %d, ErrInsecureFile", tt.name, d.Subject.Start.Line, d.Extra, tt.wantLine)
		}
	}

	if _, diags := loadAs(filepath.Join(dir, "nope.hcl"), testEUID); !diags.HasErrors() || !diagLine.MatchString(string(render(t, diags))) {
		t.Errorf("Load(missing file) = %v; want one positioned error", diags)
	}
}

// TestMasking: no rendering of a config shows an inline password.
func TestMasking(t *testing.T) {
	fixedEnv(t)
	const secret = "s3cr3t-Pa55w0rd"
	cfg, diags := parseOne(t, fmt.Sprintf(minimal, `password = "`+secret+`"`))
	if diags.HasErrors() {
		t.Fatal(string(render(t, diags)))
	}
	var b bytes.Buffer
	cfg.Format(&b)
	a := cfg.Accounts[0]
	fmt.Fprintf(&b, "%v %+v %#v %s %v", a, a, a, a.Password, *a)
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "password", a.Password, "account", a)
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "password", a.Password)
	if strings.Contains(b.String(), secret) {
		t.Errorf("secret leaked:\n%s", b.String())
	}
	if !strings.Contains(b.String(), `password = "********"`) {
		t.Errorf("Format output lacks the masked password line:\n%s", b.String())
	}
	if got, _ := a.Password.Resolve(context.Background()); got != secret {
		t.Errorf("Resolve() = %q; want the inline secret", got)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PF_PW", "from-env")
	t.Setenv("PF_EMPTY", "")
	tests := []struct {
		name    string
		p       Password
		want    string
		wantErr string
	}{
		{"inline", Password{Inline: "abc"}, "abc", ""},
		{"file", Password{File: testutil.WriteFile(t, dir, "a", "from-file\nsecond line\n", 0o600)}, "from-file", ""},
		{"file no newline", Password{File: testutil.WriteFile(t, dir, "b", "x y", 0o400)}, "x y", ""},
		{"file group readable", Password{File: testutil.WriteFile(t, dir, "c", "x\n", 0o640)}, "", "chmod 600"},
		{"file CRLF", Password{File: testutil.WriteFile(t, dir, "d", "x\r\n", 0o600)}, "", "carriage return"},
		{"file empty", Password{File: testutil.WriteFile(t, dir, "e", "\nx\n", 0o600)}, "", "empty"},
		{"file missing", Password{File: filepath.Join(dir, "nope")}, "", "no such file"},
		{"env", Password{Env: "PF_PW"}, "from-env", ""},
		{"env empty", Password{Env: "PF_EMPTY"}, "", "unset or empty"},
		{"env unset", Password{Env: "PF_NOT_SET_AT_ALL"}, "", "unset or empty"},
		{"command", Password{Command: []string{"printf", `from-cmd\nmore\n`}}, "from-cmd", ""},
		{"command no shell", Password{Command: []string{"echo", "$HOME;", "x"}}, "$HOME; x", ""},
		{"command CR", Password{Command: []string{"printf", `a\rb\n`}}, "", "carriage return"},
		{"command NUL", Password{Command: []string{"printf", `a\000b`}}, "", "NUL"},
		{"command fails", Password{Command: []string{"sh", "-c", "echo vault locked >&2; exit 3"}}, "", `exit status 3 (stderr: "vault locked")`},
		{"command missing", Password{Command: []string{"/nonexistent/pw"}}, "", "no such file"},
		{"command relative", Password{Command: []string{"./pw"}}, "", "absolute path"},
		{"none", Password{}, "", "no password source"},
	}
	for _, tt := range tests {
		got, err := tt.p.Resolve(context.Background())
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("%s: Resolve() = %q, %v; want %q", tt.name, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || got != "" {
			t.Errorf("%s: Resolve() = %q, %v; want error containing %q", tt.name, got, err, tt.wantErr)
		}
	}
	if _, err := (Password{File: filepath.Join(dir, "c")}).Resolve(context.Background()); !errors.Is(err, ErrInsecureFile) {
		t.Errorf("Resolve(group-readable file) = %v; want ErrInsecureFile", err)
	}

	// The caller's context bounds the command too (the 30 s limit is the
	// same mechanism, too slow to test).
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := (Password{Command: []string{"sleep", "10"}}).Resolve(ctx); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("Resolve(sleep 10) with 100ms context = %v after %v; want a quick error", err, time.Since(start))
	}
}

// TestPasswordCommandStderr: a failed password_command's error quotes at
// most the first line of its stderr, truncated, and nothing of it once the
// command printed to stdout, so a helper that prints the secret and fails
// does not put it in the log.
func TestPasswordCommandStderr(t *testing.T) {
	t.Parallel()
	const secret = "Zq9x-Hunter2-Plugh7"
	long := strings.Repeat("é", 60) // 120 bytes
	for _, tt := range []struct {
		name, script string
		want         string // the quoted stderr; "" = none
	}{
		{"message", "echo vault locked >&2; exit 3", `(stderr: "vault locked")`},
		{"secret on the second line", "echo 'bad PIN' >&2; echo " + secret + " >&2; exit 1", `(stderr: "bad PIN")`},
		{"blank line first", "echo >&2; echo 'no agent' >&2; exit 1", `(stderr: "no agent")`},
		{"stdout printed", "echo " + secret + "; echo oops " + secret + " >&2; exit 1", ""},
		{"long line", "echo " + long + " >&2; exit 1", `(stderr: "` + strings.Repeat("é", 40) + `...")`},
	} {
		_, err := Password{Command: []string{"sh", "-c", tt.script}}.Resolve(context.Background())
		if err == nil {
			t.Fatalf("%s: Resolve succeeded", tt.name)
		}
		msg := err.Error()
		if strings.Contains(msg, "Hunter2") {
			t.Errorf("%s: error shows the secret: %s", tt.name, msg)
		}
		if tt.want == "" && strings.Contains(msg, "stderr") || tt.want != "" && !strings.Contains(msg, tt.want) {
			t.Errorf("%s: error = %s; want stderr quoted as %q", tt.name, msg, tt.want)
		}
	}
}

func TestFind(t *testing.T) {
	fixedEnv(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	systemConfig := filepath.Join(t.TempDir(), "etc-popfetch.hcl")
	user := filepath.Join(home, ".config", "popfetch", "popfetch.hcl")

	// Nothing exists: the error lists every place looked.
	_, err := find("", systemConfig)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), user) || !strings.Contains(err.Error(), systemConfig) {
		t.Errorf("Find() with no files = %v; want ErrNotExist naming %s and %s", err, user, systemConfig)
	}
	check := func(flag, want string) {
		t.Helper()
		if got, err := find(flag, systemConfig); got != want || err != nil {
			t.Errorf("Find(%q) = %q, %v; want %q", flag, got, err, want)
		}
	}
	testutil.WriteFile(t, filepath.Dir(systemConfig), filepath.Base(systemConfig), "", 0o600)
	check("", systemConfig)
	os.MkdirAll(filepath.Dir(user), 0o700)
	testutil.WriteFile(t, filepath.Dir(user), "popfetch.hcl", "", 0o600)
	check("", user)
	xdg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", xdg)
	check("", systemConfig) // $XDG_CONFIG_HOME replaces ~/.config
	t.Setenv("POPFETCH_CONFIG", "/from/env.hcl")
	check("", "/from/env.hcl")
	check("/from/flag.hcl", "/from/flag.hcl")
}

func TestWriteDiagnosticsSnippet(t *testing.T) {
	fixedEnv(t)
	src := "account \"a\" {\n\tserver = 5\n\ttls = \"ssl\"\n}\n"
	_, diags := parseAs([]byte(src), "x.hcl", testEUID)
	var b bytes.Buffer
	WriteDiagnostics(&b, diags, map[string]*hcl.File{"x.hcl": {Bytes: []byte(src)}})
	if !strings.Contains(b.String(), "x.hcl:3:2: error: Invalid tls mode;") ||
		!strings.Contains(b.String(), "\t\ttls = \"ssl\"\n\t\t^^^^^^^^^^^\n") {
		t.Errorf("WriteDiagnostics with snippets:\n%s", b.String())
	}
}

// FuzzParse: whatever the input, Parse must not panic, must position
// every diagnostic, and must return a Config exactly when there is no error.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(rcDir, "*.hcl"))
	bad, _ := filepath.Glob(filepath.Join(rcDir, "bad", "*.hcl"))
	for _, s := range append(seeds, bad...) {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, diags := parseAs(src, "fuzz.hcl", testEUID)
		if (cfg == nil) != diags.HasErrors() {
			t.Fatalf("cfg = %v with errors = %v", cfg, diags.HasErrors())
		}
		for _, d := range diags {
			if d.Subject == nil {
				t.Fatalf("diagnostic without position: %s", FormatDiagnostic(d))
			}
		}
		if cfg != nil {
			var b bytes.Buffer
			cfg.Format(&b)
		}
	})
}

// TestHCLString: what Format quotes, HCL reads back unchanged, including
// the template introducers ${ and %{ that must not be evaluated.
func TestHCLString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", `a"b`, `a\b`, "${HOME}", "%{ if x }", "$", "$$", "tab\there", "nl\nand\rcr", "\x01\x7f", "bücher", "😀", "\u2028"} {
		q := hclValue(cty.StringVal(s))
		expr, diags := hclsyntax.ParseExpression([]byte(q), "q", hcl.InitialPos)
		if diags.HasErrors() {
			t.Errorf("hclValue(%q) = %s: %s", s, q, diags.Error())
			continue
		}
		v, diags := expr.Value(nil)
		if diags.HasErrors() || v.AsString() != s {
			t.Errorf("hclValue(%q) = %s, reads back as %#v (%v)", s, q, v, diags)
		}
	}
}

// TestMailboxID: one rule names a mailbox (Account.Mailbox): the same user
// at the same server, in any case and on any port, is one mailbox, unless
// mailbox_id tells two apart; the duplicate check honours the override,
// and defaults cannot set it.
func TestMailboxID(t *testing.T) {
	fixedEnv(t)
	const tmpl = `
defaults {
  server       = "127.0.0.1"
  username     = "joe"
  password_env = "PW"
  tls          = "none"
  deliver {
    maildir = "/var/mail/joe"
  }
}
account "one" {
  port = 1110
  %s
}
account "two" {
  server = "127.0.0.1"
  port = 2110
  %s
}
`
	tests := []struct {
		name, one, two string
		wantErr        string
		wantBoxes      [2]string
	}{
		{"ports differ, one mailbox", "", "", "Duplicate mailbox", [2]string{}},
		{"override tells two tunnels apart", `mailbox_id = "tunnel1"`, `mailbox_id = "tunnel2"`, "", [2]string{"tunnel1", "tunnel2"}},
		{"override on one side only", `mailbox_id = "tunnel1"`, "", "", [2]string{"tunnel1", "joe@127.0.0.1"}},
		{"same override twice", `mailbox_id = "t"`, `mailbox_id = "t"`, "Duplicate mailbox", [2]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parseOne(t, fmt.Sprintf(tmpl, tt.one, tt.two))
			out := string(render(t, diags))
			if tt.wantErr != "" {
				if !diags.HasErrors() || !strings.Contains(out, tt.wantErr) {
					t.Fatalf("diagnostics:\n%s\nwant an error containing %q", out, tt.wantErr)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatalf("diagnostics:\n%s", out)
			}
			if got := [2]string{cfg.Accounts[0].Mailbox(), cfg.Accounts[1].Mailbox()}; got != tt.wantBoxes {
				t.Fatalf("Mailbox() = %q; want %q", got, tt.wantBoxes)
			}
		})
	}
	src := strings.Replace(fmt.Sprintf(tmpl, "", `mailbox_id = "x"`), `tls          = "none"`, `tls          = "none"`+"\n  mailbox_id = \"t\"", 1)
	if _, diags := parseOne(t, src); !diags.HasErrors() || !strings.Contains(string(render(t, diags)), "mailbox_id in defaults") {
		t.Fatalf("mailbox_id in defaults accepted:\n%s", render(t, diags))
	}
}
