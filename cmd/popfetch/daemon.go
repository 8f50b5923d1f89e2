package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/alert"
	"github.com/popfetch/popfetch/fetch/daemon"
	"github.com/popfetch/popfetch/fetch/daemon/metrics"
	"github.com/popfetch/popfetch/internal/sdnotify"
	"github.com/popfetch/popfetch/rcfile"
)

// daemon is `popfetch run`: the scheduler in the foreground, the control
// socket for now/status, and the rc file watched for changes.
func (g *globals) daemon(ctx context.Context, args []string) int {
	fs := g.flags("run")
	shard := registerShard(fs)
	if !g.parseNoArgs(fs, args) {
		return exitUsage
	}
	log := g.logger(slog.LevelInfo)
	// The rc file's identity before it is read: the watch starts later on
	// its own goroutine, and an edit made in between must still reload.
	var since rcfile.Identity
	if p, err := rcfile.Find(g.config); err == nil {
		since = rcfile.Identify(p)
	}
	cfg, path, ok := g.loadForRun(log)
	if !ok {
		return exitConfig
	}
	applyShard, ok := g.applyShard(shard, cfg)
	if !ok {
		return exitUsage
	}
	// The daemon logs each poll's outcome itself (idle polls at Debug,
	// an error once per change), not the session.
	p := &fetch.Poller{Log: log, NoPollLog: true}
	// The metrics count each poll's Result as the PollFunc returns it;
	// they read everything else from the daemon's Status at scrape time.
	var mx *metrics.Metrics
	poll := func(ctx context.Context, a *rcfile.Account, opts fetch.PollOptions) fetch.Result {
		r := p.PollWith(ctx, a, opts)
		mx.Observe(r)
		return r
	}
	// Alerts are sent from their own goroutine (alerts.Run, started once
	// the control socket proves this is the only daemon on the state
	// directory); the scheduler only feeds them.
	alerts := alert.New(alert.Options{StateDir: cfg.StateDir, Log: log})
	d := daemon.New(cfg, poll, daemon.Options{Log: log, Alerts: alerts})
	mx = metrics.New(d, shortVersion())
	p.Deliveries = mx.InFlight()
	// The control socket first: a second daemon on the same state fails
	// here, before it polls anything.
	ctl, err := daemon.ListenControl(daemon.ControlPath(cfg.StateDir), log)
	if err != nil {
		log.Error("control socket", "err", err)
		return exitFail
	}
	msrv := metrics.NewServer(mx.Handler(), log)
	defer msrv.Close()
	if err := msrv.Set(cfg.MetricsListen); err != nil {
		log.Error("metrics", "err", err)
		done, cancel := context.WithCancel(ctx)
		cancel()
		ctl.Serve(done, d) // releases the control socket and its lock
		return exitFail
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	sd, err := sdnotify.New()
	if err != nil {
		log.Warn("systemd notification", "err", err)
	}
	var ready atomic.Bool
	var stopping sync.Once
	notifyStopping := func() { stopping.Do(func() { sdNotify(log, "STOPPING=1", sd.Stopping) }) }

	// SIGHUP and the file watcher reload on different goroutines. Load
	// and apply happen under one lock, so the config applied last is
	// always the one read last: an older read cannot overwrite a newer.
	var reloadMu sync.Mutex
	reload := func(why string) {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		if ready.Load() { // a reload before READY=1 is part of the start
			sdNotify(log, "RELOADING=1", sd.Reloading)
			defer sdNotify(log, "READY=1", sd.Ready) // after a rejected file too: the old one still runs
		}
		c, diags := rcfile.Load(path)
		logDiagnostics(log, path, diags)
		if diags.HasErrors() {
			log.Error("rc file has errors; the running configuration stays in effect", "path", path, "trigger", why)
			mx.Reloaded(false, time.Now())
			d.RecordReload(time.Now(), false, reloadErrors(diags))
			return
		}
		applyShard(c) // --shard and the environment win over the file
		if err := d.Reload(c); err != nil {
			log.Error("rc file not applied; the running configuration stays in effect", "path", path, "trigger", why, "err", err)
			mx.Reloaded(false, time.Now())
			d.RecordReload(time.Now(), false, []string{err.Error()})
			return
		}
		// What the Poller keeps for accounts the reload removed or
		// renamed (token sources, directory copies) goes.
		p.Retain(c.Accounts)
		mx.Reloaded(true, time.Now())
		d.RecordReload(time.Now(), true, nil)
		// A changed metrics_listen moves the listener; one that cannot
		// be bound leaves metrics off until a reload fixes it, and does
		// not stop the polls.
		if err := msrv.Set(c.MetricsListen); err != nil {
			log.Error("metrics not served", "err", err)
		}
		log.Info("rc file reloaded", "path", path, "trigger", why, "accounts", len(c.Accounts), "generation", d.Status().Generation)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		terms := 0
		for {
			var s os.Signal
			select {
			case s = <-sigs:
			case <-finished:
				return
			}
			switch s {
			case syscall.SIGHUP:
				reload("SIGHUP")
				// The rc file only names a password's source; after
				// fixing the file, variable or command the operator's
				// SIGHUP is the signal to try held accounts again.
				if n := d.LiftAuthHolds(); n > 0 {
					log.Info("SIGHUP: authentication holds lifted", "accounts", n)
				}
			case syscall.SIGUSR1:
				log.Info("SIGUSR1: polling every account now")
				go d.PollNow(ctx, nil)
			default:
				// First SIGTERM/SIGINT: finish the messages in flight and
				// QUIT. Second: drop the sessions without QUIT, which
				// deletes nothing that is not recorded.
				if terms++; terms == 1 {
					log.Info("stopping after the messages in flight; signal again to abort", "signal", s.String())
					stop()
				} else {
					log.Warn("aborting sessions without QUIT", "signal", s.String())
					d.Abort()
				}
			}
		}
	}()
	go func() {
		if err := rcfile.WatchSince(ctx, path, since, 300*time.Millisecond, func() { reload("file changed") }); err != nil {
			log.Warn("not watching the rc file for changes; use SIGHUP to reload", "path", path, "err", err)
		}
	}()
	served := make(chan error, 1)
	go func() { served <- ctl.Serve(ctx, d) }()
	alertsDone := make(chan struct{})
	go func() {
		defer close(alertsDone)
		alerts.Run(ctx)
	}()
	log.Info("popfetch daemon started", "version", versionString(), "config", path, "accounts", len(cfg.Accounts),
		"shard", cfg.Shard.String(), "shard_accounts", len(cfg.Shard.Owned(cfg.Accounts)), "control", daemon.ControlPath(cfg.StateDir))
	go func() {
		// READY=1 once the scheduler's loop answers: the rc file is
		// loaded and the control socket listens already.
		if d.Alive(ctx) {
			reloadMu.Lock() // not between a reload's RELOADING=1 and READY=1
			ready.Store(true)
			sdNotify(log, "READY=1", sd.Ready)
			reloadMu.Unlock()
		}
		go sd.Watch(ctx, d.Alive) // WATCHDOG=1 only while the loop answers
		<-ctx.Done()              // a stop begins: say so while the polls in flight finish
		notifyStopping()
	}()
	err = d.Run(ctx)
	stop()
	notifyStopping()
	// The Alerter writes what changed since its last write of
	// alerts.json when it stops; a stop must not cut that short (a raise
	// would be sent again, a queued notice lost). Its sends end with ctx.
	select {
	case <-alertsDone:
	case <-time.After(10 * time.Second):
		log.Warn("alerts: state not saved within 10s of the stop")
	}
	if cerr := <-served; cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		log.Error("daemon", "err", err)
		return exitFail
	}
	log.Info("popfetch daemon stopped")
	return exitOK
}

// loadForRun is load for `popfetch run`. With --log-format json the
// diagnostics are log records like every other line the daemon writes
// (one JSON object per line, for log collectors), not source snippets.
func (g *globals) loadForRun(log *slog.Logger) (*rcfile.Config, string, bool) {
	if g.logFormat != "json" {
		return g.load()
	}
	path, err := rcfile.Find(g.config)
	if err != nil {
		log.Error("no rc file", "err", err)
		return nil, "", false
	}
	cfg, diags := rcfile.Load(path)
	logDiagnostics(log, path, diags)
	if diags.HasErrors() {
		log.Error("rc file has errors", "path", path)
		return nil, path, false
	}
	return cfg, path, true
}

// logDiagnostics logs one line per diagnostic, with its file:line:col.
func logDiagnostics(log *slog.Logger, path string, diags hcl.Diagnostics) {
	for _, x := range diags {
		lvl := slog.LevelWarn
		if x.Severity == hcl.DiagError {
			lvl = slog.LevelError
		}
		log.Log(context.Background(), lvl, "rc file", "path", path, "diag", rcfile.FormatDiagnostic(x))
	}
}

// controlPath finds the running daemon's socket from the rc file's
// state_dir. It does not need the rest of the file to be valid: while the
// daemon keeps running on its last good configuration, the file may be
// broken, and that is when an operator asks for status.
// A --state-dir (stateDir not empty) names the directory itself, and the
// rc file is not read at all: it may have been moved or lost.
func (g *globals) controlPath(stateDir string) (string, bool) {
	if stateDir != "" {
		dir, err := filepath.Abs(stateDir)
		if err != nil {
			fmt.Fprintf(g.stderr, "popfetch: --state-dir: %v\n", err)
			return "", false
		}
		return daemon.ControlPath(dir), true
	}
	path, err := rcfile.Find(g.config)
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch: %v\n", err)
		return "", false
	}
	dir, err := rcfile.StateDirOf(path)
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch: %v\n", err)
		return "", false
	}
	return daemon.ControlPath(dir), true
}

// now is `popfetch now`: ask the daemon to poll at once and wait.
func (g *globals) now(ctx context.Context, args []string) int {
	fs := g.flags("now")
	stateDir := fs.String("state-dir", "", "")
	if !g.parse(fs, args) {
		return exitUsage
	}
	sock, ok := g.controlPath(*stateDir)
	if !ok {
		return exitConfig
	}
	res, err := daemon.ControlNow(ctx, sock, fs.Args())
	if err != nil {
		return g.controlError(err, sock)
	}
	code := exitOK
	for _, r := range res {
		fmt.Fprintln(g.stdout, summaryLine(r))
		code = worse(code, exitCodeForSummary(r))
	}
	return code
}

// status is `popfetch status`.
func (g *globals) status(ctx context.Context, args []string) int {
	fs := g.flags("status")
	stateDir := fs.String("state-dir", "", "")
	if !g.parse(fs, args) {
		return exitUsage
	}
	sock, ok := g.controlPath(*stateDir)
	if !ok {
		return exitConfig
	}
	st, err := daemon.ControlStatus(ctx, sock)
	if err != nil {
		return g.controlError(err, sock)
	}
	writeStatus(g.stdout, st)
	// The OAuth2 tokens are read from the rc file: the one -f names, or
	// without --state-dir the one that found the daemon. With --state-dir
	// alone no rc file is read: the default one (or $POPFETCH_CONFIG)
	// may belong to another daemon, whose accounts are not this one's.
	if *stateDir != "" && g.config == "" {
		return exitOK
	}
	if path, err := rcfile.Find(g.config); err == nil {
		if cfg, _ := rcfile.Load(path); cfg != nil {
			writeOAuth2Status(g.stdout, cfg)
		}
	}
	return exitOK
}

func (g *globals) controlError(err error, sock string) int {
	if errors.Is(err, daemon.ErrUnknownAccount) || errors.Is(err, daemon.ErrOtherShard) {
		fmt.Fprintf(g.stderr, "popfetch: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(g.stderr, "popfetch: cannot reach the daemon at %s: %v (is `popfetch run` running with the same rc file or state directory? --state-dir names the directory)\n", sock, err)
	return exitFail
}

// sdNotify sends one sd_notify state; a failure is logged, never fatal.
func sdNotify(log *slog.Logger, state string, send func() error) {
	if err := send(); err != nil {
		log.Warn("systemd notification", "state", state, "err", err)
	}
}
