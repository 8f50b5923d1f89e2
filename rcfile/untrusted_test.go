package rcfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/internal/trust"
)

// rc is the rc file of the trust tests: an account with, in this order, a
// password line, the deliver block's body, and more lines.
const rc = `account "a" {
  server   = "pop.example.com"
  username = "joe"
  %s
  deliver { %s }
  %s
}
`

// TestLoadUntrusted: Load refuses an rc file, password_file,
// aliases_file, mda or password_command program that another user can
// change, at the right place and with
// the fix; Resolve and OpenTrusted refuse them at use too.
func TestLoadUntrusted(t *testing.T) {
	fixedEnv(t)
	multidrop := func(aliases string) string {
		return fmt.Sprintf("multidrop {\n    local_domains = [\"example.com\"]\n    aliases_file = %q\n  }", aliases)
	}
	for _, tt := range []struct {
		name    string
		mode    os.FileMode // of the file under test
		foreign bool        // owned by nobody
		what    string      // "rc", "password_file", "aliases_file"
		want    string      // "" = loads
		line    int
	}{
		{"rc 0600", 0o600, false, "rc", "", 0},
		{"rc other-writable", 0o602, false, "rc", "Unsafe rc file; ", 1},
		{"rc group-writable", 0o620, false, "rc", "writable by the group nogroup", 1},
		{"rc foreign", 0o600, true, "rc", "is owned by nobody", 1},
		{"password_file 0600", 0o600, false, "password_file", "", 0},
		{"password_file other-writable", 0o602, false, "password_file", "Unsafe password_file; ", 4},
		{"password_file foreign", 0o600, true, "password_file", "is owned by nobody", 4},
		{"aliases_file 0644", 0o644, false, "aliases_file", "", 0},
		{"aliases_file group-writable", 0o664, false, "aliases_file", "Unsafe aliases_file; ", 8},
		{"aliases_file foreign", 0o644, true, "aliases_file", "is owned by nobody", 8},
		{"mda 0755", 0o755, false, "mda", "", 0},
		{"mda other-writable", 0o757, false, "mda", "Unsafe mda program; ", 5},
		{"mda foreign", 0o755, true, "mda", "is owned by nobody", 5},
		{"password_command 0755", 0o755, false, "password_command", "", 0},
		{"password_command group-writable", 0o775, false, "password_command", "Unsafe password_command program; ", 4},
		{"ca_file 0644", 0o644, false, "ca_file", "", 0},
		{"ca_file other-writable", 0o646, false, "ca_file", "Unsafe ca_file; account a: ca_file ", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := testutil.PrivateDir(t)
			target := testutil.WriteFile(t, dir, "target", "postmaster: joe\n", tt.mode)
			if tt.what == "password_file" {
				target = testutil.WriteFile(t, dir, "target", "hunter2\n", tt.mode)
			}
			own := func(p string) {
				if tt.foreign || strings.Contains(tt.name, "group") {
					testutil.NeedRoot(t)
					uid, gid := -1, testutil.Nobody
					if tt.foreign {
						uid = testutil.Nobody
					}
					if err := os.Chown(p, uid, gid); err != nil {
						t.Fatal(err)
					}
				}
			}
			pw, dest, md := `password = "x"`, `maildir = "/var/mail/joe"`, ""
			switch tt.what {
			case "password_file":
				pw = fmt.Sprintf("password_file = %q", target)
			case "aliases_file":
				dest, md = `maildir = "/var/mail/{user}"`, multidrop(target)
			case "password_command":
				pw = fmt.Sprintf("password_command = [%q]", target)
			case "ca_file":
				md = fmt.Sprintf("ca_file = %q", target)
			case "mda":
				dest = fmt.Sprintf("mda = [%q, \"-d\", \"joe\"]", target)
			}
			rcMode := os.FileMode(0o600)
			if tt.what == "rc" {
				rcMode = tt.mode
			}
			p := testutil.WriteFile(t, dir, "rc.hcl", fmt.Sprintf(rc, pw, dest, md), rcMode)
			if tt.what == "rc" {
				own(p)
			} else {
				own(target)
			}
			cfg, diags := loadAs(p, testEUID)
			out := string(render(t, diags))
			if tt.want == "" {
				if diags.HasErrors() {
					t.Fatalf("Load errors:\n%s", out)
				}
				return
			}
			if cfg != nil || !strings.Contains(out, tt.want) || !strings.Contains(out, "run \"ch") {
				t.Fatalf("Load diagnostics:\n%s\nwant an error containing %q and the command that fixes it", out, tt.want)
			}
			d := diags[0]
			if d.Subject.Start.Line != tt.line || d.Extra != trust.ErrUntrustedFile {
				t.Fatalf("diagnostic at line %d, Extra %v; want line %d, trust.ErrUntrustedFile:\n%s", d.Subject.Start.Line, d.Extra, tt.line, out)
			}
			// Made unsafe after a load: refused at use as well.
			switch tt.what {
			case "password_file":
				_, err := Password{File: target}.Resolve(context.Background())
				if !errors.Is(err, trust.ErrUntrustedFile) {
					t.Fatalf("Resolve = %v; want ErrUntrustedFile", err)
				}
			case "aliases_file":
				f, err := trust.OpenTrusted(target)
				if err == nil {
					f.Close()
				}
				if !errors.Is(err, trust.ErrUntrustedFile) {
					t.Fatalf("trust.OpenTrusted = %v; want ErrUntrustedFile", err)
				}
			}
		})
	}
}

// TestFIFONotOpenedBlocking: an rc file, password_file or aliases_file
// that is a FIFO is refused at once, not waited on for a writer.
func TestFIFONotOpenedBlocking(t *testing.T) {
	t.Parallel()
	p := filepath.Join(testutil.PrivateDir(t), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func() error{
		"Load": func() error {
			if _, diags := loadAs(p, testEUID); !diags.HasErrors() || !strings.Contains(diags[0].Detail, "not a regular file") {
				return fmt.Errorf("Load = %v; want not a regular file", diags)
			}
			return nil
		},
		"Resolve": func() error {
			if _, err := (Password{File: p}).Resolve(context.Background()); !errors.Is(err, trust.ErrUntrustedFile) {
				return fmt.Errorf("Resolve = %v; want ErrUntrustedFile", err)
			}
			return nil
		},
		"OpenTrusted": func() error {
			f, err := trust.OpenTrusted(p)
			if err == nil {
				f.Close()
			}
			if !errors.Is(err, trust.ErrUntrustedFile) {
				return fmt.Errorf("trust.OpenTrusted = %v; want ErrUntrustedFile", err)
			}
			return nil
		},
	} {
		done := make(chan error, 1)
		go func() { done <- open() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s blocks on a FIFO", name)
		}
	}
}

// TestMissingFileChecked: a program or ca_file that does not exist when
// the rc file loads is accepted only where nobody else can create it
// later, and the programs are checked again when they run.
func TestMissingFileChecked(t *testing.T) {
	fixedEnv(t)
	for _, tt := range []struct {
		name string
		dir  string // of the missing file: "private", "foreign" (nobody's 0755), "sticky" (1777)
		what string
		want string // "" = loads
		line int
	}{
		{"mda in private dir", "private", "mda", "", 0},
		{"mda in foreign dir", "foreign", "mda", "Unsafe mda program; ", 5},
		{"mda in sticky dir", "sticky", "mda", "where it would be created, is writable by every user, so that user can create it; create it first, or name a file in a directory nobody else can write", 5},
		{"mda under missing dir in foreign dir", "foreign/sub", "mda", "Unsafe mda program; ", 5},
		{"password_command in private dir", "private", "password_command", "", 0},
		{"password_command in foreign dir", "foreign", "password_command", "Unsafe password_command program; ", 4},
		{"ca_file in private dir", "private", "ca_file", "", 0},
		{"ca_file in foreign dir", "foreign", "ca_file", "Unsafe ca_file; account a: ca_file ", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := testutil.PrivateDir(t)
			sub := dir
			switch {
			case strings.HasPrefix(tt.dir, "foreign"):
				testutil.NeedRoot(t)
				sub = filepath.Join(dir, "foreign")
				if err := os.Mkdir(sub, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(sub, testutil.Nobody, testutil.Nobody); err != nil {
					t.Fatal(err)
				}
				if tt.dir == "foreign/sub" {
					sub = filepath.Join(sub, "sub")
				}
			case tt.dir == "sticky":
				sub = filepath.Join(dir, "sticky")
				if err := os.Mkdir(sub, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(sub, 0o777|os.ModeSticky); err != nil {
					t.Fatal(err)
				}
			}
			target := filepath.Join(sub, "missing")
			pw, dest, extra := `password = "x"`, `maildir = "/var/mail/joe"`, ""
			switch tt.what {
			case "mda":
				dest = fmt.Sprintf("mda = [%q]", target)
			case "password_command":
				pw = fmt.Sprintf("password_command = [%q]", target)
			case "ca_file":
				extra = fmt.Sprintf("ca_file = %q", target)
			}
			p := testutil.WriteFile(t, dir, "rc.hcl", fmt.Sprintf(rc, pw, dest, extra), 0o600)
			cfg, diags := loadAs(p, testEUID)
			out := string(render(t, diags))
			if tt.want == "" {
				if diags.HasErrors() {
					t.Fatalf("Load errors:\n%s", out)
				}
				if err := trust.CheckPath(target); err != nil {
					t.Fatalf("trust.CheckPath(%s) = %v; want nil (missing where only root can create it)", target, err)
				}
				return
			}
			if cfg != nil || !strings.Contains(out, tt.want) || !strings.Contains(out, "run \"ch") && !strings.Contains(out, "create it first") {
				t.Fatalf("Load diagnostics:\n%s\nwant an error containing %q and how to fix it", out, tt.want)
			}
			if d := diags[0]; d.Subject.Start.Line != tt.line || d.Extra != trust.ErrUntrustedFile {
				t.Fatalf("diagnostic at line %d, Extra %v; want line %d, trust.ErrUntrustedFile:\n%s", d.Subject.Start.Line, d.Extra, tt.line, out)
			}
		})
	}
}

// TestProgramCheckedAtUse: a password_command program (by absolute path
// or found in $PATH) that became unsafe after the load is not run.
func TestProgramCheckedAtUse(t *testing.T) {
	dir := testutil.PrivateDir(t)
	ran := filepath.Join(dir, "ran")
	prog := testutil.WriteFile(t, dir, "pw", "#!/bin/sh\ntouch "+ran+"\necho hunter2\n", 0o755)
	for _, argv := range [][]string{{prog}, {"pw"}} {
		t.Setenv("PATH", dir)
		if s, err := (Password{Command: argv}).Resolve(context.Background()); err != nil || s != "hunter2" {
			t.Fatalf("%q while safe: Resolve = %q, %v", argv, s, err)
		}
		if err := os.Chmod(prog, 0o757); err != nil {
			t.Fatal(err)
		}
		os.Remove(ran)
		_, err := (Password{Command: argv}).Resolve(context.Background())
		if !errors.Is(err, trust.ErrUntrustedFile) {
			t.Fatalf("%q other-writable: Resolve = %v; want ErrUntrustedFile", argv, err)
		}
		if _, err := os.Stat(ran); err == nil {
			t.Fatalf("%q other-writable: the program ran", argv)
		}
		if err := os.Chmod(prog, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
