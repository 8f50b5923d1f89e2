package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/rcfile"
)

// TestImportFetchmailrc runs "popfetch import fetchmailrc" end to end:
// stdout, -o (a new 0600 file that check accepts), no overwrite without
// --force, the notes on stderr, and a parse error naming the line.
func TestImportFetchmailrc(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "fetchmailrc")
	rc := "set daemon 300\npoll pop.example.com proto pop3 ssl\n  user \"joe\" pass \"s3cret\" is joe here keep expunge 5\n"
	if err := os.WriteFile(src, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errs := runCLI(t, "import", "fetchmailrc", src)
	if code != exitOK {
		t.Fatalf("import = %d\n%s", code, errs)
	}
	if !strings.Contains(out, `account "joe@pop.example.com"`) || !strings.Contains(out, "fetchmailrc:3: 'expunge 5' is not supported") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(errs, "fetchmailrc:3: 'expunge 5' is not supported") || !strings.Contains(errs, "1 password(s) copied") {
		t.Errorf("stderr:\n%s", errs)
	}

	dst := filepath.Join(dir, "popfetch.hcl")
	// Flags after the file name work too.
	if code, _, errs := runCLI(t, "import", "fetchmailrc", src, "-o", dst); code != exitOK {
		t.Fatalf("import -o = %d\n%s", code, errs)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("output: %v, mode %v; want 0600", err, fi.Mode())
	}
	if _, diags := rcfile.Load(dst); diags.HasErrors() {
		t.Errorf("output does not load: %v", diags)
	}
	if code, _, errs := runCLI(t, "-f", dst, "check"); code != exitOK {
		t.Errorf("check of the output = %d\n%s", code, errs)
	}
	os.WriteFile(dst, []byte("keep me"), 0o600)
	if code, _, errs := runCLI(t, "import", "fetchmailrc", "-o", dst, src); code != exitFail || !strings.Contains(errs, "--force") {
		t.Errorf("import over an existing file = %d\n%s", code, errs)
	}
	if b, _ := os.ReadFile(dst); string(b) != "keep me" {
		t.Errorf("existing file overwritten without --force: %q", b)
	}
	if code, _, errs := runCLI(t, "import", "fetchmailrc", "-o", dst, "--force", src); code != exitOK {
		t.Errorf("import --force = %d\n%s", code, errs)
	}
	if b, _ := os.ReadFile(dst); !strings.Contains(string(b), "account") {
		t.Errorf("--force did not replace the file: %q", b)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".popfetch-import-*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}

	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("poll x\n  frobnicate\n"), 0o600)
	if code, _, errs := runCLI(t, "import", "fetchmailrc", bad); code != exitConfig || !strings.Contains(errs, "line 2") {
		t.Errorf("bad file = %d\n%s", code, errs)
	}
	if code, _, _ := runCLI(t, "import", "fetchids"); code != exitUsage {
		t.Errorf("import fetchids = %d; want %d", code, exitUsage)
	}
}

// TestImportInvalidValue: a value popfetch refuses is reported at import
// time with exit status 1, and the file is still written to be fixed.
func TestImportInvalidValue(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "fetchmailrc")
	os.WriteFile(src, []byte("poll \"bad host!\" proto pop3 user u pass p\n"), 0o600)
	dst := filepath.Join(dir, "out.hcl")
	code, _, errs := runCLI(t, "import", "fetchmailrc", "-o", dst, src)
	if code != exitFail || !strings.Contains(errs, "converted file has errors") {
		t.Errorf("import = %d\n%s", code, errs)
	}
	if _, err := os.Stat(dst); err != nil {
		t.Errorf("output not written: %v", err)
	}
}
