package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestBinaryLinksNoTestCode: the shipped binary must not link the testing
// package (or anything under testing/): test code in a release binary is
// dead weight at best and registers test flags at worst. popfetch demo runs
// fetch/pop3test's server, which is why that package takes its own small TB
// interface instead of testing.TB.
func TestBinaryLinksNoTestCode(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps .: %v", err)
	}
	var bad []string
	for _, p := range strings.Fields(string(out)) {
		if p == "testing" || strings.HasPrefix(p, "testing/") {
			bad = append(bad, p)
		}
	}
	if len(bad) > 0 {
		why, _ := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Imports " "}}`, "-deps", ".").Output()
		var importers []string
		for _, line := range strings.Split(string(why), "\n") {
			pkg, imports, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			for _, b := range bad {
				if slices.Contains(strings.Fields(imports), b) {
					importers = append(importers, pkg)
				}
			}
		}
		t.Errorf("go list -deps ./cmd/popfetch links %v (imported by %v); the binary must carry no test code", bad, importers)
	}
}

// TestImportRules pins the package graph's rules: go-pop3 is used only by
// fetch/pop3 (popfetch's POP3 client wraps it), go-ldap only by
// deliver/ldapdir (and its test harness), hcl only by rcfile and this
// command (the poll and the daemon see decoded settings, never HCL), and
// go-systemd only by internal/sdnotify, and neither the Prometheus client
// nor go-cmp by any package (fetch/daemon/metrics writes the exposition
// itself and rcfile compares settings with its own walk: their package
// initialisation cost every popfetch process resident memory; go-cmp
// stays for tests).
func TestImportRules(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, repoRoot+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/popfetch/popfetch"
	allowed := map[string][]string{
		"github.com/knadh/go-pop3":                {mod + "/fetch/pop3"},
		"github.com/go-ldap/ldap/v3":              {mod + "/deliver/ldapdir", mod + "/deliver/ldapdir/slapdtest"},
		"github.com/hashicorp/hcl/v2":             {mod + "/rcfile", mod + "/cmd/popfetch"},
		"github.com/hashicorp/hcl/v2/*":           {mod + "/rcfile", mod + "/rcfile/fetchmailrc"}, // the importer writes HCL
		"github.com/prometheus/*":                 nil,
		"github.com/coreos/go-systemd/v22/daemon": {mod + "/internal/sdnotify"},
		"github.com/google/go-cmp/*":              nil,
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		for _, imp := range imports {
			key := imp
			if strings.HasPrefix(imp, "github.com/hashicorp/hcl/v2/") {
				key = "github.com/hashicorp/hcl/v2/*"
			}
			if strings.HasPrefix(imp, "github.com/prometheus/") {
				key = "github.com/prometheus/*"
			}
			if strings.HasPrefix(imp, "github.com/google/go-cmp/") {
				key = "github.com/google/go-cmp/*"
			}
			if who, ok := allowed[key]; ok && !slices.Contains(who, pkg) {
				t.Errorf("%s imports %s; only %v may", pkg, imp, who)
			}
		}
	}
}
