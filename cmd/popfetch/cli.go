package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/internal/logsafe"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
)

// Exit codes, documented in popfetch(1). They follow fetchmail where the
// meaning matches (3 = authentication, 5 = bad configuration, 7 = an error
// condition reported by the server).
const (
	exitOK     = 0 // every account polled without error
	exitFail   = 1 // at least one account failed, or a message could not be delivered
	exitUsage  = 2 // bad command line
	exitAuth   = 3 // the server refused the login of at least one account ([AUTH], or -ERR without a code)
	exitConfig = 5 // the rc file is missing, invalid or changeable by another user
	// exitUndeletable: everything was delivered, but the server kept
	// refusing DELE of a delivered message (fetch.Result.Undeletable).
	exitUndeletable = 7
)

// version is set with -ldflags "-X main.version=..."; otherwise it comes
// from the module's build info.
var version = ""

// shortVersion is the version alone: -ldflags's, else the main module's
// version in the build info (a tag, or the pseudo-version go build derives
// from the VCS revision), else "devel". It goes into trace headers.
func shortVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// versionString is what --version prints: the version, then the VCS
// revision, its commit time and whether the tree had local changes, and
// the Go version, all from the build info (go build records the revision
// when it builds inside a git checkout, unless -buildvcs=false).
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "popfetch " + shortVersion() + " (no build information)"
	}
	setting := func(k string) string {
		for _, s := range bi.Settings {
			if s.Key == k {
				return s.Value
			}
		}
		return ""
	}
	var detail []string
	if rev := setting("vcs.revision"); rev != "" {
		d := setting("vcs") + " " + rev
		if t := setting("vcs.time"); t != "" {
			d += " " + t
		}
		if setting("vcs.modified") == "true" {
			d += " with local changes"
		}
		detail = append(detail, d)
	} else {
		detail = append(detail, "no VCS revision: not built in a git checkout, or built with -buildvcs=false")
	}
	detail = append(detail, bi.GoVersion)
	return "popfetch " + shortVersion() + " (" + strings.Join(detail, "; ") + ")"
}

const usage = `popfetch - fetch mail from POP3 mailboxes and deliver it locally

Usage:
  popfetch [global flags] <command> [flags] [account...]

Commands:
  fetch [--shard i/N] [-q|--quiet] [account...]
                           poll the named (default: all) accounts once and exit;
                           --shard: only shard i of N (see popfetch(1));
                           on a terminal a progress line shows on stderr,
                           --quiet turns it off
  check [--connect]        validate the rc file and print the effective settings
                           (passwords masked) and what will fail (Maildirs, MDAs,
                           state directory); --connect also opens the SMTP/LMTP
                           targets, logs in and counts the new messages,
                           fetching nothing
  check --route [--account NAME] FILE...
                           show where multidrop routing would send each message
                           file and why, delivering nothing
  run [--shard i/N]        run as a daemon in the foreground: poll every account
                           (of shard i/N) on its interval, reload the rc file
                           when it changes
  now [--state-dir DIR] [account...]
                           ask the running daemon to poll at once; print results
  status [--state-dir DIR] print the running daemon's status: the last reload,
                           and per account the last poll and last success
  demo                     fetch from a built-in loopback POP3 server into a
                           temporary Maildir, to see popfetch work end to end
  login [--listen ADDR] account
                           sign an OAuth2 account in (device code, or browser
                           with a loopback redirect or a pasted address) and
                           save its tokens; needed once, and again after an
                           authentication hold that says so
  import fetchmailrc [-o FILE [--force]] [FILE]
                           convert a fetchmailrc (default ~/.fetchmailrc) into
                           a popfetch rc file, on stdout or into a new 0600
                           FILE; what cannot be converted is listed on stderr
  postmaster [--account NAME] [--json]
                           list the messages waiting in an account's postmaster
                           Maildir, oldest first, with reason and file
  reroute [--account NAME] [--force] [--learn] --to USER FILE...
                           deliver postmaster messages (files) to a user of a
                           multidrop account through the user's destination,
                           then remove each file; --learn also routes the
                           file's unrouted addresses (or List-Id) to USER
                           from now on
  reroute [--account NAME] --forget ADDRESS
                           remove a learned route (ADDRESS or list-id:ID)

Global flags:
  -f, --config FILE        rc file (default: $POPFETCH_CONFIG, then
                           ~/.config/popfetch/popfetch.hcl (or under
                           $XDG_CONFIG_HOME), then /etc/popfetch/popfetch.hcl)
  -v, --verbose            debug logging
      --log-format FMT     text (default) or json, on stderr
      --version            print the version and exit
  -h, --help               this help
Flags may come before or after the account names; after -- every argument
is an account name.

Exit status:
  0  success            1  an account failed or a message was not delivered
  2  usage error        3  login refused              5  rc file invalid or unsafe
  7  the server keeps refusing to delete a delivered message
  75 reroute: a delivery failed for now; try again later

See popfetch(1) and popfetch.hcl(5).
`

type globals struct {
	config    string
	verbose   bool
	logFormat string
	stdout    io.Writer
	stderr    io.Writer
	version   bool // --version, at the top or after a subcommand
	helped    bool // a subcommand's -h/--help or --version printed what was asked
	// isTerminal says whether a writer is a terminal (tests force it);
	// nil is the real check.
	isTerminal func(io.Writer) bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr, logFormat: "text"}
	fs := flag.NewFlagSet("popfetch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "popfetch: %v\n\n%s", err, usage)
		return exitUsage
	}
	if g.version {
		fmt.Fprintln(stdout, versionString())
		return exitOK
	}
	rest := fs.Args()
	if *help || len(rest) == 0 {
		if len(rest) == 0 && !*help {
			fmt.Fprint(stderr, usage)
			return exitUsage
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	deliver.Version = shortVersion()
	code := g.command(ctx, rest[0], rest[1:])
	if g.helped {
		// "popfetch fetch --help" asked for the usage and got it.
		return exitOK
	}
	return code
}

func (g *globals) command(ctx context.Context, cmd string, cargs []string) int {
	stdout, stderr := g.stdout, g.stderr
	switch cmd {
	case "fetch":
		return g.fetch(ctx, cargs)
	case "check":
		return g.check(ctx, cargs)
	case "run":
		return g.daemon(ctx, cargs)
	case "now":
		return g.now(ctx, cargs)
	case "status":
		return g.status(ctx, cargs)
	case "demo":
		return g.demo(ctx, cargs)
	case "login":
		return g.login(ctx, cargs)
	case "import":
		return g.importCmd(ctx, cargs)
	case "reroute":
		return g.reroute(ctx, cargs)
	case "postmaster":
		return g.postmaster(ctx, cargs)
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "popfetch: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// register adds the global flags to fs. Every subcommand's flag set has
// them too, so "popfetch fetch --config F" works as well as
// "popfetch --config F fetch".
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "config", g.config, "")
	fs.StringVar(&g.config, "f", g.config, "")
	fs.BoolVar(&g.verbose, "verbose", g.verbose, "")
	fs.BoolVar(&g.verbose, "v", g.verbose, "")
	fs.StringVar(&g.logFormat, "log-format", g.logFormat, "")
	fs.BoolVar(&g.version, "version", g.version, "")
}

// flags returns a subcommand's flag set with the global flags; parse it
// with g.parse.
func (g *globals) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	return fs
}

// parse parses a subcommand's arguments, reporting errors with the usage.
// Flags may come after the account names too ("popfetch fetch isp -v"):
// package flag stops at the first argument that is not a flag, so the
// flags are moved first; "--" still ends the flags.
func (g *globals) parse(fs *flag.FlagSet, args []string) bool {
	if err := fs.Parse(flagsFirst(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(g.stdout, usage)
			g.helped = true
		} else {
			fmt.Fprintf(g.stderr, "popfetch %s: %v\n\n%s", fs.Name(), err, usage)
		}
		return false
	}
	if g.version {
		// "popfetch fetch --version": the version, as at the top.
		fmt.Fprintln(g.stdout, versionString())
		g.helped = true
		return false
	}
	if g.logFormat != "text" && g.logFormat != "json" {
		fmt.Fprintf(g.stderr, "popfetch: --log-format must be text or json, not %q\n", g.logFormat)
		return false
	}
	return true
}

// flagsFirst returns args with every flag (and the value of a flag that
// takes one, "-f FILE") before the other arguments, which follow a "--"
// so that none of them is read as a flag. Arguments after a "--" in args
// are never flags.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBoolFlag(f) {
			if i+1 == len(args) {
				// Its value is missing: flag says so, as it
				// would of the flag last on the line.
				return flags
			}
			i++
			flags = append(flags, args[i])
		}
	}
	return append(append(flags, "--"), rest...)
}

// isBoolFlag reports whether f takes no value, as package flag decides.
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// parseNoArgs is parse for a command that takes flags only.
func (g *globals) parseNoArgs(fs *flag.FlagSet, args []string) bool {
	if !g.parse(fs, args) {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(g.stderr, "popfetch %s takes no arguments\n", fs.Name())
		return false
	}
	return true
}

// logger builds the process's one slog handler; nothing else picks one.
func (g *globals) logger(level slog.Level) *slog.Logger {
	if g.verbose {
		level = slog.LevelDebug
	}
	o := &slog.HandlerOptions{Level: level}
	if g.logFormat == "json" {
		// Durations as float seconds; a text log keeps the human unit.
		o.ReplaceAttr = logsafe.Seconds
		return slog.New(slog.NewJSONHandler(g.stderr, o))
	}
	return slog.New(slog.NewTextHandler(g.stderr, o))
}

// load finds and loads the rc file, printing every diagnostic. ok is false
// when there are errors.
func (g *globals) load() (*rcfile.Config, string, bool) {
	return g.loadRC(nil)
}

// loadOneShot is load for a command that does not run the daemon's
// schedule (fetch, login, postmaster, reroute): warnings about the
// schedule (rcfile.ShortIntervalWarning) do not concern it.
func (g *globals) loadOneShot() (*rcfile.Config, string, bool) {
	return g.loadRC(func(d *hcl.Diagnostic) bool { return d.Summary != rcfile.ShortIntervalWarning })
}

// loadRC is load; a warning is printed only if show (nil: all) says so.
func (g *globals) loadRC(show func(*hcl.Diagnostic) bool) (*rcfile.Config, string, bool) {
	path, err := rcfile.Find(g.config)
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch: %v\n", err)
		return nil, "", false
	}
	cfg, diags := rcfile.Load(path)
	shown := diags
	if show != nil {
		shown = nil
		for _, d := range diags {
			if d.Severity == hcl.DiagError || show(d) {
				shown = append(shown, d)
			}
		}
	}
	if len(shown) > 0 {
		rcfile.WriteDiagnostics(g.stderr, shown, rcfile.SourceFiles(shown))
	}
	if diags.HasErrors() {
		return nil, path, false
	}
	return cfg, path, true
}

// selectAccounts returns the accounts named (all when names is empty).
// selectAccounts selects as the function of that name does and says an
// unknown name on stderr; the command then exits with exitUsage.
func (g *globals) selectAccounts(cfg *rcfile.Config, names []string) ([]*rcfile.Account, bool) {
	accts, err := selectAccounts(cfg, names)
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch: %v\n", err)
		return nil, false
	}
	return accts, true
}

func selectAccounts(cfg *rcfile.Config, names []string) ([]*rcfile.Account, error) {
	if len(names) == 0 {
		return cfg.Accounts, nil
	}
	var out []*rcfile.Account
	for _, n := range names {
		i := slices.IndexFunc(cfg.Accounts, func(a *rcfile.Account) bool { return a.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("no account %q in %s", n, cfg.Path)
		}
		out = append(out, cfg.Accounts[i])
	}
	return out, nil
}

func (g *globals) fetch(ctx context.Context, args []string) int {
	fs := g.flags("fetch")
	shard := registerShard(fs)
	quiet := fs.Bool("quiet", false, "")
	fs.BoolVar(quiet, "q", false, "")
	if !g.parse(fs, args) {
		return exitUsage
	}
	cfg, _, ok := g.loadOneShot()
	if !ok {
		return exitConfig
	}
	accts, ok := g.selectAccounts(cfg, fs.Args())
	if !ok {
		return exitUsage
	}
	if accts, ok = g.shardAccounts(shard, cfg, accts, fs.NArg() > 0); !ok {
		return exitUsage
	}
	var progress fetch.PollProgress
	if prog := g.progress(*quiet); prog != nil {
		progress = prog
		defer prog.close()
		stdout, stderr := g.stdout, g.stderr
		g.stdout, g.stderr = prog.writer(stdout), prog.writer(stderr)
		defer func() { g.stdout, g.stderr = stdout, stderr }()
	}
	ctx, graceful, stop := signalContext(ctx, g.stderr)
	defer stop()
	// The summary line is each poll's outcome: no "poll done" log line
	// to say it again.
	p := &fetch.Poller{Log: g.logger(slog.LevelWarn), NoPollLog: true}
	code := exitOK
	for i, a := range accts {
		if stopped(graceful) || ctx.Err() != nil {
			// A stop ends the run at the next account: polling the rest
			// only to log in, list and QUIT would be sessions for
			// nothing. Their mail waits for the next run.
			var names []string
			for _, b := range accts[i:] {
				names = append(names, b.Name)
			}
			fmt.Fprintf(g.stderr, "popfetch: stopped; not polled: %s\n", strings.Join(names, ", "))
			break
		}
		res := p.PollWith(ctx, a, fetch.PollOptions{Stop: graceful, Progress: progress})
		fmt.Fprintln(g.stdout, summary(res))
		code = worse(code, exitCodeFor(res))
	}
	if ctx.Err() != nil {
		code = worse(code, exitFail)
	}
	return code
}

// progress starts the progress display of `popfetch fetch` on stderr; nil
// when stderr is not a terminal or the display was turned off (--quiet).
func (g *globals) progress(quiet bool) *progressLine {
	is := g.isTerminal
	if is == nil {
		is = isTerminal
	}
	if quiet || !is(g.stderr) {
		return nil
	}
	w := g.stderr
	p := newProgressLine(w, time.Now, func() int { return terminalWidth(w) })
	p.run()
	return p
}

// stopped reports whether the graceful stop of signalContext was asked.
func stopped(graceful <-chan struct{}) bool {
	select {
	case <-graceful:
		return true
	default:
		return false
	}
}

// signalContext makes the first SIGINT/SIGTERM a graceful stop (finish the
// message in flight, then QUIT) and the second an abort (close without QUIT,
// which deletes nothing that is not recorded). The graceful stop is the
// returned channel (fetch.PollOptions.Stop), the abort the context.
func signalContext(parent context.Context, stderr io.Writer) (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(parent)
	stopCh := make(chan struct{})
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		n := 0
		for {
			select {
			case <-sig:
				n++
				if n == 1 {
					fmt.Fprintln(stderr, "popfetch: stopping after the message in flight (signal again to abort)")
					close(stopCh)
				} else {
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, stopCh, func() { signal.Stop(sig); cancel() }
}

func summary(r fetch.Result) string {
	return summaryLine(fetch.Summarize(r))
}

func summaryLine(r fetch.PollSummary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d new, %d delivered, %d deleted", r.Account, r.New, r.Delivered, r.Deleted)
	if r.Skipped > 0 {
		fmt.Fprintf(&b, ", %d left on server", r.Skipped)
	}
	if r.Failed > 0 {
		fmt.Fprintf(&b, ", %d failed", r.Failed)
	}
	if r.Undeletable > 0 {
		fmt.Fprintf(&b, ", %d the server refuses to delete", r.Undeletable)
	}
	fmt.Fprintf(&b, " (%s)", r.Elapsed.Round(time.Millisecond))
	if r.NotStarted {
		b.WriteString("; stopped before connecting")
	}
	if r.Err != "" {
		fmt.Fprintf(&b, "; error: %s", errText(r.Account, r.Err))
	}
	return b.String()
}

// errText is an account's error for a line that starts with the account's
// name: without the "account NAME: " the error itself starts with, and
// safe for a terminal (termSafe). An error quotes what servers sent and
// what certificates say; the packages that build it escape that text, and
// this is the second layer: no control character of any error reaches the
// summary or check line.
func errText(account, err string) string {
	return termSafe(strings.TrimPrefix(err, "account "+account+": "), 4000)
}

func exitCodeFor(r fetch.Result) int {
	if errors.Is(r.Err, rcfile.ErrInsecureFile) || errors.Is(r.Err, trust.ErrUntrustedFile) {
		// A password_file that became readable by others (or an
		// aliases_file or password_file that became writable by them)
		// after the rc file was loaded: the same configuration error
		// Load reports.
		return exitConfig
	}
	return exitCodeForSummary(fetch.Summarize(r))
}

func exitCodeForSummary(r fetch.PollSummary) int {
	switch {
	case r.AuthFailed:
		return exitAuth
	case r.Err != "" || r.Failed > 0:
		return exitFail
	case r.Undeletable > 0:
		return exitUndeletable
	}
	return exitOK
}

// worse orders exit codes by severity: config > auth > fail > tempfail >
// undeletable > ok. A message that was not delivered weighs more than one delivered
// that the server will not delete.
func worse(a, b int) int {
	rank := func(c int) int {
		switch c {
		case exitConfig:
			return 5
		case exitAuth:
			return 4
		case exitFail:
			return 3
		case exitTempFail:
			return 2
		case exitUndeletable:
			return 1
		case exitOK:
			return 0
		}
		return 1
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

func (g *globals) check(ctx context.Context, args []string) int {
	fs := g.flags("check")
	connect := fs.Bool("connect", false, "log in and count new messages")
	route := fs.Bool("route", false, "show where multidrop routing sends each message file")
	routeAcct := fs.String("account", "", "the multidrop account --route routes with")
	if !g.parse(fs, args) {
		return exitUsage
	}
	cfg, path, ok := g.load()
	if !ok {
		return exitConfig
	}
	if *route {
		return g.checkRoute(ctx, cfg, *routeAcct, *connect, fs.Args())
	}
	accts, ok := g.selectAccounts(cfg, fs.Args())
	if !ok {
		return exitUsage
	}
	fmt.Fprintf(g.stdout, "# %s: ok\n", rcfile.QuotePath(path))
	cfg.Format(g.stdout)
	if !printLearned(g.stdout, cfg) {
		return exitConfig
	}
	code := printFindings(g.stdout, checkFiles(accts, nil))
	if !*connect {
		return code
	}
	p := &fetch.Poller{Log: g.logger(slog.LevelWarn), NoPollLog: true}
	for _, a := range accts {
		code = worse(code, checkSMTPTargets(ctx, g.stdout, a))
		code = worse(code, checkDirectory(ctx, g.stdout, p, a))
		res := p.Check(ctx, a)
		if res.Err != nil {
			fmt.Fprintf(g.stdout, "%s: error: %s\n", a.Name, errText(a.Name, res.Err.Error()))
		} else {
			fmt.Fprintf(g.stdout, "%s: logged in with %s; %d messages on the server, %d new\n", a.Name, res.Mechanism, res.Messages, res.New)
		}
		code = worse(code, exitCodeFor(res))
	}
	return code
}
