package rcfile

import (
	"bytes"
	"net"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFilters(t *testing.T) {
	src := ruleRC(`
  trusted_received {
    by = "*.Example.NET."
  }
  filter "rspamd" {
    milter = "inet:127.0.0.1:11332"
  }
  filter "clamav" {
    milter         = "unix:/run/clamav/clamav-milter.ctl"
    timeout        = "2m"
    on_unavailable = "accept"
    on_reject      = "delete"
  }
  filter "spamassassin" {
    command           = ["/usr/bin/spamc", "-x", "-e", "{sender}"]
    temp_exit_codes   = [75, 74]
    reject_exit_codes = [1]
  }`)
	cfg, diags := parseOne(t, src)
	if diags.HasErrors() {
		t.Fatalf("%s", render(t, diags))
	}
	a := cfg.Accounts[0]
	want := []Filter{
		{Name: "rspamd", Milter: "inet:127.0.0.1:11332", Timeout: time.Minute, TempExitCodes: []int{75}, OnUnavailable: "tempfail", OnReject: "postmaster"},
		{Name: "clamav", Milter: "unix:/run/clamav/clamav-milter.ctl", Timeout: 2 * time.Minute, TempExitCodes: []int{75}, OnUnavailable: "accept", OnReject: "delete"},
		{Name: "spamassassin", Command: []string{"/usr/bin/spamc", "-x", "-e", "{sender}"}, Timeout: time.Minute,
			TempExitCodes: []int{75, 74}, RejectExitCodes: []int{1}, OnUnavailable: "tempfail", OnReject: "postmaster"},
	}
	if len(a.Filters) != len(want) {
		t.Fatalf("filters = %+v", a.Filters)
	}
	for i := range want {
		got := a.Filters[i]
		got.DeclRange = want[i].DeclRange
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("filter %d = %+v, want %+v", i, got, want[i])
		}
	}
	if a.TrustedReceived != (TrustedReceived{By: "*.example.net"}) {
		t.Errorf("trusted_received = %+v", a.TrustedReceived)
	}
	// Format writes them back, and they read back the same.
	var b bytes.Buffer
	if err := cfg.Format(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, w := range []string{`filter "clamav"`, `on_reject      = "delete"`, `by = "*.example.net"`, `reject_exit_codes = [1]`} {
		if !strings.Contains(string(out), w) {
			t.Errorf("Format lacks %q:\n%s", w, out)
		}
	}
	cfg2, diags := parseOne(t, string(out))
	if diags.HasErrors() {
		t.Fatalf("formatted file: %s", render(t, diags))
	}
	if !same(cfg2.Accounts[0].Filters, a.Filters) || cfg2.Accounts[0].TrustedReceived != a.TrustedReceived {
		t.Errorf("formatted filters read back as %+v %+v", cfg2.Accounts[0].Filters, cfg2.Accounts[0].TrustedReceived)
	}
}

// Without filters and trusted_received: nothing, and the topmost field.
func TestFiltersDefaults(t *testing.T) {
	cfg, diags := parseOne(t, ruleRC(""))
	if diags.HasErrors() {
		t.Fatalf("%s", render(t, diags))
	}
	a := cfg.Accounts[0]
	if a.Filters != nil || a.TrustedReceived != (TrustedReceived{Position: 1}) {
		t.Errorf("filters %+v, trusted %+v", a.Filters, a.TrustedReceived)
	}
	var b bytes.Buffer
	if err := cfg.Format(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "trusted_received") {
		t.Errorf("Format writes a trusted_received block nobody wrote")
	}
}

// Filters and trusted_received are inherited whole from defaults.
func TestFiltersInherited(t *testing.T) {
	src := `
defaults {
  server       = "pop.example.com"
  password_env = "PW"
  deliver { maildir = "/var/mail/x" }
  postmaster { maildir = "/var/mail/postmaster" }
  trusted_received { position = 2 }
  filter "rspamd" { milter = "inet:127.0.0.1:11332" }
  filter "clamav" { milter = "inet:127.0.0.1:7357" }
}
account "a" { username = "a" }
account "b" {
  username = "b"
  filter "own" { milter = "inet6:[::1]:11332" }
}
`
	cfg, diags := parseOne(t, src)
	if diags.HasErrors() {
		t.Fatalf("%s", render(t, diags))
	}
	names := func(fs []Filter) (out []string) {
		for _, f := range fs {
			out = append(out, f.Name)
		}
		return out
	}
	if got := names(cfg.Accounts[0].Filters); !reflect.DeepEqual(got, []string{"rspamd", "clamav"}) {
		t.Errorf("a's filters = %v", got)
	}
	if got := names(cfg.Accounts[1].Filters); !reflect.DeepEqual(got, []string{"own"}) {
		t.Errorf("b's filters = %v", got)
	}
	for _, a := range cfg.Accounts {
		if a.TrustedReceived.Position != 2 {
			t.Errorf("%s: trusted_received = %+v", a.Name, a.TrustedReceived)
		}
	}
}

func TestFilterErrors(t *testing.T) {
	for _, c := range []struct {
		name, src, want string
	}{
		{"no kind", `filter "f" { timeout = "5s" }`, "7:3: error: Missing filter"},
		{"both kinds", `filter "f" {
    milter = "inet:127.0.0.1:1"
    command = ["/bin/cat"]
  }`, "9:5: error: Two filter kinds"},
		{"bad kind", `filter "f" { milter = "tcp:127.0.0.1:1" }`, "Invalid milter"},
		{"no port", `filter "f" { milter = "inet:127.0.0.1" }`, "7:16: error: Invalid milter"},
		{"port 0", `filter "f" { milter = "inet:127.0.0.1:0" }`, "Invalid milter"},
		{"port big", `filter "f" { milter = "inet:127.0.0.1:70000" }`, "Invalid milter"},
		{"no host", `filter "f" { milter = "inet::11332" }`, "Invalid milter"},
		{"inet6 no brackets", `filter "f" { milter = "inet6:::1:11332" }`, "Invalid milter"},
		{"relative socket", `filter "f" { milter = "unix:run/x.sock" }`, "Invalid milter"},
		{"space", `filter "f" { milter = "unix:/run/x sock" }`, "Invalid milter"},
		{"relative command", `filter "f" { command = ["spamc"] }`, "7:16: error: Invalid filter command"},
		{"empty command", `filter "f" { command = [] }`, "Invalid filter command"},
		{"user placeholder", `filter "f" { command = ["/usr/bin/spamc", "-u", "{user}"] }`, "only placeholder is {sender}"},
		{"placeholder in path", `filter "f" { command = ["/usr/{sender}"] }`, "Invalid filter command"},
		{"shell script", `filter "f" { command = ["/bin/sh", "-c", "spamc -e {sender}"] }`, "the shell would run"},
		{"timeout", `filter "f" {
    milter = "inet:127.0.0.1:1"
    timeout = "soon"
  }`, "9:5: error: Invalid duration"},
		{"timeout small", `filter "f" {
    milter = "inet:127.0.0.1:1"
    timeout = "10ms"
  }`, "Invalid timeout"},
		{"on_unavailable", `filter "f" {
    milter = "inet:127.0.0.1:1"
    on_unavailable = "ignore"
  }`, "9:5: error: Invalid on_unavailable"},
		{"on_reject", `filter "f" {
    milter = "inet:127.0.0.1:1"
    on_reject = "discard"
  }`, "Invalid on_reject"},
		{"exit codes on milter", `filter "f" {
    milter = "inet:127.0.0.1:1"
    temp_exit_codes = [75]
  }`, "Option needs command"},
		{"exit code 0", `filter "f" {
    command = ["/usr/bin/spamc"]
    reject_exit_codes = [0]
  }`, "Invalid reject_exit_codes"},
		{"exit code twice", `filter "f" {
    command = ["/usr/bin/spamc"]
    reject_exit_codes = [75]
  }`, "Exit status twice"},
		{"empty temp", `filter "f" {
    command = ["/usr/bin/spamc"]
    temp_exit_codes = []
  }`, "Invalid temp_exit_codes"},
		{"name", `filter "a b" { milter = "inet:127.0.0.1:1" }`, "7:10: error: Invalid filter name"},
		{"duplicate", `filter "f" { milter = "inet:127.0.0.1:1" }
  filter "f" { milter = "inet:127.0.0.1:2" }`, "8:10: error: Duplicate filter name"},
		{"both trusted", `trusted_received {
    by = "mx.example.com"
    position = 2
  }`, "9:5: error: Two trusted fields"},
		{"position 0", `trusted_received { position = 0 }`, "Invalid position"},
		{"by", `trusted_received { by = "mx example" }`, "Invalid by"},
		{"by star", `trusted_received { by = "*" }`, "Invalid by"},
		{"unknown attr", `filter "f" {
    milter = "inet:127.0.0.1:1"
    score = 5
  }`, "score"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, diags := parseOne(t, ruleRC("  "+c.src))
			out := string(render(t, diags))
			if !diags.HasErrors() || !strings.Contains(out, c.want) {
				t.Errorf("diagnostics:\n%s\nwant an error with %q", out, c.want)
			}
		})
	}
}

// A filter whose rejects go to a postmaster that does not exist keeps
// them on the server: a warning, not an error.
func TestFilterNoPostmaster(t *testing.T) {
	src := `account "a" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  deliver { maildir = "/var/mail/joe" }
  filter "f" { milter = "inet:127.0.0.1:1" }
  filter "g" {
    milter    = "inet:127.0.0.1:2"
    on_reject = "delete"
  }
}
`
	_, diags := parseOne(t, src)
	out := string(render(t, diags))
	if diags.HasErrors() || strings.Count(out, "No postmaster") != 1 || !strings.Contains(out, "6:3: warning: No postmaster") {
		t.Errorf("diagnostics:\n%s", out)
	}
}

// FuzzCheckMilterAddr: whatever checkMilterAddr accepts is a socket a
// dialer can take: an absolute path, or a host and a port from 1 to 65535.
func FuzzCheckMilterAddr(f *testing.F) {
	for _, s := range []string{"inet:127.0.0.1:11332", "inet6:[::1]:1", "unix:/run/x", "local:/x", "inet:h:0", "inet:[::1]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkMilterAddr(s) != nil {
			return
		}
		kind, rest, _ := strings.Cut(s, ":")
		switch kind {
		case "unix", "local":
			if !filepath.IsAbs(rest) || strings.ContainsAny(rest, "\x00\n ") {
				t.Fatalf("accepted %q", s)
			}
		default:
			host, port, err := net.SplitHostPort(rest)
			n, perr := strconv.Atoi(port)
			if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				t.Fatalf("accepted %q", s)
			}
		}
	})
}
