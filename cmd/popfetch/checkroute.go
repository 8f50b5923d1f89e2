package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/ldapdir"
	"github.com/popfetch/popfetch/deliver/rules"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// routeAccount picks the multidrop account `check --route` routes with:
// the one named, or the only multidrop account.
func routeAccount(cfg *rcfile.Config, name string) (*rcfile.Account, error) {
	var multi []string
	for _, a := range cfg.Accounts {
		if name != "" && a.Name == name {
			if a.Multidrop == nil {
				return nil, fmt.Errorf("account %q is not a multidrop account", name)
			}
			return a, nil
		}
		if a.Multidrop != nil {
			multi = append(multi, a.Name)
		}
	}
	switch {
	case name != "":
		return nil, fmt.Errorf("no account %q in %s", name, cfg.Path)
	case len(multi) == 0:
		return nil, fmt.Errorf("%s has no multidrop account", cfg.Path)
	case len(multi) > 1:
		return nil, fmt.Errorf("%s has several multidrop accounts (%s); choose one with --account NAME", cfg.Path, strings.Join(multi, ", "))
	}
	for _, a := range cfg.Accounts {
		if a.Name == multi[0] {
			return a, nil
		}
	}
	panic("unreachable")
}

// checkRoute prints, for each message file, where account a's multidrop
// routing would send it and why, with the rules a poll uses
// (fetch.RouteRules, deliver.RouteHeader), delivering nothing. snap is
// the account's directory when --connect loaded it. It returns exitFail
// if a file could not be read.
func checkRoute(w io.Writer, a *rcfile.Account, snap *ldapdir.Snapshot, files []string) int {
	rules, _, err := fetch.RouteRules(a, snap)
	if err != nil {
		fmt.Fprintf(w, "%s: error: %s\n", printable(a.Name, 60), printable(err.Error(), 500))
		return exitFail
	}
	code := exitOK
	for i, f := range files {
		if i > 0 {
			fmt.Fprintln(w)
		}
		name := printable(f, 200)
		raw, err := readHeadOf(f)
		if err != nil {
			fmt.Fprintf(w, "%s: error: %s\n", name, printable(err.Error(), 300))
			code = exitFail
			continue
		}
		rt := deliver.RouteHeader(raw, rules)
		fmt.Fprintf(w, "%s: account %s\n", name, printable(a.Name, 60))
		via := rt.Via
		if via == "" {
			via = "(no header named a recipient)"
		}
		fmt.Fprintf(w, "  via: %s\n", printable(via, 100))
		for _, r := range rt.Rcpts {
			fmt.Fprintf(w, "  user %s: address %s -> %s\n", printable(r.User, 100), printable(r.Address, 200), printable(destOf(a, r), 300))
			if line := ruleLine(a, r, raw); line != "" {
				fmt.Fprintf(w, "    %s\n", printable(line, 600))
			}
		}
		for _, u := range rt.Unknown {
			fmt.Fprintf(w, "  unknown: %s\n", printable(u, 200))
		}
		if rt.Loop {
			fmt.Fprintln(w, "  loop: quarantined as a mail loop")
		}
		pm := "postmaster"
		if a.Postmaster != nil {
			pm += " (" + destOf(a, deliver.Recipient{User: "postmaster"}) + ")"
		}
		reason := printable(rt.Reason, 500)
		switch {
		case len(rt.Rcpts) == 0 && a.Postmaster == nil:
			fmt.Fprintf(w, "  no local recipient, and no postmaster: the message stays on the server; reason: %s\n", reason)
		case len(rt.Rcpts) == 0:
			fmt.Fprintf(w, "  %s: gets the message; reason: %s\n", pm, reason)
		case rt.Partial() && a.Postmaster == nil:
			fmt.Fprintf(w, "  partly routed, and no postmaster: the rest is only logged; not routed: %s\n", reason)
		case rt.Partial():
			fmt.Fprintf(w, "  %s: gets a copy; not routed: %s\n", pm, reason)
		}
	}
	return code
}

// readHeadOf reads what routing can look at of the message file path:
// the header, which RouteHeader reads up to deliver.MaxHeaderBytes.
// It opens the file as the postmaster listing does (openListed: no
// symbolic link, no wait for a FIFO's writer) and refuses anything but a
// regular file: a FIFO or a terminal's /dev/stdin would make check wait
// for ever.
func readHeadOf(path string) ([]byte, error) {
	f, err := openListed(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fileKind(fi.Mode()))
	}
	return io.ReadAll(io.LimitReader(f, deliver.MaxHeaderBytes+64<<10))
}

// ruleLine says which filing rule decides where r's copy of the message
// with header raw goes, as a poll evaluates them (the user's own rules,
// then the account's; see package deliver/rules), or "" for none.
func ruleLine(a *rcfile.Account, r deliver.Recipient, raw []byte) string {
	lists := [][]rcfile.Rule{a.Rules}
	if a.Multidrop != nil {
		for _, u := range a.Multidrop.Users {
			if u.Name == r.User {
				lists = [][]rcfile.Rule{u.Rules, a.Rules}
			}
		}
	}
	for _, rs := range lists {
		specs := make([]rules.Spec, len(rs))
		for i, x := range rs {
			specs[i] = x.Spec
		}
		set, err := rules.Compile(specs)
		if err != nil {
			return "rules: error: " + err.Error()
		}
		d, ok := set.Eval(raw)
		if !ok {
			continue
		}
		what := fmt.Sprintf("rule %s (%s: %s): ", d.Rule, d.Field, d.Value)
		switch act := d.Action; act.Kind {
		case rules.Folder:
			return what + "folder " + act.Folder
		case rules.Deliver:
			return what + "deliver to " + destString(rs[d.Index].Deliver, r)
		case rules.Postmaster:
			return what + "to the postmaster, reason: rule " + d.Rule + ": " + act.Reason
		case rules.Discard:
			return what + "discard (logged; counts as delivered)"
		}
	}
	return ""
}

// destOf describes where a's delivery sends recipient r: its user block's
// own target, else the account's deliver block, with the placeholders
// filled in for display.
func destOf(a *rcfile.Account, r deliver.Recipient) string {
	d := &a.Deliver
	if r.User == "postmaster" && a.Postmaster != nil {
		d = a.Postmaster
	}
	if a.Multidrop != nil && r.User != "postmaster" {
		for _, u := range a.Multidrop.Users {
			if u.Name == r.User && u.Deliver != nil {
				d = u.Deliver
			}
		}
	}
	return destString(d, r)
}

// destString describes d with r's placeholders filled in.
func destString(d *rcfile.Destination, r deliver.Recipient) string {
	if d == nil {
		return "?"
	}
	fill := strings.NewReplacer("{user}", r.User, "{domain}", r.Domain, "{address}", r.Address, "{sender}", "SENDER").Replace
	switch {
	case d.Maildir != "" && d.Folder != "":
		return "maildir " + fill(d.Maildir) + " folder " + d.Folder
	case d.Maildir != "":
		return "maildir " + fill(d.Maildir)
	case len(d.MDA) > 0:
		q := make([]string, len(d.MDA))
		for i, s := range d.MDA {
			q[i] = strconv.Quote(fill(s))
		}
		return "mda [" + strings.Join(q, ", ") + "]"
	case d.SMTP != nil && d.SMTP.LMTP:
		return "lmtp " + d.SMTP.Server
	case d.SMTP != nil:
		return "smtp " + d.SMTP.Server
	}
	return "?"
}

// loadRouteDirectory loads a's LDAP directory for --route --connect.
func loadRouteDirectory(ctx context.Context, w io.Writer, p *fetch.Poller, a *rcfile.Account) (*ldapdir.Snapshot, int) {
	if a.Multidrop.LDAP == nil {
		return nil, exitOK
	}
	snap, err := p.CheckDirectory(ctx, a)
	if err != nil {
		fmt.Fprintf(w, "%s: directory %s: error: %s\n", printable(a.Name, 60), printable(a.Multidrop.LDAP.URL, 200), printable(err.Error(), 500))
		return nil, exitFail
	}
	return snap, exitOK
}

// checkRoute is `popfetch check --route [--account NAME] [--connect]
// FILE...`.
func (g *globals) checkRoute(ctx context.Context, cfg *rcfile.Config, name string, connect bool, files []string) int {
	if len(files) == 0 {
		fmt.Fprintf(g.stderr, "popfetch check --route needs message files\n\n%s", usage)
		return exitUsage
	}
	a, err := routeAccount(cfg, name)
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch: %v\n", err)
		return exitUsage
	}
	var snap *ldapdir.Snapshot
	code := exitOK
	switch {
	case a.Multidrop.LDAP != nil && connect:
		p := &fetch.Poller{Log: g.logger(slog.LevelWarn)}
		snap, code = loadRouteDirectory(ctx, g.stdout, p, a)
	case a.Multidrop.LDAP != nil:
		fmt.Fprintf(g.stdout, "# %s: the ldap directory is not loaded (add --connect); only configured users route\n", printable(a.Name, 60))
	}
	return worse(code, checkRoute(g.stdout, a, snap, files))
}

// fileKind names the type of a file that is not a regular one.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}
