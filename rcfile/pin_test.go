package rcfile

import (
	"fmt"
	"strings"
	"testing"
)

const testPin = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// TestPinSettings: a pin replaces the chain check, so ca_file beside it
// is an error (it used to be ignored in silence); tls_check_name says
// whether the name is checked with a pin, and false without a pin is an
// error (the name is always checked then). An account that sets either
// ca_file or tls_fingerprint inherits neither from defaults.
func TestPinSettings(t *testing.T) {
	fixedEnv(t)
	pin := `tls_fingerprint = "sha256:` + testPin + `"`
	tests := []struct {
		name     string
		defaults string // extra lines of the defaults block
		body     string
		wantErr  string // "" = no diagnostics
		// the account's CAFile, Fingerprint and CheckName
		ca, fp    string
		checkName bool
	}{
		{name: "pin alone", body: pin, fp: testPin},
		{name: "pin, check name", body: pin + "\ntls_check_name = true", fp: testPin, checkName: true},
		{name: "pin, no name check", body: pin + "\ntls_check_name = false", fp: testPin},
		{name: "ca_file alone", body: `ca_file = "/etc/ca.pem"`, ca: "/etc/ca.pem"},
		{name: "ca_file and pin", body: `ca_file = "/etc/ca.pem"` + "\n" + pin,
			wantErr: `ca_file with tls_fingerprint; Account "a" sets both ca_file and tls_fingerprint (at /etc/popfetch/test.hcl:`},
		{name: "check name true without pin", body: "tls_check_name = true"}, // as without it
		{name: "check name false without pin", body: "tls_check_name = false", wantErr: "tls_check_name without tls_fingerprint"},
		{name: "default ca_file, account pin", defaults: `ca_file = "/etc/ca.pem"`, body: pin, fp: testPin},
		{name: "default pin, account ca_file", defaults: pin, body: `ca_file = "/etc/ca.pem"`, ca: "/etc/ca.pem"},
		{name: "default ca_file, account inherits", defaults: `ca_file = "/etc/ca.pem"`, ca: "/etc/ca.pem"},
		{name: "default check name, account pin", defaults: "tls_check_name = true", body: pin, fp: testPin, checkName: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(fmt.Sprintf(minimal, tt.body), "defaults {\n", "defaults {\n"+tt.defaults+"\n", 1)
			cfg, diags := parseOne(t, src)
			out := string(render(t, diags))
			if tt.wantErr != "" {
				if !diags.HasErrors() || !strings.Contains(out, tt.wantErr) {
					t.Fatalf("diagnostics:\n%s\nwant an error containing %q", out, tt.wantErr)
				}
				return
			}
			if len(diags) > 0 {
				t.Fatalf("diagnostics:\n%s", out)
			}
			a := cfg.Accounts[0]
			if a.CAFile != tt.ca || a.Fingerprint != tt.fp || a.CheckName != tt.checkName {
				t.Fatalf("ca_file %q, tls_fingerprint %q, tls_check_name %v; want %q, %q, %v", a.CAFile, a.Fingerprint, a.CheckName, tt.ca, tt.fp, tt.checkName)
			}
			// Format's output reads back to the same account.
			var b strings.Builder
			cfg.Format(&b)
			again, diags := parseOne(t, b.String())
			if diags.HasErrors() {
				t.Fatalf("Format output does not parse:\n%s\n%s", b.String(), render(t, diags))
			}
			if g := again.Accounts[0]; g.CAFile != a.CAFile || g.Fingerprint != a.Fingerprint || g.CheckName != a.CheckName {
				t.Fatalf("Format round trip: %q %q %v; want %q %q %v", g.CAFile, g.Fingerprint, g.CheckName, a.CAFile, a.Fingerprint, a.CheckName)
			}
		})
	}
}
