package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
)

// exitTempFail is the exit status of popfetch reroute when a message
// could not be delivered for now (EX_TEMPFAIL of sysexits.h, which MDAs
// and MTAs use alike): the file stays where it is, try again later.
const exitTempFail = 75

// What remove reports when the name no longer holds the file that was
// read and delivered.
var (
	errGone     = errors.New("it is no longer there (moved, to cur/ by a mail reader perhaps, or removed)")
	errReplaced = errors.New("another file has taken its name")
	errChanged  = errors.New("it changed after reroute read it (is something still writing it?), so it is kept: what changed may not be in the copy delivered; check the user's copy against the file, then remove the file or reroute it again")
)

// checkMessage refuses a file that is no message: empty, or not
// starting with a header field (RFC 5322 §2.2: field-name ":" with
// printable US-ASCII but ':' in the name). A postmaster copy popfetch
// wrote always starts with its own fields.
func checkMessage(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("is empty: there is no message to deliver")
	}
	line := data
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	name, _, ok := bytes.Cut(line, []byte(":"))
	name = bytes.TrimRight(name, " \t") // the obsolete syntax allows WSP before ':'
	if !ok || len(name) == 0 || bytes.IndexFunc(name, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return errors.New("does not start with a header field: not a message popfetch can deliver")
	}
	return nil
}

// inMaildirTmp refuses a file in a Maildir's tmp/: a delivery may still be
// writing it, and it is no message yet.
func inMaildirTmp(dir string) error {
	dir = filepath.Clean(dir)
	if filepath.Base(dir) != "tmp" {
		return nil
	}
	parent := filepath.Dir(dir)
	for _, sub := range []string{"new", "cur"} {
		if fi, err := os.Stat(filepath.Join(parent, sub)); err != nil || !fi.IsDir() {
			return nil
		}
	}
	return errors.New("is in a Maildir's tmp/, where a delivery may still be writing it")
}

// parseInterleaved parses flags and operands in any order ("reroute FILE
// --to joe" as well as "reroute --to joe FILE"), up to a "--" after which
// everything is an operand. It reports errors as g.parse does.
func (g *globals) parseInterleaved(fs *flag.FlagSet, args []string) ([]string, bool) {
	var operands []string
	for {
		if !g.parse(fs, args) {
			return nil, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return operands, true
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(operands, rest...), true
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
}

// pickAccount returns the account named (it must pass ok) or, with no
// name, the one account that passes ok; what is meant describes ok in
// messages ("a multidrop account").
func pickAccount(cfg *rcfile.Config, name, what string, ok func(*rcfile.Account) bool) (*rcfile.Account, error) {
	if name != "" {
		accts, err := selectAccounts(cfg, []string{name})
		if err != nil {
			return nil, err
		}
		if !ok(accts[0]) {
			return nil, fmt.Errorf("account %s is not %s", name, what)
		}
		return accts[0], nil
	}
	var found []*rcfile.Account
	var names []string
	for _, a := range cfg.Accounts {
		if ok(a) {
			found = append(found, a)
			names = append(names, a.Name)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%s has no %s", cfg.Path, what)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%s has several accounts that are %s (%s): say which with --account", cfg.Path, what, strings.Join(names, ", "))
}

// reroute is `popfetch reroute [--account NAME] [--force] --to USER
// FILE...`: each FILE, a message from the postmaster's Maildir, goes to
// USER through USER's destination (fetch.Rerouter.Deliver) and, once that
// copy is durable, is removed. A crash between the two leaves the file,
// so the worst case is a second copy for the user, never none.
func (g *globals) reroute(ctx context.Context, args []string) int {
	fs := g.flags("reroute")
	account := fs.String("account", "", "")
	to := fs.String("to", "", "")
	force := fs.Bool("force", false, "")
	learn := fs.Bool("learn", false, "")
	forget := fs.String("forget", "", "")
	files, ok := g.parseInterleaved(fs, args)
	if !ok {
		return exitUsage
	}
	if *forget != "" {
		if *to != "" || *learn || *force || len(files) > 0 {
			fmt.Fprintf(g.stderr, "popfetch reroute: usage: popfetch reroute [--account NAME] --forget ADDRESS (nothing else)\n")
			return exitUsage
		}
	} else if *to == "" || len(files) == 0 {
		fmt.Fprintf(g.stderr, "popfetch reroute: usage: popfetch reroute [--account NAME] [--force] [--learn] --to USER FILE...\n")
		return exitUsage
	}
	cfg, _, ok := g.loadOneShot()
	if !ok {
		return exitConfig
	}
	a, err := pickAccount(cfg, *account, "a multidrop account", func(a *rcfile.Account) bool { return a.Multidrop != nil })
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch reroute: %v\n", err)
		return exitUsage
	}
	if *forget != "" {
		return g.forget(a, *forget)
	}
	// Built as the daemon would build it (it reads the learned routes in
	// the state directory, which may be the daemon's user's); delivery
	// then runs as the caller.
	var rr *fetch.Rerouter
	err = asStateOwner(a.StateDir, func() (err error) {
		rr, err = fetch.NewRerouter(a)
		return err
	})
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch reroute: %v\n", err)
		return exitConfig
	}
	err = rr.Check(*to, *force)
	if errors.Is(err, fetch.ErrUnknownUser) && a.Multidrop.LDAP != nil {
		// Not configured: the LDAP directory may have the user. A poll
		// loads it before routing; so does a reroute, but only when
		// it needs to.
		if derr := rr.UseDirectory(ctx); derr != nil {
			fmt.Fprintf(g.stderr, "popfetch reroute: %v; nothing delivered, try again later (--force delivers to the default destination without it)\n", derr)
			return exitTempFail
		}
		err = rr.Check(*to, *force)
	}
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch reroute: %v\n", err)
		return exitUsage
	}
	ctx, graceful, stop := signalContext(ctx, g.stderr)
	defer stop()
	log := g.logger(slog.LevelWarn)
	owner := stateOwner(a)
	code := exitOK
	for i, path := range files {
		if stopped(graceful) || ctx.Err() != nil {
			fmt.Fprintf(g.stderr, "popfetch: stopped; not rerouted: %s\n", strings.Join(files[i:], " "))
			code = worse(code, exitTempFail)
			break
		}
		var lrn *rcfile.Account
		if *learn {
			lrn = a
		}
		line, c := g.rerouteOne(ctx, rr, path, *to, *force, lrn, owner, log)
		fmt.Fprintf(g.stdout, "%s: %s\n", termSafe(path, 0), line)
		code = worse(code, c)
	}
	return code
}

// forget removes the learned route of key from account a's file
// (`popfetch reroute --forget ADDRESS`).
func (g *globals) forget(a *rcfile.Account, key string) int {
	existed, err := g.forgetRoute(a, key)
	switch {
	case err != nil:
		fmt.Fprintf(g.stderr, "popfetch reroute: forget %s: %v\n", key, err)
		return exitFail
	case !existed:
		fmt.Fprintf(g.stderr, "popfetch reroute: account %s has no learned route for %s\n", a.Name, key)
		return exitFail
	}
	fmt.Fprintf(g.stdout, "forgot %s (account %s)\n", key, a.Name)
	return exitOK
}

// rerouteOne delivers one file and removes it; it returns the line to
// print after "FILE: " and the exit status it calls for. With learn (the
// account, for --learn) the routes the message teaches are written first:
// a message that teaches nothing is not delivered, so a rerun with or
// without --learn starts from a clean state, and a delivery that fails
// after the route was learned leaves only the route (what the admin asked
// for) and the file.
func (g *globals) rerouteOne(ctx context.Context, rr *fetch.Rerouter, path, user string, force bool, learn *rcfile.Account, owner int, log *slog.Logger) (string, int) {
	src, err := openSource(path, rr.MaxSize(), owner)
	if err != nil {
		return fmt.Sprintf("error: %s; nothing delivered", termSafe(err.Error(), 0)), exitFail
	}
	defer src.close()
	if err := checkMessage(src.data); err != nil {
		return fmt.Sprintf("error: %v; nothing delivered, the file stays", err), exitFail
	}
	var taught string
	if learn != nil {
		lines, err := g.learnRoutes(learn, src.data, user, path)
		if err != nil {
			return fmt.Sprintf("not delivered: %v; the file stays", err), exitFail
		}
		taught = "; learned " + strings.Join(lines, ", ")
	}
	res, err := rr.Deliver(ctx, src.data, user, force, log)
	switch {
	case err != nil && deliver.IsPermanent(err):
		return fmt.Sprintf("not delivered (permanent failure): %v; the file stays", err), exitFail
	case err != nil:
		if errors.Is(err, trust.ErrUntrustedFile) || errors.Is(err, rcfile.ErrInsecureFile) {
			return fmt.Sprintf("not delivered: %v; the file stays", err), exitConfig
		}
		return fmt.Sprintf("not delivered (temporary failure, try again later): %v; the file stays", err), exitTempFail
	}
	done := fmt.Sprintf("delivered to %s (%s)%s", res.User, res.Target, taught)
	// The copy is durable; only now may the source go. A crash or failure
	// up to the removal leaves the file, so it can be run again.
	if err := src.remove(); errors.Is(err, errChanged) {
		return fmt.Sprintf("%s; the file stays: %v", done, err), exitFail
	} else if err != nil {
		return fmt.Sprintf("%s; removing the file: %v; see that the postmaster's copy goes", done, err), exitFail
	}
	return done, exitOK
}
