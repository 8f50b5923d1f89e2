package rcfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/popfetch/popfetch/internal/trust"
)

// ErrInsecureFile marks a secret-bearing file that group or others can
// read. Load attaches it as the Extra of its diagnostics; Resolve wraps it.
var ErrInsecureFile = errors.New("file with a password is readable by group or others")

// maxFileSize bounds the rc file read; a real one is a few kilobytes.
const maxFileSize = 1 << 20

// Load reads path, parses it with Parse, and enforces the permission rules
// (fetchmail's rc check):
//
//   - the rc file must pass trust.CheckTrusted (owned by popfetch's user or
//     root, writable by nobody else, in directories nobody else can
//     change), or it is not parsed at all: its mda and password_command
//     would run commands chosen by someone else;
//   - so must a password_file, an aliases_file and a ca_file that exist
//     (also those of a multidrop ldap block), and the programs named by
//     mda and password_command;
//   - if the file contains an inline password attribute anywhere and is
//     readable by group or others, that is an error at the attribute;
//   - a password_file that is readable by group or others is an error at
//     the password_file attribute. Load checks this so that "popfetch
//     check" catches it; Resolve checks it again at use, because the file
//     can change after Load. A password_file that does not exist yet is
//     only a warning: it may be provisioned later (e.g. by systemd
//     credentials), and Resolve will fail clearly if it is still missing.
//
// The Config is nil whenever the diagnostics hold an error.
func Load(path string) (*Config, hcl.Diagnostics) {
	return loadAs(path, os.Geteuid())
}

// loadAs is Load for a process whose effective user ID is euid (see parseAs).
func loadAs(path string, euid int) (*Config, hcl.Diagnostics) {
	src, mode, err := readFile(path)
	if err != nil {
		d := &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cannot read rc file",
			Detail:   err.Error() + ".",
			Subject:  &hcl.Range{Filename: path, Start: hcl.InitialPos, End: hcl.InitialPos},
		}
		if errors.Is(err, trust.ErrUntrustedFile) {
			d.Summary, d.Extra = "Unsafe rc file", trust.ErrUntrustedFile
		}
		return nil, hcl.Diagnostics{d}
	}
	cfg, diags := parseAs(src, path, euid)
	if mode&0o044 != 0 {
		for _, rng := range inlinePasswords(src, path) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Password in a readable file",
				Detail: fmt.Sprintf("%s has mode %04o, so other users can read this password; run \"chmod 600 %s\", or use password_file, password_env or password_command instead.",
					path, mode.Perm(), path),
				Subject: rng.Ptr(),
				Extra:   ErrInsecureFile,
			})
		}
	}
	if cfg != nil {
		seen := map[hcl.Range]bool{} // an inherited program is checked once
		for _, a := range cfg.Accounts {
			if a.Password.File != "" {
				diags = append(diags, checkPasswordFile(a.Password)...)
			}
			if o := a.OAuth2; o != nil && o.ClientSecretFile != "" {
				diags = append(diags, checkSecretFile(o.ClientSecretFile, o.Range, "client_secret_file", "client secret")...)
			}
			if m := a.Multidrop; m != nil && m.AliasesFile != "" {
				diags = append(diags, checkAliasesFile(m.AliasesFile, m.AliasesFileRange)...)
			}
			if m := a.Multidrop; m != nil && m.LDAP != nil && m.LDAP.Password.File != "" {
				diags = append(diags, checkPasswordFile(m.LDAP.Password)...)
			}
			diags = append(diags, checkPrograms(a, seen)...)
			diags = append(diags, checkCAFiles(a)...)
		}
	}
	diags = sortDiags(diags)
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}

// readFile reads the file and its mode from one descriptor, so the mode
// checked is that of the bytes parsed, and refuses a file that another
// user can change (trust.CheckTrusted, on the same descriptor).
func readFile(path string) ([]byte, fs.FileMode, error) {
	f, err := trust.OpenNonBlock(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s is not a regular file", path)
	}
	if err := trust.CheckInfo(path, fi); err != nil {
		return nil, 0, err
	}
	src, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, 0, err
	}
	if len(src) > maxFileSize {
		return nil, 0, fmt.Errorf("%s is larger than %d bytes", path, maxFileSize)
	}
	return src, fi.Mode(), nil
}

// inlinePasswords finds every attribute named password at any depth,
// independently of validation, so that the permission rule holds even for
// a file with other errors (and for a password in the defaults block).
func inlinePasswords(src []byte, filename string) []hcl.Range {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil
	}
	var out []hcl.Range
	var walk func(b *hclsyntax.Body)
	walk = func(b *hclsyntax.Body) {
		for name, a := range b.Attributes {
			if name == "password" || name == "client_secret" {
				out = append(out, a.SrcRange)
			}
		}
		for _, blk := range b.Blocks {
			walk(blk.Body)
		}
	}
	if body, ok := f.Body.(*hclsyntax.Body); ok {
		walk(body)
	}
	return out
}

func checkPasswordFile(p Password) hcl.Diagnostics {
	return checkSecretFile(p.File, p.Range, "password_file", "password")
}

// checkSecretFile checks a file that holds a secret (what): the
// password_file rules, for the attribute attr at rng.
func checkSecretFile(path string, rng hcl.Range, attr, what string) hcl.Diagnostics {
	p := Password{File: path, Range: rng}
	fi, err := os.Stat(p.File)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return hcl.Diagnostics{{
			Severity: hcl.DiagWarning,
			Summary:  "Missing " + attr,
			Detail:   fmt.Sprintf("%s does not exist (yet); polling this account will fail until it does.", p.File),
			Subject:  p.Range.Ptr(),
		}}
	case err != nil:
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Unreadable " + attr,
			Detail:   err.Error() + ".",
			Subject:  p.Range.Ptr(),
		}}
	case fi.Mode().Perm()&0o044 != 0:
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Readable " + attr,
			Detail: fmt.Sprintf("%s has mode %04o, so other users can read the %s; run \"chmod 600 %s\".",
				p.File, fi.Mode().Perm(), what, p.File),
			Subject: p.Range.Ptr(),
			Extra:   ErrInsecureFile,
		}}
	}
	if err := trust.CheckInfo(p.File, fi); err != nil {
		return hcl.Diagnostics{untrustedDiag("Unsafe "+attr, err, p.Range)}
	}
	return nil
}

// checkAliasesFile applies trust.CheckTrusted's rules to an aliases_file that
// exists. One that does not is left to the poll, which reports it.
func checkAliasesFile(path string, rng hcl.Range) hcl.Diagnostics {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if err := trust.CheckInfo(path, fi); err != nil {
		return hcl.Diagnostics{untrustedDiag("Unsafe aliases_file", err, rng)}
	}
	return nil
}

// checkPrograms applies trust.CheckTrusted's rules to the programs an account
// runs, mda and password_command, where they exist: whoever can change
// the program runs code as popfetch just as whoever can change the rc
// file. A bare password_command name is checked where $PATH finds it now.
// A program that does not exist must be missing from a directory nobody
// else can write (trust.CheckPath), so that nobody else can create it later;
// the run checks it again.
func checkPrograms(a *Account, seen map[hcl.Range]bool) hcl.Diagnostics {
	var diags hcl.Diagnostics
	check := func(prog, what string, rng hcl.Range) {
		if !filepath.IsAbs(prog) {
			p, err := exec.LookPath(prog)
			if err != nil {
				return
			}
			prog = p
		}
		if err := trust.CheckPath(prog); errors.Is(err, trust.ErrUntrustedFile) {
			diags = append(diags, untrustedDiag("Unsafe "+what+" program", err, rng))
		}
	}
	if c := a.Password.Command; len(c) > 0 && c[0] != "" && !seen[a.Password.Range] {
		seen[a.Password.Range] = true
		check(c[0], "password_command", a.Password.Range)
	}
	if m := a.Multidrop; m != nil && m.LDAP != nil {
		if c := m.LDAP.Password.Command; len(c) > 0 && c[0] != "" && !seen[m.LDAP.Password.Range] {
			seen[m.LDAP.Password.Range] = true
			check(c[0], "password_command", m.LDAP.Password.Range)
		}
	}
	if c := a.OAuth2TokenCommand; len(c) > 0 && c[0] != "" && !seen[a.DeclRange] {
		seen[a.DeclRange] = true
		check(c[0], "oauth2_token_command", a.DeclRange)
	}
	dests := []*Destination{&a.Deliver, a.Postmaster}
	if a.Multidrop != nil {
		for _, u := range a.Multidrop.Users {
			dests = append(dests, u.Deliver)
		}
	}
	for _, f := range a.Filters {
		if len(f.Command) > 0 && !seen[f.DeclRange] {
			seen[f.DeclRange] = true
			check(f.Command[0], "filter command", f.DeclRange)
		}
	}
	for _, d := range dests {
		if d == nil || len(d.MDA) == 0 || seen[d.MDARange] || strings.Contains(d.MDA[0], "{") {
			continue
		}
		seen[d.MDARange] = true
		check(d.MDA[0], "mda", d.MDARange)
	}
	return diags
}

// checkCAFiles applies trust.CheckTrusted's rules to the ca_file of the POP3
// server, of SMTP/LMTP targets and of the multidrop ldap directory
// (trust.CheckPath: a missing one must be missing from a directory nobody
// else can write): whoever can change the trust anchors can impersonate
// the server and take the password. The diagnostic points at the account
// (the ca_file may be inherited), or at the ldap block.
func checkCAFiles(a *Account) hcl.Diagnostics {
	files := []string{a.CAFile}
	dests := []*Destination{&a.Deliver, a.Postmaster}
	if a.Multidrop != nil {
		for _, u := range a.Multidrop.Users {
			dests = append(dests, u.Deliver)
		}
	}
	for _, d := range dests {
		if d != nil && d.SMTP != nil {
			files = append(files, d.SMTP.CAFile)
		}
	}
	var diags hcl.Diagnostics
	if a.Multidrop != nil && a.Multidrop.LDAP != nil && a.Multidrop.LDAP.CAFile != "" {
		// The directory decides who receives the mail, and gets the
		// bind password: its trust anchors need the same care.
		l := a.Multidrop.LDAP
		if err := trust.CheckPath(l.CAFile); errors.Is(err, trust.ErrUntrustedFile) {
			diags = append(diags, untrustedDiag("Unsafe ca_file", fmt.Errorf("account %s: ldap ca_file %w", a.Name, err), l.Range))
		}
	}
	done := map[string]bool{}
	for _, f := range files {
		if f == "" || done[f] {
			continue
		}
		done[f] = true
		// A missing or unreadable file is left to the connection, which
		// reports it, unless another user could create it first.
		if err := trust.CheckPath(f); errors.Is(err, trust.ErrUntrustedFile) {
			diags = append(diags, untrustedDiag("Unsafe ca_file", fmt.Errorf("account %s: ca_file %w", a.Name, err), a.DeclRange))
		}
	}
	return diags
}

func untrustedDiag(summary string, err error, rng hcl.Range) *hcl.Diagnostic {
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: err.Error() + ".", Subject: rng.Ptr()}
	if errors.Is(err, trust.ErrUntrustedFile) {
		d.Extra = trust.ErrUntrustedFile
	}
	return d
}

// systemConfig is the system-wide rc file Find falls back to.
const systemConfig = "/etc/popfetch/popfetch.hcl"

// Find returns the rc file to use: flag if non-empty, else
// $POPFETCH_CONFIG if non-empty (both returned even if the file does not
// exist, so that Load reports the real error), else the first that exists
// of $XDG_CONFIG_HOME/popfetch/popfetch.hcl (XDG_CONFIG_HOME defaults to
// ~/.config) and /etc/popfetch/popfetch.hcl. When none exists the error
// lists every place looked and wraps fs.ErrNotExist.
func Find(flag string) (string, error) {
	return find(flag, systemConfig)
}

// find is Find with the system-wide rc file named by system, so tests
// need not write to /etc.
func find(flag, system string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if p := os.Getenv("POPFETCH_CONFIG"); p != "" {
		return p, nil
	}
	var looked []string
	if dir := userConfigDir(); dir != "" {
		looked = append(looked, filepath.Join(dir, "popfetch", "popfetch.hcl"))
	}
	looked = append(looked, system)
	for _, p := range looked {
		// A file that exists but cannot be stat'ed (EACCES on the
		// directory) is still the one meant; Load will say why.
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no rc file found (looked at $POPFETCH_CONFIG, %s); create one or name it with -f: %w",
		strings.Join(looked, ", "), fs.ErrNotExist)
}

func userConfigDir() string {
	if x := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		return x
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".config")
	}
	return ""
}
