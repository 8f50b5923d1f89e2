package rcfile

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDeleteAfter: delete_after is a duration that may count days, valid
// only with keep = true, within 1h and 3650d.
func TestDeleteAfter(t *testing.T) {
	fixedEnv(t)
	const day = 24 * time.Hour
	tests := []struct {
		body string
		want time.Duration
	}{
		{"keep = true", 0},
		{"keep = true\ndelete_after = \"7d\"", 7 * day},
		{"keep = true\ndelete_after = \"36h\"", 36 * time.Hour},
		{"keep = true\ndelete_after = \"1d12h\"", 36 * time.Hour},
		{"keep = true\ndelete_after = \" 1h \"", time.Hour},
		{"keep = true\ndelete_after = \"3650d\"", 3650 * day},
		{"keep = true\ndelete_after = \"90m\"", 90 * time.Minute},
	}
	for _, tt := range tests {
		cfg, diags := parseOne(t, fmt.Sprintf(minimal, tt.body))
		if diags.HasErrors() {
			t.Errorf("Parse(%q): %s", tt.body, render(t, diags))
			continue
		}
		if got := cfg.Accounts[0].DeleteAfter; got != tt.want {
			t.Errorf("Parse(%q).DeleteAfter = %v; want %v", tt.body, got, tt.want)
		}
	}
}

// TestDeleteAfterErrors: each error names the attribute's place
// (file:line:col; the account body starts on line 11, column 3).
func TestDeleteAfterErrors(t *testing.T) {
	fixedEnv(t)
	tests := []struct{ body, want string }{
		{`delete_after = "7d"`, "test.hcl:11:3: error: delete_after without keep"},
		{"keep = false\ndelete_after = \"7d\"", "test.hcl:12:1: error: delete_after without keep"},
		{"keep = true\ndelete_after = \"59m\"", "test.hcl:12:1: error: Invalid delete_after; delete_after must be between 1h and 3650d"},
		{"keep = true\ndelete_after = \"3651d\"", "Invalid delete_after"},
		{"keep = true\ndelete_after = \"0\"", "Invalid delete_after"},
		{"keep = true\ndelete_after = \"-7d\"", "Invalid duration"},
		{"keep = true\ndelete_after = \"7 days\"", "Invalid duration"},
		{"keep = true\ndelete_after = \"1.5d\"", "Invalid duration"},
		{"keep = true\ndelete_after = \"7d-1h\"", "Invalid duration"},
		{"keep = true\ndelete_after = \"d\"", "Invalid duration"},
		{"keep = true\ndelete_after = \"7dd\"", "Invalid duration"},
		{"keep = true\ndelete_after = \"9999999d\"", "Invalid duration"},
		{"keep = true\ndelete_after = 7", "Invalid duration"},
	}
	for _, tt := range tests {
		wantParseError(t, tt.body, tt.want)
	}
}

// TestDeleteAfterFormat: Format prints delete_after in days where it is
// whole days, Parse reads it back to the same account, and SameAccount
// tells a changed delete_after from an unchanged one.
func TestDeleteAfterFormat(t *testing.T) {
	fixedEnv(t)
	for _, v := range []string{"7d", "36h", "90m", "3650d"} {
		cfg, diags := parseOne(t, fmt.Sprintf(minimal, "keep = true\ndelete_after = \""+v+"\""))
		if diags.HasErrors() {
			t.Fatal(string(render(t, diags)))
		}
		var out bytes.Buffer
		if err := cfg.Format(&out); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"7d": `"7d"`, "36h": `"1d12h"`, "90m": `"1h30m"`, "3650d": `"3650d"`}[v]
		if !strings.Contains(out.String(), "delete_after") || !strings.Contains(out.String(), want) {
			t.Errorf("Format of delete_after = %q lacks %s:\n%s", v, want, out.String())
		}
		cfg2, diags := parseAs(out.Bytes(), "/etc/popfetch/test.hcl", testEUID)
		if diags.HasErrors() {
			t.Fatalf("Format output does not parse:\n%s\n%s", render(t, diags), out.String())
		}
		if !SameAccount(cfg.Accounts[0], cfg2.Accounts[0]) {
			t.Errorf("delete_after = %q: Format and Parse change the account", v)
		}
	}
	a, _ := parseOne(t, fmt.Sprintf(minimal, "keep = true\ndelete_after = \"7d\""))
	b, _ := parseOne(t, fmt.Sprintf(minimal, "keep = true\ndelete_after = \"8d\""))
	c, _ := parseOne(t, fmt.Sprintf(minimal, "keep = true\n\n\ndelete_after = \"168h\""))
	if SameAccount(a.Accounts[0], b.Accounts[0]) {
		t.Error("SameAccount: delete_after 7d and 8d compare equal")
	}
	if !SameAccount(a.Accounts[0], c.Accounts[0]) {
		t.Error("SameAccount: 7d and 168h, moved, compare different")
	}
	var out bytes.Buffer
	d, _ := parseOne(t, fmt.Sprintf(minimal, "keep = true"))
	if err := d.Format(&out); err != nil || strings.Contains(out.String(), "delete_after") {
		t.Errorf("Format prints delete_after when unset (err %v):\n%s", err, out.String())
	}
}

// FuzzParseDays: parseDays never panics, never returns a negative
// duration, and agrees with time.ParseDuration on input without days.
func FuzzParseDays(f *testing.F) {
	for _, s := range []string{"7d", "36h", "1d12h", "d", "-1d", "1d-1h", "99999999999d", "1.5d", "0", "1h30m", "7dd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDays(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("parseDays(%q) = %v", s, d)
		}
		if !strings.Contains(s, "d") {
			if want, err := time.ParseDuration(strings.TrimSpace(s)); err != nil || want != d {
				t.Fatalf("parseDays(%q) = %v; time.ParseDuration: %v, %v", s, d, want, err)
			}
		}
	})
}
