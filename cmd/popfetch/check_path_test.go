package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/rcfile"
)

// `popfetch check` prints the rc file's path in comments; a newline in it
// must not end a comment and leave the rest of the path among the
// settings: the output still parses as an rc file.
func TestCheckPathWithNewline(t *testing.T) {
	b, err := os.ReadFile("../../testdata/rc/maildir.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "x\nmax_parallel = 1\n#")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "rc.hcl")
	writeFile(t, f, string(b))
	code, out, errs := runCLI(t, "check", "-f", f)
	if code != exitOK {
		t.Fatalf("check = %d\n%s%s", code, out, errs)
	}
	if !strings.HasPrefix(out, "# "+rcfile.QuotePath(f)+": ok\n") || !strings.Contains(out, `x\nmax_parallel = 1\n#`) {
		t.Errorf("the path is not quoted:\n%s", out)
	}
	if _, diags := rcfile.Parse([]byte(out), "out.hcl"); diags.HasErrors() {
		t.Errorf("check output does not parse: %v\n%s", diags, out)
	}
}
