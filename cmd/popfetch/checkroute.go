package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/filter"
	"github.com/popfetch/popfetch/deliver/ldapdir"
	"github.com/popfetch/popfetch/deliver/rules"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// routeAccount picks the account `check --route` routes with: the one
// named (multidrop or single-drop), else the only multidrop account, else
// the only account.
func routeAccount(cfg *rcfile.Config, name string) (*rcfile.Account, error) {
	var multi []string
	for _, a := range cfg.Accounts {
		if name != "" && a.Name == name {
			return a, nil
		}
		if a.Multidrop != nil {
			multi = append(multi, a.Name)
		}
	}
	switch {
	case name != "":
		return nil, fmt.Errorf("no account %q in %s", name, cfg.Path)
	case len(multi) == 0 && len(cfg.Accounts) == 1:
		return cfg.Accounts[0], nil
	case len(multi) == 0:
		return nil, fmt.Errorf("%s has no multidrop account; choose a single-drop account with --account NAME", cfg.Path)
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
// (fetch.RouteRules, deliver.RouteHeader), the trusted Received field,
// and, when a has filters, their verdicts on the file (fetch.CheckFilters:
// the poll's envelope and chain) before the filing rules read the
// filtered header. It delivers and records nothing: the filtered copies'
// spools go to a private temporary directory removed on return. snap is
// the account's directory when --connect loaded it. It returns exitFail
// if a file could not be read. A single-drop account has no routing:
// checkSingleFile shows its filters and filing rules.
func checkRoute(ctx context.Context, w io.Writer, a *rcfile.Account, snap *ldapdir.Snapshot, files []string) int {
	var rules *deliver.Rules
	var err error
	if a.Multidrop != nil {
		if rules, _, err = fetch.RouteRules(a, snap); err != nil {
			fmt.Fprintf(w, "%s: error: %s\n", printable(a.Name, 60), printable(err.Error(), 500))
			return exitFail
		}
	}
	spool := ""
	if len(a.Filters) > 0 {
		if spool, err = os.MkdirTemp("", "popfetch-check-"); err != nil {
			fmt.Fprintf(w, "%s: error: %s\n", printable(a.Name, 60), printable(err.Error(), 500))
			return exitFail
		}
		defer os.RemoveAll(spool)
	}
	code := exitOK
	for i, f := range files {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if a.Multidrop == nil {
			code = worse(code, checkSingleFile(ctx, w, a, spool, f))
			continue
		}
		code = worse(code, checkRouteFile(ctx, w, a, rules, spool, f))
	}
	return code
}

// checkSingleFile is checkRoute for one message file of a single-drop
// account, which has no routing: the filters are told the poll's
// envelope (one RCPT TO, fetch.SingleDropRcpt), and the account's filing
// rules then decide on the filtered header whether the message goes to
// the deliver block or where a rule sends it.
func checkSingleFile(ctx context.Context, w io.Writer, a *rcfile.Account, spool, f string) int {
	name := printable(f, 200)
	raw, err := readHeadOf(f)
	if err != nil {
		fmt.Fprintf(w, "%s: error: %s\n", name, printable(err.Error(), 300))
		return exitFail
	}
	fmt.Fprintf(w, "%s: account %s (single-drop)\n", name, printable(a.Name, 60))
	fmt.Fprintf(w, "  received: %s\n", printable(receivedLine(a, raw), 600))
	// The placeholders an mda may use stay as written: the poll fills
	// {user} with the user popfetch runs as, not known here.
	r := deliver.Recipient{User: "{user}", Domain: "{domain}", Address: fetch.SingleDropRcpt(a)}
	head := raw
	if len(a.Filters) > 0 {
		fh, decided, err := checkFilters(ctx, w, a, []deliver.Recipient{r}, spool, f)
		if err != nil {
			fmt.Fprintf(w, "  filters: error: %s\n", printable(err.Error(), 500))
			return exitFail
		}
		if decided != "" {
			fmt.Fprintf(w, "  %s\n", decided)
			return exitOK
		}
		if fh != nil {
			head = fh
		}
	}
	fmt.Fprintf(w, "  deliver: %s\n", printable(destString(&a.Deliver, r), 300))
	if line := ruleLine(a, r, head); line != "" {
		fmt.Fprintf(w, "    %s\n", printable(line, 600))
	}
	return exitOK
}

// checkRouteFile is checkRoute for one message file.
func checkRouteFile(ctx context.Context, w io.Writer, a *rcfile.Account, rules *deliver.Rules, spool, f string) int {
	name := printable(f, 200)
	raw, err := readHeadOf(f)
	if err != nil {
		fmt.Fprintf(w, "%s: error: %s\n", name, printable(err.Error(), 300))
		return exitFail
	}
	rt := deliver.RouteHeader(raw, rules)
	fmt.Fprintf(w, "%s: account %s\n", name, printable(a.Name, 60))
	via := rt.Via
	if via == "" {
		via = "(no header named a recipient)"
	}
	fmt.Fprintf(w, "  via: %s\n", printable(via, 100))
	fmt.Fprintf(w, "  received: %s\n", printable(receivedLine(a, raw), 600))
	// The filters run as in the poll: only for a message routed to some
	// user (one with no local recipient goes to the postmaster as
	// fetched), with each routed user as a recipient.
	head := raw
	filtered := ""
	switch {
	case len(a.Filters) == 0:
	case len(rt.Rcpts) == 0:
		fmt.Fprintln(w, "  filters: not asked (no routed user: the message goes to the postmaster as fetched)")
	default:
		var fh []byte
		fh, filtered, err = checkFilters(ctx, w, a, rt.Rcpts, spool, f)
		if err != nil {
			fmt.Fprintf(w, "  filters: error: %s\n", printable(err.Error(), 500))
			return exitFail
		}
		if fh != nil {
			head = fh
		}
	}
	for _, r := range rt.Rcpts {
		fmt.Fprintf(w, "  user %s: address %s -> %s\n", printable(r.User, 100), printable(r.Address, 200), printable(destOf(a, r), 300))
		if filtered != "" {
			continue
		}
		if line := ruleLine(a, r, head); line != "" {
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
	case filtered != "":
		// The filters decided for the whole message: no user gets a
		// copy of it from this poll.
		fmt.Fprintf(w, "  %s\n", filtered)
	case len(rt.Rcpts) == 0 && a.Postmaster == nil:
		fmt.Fprintf(w, "  no local recipient, and no postmaster: the message stays on the server; reason: %s\n", reason)
	case len(rt.Rcpts) == 0:
		fmt.Fprintf(w, "  %s: gets the message; reason: %s\n", pm, reason)
	case rt.Partial() && a.Postmaster == nil:
		fmt.Fprintf(w, "  partly routed, and no postmaster: the rest is only logged; not routed: %s\n", reason)
	case rt.Partial():
		fmt.Fprintf(w, "  %s: gets a copy; not routed: %s\n", pm, reason)
	}
	return exitOK
}

// receivedLine describes the trusted Received field of the message with
// header head: the client a's filters are told (fetch.TrustedClient).
func receivedLine(a *rcfile.Account, head []byte) string {
	rc, err := fetch.TrustedClient(a, head)
	if err != nil && len(a.Filters) > 0 {
		return "none trusted (" + err.Error() + "); the filters are told no client address"
	}
	if err != nil {
		return "none trusted (" + err.Error() + ")"
	}
	or := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	ip := "unknown"
	if rc.ClientIP.IsValid() {
		ip = rc.ClientIP.String()
	}
	return fmt.Sprintf("field %d by %s: client %s, name %s, helo %s", rc.Index, or(rc.By), ip, or(rc.ClientName), or(rc.Helo))
}

// checkFilters runs a's filters on the message file f as a poll
// delivering it to rcpts would, and prints the envelope and each
// filter's verdict, reply and header changes. head is the header of the
// copy the filing rules would read; decided is the line that says what
// happens to the message when the filters decided it (reject, discard,
// tempfail), "" when it goes on to the filing rules.
func checkFilters(ctx context.Context, w io.Writer, a *rcfile.Account, rcpts []deliver.Recipient, spool, f string) (head []byte, decided string, err error) {
	m, err := loadMessage(a, f, spool)
	if err != nil {
		return nil, "", err
	}
	defer m.Close()
	addrs := make([]string, len(rcpts))
	for i, r := range rcpts {
		addrs[i] = r.Address
	}
	fmt.Fprintf(w, "  filters: MAIL FROM <%s>", printable(deliver.ReturnPath(m.Head()), 200))
	for _, r := range addrs {
		fmt.Fprintf(w, ", RCPT TO <%s>", printable(r, 200))
	}
	fmt.Fprintln(w)
	fc, err := fetch.CheckFilters(ctx, a, m, addrs, spool, nil)
	if err != nil || fc == nil {
		return nil, "", err
	}
	defer fc.Close()
	if fc.Message != nil {
		head = bytes.Clone(fc.Message.Head())
	}
	for _, v := range fc.Verdicts {
		printVerdict(w, a, v)
	}
	switch {
	case fc.TempFail != nil:
		return nil, "tempfail: the message stays on the server and is tried again at the next poll: " + printable(fc.TempFail.Error(), 500), nil
	case fc.Rejected != "" && fc.Delete:
		return head, "deleted without a copy (on_reject = \"delete\"): " + printable(fc.Rejected, 500), nil
	case fc.Rejected != "" && a.Postmaster == nil:
		return head, "no postmaster: the message stays on the server; reason: " + printable(fc.Rejected, 500), nil
	case fc.Rejected != "":
		return head, "postmaster (" + printable(destOf(a, deliver.Recipient{User: "postmaster"}), 300) + "): gets the message; X-Popfetch-Reason: " + printable(fc.Rejected, 500), nil
	}
	return head, "", nil
}

// printVerdict prints one filter's verdict and header changes.
func printVerdict(w io.Writer, a *rcfile.Account, v filter.Verdict) {
	line := v.Action.String()
	if v.Unavailable {
		policy := "tempfail"
		for _, f := range a.Filters {
			if f.Name == v.Filter && f.OnUnavailable == rcfile.OnUnavailableAccept {
				policy = "accept"
			}
		}
		line += fmt.Sprintf(" (unavailable; on_unavailable = %q)", policy)
	}
	if v.Reply != "" {
		line += ": " + v.Reply
	}
	if v.Quarantine != "" {
		line += "; quarantine: " + v.Quarantine
	}
	fmt.Fprintf(w, "  filter %s: %s\n", printable(v.Filter, 60), printable(line, 500))
	for _, c := range v.Changes {
		var s string
		switch c.Kind {
		case filter.AddHeader:
			s = fmt.Sprintf("add %s: %s", c.Name, c.Value)
		case filter.InsertHeader:
			s = fmt.Sprintf("insert at %d %s: %s", c.Index, c.Name, c.Value)
		case filter.ChangeHeader:
			s = fmt.Sprintf("change %s #%d: %s", c.Name, c.Index, c.Value)
		case filter.RemoveHeader:
			s = fmt.Sprintf("remove %s #%d", c.Name, c.Index)
		}
		fmt.Fprintf(w, "    %s\n", printable(s, 500))
	}
	if v.Body != nil {
		fmt.Fprintln(w, "    body replaced")
	}
	if v.Message != nil {
		fmt.Fprintln(w, "    message replaced")
	}
	if v.Ignored > 0 {
		fmt.Fprintf(w, "    %d envelope changes ignored\n", v.Ignored)
	}
}

// loadMessage reads the message file path (a regular file, opened as
// readHeadOf does) into a spool in dir, as a poll holds a fetched message.
func loadMessage(a *rcfile.Account, path, dir string) (*deliver.Message, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sp := deliver.NewSpool(dir, 0)
	if _, err := io.Copy(sp, f); err != nil {
		sp.Close()
		return nil, err
	}
	if err := sp.Flush(); err != nil {
		sp.Close()
		return nil, err
	}
	return &deliver.Message{Account: a.Name, Server: a.Server, User: a.Username, Fetched: time.Now(), Spool: sp}, nil
}

// readHeadOf reads what routing can look at of the message file path:
// the header, which RouteHeader reads up to deliver.MaxHeaderBytes.
// It opens the file as the postmaster listing does (openListed: no
// symbolic link, no wait for a FIFO's writer) and refuses anything but a
// regular file: a FIFO or a terminal's /dev/stdin would make check wait
// for ever.
func readHeadOf(path string) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, deliver.MaxHeaderBytes+64<<10))
}

// openRegular opens the message file path as openListed does and refuses
// anything but a regular file.
func openRegular(path string) (*os.File, error) {
	f, err := openListed(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("not a regular file (%s)", fileKind(fi.Mode()))
	}
	return f, nil
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
	case a.Multidrop == nil:
	case a.Multidrop.LDAP != nil && connect:
		p := &fetch.Poller{Log: g.logger(slog.LevelWarn)}
		snap, code = loadRouteDirectory(ctx, g.stdout, p, a)
	case a.Multidrop.LDAP != nil:
		fmt.Fprintf(g.stdout, "# %s: the ldap directory is not loaded (add --connect); only configured users route\n", printable(a.Name, 60))
	}
	return worse(code, checkRoute(ctx, g.stdout, a, snap, files))
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
