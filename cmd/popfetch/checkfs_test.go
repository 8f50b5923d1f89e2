package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/internal/trust"
)

// checkRC is an rc file with one account; deliver and extra are its
// deliver block's body and more account attributes.
func checkRC(state, deliver, extra string) string {
	return fmt.Sprintf("state_dir = %q\naccount \"isp\" {\n  server = \"pop.example.com\"\n  username = \"joe\"\n  password_env = \"PW\"\n%s\n  deliver {\n    %s\n  }\n}\n", state, extra, deliver)
}

// TestCheckFindings: broken destinations and files give a finding with
// the account and the attribute's position, and check exits 1 for an
// error, 0 for warnings only, 5 where the rc file itself is refused.
// denied makes the injected access(2) refuse R and W there: tests run as root,
// who may write everything (TestCheckFindingsAsNobody checks the real
// call).
func TestCheckFindings(t *testing.T) {
	t.Setenv("PW", "secret")
	dir := testutil.PrivateDir(t)
	state := filepath.Join(testutil.PrivateDir(t), "state")
	file := testutil.WriteFile(t, dir, "file", "x", 0o600)
	notExec := testutil.WriteFile(t, dir, "procmail", "#!/bin/sh\n", 0o644)
	exe := testutil.WriteFile(t, dir, "mda", "#!/bin/sh\n", 0o755)
	aliasesOpen := testutil.WriteFile(t, dir, "aliases-open", "a: b\n", 0o666)
	pw644 := testutil.WriteFile(t, dir, "pw644", "secret\n", 0o644)
	pw600 := testutil.WriteFile(t, dir, "pw600", "secret\n", 0o600)
	md := filepath.Join(dir, "Maildir")
	if err := os.MkdirAll(filepath.Join(md, "new"), 0o700); err != nil {
		t.Fatal(err)
	}
	tmpFile := filepath.Join(dir, "BadTmp")
	if err := os.MkdirAll(tmpFile, 0o700); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, tmpFile, "tmp", "", 0o600)
	// Maildirs for the folder checks: F has no folder yet, the others a
	// .Junk that is a symlink, a file, a folder whose tmp/ is a file, and
	// one without its maildirfolder marker.
	full := func(name string) string {
		p := filepath.Join(dir, name)
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(p, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	mdF, mdLink, mdFile, mdSub, mdNoMark := full("F"), full("FLink"), full("FFile"), full("FSub"), full("FNoMark")
	if err := os.Symlink(mdF, filepath.Join(mdLink, ".Junk")); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, mdFile, ".Junk", "", 0o600)
	full(filepath.Join("FSub", ".Junk", "new"))
	testutil.WriteFile(t, filepath.Join(mdSub, ".Junk"), "tmp", "", 0o600)
	testutil.WriteFile(t, filepath.Join(mdSub, ".Junk"), "maildirfolder", "", 0o600)
	noMark := full(filepath.Join("FNoMark", ".Junk"))
	folder := func(md string) string { return fmt.Sprintf("maildir = %q\n    folder = \"Junk\"", md) }
	multidrop := func(extra string) string {
		return "  multidrop {\n    local_domains = [\"example.com\"]\n    " + extra + "\n    user \"joe\" {}\n  }"
	}
	for _, tt := range []struct {
		name           string
		deliver, extra string
		state          string // "" = state
		denied         string // access(2) refuses W here
		want           string // the finding ("" = none)
		pos            string // the attribute the finding is at ("" = none)
		code           int
	}{
		{"good", fmt.Sprintf("maildir = %q", md), "", "", "", "", "", exitOK},
		{"good mda", fmt.Sprintf("mda = [%q]", exe), "", "", "", "", "", exitOK},
		{"missing maildir is created", fmt.Sprintf("maildir = %q", filepath.Join(dir, "new", "Maildir")), "", "", "", "", "", exitOK},
		{"maildir is a file", fmt.Sprintf("maildir = %q", file), "", "", "", "error: deliver: maildir " + file + " is not a directory (a regular file)", "deliver", exitFail},
		{"maildir below a file", fmt.Sprintf("maildir = %q", filepath.Join(file, "Maildir")), "", "", "", "is not a directory", "deliver", exitFail},
		{"maildir tmp is a file", fmt.Sprintf("maildir = %q", tmpFile), "", "", "", "BadTmp/tmp is not a directory", "deliver", exitFail},
		{"maildir not writable", fmt.Sprintf("maildir = %q", md), "", "", md, "error: deliver: maildir " + md + " is not writable", "deliver", exitFail},
		{"maildir new not writable", fmt.Sprintf("maildir = %q", md), "", "", filepath.Join(md, "new"), "new is not writable", "deliver", exitFail},
		{"maildir parent not writable", fmt.Sprintf("maildir = %q", filepath.Join(dir, "x", "Maildir")), "", "", dir, "cannot be created: " + dir + " is not writable", "deliver", exitFail},
		{"template prefix not writable", fmt.Sprintf("maildir = %q", filepath.Join(dir, "{user}", "Maildir")), multidrop(""), "", dir, "warning: deliver: maildir " + dir + ": popfetch cannot create a new user's Maildir", "deliver", exitOK},
		{"template prefix is a file", fmt.Sprintf("maildir = %q", filepath.Join(file, "{user}")), multidrop(""), "", "", "error: deliver: maildir " + file + " is not a directory", "deliver", exitFail},
		{"folder to be created", folder(mdF), "", "", "", "", "", exitOK},
		{"folder in a template", fmt.Sprintf("maildir = %q\n    folder = \"Junk\"", filepath.Join(dir, "{user}", "Maildir")), multidrop(""), "", "", "", "", exitOK},
		{"folder cannot be created", folder(mdF), "", "", mdF, "error: deliver: maildir " + mdF + " is not writable, and its folder .Junk must be created in it", "folder", exitFail},
		{"folder a symlink", folder(mdLink), "", "", "", "error: deliver: maildir folder " + mdLink + "/.Junk is a symlink", "folder", exitFail},
		{"folder a file", folder(mdFile), "", "", "", "error: deliver: maildir folder " + mdFile + "/.Junk is not a directory (a regular file)", "folder", exitFail},
		{"folder tmp a file", folder(mdSub), "", "", "", "FSub/.Junk/tmp is not a directory", "folder", exitFail},
		{"folder marker cannot be created", folder(mdNoMark), "", "", noMark, "error: deliver: maildir folder " + noMark + " is not writable, and its maildirfolder marker must be created in it", "folder", exitFail},
		{"rule folder a symlink", fmt.Sprintf("maildir = %q", mdLink), "rule \"spam\" {\n    header = \"X-Spam-Flag\"\n    equals = \"YES\"\n    folder = \"Junk\"\n  }", "", "", "error: rule spam: maildir folder " + mdLink + "/.Junk is a symlink", "", exitFail},
		{"rule deliver target is a file", fmt.Sprintf("maildir = %q", md), fmt.Sprintf("rule \"spam\" {\n    header = \"X-Spam-Flag\"\n    equals = \"YES\"\n    deliver { maildir = %q }\n  }", file), "", "", "error: rule spam: maildir " + file + " is not a directory", "", exitFail},
		{"mda missing", `mda = ["/nonexistent/procmail", "-d", "joe"]`, "", "", "", "error: deliver: mda program /nonexistent/procmail does not exist", "deliver", exitFail},
		{"mda not executable", fmt.Sprintf("mda = [%q]", notExec), "", "", "", "mda program " + notExec + " is not executable", "deliver", exitFail},
		{"mda a directory", fmt.Sprintf("mda = [%q]", dir), "", "", "", "", "", exitConfig}, // Load's trust rules
		{"state dir unwritable", fmt.Sprintf("maildir = %q", md), "", "", filepath.Dir(state), "error: state_dir: uidl: state directory " + state + "/uidl cannot be created: " + filepath.Dir(state) + " is not writable", "", exitFail},
		{"state dir a file", fmt.Sprintf("maildir = %q", md), "", file, "", "error: state_dir: uidl: state directory " + file + "/uidl cannot be created: " + file + " is not a directory", "", exitFail},
		{"aliases_file missing", fmt.Sprintf("maildir = %q", md), multidrop(fmt.Sprintf("aliases_file = %q", filepath.Join(dir, "none"))), "", "", "error: aliases_file " + filepath.Join(dir, "none") + " does not exist", "aliases_file", exitFail},
		// Load's warning says it (it may be provisioned later).
		{"password_file missing", fmt.Sprintf("maildir = %q", md), fmt.Sprintf("password_file = %q", filepath.Join(dir, "nopw")), "", "", "", "", exitOK},
		{"password_file unreadable", fmt.Sprintf("maildir = %q", md), fmt.Sprintf("password_file = %q", pw600), "", pw600, "error: password_file " + pw600 + " cannot be read: permission denied", "password_file", exitFail},
		// Refused by Load already: the rc file is unsafe (exit 5).
		{"aliases_file world-writable", fmt.Sprintf("maildir = %q", md), multidrop(fmt.Sprintf("aliases_file = %q", aliasesOpen)), "", "", "", "", exitConfig},
		{"password_file 0644", fmt.Sprintf("maildir = %q", md), fmt.Sprintf("password_file = %q", pw644), "", "", "", "", exitConfig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := state
			if tt.state != "" {
				st = tt.state
			}
			src := checkRC(st, tt.deliver, tt.extra)
			if strings.Contains(tt.extra, "password_file") {
				src = strings.Replace(src, "  password_env = \"PW\"\n", "", 1)
			}
			rc := filepath.Join(t.TempDir(), "rc.hcl")
			writeFile(t, rc, src)
			code, out, errOut := runCLI(t, "-f", rc, "check")
			// Nothing created: neither the state directory nor a Maildir.
			for _, p := range []string{state, filepath.Join(dir, "new"), filepath.Join(dir, "x"), filepath.Join(md, "tmp"), filepath.Join(mdF, ".Junk"), filepath.Join(noMark, "maildirfolder")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("check created %s", p)
				}
			}
			if tt.code == exitConfig {
				if code != exitConfig {
					t.Fatalf("check = %d; want %d\n%s", code, exitConfig, errOut)
				}
				return
			}
			cfg, _, ok := (&globals{config: rc, stderr: &strings.Builder{}}).load()
			if !ok {
				t.Fatalf("load failed\n%s", errOut)
			}
			access := func(p string, mode uint32) error {
				if mode&(trust.W|trust.R) != 0 && p == tt.denied {
					return syscall.EACCES
				}
				return trust.EffectiveAccess(p, mode)
			}
			var got []string
			for _, f := range checkFiles(cfg.Accounts, access) {
				got = append(got, f.String())
			}
			if tt.want == "" {
				if len(got) != 0 || code != tt.code {
					t.Fatalf("findings %q, check = %d; want none and %d\n%s", got, code, tt.code, out)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tt.want) || !strings.HasPrefix(got[0], "isp: ") {
				t.Fatalf("findings:\n%s\nwant one for isp containing %q", strings.Join(got, "\n"), tt.want)
			}
			if tt.pos != "" && !strings.HasPrefix(got[0], "isp: "+rc+attrPos(t, rc, tt.pos)+": ") {
				t.Errorf("finding %q; want it at %s's %s", got[0], rc, tt.pos)
			}
			if tt.denied == "" && (code != tt.code || !strings.Contains(out, tt.want)) {
				t.Errorf("check = %d\n%s\nwant %d and %q", code, out, tt.code, tt.want)
			}
			if tt.denied != "" && strings.Contains(got[0], "warning") != (tt.code == exitOK) {
				t.Errorf("finding %q: severity does not match exit %d", got[0], tt.code)
			}
		})
	}
}

// TestCheckFindingsAsNobody runs check as an ordinary user against the
// real access(2): a Maildir in a directory only root can write, and a
// Maildir path that is a file (which used to pass check and then fail
// every message of every poll).
func TestCheckFindingsAsNobody(t *testing.T) {
	testutil.NeedRoot(t)
	const nobody = testutil.Nobody
	dir := testutil.OpenDir(t, "popfetch-checkfs-")
	bin := testutil.CopyExecutable(t, popfetchBin, dir, "popfetch")
	state := filepath.Join(dir, "state")
	own := filepath.Join(dir, "own")
	for _, d := range []string{state, own} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	rootOnly := filepath.Join(dir, "root-only")
	if err := os.Mkdir(rootOnly, 0o755); err != nil {
		t.Fatal(err)
	}
	file := testutil.WriteFile(t, dir, "file", "", 0o644)
	for _, tt := range []struct {
		maildir, want string
		code          int
	}{
		{filepath.Join(own, "Maildir"), "", exitOK},
		{filepath.Join(rootOnly, "Maildir"), "maildir " + filepath.Join(rootOnly, "Maildir") + " cannot be created: " + rootOnly + " is not writable: permission denied", exitFail},
		{rootOnly, "maildir " + rootOnly + " is not writable", exitFail},
		{file, "maildir " + file + " is not a directory (a regular file)", exitFail},
	} {
		rc := testutil.WriteFile(t, dir, "rc.hcl", checkRC(state, fmt.Sprintf("maildir = %q", tt.maildir), ""), 0o644)
		r := popfetchCmd(t, bin, &syscall.Credential{Uid: nobody, Gid: nobody}, "-f", rc, "check")
		if r.code != tt.code || tt.want != "" && !strings.Contains(r.stdout, "isp: "+rc+attrPos(t, rc, "maildir")+": error: deliver: "+tt.want) ||
			tt.want == "" && strings.Contains(r.stdout, "isp: ") {
			t.Errorf("maildir %s: check as nobody = %d\n%s%s\nwant %d and %q", tt.maildir, r.code, r.stdout, r.stderr, tt.code, tt.want)
		}
	}
}

// attrPos is ":line:col" of the line of the rc file at path that sets
// attr; for "deliver", the target in the deliver block.
func attrPos(t *testing.T, path, attr string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimLeft(l, " ")
		if attr == "deliver" && (strings.HasPrefix(trimmed, "maildir =") || strings.HasPrefix(trimmed, "mda =")) || strings.HasPrefix(trimmed, attr+" =") {
			return fmt.Sprintf(":%d:%d", i+1, len(l)-len(trimmed)+1)
		}
	}
	t.Fatalf("%s sets no %s", path, attr)
	return ""
}
