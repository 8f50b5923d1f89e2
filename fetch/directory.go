package fetch

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/ldapdir"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
)

// defaultDirectoryRefresh is rcfile.LDAP.Refresh's default, for an LDAP
// value built without the rc file's defaults.
const defaultDirectoryRefresh = 5 * time.Minute

// DirectoryState is what a poll knows of its account's user directory
// (multidrop ldap): the copy it routed with, and the last failure to load
// one. `popfetch status` shows it.
type DirectoryState struct {
	Source    string    `json:"source"` // "ldap"
	URL       string    `json:"url"`
	Users     int       `json:"users"`              // in the copy in use
	Addresses int       `json:"addresses"`          // in the copy in use
	Groups    int       `json:"groups"`             // in the copy in use
	LoadedAt  time.Time `json:"loaded_at,omitzero"` // when the copy in use was loaded; zero: none
	// Stale: the last load failed and the poll used the last good copy,
	// which serves until GraceUntil.
	Stale      bool      `json:"stale,omitempty"`
	GraceUntil time.Time `json:"grace_until,omitzero"`
	// LastError is the last failed load's error while loads keep
	// failing ("" once one succeeds); FailingSince is the first failure
	// of that streak, LastErrorAt the latest.
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	FailingSince time.Time `json:"failing_since,omitzero"`
}

// Available reports whether the poll had a directory copy to route with.
func (s *DirectoryState) Available() bool { return s != nil && !s.LoadedAt.IsZero() }

// LoadDirectoryFunc loads an LDAP directory once: the shape of
// ldapdir.Load.
type LoadDirectoryFunc = func(ctx context.Context, c ldapdir.Config) (*ldapdir.Snapshot, error)

// directories keeps one LDAP snapshot per account for a Poller's
// lifetime, like oauthSources: loaded whole at the start of a poll when
// it is older than the account's refresh (or the poll asks for a fresh
// one, or the last load failed), never per message, except once a minute
// at most for a message to an unknown local address (reloadDirectory). A
// copy is dropped when the account's ldap settings change what the
// directory holds (rcfile.LDAP.SameContent); new refresh, grace and
// timeout values apply to the copy kept.
//
// A load that fails, or yields no user, is a temporary condition: the
// last good copy serves while it is younger than the grace period (a
// short outage does not stop mail); after that, or with no copy, the poll
// fails before it connects, so the mail waits on the server. A message is
// never sent to the postmaster as for an unknown user because the
// directory could not be read. A timed load that yields fewer than half
// the users of the last good copy counts as failed too (see tryLoad).
//
// While loads fail, a poll does not try again before a backoff
// (retryAt): a silent server costs the timeout per load, and every poll
// would pay it. A FreshDirectory poll always tries.
type directories struct {
	mu sync.Mutex // guards m only; a load holds its entry's lock
	m  map[string]*dirEntry
}

// dirEntry is one account's directory. Its mutex is held while loading,
// so a slow server delays only that account's poll.
type dirEntry struct {
	mu       sync.Mutex
	ldap     *rcfile.LDAP // the settings the copy was loaded with
	snap     *ldapdir.Snapshot
	loadedAt time.Time // by the Poller's clock
	lastTry  time.Time // when the last load started
	// The failure streak since the last good load.
	lastErr      string
	lastErrAt    time.Time
	failingSince time.Time
	failures     int // loads failed in a row
	// warned: the streak's first use of the old copy was logged as Warn;
	// logged: the current copy's ignored entries were logged.
	warned, logged bool
}

// Directory reload and retry timing.
const (
	// minDirectoryRetry is the first retry backoff after a failed load
	// (or refresh, if shorter); it doubles per failure up to refresh.
	minDirectoryRetry = time.Minute
	// directoryReloadEvery bounds the reloads for unknown recipients:
	// at most one load per account per this interval.
	directoryReloadEvery = time.Minute
)

// entry returns account a's entry, a new one if a's ldap settings
// changed what the directory holds.
func (c *directories) entry(a *rcfile.Account) *dirEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := a.Multidrop.LDAP
	if e, ok := c.m[a.Name]; ok && e.ldap.SameContent(l) {
		return e
	}
	if c.m == nil {
		c.m = map[string]*dirEntry{}
	}
	e := &dirEntry{ldap: ldapOf(l)}
	c.m[a.Name] = e
	return e
}

// forget drops account name's copy (its ldap block is gone).
func (c *directories) forget(name string) {
	c.mu.Lock()
	delete(c.m, name)
	c.mu.Unlock()
}

// refreshOf is l's refresh interval.
func refreshOf(l *rcfile.LDAP) time.Duration {
	if l.Refresh <= 0 {
		return defaultDirectoryRefresh
	}
	return l.Refresh
}

// retryAt is when a poll may load again after e.failures failed loads:
// min(refresh, 1m) after the last try, doubling per failure up to refresh.
func (e *dirEntry) retryAt(refresh time.Duration) time.Time {
	d := min(refresh, minDirectoryRetry)
	for i := 1; i < e.failures && d < refresh; i++ {
		d *= 2
	}
	return e.lastTry.Add(min(d, refresh))
}

// directory returns the snapshot that account a's poll routes with, and
// the state to report. fresh forces a load. The error wraps ErrDirectory.
func (p *Poller) directory(ctx context.Context, a *rcfile.Account, fresh bool, log *slog.Logger) (*ldapdir.Snapshot, *DirectoryState, error) {
	l := a.Multidrop.LDAP
	e := p.dirs.entry(a)
	e.mu.Lock()
	defer e.mu.Unlock()
	refresh := refreshOf(l)
	now := p.now()
	// While loads fail the copy is no longer "fresh" because it is
	// younger than refresh (a forced load may have failed a minute
	// after it): only the grace period may cover for it; with grace 0
	// routing with it would contradict the state shown.
	if e.snap != nil && !fresh && e.lastErr == "" && now.Sub(e.loadedAt) < refresh {
		return e.snap, e.state(l, now), nil
	}
	if !fresh && e.failures > 0 && now.Before(e.retryAt(refresh)) {
		// Not tried again yet: the last failure stands, and the same
		// rules decide whether the last good copy may serve.
		why := fmt.Errorf("%s (%d failed loads in a row; next try after %s, or now with popfetch now or SIGHUP)",
			e.lastErr, e.failures, e.retryAt(refresh).Format(time.DateTime))
		return p.fallback(ctx, e, l, now, why, log)
	}
	snap, err := p.tryLoad(ctx, e, l, fresh, log)
	if err != nil {
		return p.fallback(ctx, e, l, p.now(), err, log)
	}
	return snap, e.state(l, p.now()), nil
}

// tryLoad loads l once for e and records the outcome: a good load
// replaces the copy and ends the failure streak. Unless fresh (an
// operator's act: start, SIGHUP, popfetch now, a changed ldap block), a
// load that yields fewer than half the users of the last good copy is a
// failure: a directory that lost most of its users at once (an ACL
// change, a moved OU, a half-replicated domain controller) is far likelier
// broken than an office that lost half its people between two refreshes,
// and taking it would send their mail to the postmaster.
func (p *Poller) tryLoad(ctx context.Context, e *dirEntry, l *rcfile.LDAP, fresh bool, log *slog.Logger) (*ldapdir.Snapshot, error) {
	e.lastTry = p.now()
	snap, err := p.loadDirectory(ctx, l)
	now := p.now()
	if err == nil && !fresh && e.snap != nil && len(snap.Users)*2 < len(e.snap.Users) {
		err = fmt.Errorf("the directory yields %d users where the last good copy (loaded %s) has %d: more than half gone at once is taken for a broken directory; if it is right, confirm it with popfetch now or SIGHUP",
			len(snap.Users), e.loadedAt.Format(time.DateTime), len(e.snap.Users))
		if !e.warned {
			e.warned = true
			log.Warn("directory shrank by more than half; not used until confirmed (popfetch now or SIGHUP)", "url", l.URL,
				"users", len(snap.Users), "last_good_users", len(e.snap.Users), "loaded", e.loadedAt)
		}
	}
	if err != nil {
		if e.failingSince.IsZero() {
			e.failingSince = now
		}
		e.lastErr, e.lastErrAt = err.Error(), now
		e.failures++
		return nil, err
	}
	if !e.failingSince.IsZero() {
		log.Info("directory available again", "url", l.URL, "down_since", e.failingSince, "users", len(snap.Users))
	} else {
		log.Debug("directory loaded", "url", l.URL, "users", len(snap.Users), "entries", snap.Entries, "skipped", len(snap.Skipped))
	}
	e.snap, e.loadedAt = snap, now
	e.lastErr, e.lastErrAt, e.failingSince, e.failures, e.warned, e.logged = "", time.Time{}, time.Time{}, 0, false, false
	return snap, nil
}

// fallback is the outcome of a poll whose load failed (or was not tried
// again yet) with err: the last good copy within grace, else ErrDirectory.
func (p *Poller) fallback(ctx context.Context, e *dirEntry, l *rcfile.LDAP, now time.Time, err error, log *slog.Logger) (*ldapdir.Snapshot, *DirectoryState, error) {
	if e.snap != nil && l.Grace > 0 && now.Sub(e.loadedAt) < l.Grace {
		lvl := slog.LevelDebug
		if !e.warned {
			// Once per failure streak: visible, but not every poll.
			lvl, e.warned = slog.LevelWarn, true
		}
		log.Log(ctx, lvl, "directory unavailable; routing with the last good copy", "url", l.URL, "err", err,
			"loaded", e.loadedAt, "grace_until", e.loadedAt.Add(l.Grace))
		return e.snap, e.state(l, now), nil
	}
	st := e.state(l, now)
	if e.snap != nil {
		return nil, st, fmt.Errorf("%w: %w; the last good copy (loaded %s) is older than the grace period %s; the mail waits on the server",
			ErrDirectory, err, e.loadedAt.Format(time.DateTime), l.Grace)
	}
	return nil, st, fmt.Errorf("%w: %w; no good copy: the mail waits on the server", ErrDirectory, err)
}

// reloadDirectory loads account a's directory again for a message with
// unknown local addresses, when the copy in use is older than a minute,
// no load started in the last minute, and no failure backoff holds. It
// returns the new copy and its state, or nil when it did not load or the
// load failed (recorded as any failed load: the outage rules apply to the
// next poll, and this message routes with the copy it has).
func (p *Poller) reloadDirectory(ctx context.Context, a *rcfile.Account, log *slog.Logger) (*ldapdir.Snapshot, *DirectoryState) {
	l := a.Multidrop.LDAP
	e := p.dirs.entry(a)
	e.mu.Lock()
	defer e.mu.Unlock()
	now := p.now()
	// A stopping poll does not load: its cancelled load would count as
	// a failure of the directory.
	if ctx.Err() != nil || e.snap == nil || now.Sub(e.loadedAt) < directoryReloadEvery || now.Sub(e.lastTry) < directoryReloadEvery ||
		(e.failures > 0 && now.Before(e.retryAt(refreshOf(l)))) {
		return nil, nil
	}
	snap, err := p.tryLoad(ctx, e, l, false, log)
	if err != nil {
		log.Info("directory reload for an unknown recipient failed; routing with the copy in use", "url", l.URL, "err", err)
		return nil, nil
	}
	log.Info("directory reloaded for an unknown recipient", "url", l.URL, "users", len(snap.Users))
	return snap, e.state(l, p.now())
}

// state is the DirectoryState of e at now: the copy in use is e.snap
// unless it is past its grace while loads fail.
func (e *dirEntry) state(l *rcfile.LDAP, now time.Time) *DirectoryState {
	s := &DirectoryState{Source: "ldap", URL: l.URL, LastError: e.lastErr, LastErrorAt: e.lastErrAt, FailingSince: e.failingSince}
	if e.snap == nil {
		return s
	}
	if e.lastErr != "" {
		if l.Grace <= 0 || now.Sub(e.loadedAt) >= l.Grace {
			return s
		}
		s.Stale, s.GraceUntil = true, e.loadedAt.Add(l.Grace)
	}
	s.LoadedAt = e.loadedAt
	s.Users, s.Groups = len(e.snap.Users), len(e.snap.Groups)
	for _, as := range e.snap.Users {
		s.Addresses += len(as)
	}
	return s
}

// loadDirectory loads l once through Poller.LoadDirectory (ldapdir.Load
// by default). A directory with no user is an error: a wrong base_dn,
// filter or read permission is far more likely than an office with
// nobody, and routing with it would send everyone's mail to the
// postmaster as unknown.
func (p *Poller) loadDirectory(ctx context.Context, l *rcfile.LDAP) (*ldapdir.Snapshot, error) {
	c := ldapdir.Config{URL: l.URL, BindDN: l.BindDN, BaseDN: l.BaseDN, Filter: l.Filter, UserAttribute: l.UserAttribute,
		AddressAttributes: slices.Clone(l.AddressAttributes), Groups: l.Groups, GroupFilter: l.GroupFilter,
		MemberAttribute: l.MemberAttribute, Timeout: l.Timeout, MaxEntries: l.MaxEntries}
	if l.CAFile != "" {
		// Read through the trust check: whoever can change the trust
		// anchors can impersonate the directory and choose who
		// receives the mail (see the POP3 ca_file in session.go).
		pem, err := trust.ReadTrusted(l.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ldap ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ldap ca_file %s holds no PEM certificate", l.CAFile)
		}
	}
	if l.BindDN != "" {
		pw, err := l.Password.Resolve(ctx)
		if err != nil {
			return nil, fmt.Errorf("ldap password: %w", err)
		}
		c.Password = pw
	}
	load := p.LoadDirectory
	if load == nil {
		load = ldapdir.Load
	}
	snap, err := load(ctx, c)
	if err != nil {
		if strings.Contains(err.Error(), l.URL) {
			// ldapdir's errors name the server already; the URL twice
			// would push the reason out of the status line.
			return nil, err
		}
		return nil, fmt.Errorf("ldap %s: %w", l.URL, err)
	}
	if snap == nil || len(snap.Users) == 0 {
		return nil, fmt.Errorf("ldap %s: the directory yields no users under base_dn %q: check base_dn, filter and the bind's read permission",
			l.URL, l.BaseDN)
	}
	return snap, nil
}

// CheckDirectory loads account a's LDAP directory once, without the cache
// or its grace period, for `popfetch check --connect`. It returns nil, nil
// for an account without one; an error wraps ErrDirectory.
func (p *Poller) CheckDirectory(ctx context.Context, a *rcfile.Account) (*ldapdir.Snapshot, error) {
	if a.Multidrop == nil || a.Multidrop.LDAP == nil {
		return nil, nil
	}
	snap, err := p.loadDirectory(ctx, a.Multidrop.LDAP)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDirectory, err)
	}
	return snap, nil
}

// useDirectory adds snap's users and groups to d's routing: configured
// users win a conflict (deliver.Directory.AddUsers), and a directory user
// delivers through the account's deliver block with {user}, unless a
// configured user of that name has its own. It returns the entries the
// merge skipped.
func (d *multidrop) useDirectory(snap *ldapdir.Snapshot) []string {
	return mergeDirectory(d.rules.Directory, snap)
}

// mergeDirectory adds snap's users and groups to dir (see useDirectory).
func mergeDirectory(dir *deliver.Directory, snap *ldapdir.Snapshot) []string {
	// What the merge skipped is what Ignored lists after it and did not
	// before. Not a suffix: Ignored also lists the learned routes whose
	// user is unknown, and the merge may make that user known.
	before := make(map[string]int)
	for _, s := range dir.Ignored() {
		before[s]++
	}
	dir.AddUsers(snap.Users, "ldap")
	addrs := make([]string, 0, len(snap.Groups))
	for g := range snap.Groups {
		addrs = append(addrs, g)
	}
	sort.Strings(addrs) // Ignored in a stable order
	for _, g := range addrs {
		dir.AddGroup(g, snap.Groups[g], "ldap")
	}
	var skipped []string
	for _, s := range dir.Ignored() {
		if before[s] > 0 {
			before[s]--
			continue
		}
		skipped = append(skipped, s)
	}
	return skipped
}

// ldapOf copies l, so that a caller that edits its Account afterwards
// (tests do) cannot make the cache's copy agree with it.
func ldapOf(l *rcfile.LDAP) *rcfile.LDAP {
	c := *l
	c.AddressAttributes = slices.Clone(l.AddressAttributes)
	c.Password.Command = slices.Clone(l.Password.Command)
	return &c
}

// loadDirectory returns the directory copy the poll routes with (nil for
// an account without ldap) and sets Result.Directory.
func (s *session) loadDirectory(ctx context.Context) (*ldapdir.Snapshot, error) {
	a := s.a
	if a.Multidrop == nil || a.Multidrop.LDAP == nil {
		s.p.dirs.forget(a.Name)
		return nil, nil
	}
	snap, st, err := s.p.directory(ctx, a, s.opts.FreshDirectory, s.log)
	s.res.Directory = st
	return snap, err
}

// useDirectory merges snap into the poll's multidrop routing, logging
// the entries it skipped once per loaded copy, and lets the routing
// reload the directory for an unknown recipient (reloadRouting).
func (s *session) useDirectory(snap *ldapdir.Snapshot) {
	md, ok := s.disp.(*multidrop)
	if snap == nil || !ok {
		return
	}
	s.logSkipped(snap, md.useDirectory(snap))
	md.reload = s.reloadRouting
}

// logSkipped logs what loading and merging snap skipped, once per copy.
func (s *session) logSkipped(snap *ldapdir.Snapshot, ignored []string) {
	e := s.p.dirs.entry(s.a)
	e.mu.Lock()
	first := !e.logged && e.snap == snap
	if first {
		e.logged = true
	}
	e.mu.Unlock()
	if !first {
		return
	}
	all := append(slices.Clone(snap.Skipped), ignored...)
	if len(all) == 0 {
		return
	}
	// One line with the first reasons; all of them at Debug.
	url := s.a.Multidrop.LDAP.URL
	s.log.Info("directory entries skipped", "url", url, "count", len(all), "first", strings.Join(all[:min(len(all), 5)], "; "))
	for _, why := range all {
		s.log.Debug("directory entry skipped", "url", url, "reason", why)
	}
}

// reloadRouting is multidrop.reload: it reloads the directory through the
// Poller's cache (Poller.reloadDirectory: at most once a minute) and
// returns the account's routing Directory rebuilt with the new copy, or
// nil.
func (s *session) reloadRouting(ctx context.Context, log *slog.Logger) *deliver.Directory {
	snap, st := s.p.reloadDirectory(ctx, s.a, log)
	if snap == nil {
		return nil
	}
	dir, err := newRoutingDirectory(s.a)
	if err != nil {
		log.Warn("directory reloaded but the routing could not be rebuilt; routing with the copy in use", "err", err)
		return nil
	}
	s.logSkipped(snap, mergeDirectory(dir, snap))
	s.dirMu.Lock()
	s.reloaded = st
	s.dirMu.Unlock()
	return dir
}

// reloadedState is the DirectoryState after a reload during the poll,
// or nil.
func (s *session) reloadedState() *DirectoryState {
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	return s.reloaded
}

// DirectoryConflicts lists what routing would skip when merging snap
// into account a's configured users (see multidrop.useDirectory), for
// `popfetch check --connect`.
func DirectoryConflicts(a *rcfile.Account, snap *ldapdir.Snapshot) []string {
	users := map[string][]string{}
	md := a.Multidrop
	if md == nil {
		return nil
	}
	for _, u := range md.Users {
		users[u.Name] = u.Addresses
	}
	d := &multidrop{rules: &deliver.Rules{Directory: deliver.NewDirectory(users, md.CaseSensitive)}}
	return d.useDirectory(snap)
}
