package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"

	"github.com/popfetch/popfetch/internal/durable"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/rcfile/fetchmailrc"
)

// importCmd is "popfetch import fetchmailrc [-o FILE] [--force] [FILE]".
func (g *globals) importCmd(_ context.Context, args []string) int {
	if len(args) == 0 || args[0] != "fetchmailrc" {
		fmt.Fprintf(g.stderr, "popfetch import: expected \"fetchmailrc\"\n\n%s", usage)
		return exitUsage
	}
	fs := g.flags("import fetchmailrc")
	out := fs.String("o", "", "")
	force := fs.Bool("force", false, "")
	if !g.parse(fs, args[1:]) {
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) > 0 {
		// Flags may follow the file name too.
		if !g.parse(fs, rest[1:]) {
			return exitUsage
		}
		if fs.NArg() > 0 {
			fmt.Fprintf(g.stderr, "popfetch import fetchmailrc takes one file, not %q\n", fs.Args())
			return exitUsage
		}
	}
	src := ""
	if len(rest) > 0 {
		src = rest[0]
	} else {
		home, err := os.UserHomeDir()
		if err != nil {
			fmt.Fprintf(g.stderr, "popfetch import: %v; name the fetchmailrc\n", err)
			return exitUsage
		}
		src = filepath.Join(home, ".fetchmailrc")
	}
	b, err := os.ReadFile(src)
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch import: %v\n", err)
		return exitConfig
	}
	login := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	res, err := fetchmailrc.Convert(b, fetchmailrc.Options{User: login})
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch import: %s: %v\n", src, err)
		return exitConfig
	}
	for _, n := range res.Notes {
		fmt.Fprintln(g.stderr, n)
	}
	// The output is checked as popfetch will read it, so that a value
	// popfetch refuses (a server name, a user name) is found now and not
	// at the first poll; the file is still written, to be fixed.
	name := *out
	if name == "" {
		name = "<stdout>"
	}
	code := exitOK
	if res.Accounts > 0 {
		_, diags := rcfile.Parse(res.HCL, name)
		if len(diags) > 0 {
			rcfile.WriteDiagnostics(g.stderr, diags, nil)
		}
		if diags.HasErrors() {
			fmt.Fprintf(g.stderr, "popfetch import: the converted file has errors (above); fix them before use\n")
			code = exitFail
		}
	}
	if *out == "" {
		if _, err := g.stdout.Write(res.HCL); err != nil {
			fmt.Fprintf(g.stderr, "popfetch import: %v\n", err)
			return exitFail
		}
	} else if err := writeNew(*out, res.HCL, *force); err != nil {
		fmt.Fprintf(g.stderr, "popfetch import: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(g.stderr, "popfetch import: %d account(s) converted from %s, %d note(s) above (also comments in the output)\n",
		res.Accounts, src, len(res.Notes))
	if res.Passwords > 0 {
		fmt.Fprintf(g.stderr, "popfetch import: %d password(s) copied as they were in the fetchmailrc; keep the rc file readable by you alone (popfetch refuses it otherwise), or move them to password_file or password_command\n", res.Passwords)
	}
	if res.Accounts == 0 {
		fmt.Fprintln(g.stderr, "popfetch import: no account could be converted; the output is not a usable rc file yet")
	}
	return code
}

// writeNew writes data to path with mode 0600, atomically: a temporary
// file in the same directory, synced, then linked to path (which fails if
// path exists, so nothing is overwritten even by a race) or, with force,
// renamed over it.
func writeNew(path string, data []byte, force bool) error {
	if _, err := os.Lstat(path); err == nil && !force {
		return fmt.Errorf("%s exists; use --force to replace it", path)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".popfetch-import-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if force {
		err = os.Rename(name, path)
	} else {
		err = os.Link(name, path)
		if errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("%s exists; use --force to replace it", path)
		}
	}
	if err != nil {
		return err
	}
	return durable.SyncDir(dir)
}
