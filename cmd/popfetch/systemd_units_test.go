package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// unitSettings parses a systemd unit file's Key=value lines (comments and
// section headers skipped) into each key's values in order.
func unitSettings(t *testing.T, name string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: line %q is not Key=value", name, line)
			continue
		}
		m[k] = append(m[k], v)
	}
	return m
}

// TestSystemdUnits: both units are Type=notify with a watchdog that only
// popfetch itself (not an MDA child) may feed, and the MDA drop-in
// relaxes exactly what a setuid delivery agent into /var/mail needs while
// the plain system unit stays locked down.
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	for _, unit := range []string{"popfetch.service", "popfetch-system.service"} {
		s := unitSettings(t, unit)
		for k, want := range map[string]string{"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "60s", "KillMode": "mixed"} {
			if got := s[k]; len(got) != 1 || got[0] != want {
				t.Errorf("%s: %s = %q; want %q", unit, k, got, want)
			}
		}
	}
	sys := unitSettings(t, "popfetch-system.service")
	for k, want := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "CapabilityBoundingSet": ""} {
		if got := sys[k]; len(got) != 1 || got[0] != want {
			t.Errorf("popfetch-system.service: %s = %q; want %q", k, got, want)
		}
	}
	mda := unitSettings(t, "popfetch-system.service.d/mda.conf")
	for k, want := range map[string]string{"NoNewPrivileges": "no", "ProtectHome": "no"} {
		if got := mda[k]; len(got) != 1 || got[0] != want {
			t.Errorf("mda.conf: %s = %q; want %q", k, got, want)
		}
	}
	if rw := strings.Join(mda["ReadWritePaths"], " "); !slices.Contains(strings.Fields(rw), "-/var/mail") {
		t.Errorf("mda.conf: ReadWritePaths = %q; want /var/mail writable", rw)
	}
	caps := strings.Fields(strings.Join(mda["CapabilityBoundingSet"], " "))
	for _, c := range []string{"CAP_SETUID", "CAP_SETGID", "CAP_CHOWN"} {
		if !slices.Contains(caps, c) {
			t.Errorf("mda.conf: CapabilityBoundingSet %q lacks %s", caps, c)
		}
	}
	// The drop-in loosens the sandbox only: it must not change what runs
	// or as whom.
	for _, k := range []string{"User", "Group", "ExecStart", "Type", "ProtectSystem"} {
		if v, ok := mda[k]; ok {
			t.Errorf("mda.conf sets %s = %q; a drop-in for MDA delivery must not", k, v)
		}
	}
	// README and popfetch(1) say which to use when.
	for _, doc := range []string{"../../README.md", "../../man/popfetch.1"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), `\-`, "-")
		for _, want := range []string{"mda.conf", "Type=notify"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s does not mention %s", doc, want)
			}
		}
	}
}
