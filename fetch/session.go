package fetch

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/internal/crashpoint"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/uidl"
)

// Poller polls accounts. It is safe for concurrent use by the scheduler;
// each Poll opens and locks the account's own UIDL store.
type Poller struct {
	Log *slog.Logger
	// Now is the clock for trace headers and UIDL timestamps; default time.Now.
	Now func() time.Time
	// Dispatcher builds the delivery side of an account; nil = the real
	// targets from the rc file (tests inject failing ones).
	Dispatcher func(a *rcfile.Account) (Dispatcher, error)
	// Token returns the OAuth2 access token source of an account, nil
	// for an account without one; nil Token: the account's oauth2 block or
	// oauth2_token_command (see OAuth2Token). With a
	// source, auth = "auto" logs in with OAUTHBEARER or XOAUTH2 (see
	// pop3.Conn.Authenticate).
	Token func(a *rcfile.Account) pop3.TokenFunc
	// NoPollLog leaves out the "poll done" line: the daemon logs each
	// poll's outcome itself, idle polls at Debug and an error once per
	// change, so that hundreds of idle accounts do not flood the log.
	NoPollLog bool
	// LoadDirectory loads a multidrop account's LDAP directory; nil =
	// ldapdir.Load (tests inject a fake one).
	LoadDirectory LoadDirectoryFunc
	// Deliveries, if not nil, counts the deliveries running now: one is
	// added as a message's delivery begins and taken away when it ends
	// (the daemon's metric popfetch_deliveries_in_flight; a
	// *sync/atomic.Int64 fits).
	Deliveries interface{ Add(delta int64) int64 }

	mu sync.Mutex
	// careful holds the mailboxes (UIDL store paths) whose last poll
	// broke off in a round of RETRs: their polls fetch one message per
	// round without pipelining until one gets through (see fetch). It
	// lives as long as the Poller, and as a mark beside the journal
	// (uidl.SetCareful) for one-shot runs; a poll is careful as well while a
	// message it is to fetch has failed before (uidl Store.RetrFailures),
	// which one-shot runs see too.
	careful map[string]bool
	// oauth keeps each account's OAuth2 token source across polls (see
	// oauthSources).
	oauth oauthSources
	// dirs keeps each multidrop account's LDAP directory across polls
	// (see directories).
	dirs directories
	// scramRefused holds the accounts (by scramKey) whose auth = "auto" login
	// fell back from SCRAM in this process (see noSCRAM).
	scramRefused map[string]bool
	// noTrust holds the mailboxes whose server did not keep PIPELINING
	// after login in this process (see trustPipelining).
	noTrust map[string]bool

	// afterSync, if set (tests), runs each time a session has made the
	// UIDL records of a batch durable, before any DELE for them is sent.
	afterSync func()
	// spoolWindow, if set (tests), replaces the constant spoolWindow.
	spoolWindow int64
}

// poisonPolls is how many consecutive polls may miss the deadline of the
// same message before popfetch gives up on it (see retrFailed). A message
// that never completes within its deadline would otherwise come first in
// every poll and block the whole mailbox.
const poisonPolls = 3

// deleRefusalPolls is how many polls in a row a server may refuse DELE of
// the same message before popfetch escalates (an Error line, a non-zero
// exit of `popfetch fetch`, the status) and stops asking: a server that
// refuses on every poll would otherwise get the same DELE, and the admin
// the same warning, forever. deleRetryAfter is when popfetch asks again
// anyway; the daemon's start, an operator's request (SIGHUP, `popfetch
// now`) or a change of the account's config asks at once (see
// PollOptions.RetryDele).
const (
	deleRefusalPolls = 3
	deleRetryAfter   = 24 * time.Hour
)

// trustPipelining reports whether a session of mailbox sends the CAPA after
// login in one write with the listing's STAT, UIDL and LIST when the server
// announced PIPELINING before login (pop3.Options.TrustPipelining), rather
// than waiting for that CAPA's reply first. RFC 2449 lets capabilities
// change at login, which is why the CAPA is read again, but not this one:
// what is announced before login must be announced after it too (§5), and
// PIPELINING is one that does not differ between the states (§6.6). The
// four commands only read, and their replies are counted and checked as
// any others. A server that breaks the rule anyway still reads them in
// order; the one that could go wrong is one that drops commands sent
// ahead (a proxy handing the connection over to a back end at login): its
// listing runs into the deadline and the poll fails, having fetched and
// deleted nothing. So a mailbox whose server did not list PIPELINING after
// login, or whose session broke off, is not trusted again by this Poller
// (the daemon).
func (p *Poller) trustPipelining(mailbox string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.noTrust[mailbox]
}

// pipeliningAfterLogin notes what a session of mailbox showed about
// PIPELINING after login (see trustPipelining).
func (p *Poller) pipeliningAfterLogin(mailbox string, c *pop3.Conn) {
	if c.Broken() == nil && c.Pipelining() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.noTrust == nil {
		p.noTrust = map[string]bool{}
	}
	p.noTrust[mailbox] = true
}

// setCareful notes whether the polls of mailbox fetch one message per
// round (see Poller.careful), in memory and in the mark beside the
// journal (uidl.SetCareful) that one-shot runs read; the mark's error is
// returned, the memory is set regardless.
func (p *Poller) setCareful(mailbox string, on bool) error {
	p.mu.Lock()
	if !on {
		delete(p.careful, mailbox)
	} else {
		if p.careful == nil {
			p.careful = map[string]bool{}
		}
		p.careful[mailbox] = true
	}
	p.mu.Unlock()
	return uidl.SetCareful(mailbox, on)
}

func (p *Poller) isCareful(mailbox string) bool {
	p.mu.Lock()
	on := p.careful[mailbox]
	p.mu.Unlock()
	return on || uidl.Careful(mailbox)
}

// Dispatcher delivers one fetched message to everyone it is for. It returns
// nil only when every recipient has the message durably, or the postmaster
// has it; the UID is recorded and DELE sent only after that. done/progress
// let a multidrop delivery that failed part-way resume with the recipients
// not yet served, so a retry never duplicates a finished copy. log is the
// message's logger (account, uid and msgnum attached), for what the
// Dispatcher decides; nil logs nothing.
type Dispatcher interface {
	Dispatch(ctx context.Context, m *deliver.Message, p Progress, log *slog.Logger) error
}

// Progress is the per-recipient record of one message, kept durably in the
// UIDL store.
type Progress interface {
	Done(rcpt string) bool
	Record(rcpt string) error
	// Intend notes the file a single-copy delivery is about to create
	// (deliver.Prepared.Path), before each attempt to commit it, so that a
	// run killed right after it can be recognised as delivered
	// (deliver.Committed). It reports whether the note is durable; what
	// a failure means is the caller's to decide (see deliverCopy).
	Intend(path string) error
	// Copied notes where a copy of the message went, made now or found
	// made before (Copy.Note), for the message's audit line.
	Copied(c Copy)
}

// PollOptions are what the caller decides about one poll besides its
// account. The zero value is a plain poll.
type PollOptions struct {
	// Stop, once closed, makes the poll stop fetching: the message in
	// flight is finished (delivered, recorded, DELEd) and the session
	// ends with QUIT. Cancelling the poll's ctx instead aborts at once,
	// without QUIT, which is safe too: nothing is deleted that was not
	// recorded. nil never stops.
	Stop <-chan struct{}
	// RetryDele sends DELE again for messages whose deletion the server
	// kept refusing (see deleRefusalPolls): the daemon sets it for its
	// first poll of an account, a poll an operator asked for, and the
	// first one after SIGHUP or a change of the account's config.
	RetryDele bool
	// FreshDirectory loads the account's user directory (multidrop
	// ldap) even if its copy is younger than the refresh interval: the
	// daemon sets it where it sets RetryDele.
	FreshDirectory bool
	// Progress, if not nil, is told what the poll fetches as it goes
	// (popfetch fetch draws it on a terminal). Its methods are called
	// from the poll's goroutine and must return at once.
	Progress PollProgress
}

// PollProgress follows one poll's retrieval: Start once the listing says what
// will be retrieved (msgs messages of bytes by their LIST sizes), Done as
// each of them is finished (delivered, failed, left, or found delivered
// before), End when the retrieval ends, however it ends.
type PollProgress interface {
	Start(account string, msgs int, bytes int64)
	Done(account string, bytes int64)
	End(account string)
}

// progressDone tells PollOptions.Progress that e is finished.
func (s *session) progressDone(e entry) {
	if s.opts.Progress != nil {
		s.opts.Progress.Done(s.a.Name, e.Size)
	}
}

// stopping reports whether the poll was asked to stop (PollOptions.Stop).
func (s *session) stopping() bool {
	select {
	case <-s.opts.Stop:
		return true
	default:
		return false
	}
}

func (p *Poller) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}

func (p *Poller) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

// Poll runs one session for account a and reports what it did. Errors name
// the account; delivery failures of single messages do not fail the poll
// (the messages stay on the server and are counted in Result.Failed).
func (p *Poller) Poll(ctx context.Context, a *rcfile.Account) Result {
	return p.run(ctx, a, PollOptions{}, false)
}

// PollWith is Poll with the options of a daemon's or a signalled poll.
func (p *Poller) PollWith(ctx context.Context, a *rcfile.Account, opts PollOptions) Result {
	return p.run(ctx, a, opts, false)
}

// Check logs in and counts the new messages without fetching anything
// (`popfetch check --connect`).
func (p *Poller) Check(ctx context.Context, a *rcfile.Account) Result {
	return p.run(ctx, a, PollOptions{}, true)
}

func (p *Poller) run(ctx context.Context, a *rcfile.Account, opts PollOptions, dryRun bool) (res Result) {
	res = Result{Account: a.Name, Start: p.now()}
	log := p.log().With(slog.String("account", a.Name), slog.String("server", a.Server), slog.String("user", a.Username))
	defer func() {
		res.Elapsed = time.Since(res.Start)
		if res.Err != nil {
			res.Err = fmt.Errorf("account %s: %w", a.Name, res.Err)
		}
		if p.NoPollLog {
			return
		}
		if res.NotStarted {
			log.Info("poll stopped before it connected")
			return
		}
		// One line per poll (the scheduler logs changes of error itself).
		lvl := slog.LevelInfo
		if res.Failed > 0 || res.Undeletable > 0 {
			lvl = slog.LevelWarn
		}
		args := res.SummaryAttrs()
		if res.Err != nil {
			// Only a poll that failed has an err (no err=<nil>), and
			// that is a warning.
			lvl = slog.LevelWarn
			args = append(args, "err", res.Err)
		}
		log.Log(context.Background(), lvl, "poll done", args...)
	}()
	s := &session{p: p, a: a, log: log, res: &res, opts: opts, dryRun: dryRun, nowFunc: p.now}
	// Deferred: a daemon recovers a poll that panics (fetch/daemon) and
	// polls again, which must not leave the directory open each time.
	defer func() {
		if s.spoolDir != nil {
			s.spoolDir.Close()
		}
	}()
	res.Err = s.run(ctx)
	if st := s.reloadedState(); st != nil {
		res.Directory = st // reloaded for an unknown recipient
	}
	return res
}

// entry is one message of the server's listing (number, UID, size).
type entry = pop3.Entry

type session struct {
	p      *Poller
	a      *rcfile.Account
	log    *slog.Logger
	res    *Result
	opts   PollOptions
	dryRun bool
	store  *uidl.Store
	// mailbox is the store's path: the key of Poller.careful.
	mailbox string
	c       *pop3.Conn
	disp    Dispatcher
	// spoolMem is the memory the session's spools share (see newSpool).
	spoolMem *deliver.SpoolMem
	// spoolDir is the spool directory, opened and checked once per poll
	// for the spools that need a file (see newSpool); closed by Poll.
	spoolDir *deliver.SpoolDir
	// reloaded is the directory state after a reload for an unknown
	// recipient (reloadRouting, called from concurrent deliveries).
	dirMu    sync.Mutex
	reloaded *DirectoryState
	// retrieved counts the messages whose RETR reply was read whole: each
	// is one the server may consider retrieved (RFC 2449 EXPIRE).
	retrieved int
	// recovered holds, in a dry run, the UIDs recover found delivered
	// but did not record (a dry run writes nothing).
	recovered map[string]bool
	// v is what the identity checks of messages seen before need (see
	// reuse.go).
	v verifyState
	// exp is what delete_after needs (see deleteafter.go).
	exp expiry
	// pending holds the audit of each message delivered in this poll,
	// by message number, until what happens to it on the server is
	// known (see audited).
	pending map[int]*audit
	// nowFunc is p.now, made once (a method value is an allocation):
	// each delivery's progress has it.
	nowFunc func() time.Time
}

// has reports whether uid was delivered before.
func (s *session) has(uid string) bool {
	return s.recovered[uid] || s.store != nil && s.store.Has(uid)
}

// noted reports whether uid was noted as left on the server (see leave).
func (s *session) noted(uid string) bool {
	return s.store != nil && s.store.Noted(uid)
}

// givenUp reports whether popfetch gave up retrieving e (see
// retrFailed): its UID, with its size unless the record predates sizes, as
// a server may give the UID to another message. The journal is the one
// record of it, for the daemon and a one-shot run alike.
func (s *session) givenUp(e entry) bool {
	return s.store != nil && s.store.GivenUpAt(e.UID, e.Size)
}

// retain forgets what the server no longer lists; a dry run forgets
// nothing.
func (s *session) retain(onServer []string) error {
	if s.dryRun {
		return nil
	}
	if err := s.store.Retain(onServer); err != nil {
		return fmt.Errorf("uidl store: %w", err)
	}
	return nil
}

func (s *session) run(ctx context.Context) error {
	a := s.a
	var err error
	// A poll asked to stop before it began has nothing in flight to
	// finish: logging in only to list and QUIT would be a session for
	// nothing (and a password resolved for nothing).
	if s.stopping() {
		s.res.NotStarted = true
		return nil
	}
	s.mailbox = uidl.Path(a.StateDir, a.Mailbox())
	_, serr := os.Lstat(s.mailbox)
	var legacy []string
	if errors.Is(serr, fs.ErrNotExist) {
		// A journal that an older popfetch kept per port is moved to
		// the mailbox's name on first open: for a mailbox_id only its
		// own port's (two tunnels on one host had one journal each),
		// else any port's.
		if legacy, err = uidl.LegacyPaths(a.StateDir, a.Username, a.Server, a.Port, a.MailboxID == ""); err != nil {
			return fmt.Errorf("uidl store: %w", err)
		}
	}
	// A dry run with no journal yet has nothing to read, and opening one
	// would create it (and the state directory).
	if !s.dryRun || !errors.Is(serr, fs.ErrNotExist) || len(legacy) > 0 {
		s.store, err = uidl.OpenMigratingAt(s.mailbox, legacy, s.p.now)
		if err != nil {
			if errors.Is(err, uidl.ErrLocked) {
				return fmt.Errorf("%w: %v", ErrLocked, err)
			}
			return fmt.Errorf("uidl store: %w", err)
		}
		defer s.store.Close()
	}
	if err := s.recover(); err != nil {
		return err
	}
	if !s.dryRun {
		// Before connecting: a poll that cannot route must not fetch.
		snap, err := s.loadDirectory(ctx)
		if err != nil {
			return err
		}
		build := s.p.Dispatcher
		if build == nil {
			build = NewDispatcher
		}
		if s.disp, err = build(a); err != nil {
			return err
		}
		// A dispatcher is built per poll; its targets may hold
		// descriptors (a Maildir's directories) until then.
		defer closeTargets(s.disp)
		s.useDirectory(snap)
	}
	var token pop3.TokenFunc
	if s.p.Token != nil {
		token = s.p.Token(a)
	} else {
		tf, err := s.p.oauth.token(a, s.log)
		if err != nil {
			return fmt.Errorf("oauth2: %w", err)
		}
		if tf != nil {
			token = tf
		}
	}
	var pass string
	pw := a.Password
	if token == nil || pw.Inline != "" || pw.File != "" || pw.Env != "" || pw.Command != nil {
		// An OAuth2 account may have no password at all.
		if pass, err = a.Password.Resolve(ctx); err != nil {
			return fmt.Errorf("password: %w", err)
		}
	}
	// TrustPipelining: the CAPA after login goes out with the listing's
	// STAT, UIDL and LIST, a round trip less (see trustPipelining).
	opts := pop3.Options{Host: a.Server, Port: a.Port, TLS: pop3.TLSMode(a.TLS), Fingerprint: a.Fingerprint, CheckName: a.CheckName, Timeout: a.Timeout,
		TrustPipelining: s.p.trustPipelining(s.mailbox)}
	if a.CAFile != "" {
		// Read through the trust check: whoever can change the trust
		// anchors can impersonate the server and take the password.
		pem, err := trust.ReadTrusted(a.CAFile)
		if err != nil {
			return fmt.Errorf("%w: ca_file: %w", ErrTLS, err)
		}
		opts.RootCAs = x509.NewCertPool()
		if !opts.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%w: ca_file %s holds no PEM certificate", ErrTLS, a.CAFile)
		}
	}
	if s.stopping() {
		// Asked while the journal was read or the password resolved.
		s.res.NotStarted = true
		return nil
	}
	s.c, err = pop3.Dial(ctx, opts)
	if err != nil {
		return err
	}
	defer s.c.Close()
	cr := pop3.Credentials{Mechanism: pop3.Mechanism(a.Auth), Username: a.Username, Password: pass, Token: token,
		// tls = "none" is the explicit opt-in to a password in clear text.
		Cleartext: a.TLS == rcfile.TLSNone, NoSCRAM: s.p.noSCRAM(a)}
	if err := s.c.Authenticate(ctx, cr); err != nil {
		return err
	}
	s.p.loggedIn(s.log, a, s.c)
	s.res.Mechanism = s.c.Mechanism().String()
	s.log.Debug("logged in", "mechanism", s.res.Mechanism)
	// LOGIN-DELAY from the capabilities after login, read with the
	// listing (see trustPipelining), or by the call if the session ended
	// before it.
	defer func() {
		if d := s.c.LoginDelay(); d > 0 {
			s.res.LoginDelay = d
		}
	}()
	err = s.transact(ctx)
	s.p.pipeliningAfterLogin(s.mailbox, s.c)
	if err != nil {
		return err
	}
	if s.keepConnUpdate() {
		// After a QUIT sent with the last round (see lastRound), this
		// only closes and returns what its reply said.
		return s.c.Quit()
	}
	s.log.Info("closing without QUIT: the server may expire retrieved messages (EXPIRE 0) and not all of them were delivered", "messages", s.retrieved, "delivered", s.res.Delivered)
	return nil
}

// recover closes the window a kill leaves between a Maildir copy appearing
// in new/ and its UID being recorded: a UID whose recorded intent names a
// copy that deliver finds committed (in new/, or moved to cur/ by a mail
// reader) is delivered, so it is recorded now instead of being delivered
// again. The file found must be that copy (see ourCopy): a Commit that
// found its name taken leaves another's file under the name its intent
// recorded, until the fresh name is recorded. A file that is not the
// copy, or cannot be shown to be, leaves the message to be fetched
// again: a duplicate at worst, where taking it for the copy would delete
// a message never delivered. A dry run only counts it as delivered.
func (s *session) recover() (err error) {
	if s.store == nil {
		return nil
	}
	for uid, path := range s.store.Intents() {
		if !deliver.Committed(path) {
			continue // not linked before the kill: fetched again, no duplicate
		}
		if err := ourCopy(path, s.store.IntentIdentity(uid)); err != nil {
			s.log.Warn("a file holds the name of an interrupted delivery but is not shown to be its copy; fetching the message again", "uid", uid, "path", path, "err", err)
			continue
		}
		if s.dryRun {
			if s.recovered == nil {
				s.recovered = map[string]bool{}
			}
			s.recovered[uid] = true
			continue
		}
		// The link may so far exist only in the page cache of a killed
		// process's writes: make it durable first.
		if err := deliver.SyncCommitted(path); err != nil {
			return fmt.Errorf("recover %s: %w", uid, err)
		}
		// With the identity the intent recorded (ourCopy requires one),
		// so the copy on the server can be confirmed and deleted (see
		// reuse.go).
		if err := s.store.AddIdentity(uid, s.store.IntentIdentity(uid), s.p.now(), true); err != nil {
			return fmt.Errorf("uidl store: %w", err)
		}
		s.log.Info("delivery of an interrupted run found in the Maildir; not fetching it again", "uid", uid, "path", path)
	}
	return nil
}

// keepConnUpdate reports whether to end with QUIT. A server with EXPIRE 0
// may delete what was retrieved on its own in the UPDATE state (RFC 2449
// §6.7), so unless every message retrieved in this session was delivered
// (none failed, none was left undelivered by a graceful stop) the
// connection is dropped instead: without QUIT no UPDATE state happens and
// nothing is removed (RFC 1939 §6). Recorded messages are deleted by the
// next poll.
func (s *session) keepConnUpdate() bool {
	return !s.c.Expire0() || s.res.Failed == 0 && s.retrieved == s.res.Delivered
}

// transact is the TRANSACTION state: list, select, fetch, deliver, record,
// delete.
func (s *session) transact(ctx context.Context) error {
	// STAT, UIDL and LIST, checked against each other (package pop3).
	count, uids, err := s.c.Listing()
	s.res.Messages = count
	if err != nil {
		return err
	}
	if count == 0 {
		return s.retain(nil)
	}
	size := make(map[int]int64, len(uids))
	onServer := make([]string, len(uids))
	for i, e := range uids {
		size[e.Num] = e.Size
		onServer[i] = e.UID
		// Saturating: a server may claim any size (sizes are >= 0), and
		// a sum wrapped around to a negative would read as an empty
		// maildrop.
		s.res.MailboxBytes += min(e.Size, math.MaxInt64-s.res.MailboxBytes)
	}
	// Before retain forgets the UIDs the listing no longer shows.
	renumbered := s.survey(uids)
	s.listSizes(uids, size)
	// Forget only what a complete, valid listing no longer shows: never
	// because QUIT said +OK, as QUIT may fail part-way and RFC 1939 §6
	// lets the server remove "some or none" of the messages marked.
	if err := s.retain(onServer); err != nil {
		return err
	}

	var todo, verify []entry
	for _, e := range uids {
		if s.has(e.UID) && !s.a.FetchAll || renumbered != nil {
			if !s.a.Keep && !s.dryRun && renumbered == nil && s.asRecorded(e) && s.deleSuspended(e) {
				// Checking its identity would only lead to a DELE
				// the server keeps refusing.
				continue
			}
			switch s.classify(e, renumbered) {
			case checkNone:
				if renumbered == nil && s.dueCheck(e) {
					// Kept long enough: retrieved and
					// compared before any DELE (see dueCheck).
					verify = append(verify, e)
				}
				continue
			case checkCopy:
				if renumbered != nil {
					// What selectNew leaves on the server
					// (given up, too large) is not
					// retrieved either.
					add, err := s.selectNew(e)
					if err != nil {
						return err
					}
					if !add {
						continue
					}
				}
				verify = append(verify, e)
				continue
			case checkCopyAsNew:
				// Retrieved as new mail would be (selectNew,
				// fetch_limit), and checked by its copy.
				s.v.asNew(e)
			}
		}
		add, err := s.selectNew(e)
		if err != nil {
			return err
		}
		if add {
			todo = append(todo, e)
		}
	}
	if s.dryRun {
		// What is new, not what one poll would take of it.
		s.res.New = len(todo)
		return nil
	}
	if n := s.a.FetchLimit; n > 0 && len(todo) > n {
		s.res.Skipped += len(todo) - n
		todo = todo[:n]
	}
	s.res.New = len(todo)
	// Checks by copy are retrieved after the new mail; each is counted
	// as new (and delivered) only once its copy turns out to be new.
	for _, e := range verify {
		if s.checkByCopy(e) {
			todo = append(todo, e)
		}
	}
	return s.fetch(ctx, todo)
}

// selectNew decides whether e, a message not delivered before, is
// retrieved in this poll.
func (s *session) selectNew(e entry) (bool, error) {
	switch {
	case s.a.Limit > 0 && e.Size > s.a.Limit:
		return false, s.leave(e, "message larger than limit left on the server", "limit", s.a.Limit)
	case s.givenUp(e):
		// Logged loudly when popfetch gave up on it.
		s.res.Skipped++
		return false, nil
	case e.Size > pop3.MaxMessageSize:
		// popfetch holds a whole message in memory while it
		// delivers it; a server's word that one is this big is
		// not taken as a reason to try.
		return false, s.leave(e, "message larger than popfetch's maximum message size left on the server", "limit", int64(pop3.MaxMessageSize))
	}
	return true, nil
}

// deletable returns the messages of seen to send DELE for: all but those
// whose deletion the server refused in deleRefusalPolls polls in a row,
// less than deleRetryAfter ago, unless PollOptions.RetryDele asks again. Those stay
// on the server, counted in Result.Undeletable, and are not logged again.
func (s *session) deletable(seen []entry) []entry {
	out := seen[:0:0]
	for _, e := range seen {
		// A new message under the UID is not the one refused.
		if s.v.fresh[e.Num] || !s.deleSuspended(e) {
			out = append(out, e)
		}
	}
	return out
}

// deleSuspended reports whether DELE of e is not to be asked for now (see
// deletable); if so, e is counted in Result.Undeletable.
func (s *session) deleSuspended(e entry) bool {
	retry := s.opts.RetryDele
	n, last := s.store.DeleRefusals(e.UID)
	if n >= deleRefusalPolls && !retry && s.p.now().Sub(last) < deleRetryAfter {
		s.res.Undeletable++
		s.log.Debug("not asking for DELE again: the server kept refusing it", "uid", e.UID, "msgnum", e.Num, "refusals", n)
		return true
	}
	return false
}

// deleRefused handles a -ERR to DELE of e: the message stays on the
// server, and since it is recorded the next poll asks again, until the
// server has refused deleRefusalPolls polls in a row; then the refusal
// is an Error and counts in Result.Undeletable.
func (s *session) deleRefused(e entry, err error) {
	var n int
	if s.v.refused[e.UID] {
		// Another message listed under the same UID was refused in
		// this poll: the count is of polls, not of DELEs.
		n, _ = s.store.DeleRefusals(e.UID)
	} else {
		var serr error
		n, serr = s.store.RefuseDele(e.UID, s.p.now())
		if serr != nil {
			s.log.Warn("uidl store: recording a refused DELE failed", "uid", e.UID, "err", serr)
		}
		if s.v.refused == nil {
			s.v.refused = map[string]bool{}
		}
		s.v.refused[e.UID] = true
	}
	if n < deleRefusalPolls {
		s.log.Warn("DELE refused; message stays on the server and is deleted next poll", "uid", e.UID, "msgnum", e.Num, "refusals", n, "err", err)
		return
	}
	s.res.Undeletable++
	s.log.Error(fmt.Sprintf("the server refused DELE in %d polls in a row; the message stays on the server, and popfetch asks again only after %v, when the daemon starts, on SIGHUP or `popfetch now`, or when the account's config changes (hint: delete it with another client, or ask the provider why)", n, deleRetryAfter),
		"uid", e.UID, "msgnum", e.Num, "refusals", n, "err", err)
}

// leave leaves e on the server for good (it is not retrieved while the
// reason holds), counts it as skipped and logs why, once: the note in the
// store keeps later polls quiet about it. A dry run logs but notes nothing,
// so the poll that follows still warns.
func (s *session) leave(e entry, why string, args ...any) error {
	s.res.Skipped++
	if s.noted(e.UID) {
		return nil
	}
	s.log.Warn(why, append([]any{"uid", e.UID, "msgnum", e.Num, "size", e.Size}, args...)...)
	if s.dryRun {
		return nil
	}
	if err := s.store.Note(e.UID, s.p.now()); err != nil {
		return fmt.Errorf("uidl store: note %s: %w", e.UID, err)
	}
	return nil
}

// op is one pipelined command awaiting its reply.
type op struct {
	verb string
	e    entry
	// bracket: the "LIST n" sent right behind "RETR n" (see fetch).
	bracket bool
	// close: the round ends with this reply (see closeRound).
	close bool
}

// fetch retrieves todo and deletes what was delivered (now, or before and
// confirmed by its identity), pipelining commands when the server
// offers PIPELINING (RFC 2449 §6.6): up to maxWindow commands, and up to
// the memory and spool windows of messages (memWindow, spoolWindow), go out in one round, so a
// high-latency link costs about one round trip per window, not per
// message. Without PIPELINING a round is one command: each waits for the
// answer to the one before. Replies arrive in command order, so a FIFO of
// sent commands is all the bookkeeping the wire needs. DELEs go through the
// same rounds as RETRs, and a round's replies are read before the next
// round is sent, so a long run of DELEs can never fill both directions of
// the connection at once (the write/write deadlock of RFC 2449 §6.6).
//
// Every "RETR n" is followed by "LIST n" (with PIPELINING in the same
// write, so it costs no round trip; without it once the RETR reply is
// read), whose reply, "+OK n size", names the message and its size and
// can be taken for no other reply (see closeRound). A RETR reply is
// trusted only when the reply after it is its own LIST's: a server that
// sent one reply twice and lost another would leave the count of replies
// right, and a check at the end of the round alone would take a message
// for the one whose reply was lost. The bracket also pins a reply that
// runs into the next one (a "." glued to the last line of a message) to
// its own message (see retrFailed).
//
// A round ends when every reply to it has been read, the server has sent
// nothing more (pop3.Conn) and the round's last reply names itself (the
// LIST after its last RETR, or STAT for a round of DELEs only, or after
// DELEs that follow the last RETR): only then is it known that each reply
// answered its own command. Without PIPELINING the commands of a round go
// one at a time; the round is still up to maxWindow RETRs and DELEs. A
// server that sent one reply too many, or skipped one, would otherwise
// have every later message taken for the one before or after it,
// delivered and recorded under the wrong UID, and the right one deleted
// unread. So a message read in a round is delivered only once its round
// has ended in step; a round that breaks off (a reply out of step, a
// missing reply that runs into its deadline) delivers nothing, records
// nothing and deletes nothing. The next polls of the account then take one
// message per round, without pipelining (Poller.careful), so that the
// messages before the broken one are delivered and only the broken one
// keeps failing, until it is given up or a poll gets through.
//
// Deliveries run on up to deliverers goroutines while this loop goes on
// reading: most of a delivery is waiting for fsync, and concurrent fsyncs
// share the file system's journal commits. Each delivery records its UID
// itself, after the message is durable; the records are fsynced once per
// batch (store.Sync), and a batch's DELEs are queued only after that. So the
// invariant holds for every message, while a session pays neither one
// journal fsync per message nor one fsync wait at a time.
//
// Some of todo are checks of messages seen before (see reuse.go): a
// retrieved copy that is the message delivered before is not delivered
// again; in delete mode it is deleted once any record its check made is
// durable.
func (s *session) fetch(ctx context.Context, todo []entry) (err error) {
	if pr := s.opts.Progress; pr != nil && len(todo) > 0 {
		var total int64
		for _, e := range todo {
			total += e.Size
		}
		pr.Start(s.a.Name, len(todo), total)
		defer pr.End(s.a.Name)
	}
	// Last of all, once every delivery is collected: a message
	// delivered and recorded whose DELE was not sent in this session
	// (it ended first) has its audit line too; with keep none was due,
	// the session ending early or not.
	defer func() {
		onServer := onServerNotDeleted
		if s.a.Keep {
			onServer = onServerKept
		}
		for _, e := range todo {
			s.audited(e, onServer)
		}
	}()
	c := s.c
	careful := s.p.isCareful(s.mailbox) || s.failedBefore(todo)
	pipelined := c.Pipelining() && !careful
	window := 1
	if pipelined {
		window = 2*maxWindow + 1 // each RETR with its LIST, and a closing command
	}
	// Round limits: RETRs and DELEs, RETRs alone.
	perRound, retrsPerRound := maxWindow, maxWindow
	if careful {
		retrsPerRound = 1
	}
	defer func() {
		switch {
		case err == nil:
			// A graceful stop may have left the message that broke
			// the round on the server: only a careful poll that got
			// through clears the mark.
			if careful && !s.stopping() {
				if err := s.p.setCareful(s.mailbox, false); err != nil {
					s.log.Warn("clearing the careful mark", "err", err)
				}
			}
		case c.Broken() != nil && ctx.Err() == nil:
			// A round broke off: replies out of step, or one that
			// missed its deadline.
			if err := s.p.setCareful(s.mailbox, true); err != nil {
				s.log.Warn("setting the careful mark: the next one-shot run is not careful", "err", err)
			}
		}
	}()
	var inflight int64 // LIST sizes of the outstanding RETRs
	var held int64     // bytes of the messages read and not yet delivered, or being delivered
	spoolLimit := int64(spoolWindow)
	if s.p.spoolWindow > 0 {
		spoolLimit = s.p.spoolWindow
	}
	var inflightMem int64 // the part of inflight a spool will hold in memory (inMemory)
	var heldMem int64     // the part of held in memory
	var queue opQueue     // sent, reply not yet read, in command order
	var deles []entry     // recorded durably, DELE not yet sent
	var recorded []entry  // delivered and recorded, awaiting the store's fsync
	// A round is the commands between two points where the replies are
	// known to be in step: up to maxWindow commands and the windows of
	// messages, all sent at once with PIPELINING, one after the other
	// without it, then the closing command (closeRound).
	var unchecked []retrieved // read in the open round
	var last entry            // the open round's last RETR; zero if none
	roundCmds := 0            // RETRs and DELEs sent in the open round
	roundRetrs := 0           // RETRs sent in the open round
	tailBracket := false      // the last command sent in the round is the LIST after its last RETR
	closing := false          // the round's closing command is known
	retrs := 0                // RETRs in queue
	par := parallel(s.disp)
	results := make(chan delivery, par)
	running := 0 // deliveries started and not yet collected
	// A round's messages are started together when it ends; pool lets
	// par of them run at once, and the rest wait their turn without
	// holding up this loop, which may be blocked on the next round's
	// replies meanwhile.
	pool := newWorkers(par)
	ended := make(chan struct{}) // closed when fetch returns: deliveries not yet begun are not begun
	var fatal error
	collect := func(d delivery) {
		running--
		held -= d.size
		heldMem -= inMemory(d.size)
		s.progressDone(d.e)
		switch {
		case d.err != nil:
			if fatal == nil {
				fatal = d.err
			}
		case d.ok:
			s.res.Delivered++
			if d.audit.postmaster() {
				s.res.Postmaster++
			}
			if s.pending == nil {
				s.pending = map[int]*audit{}
			}
			s.pending[d.e.Num] = d.audit
			recorded = append(recorded, d.e)
		case d.skipped:
		default:
			s.res.Failed++
		}
	}
	// Messages read but never started are released with the session.
	defer func() {
		for _, r := range unchecked {
			r.m.Close()
		}
	}()
	// Whatever happens, no delivery is abandoned half-way: wait for all.
	// Only messages whose round ended in step are ever started; what was
	// read after a desync never is. One started but still waiting for its
	// turn is left on the server.
	defer func() {
		close(ended)
		for running > 0 {
			collect(<-results)
		}
		pool.Close()
	}()
	start := func(r retrieved) {
		running++
		pool.Go(func() {
			var d delivery
			select {
			case <-ended:
				d = delivery{e: r.e, size: r.m.Size(), skipped: true}
			default:
				if s.stopping() || ctx.Err() != nil {
					// Graceful stop: what is being delivered is
					// finished; a message read but not yet being
					// delivered is left on the server. A server with
					// EXPIRE 0 then gets no QUIT at all (see
					// keepConnUpdate), as it might expire it.
					d = delivery{e: r.e, size: r.m.Size(), skipped: true}
				} else {
					if s.p.Deliveries != nil {
						s.p.Deliveries.Add(1)
					}
					d = s.deliver(ctx, r)
					if s.p.Deliveries != nil {
						s.p.Deliveries.Add(-1)
					}
				}
			}
			// Delivered, failed or left: the spool is done with.
			r.m.Close()
			select {
			case results <- d:
			default:
				// The loop is busy (reading a round's replies): the
				// result waits for it without holding this worker.
				go func() { results <- d }()
			}
		})
	}
	flush := func() error {
		if len(recorded) == 0 {
			return nil
		}
		if err := s.store.Sync(); err != nil {
			return fmt.Errorf("uidl store: %w", err)
		}
		crashpoint.Hit("journal-synced")
		if s.p.afterSync != nil {
			s.p.afterSync()
		}
		if s.a.Keep {
			// Not due for delete_after either: delivered just now.
			for _, e := range recorded {
				s.audited(e, onServerKept)
			}
		} else {
			// A message fetched again (fetch_all) may be one whose
			// DELE the server keeps refusing.
			ok := s.deletable(recorded)
			deles = append(deles, ok...)
			for _, e := range recorded {
				if !slices.Contains(ok, e) {
					s.audited(e, onServerNotDeleted)
				}
			}
		}
		recorded = recorded[:0]
		return nil
	}
	// confirmed queues DELE for a message delivered before whose
	// identity was just confirmed; anything its check recorded is made
	// durable first.
	confirmed := func(e entry, id uidl.Identity) error {
		if s.a.Keep && !s.expired(e, id) || s.deleSuspended(e) {
			return nil
		}
		if err := s.store.Sync(); err != nil {
			return fmt.Errorf("uidl store: %w", err)
		}
		if s.p.afterSync != nil {
			s.p.afterSync()
		}
		deles = append(deles, e)
		return nil
	}
	// endRound starts the deliveries of a round that ended in step.
	endRound := func() error {
		// The round ended in step: its messages are the ones their
		// UIDs name. Only now may a check of a message seen before
		// (reuse.go) decide anything: a copy read out of step would
		// be another message's.
		all := unchecked // its array serves the next round
		for len(unchecked) > 0 {
			// Taken off as it is handled: what is left when this
			// returns early is closed with the session (see fetch).
			r := unchecked[0]
			unchecked = unchecked[1:]
			s.retrOK(r.e)
			if !s.v.byCopy[r.e.Num] {
				start(r)
				continue
			}
			delete(s.v.byCopy, r.e.Num)
			id, err := r.identity()
			if err != nil {
				r.m.Close()
				return fmt.Errorf("retr %d (uid %s): %w", r.e.Num, r.e.UID, err)
			}
			old, err := s.verified(r.e, id)
			if err != nil {
				r.m.Close()
				return err
			}
			if !old {
				if !s.v.counted[r.e.Num] {
					s.res.New++
				}
				start(r)
				continue
			}
			// Delivered before: a server that expires it now loses
			// nothing (keepConnUpdate).
			held -= r.m.Size()
			heldMem -= inMemory(r.m.Size())
			r.m.Close()
			s.retrieved--
			s.progressDone(r.e)
			if s.v.counted[r.e.Num] {
				s.res.New--
			}
			if err := confirmed(r.e, id); err != nil {
				return err
			}
		}
		clear(all) // the messages are the deliveries' now
		unchecked = all[:0]
		closing, last, roundCmds, roundRetrs, tailBracket = false, entry{}, 0, 0, false
		return nil
	}
	next := 0
	for {
		if fatal != nil {
			return fatal
		}
		// Collect finished deliveries without waiting.
	drain:
		for running > 0 {
			select {
			case d := <-results:
				collect(d)
			default:
				break drain
			}
		}
		// A batch is full, or nothing more is being delivered and no
		// RETR is left to send: the last records join the DELEs that
		// go out together (see holdDeles).
		if len(recorded) >= batch || len(recorded) > 0 && next >= len(todo) && running == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
		if !closing {
			// Fill the open round: DELEs first, then RETRs, as far as
			// the window and the round's limits allow.
			// Once every RETR is sent, DELEs wait for the deliveries
			// still running (unless they fill a round): a round of
			// DELEs costs a round trip, and one round for all of them
			// beats one per batch that happens to become durable.
			holdDeles := next >= len(todo) && running > 0 && len(deles) < perRound
			for queue.len() < window && roundCmds < perRound && len(deles) > 0 && !holdDeles {
				e := deles[0]
				if err := c.SendDele(e.Num); err != nil {
					return err
				}
				deles = deles[1:]
				queue.push(op{verb: "DELE", e: e})
				roundCmds++
				tailBracket = false
			}
			// A message stays in its spool until its delivery is
			// over: in memory up to deliver.DefaultSpoolMem, the rest
			// in a file. So two windows count the messages read and
			// being delivered as well as those on the wire: their
			// memory (memWindow) and their spool (spoolWindow, the
			// disk space a session may take). A message bigger than a
			// window is retrieved only when nothing else is in flight,
			// waiting or being delivered.
			retrOK := func() bool {
				if next >= len(todo) || s.stopping() || ctx.Err() != nil || roundCmds >= perRound || roundRetrs >= retrsPerRound {
					return false
				}
				sz := todo[next].Size
				return (retrs == 0 && held == 0) ||
					inflight+held+sz <= spoolLimit && inflightMem+heldMem+inMemory(sz) <= memWindow
			}
			for queue.len() < window && retrOK() {
				e := todo[next]
				inflight += e.Size
				inflightMem += inMemory(e.Size)
				next++
				if err := c.SendRetr(e.Num); err != nil {
					return err
				}
				queue.push(op{verb: "RETR", e: e})
				retrs++
				roundCmds++
				roundRetrs++
				last = e
				tailBracket = false
				if pipelined {
					// Its bracket, in the same write; without
					// PIPELINING it follows the RETR reply.
					if err := c.SendList(e.Num); err != nil {
						return err
					}
					queue.push(op{verb: "LIST", e: e, bracket: true})
					tailBracket = true
				}
			}
			more := roundCmds < perRound && len(deles) > 0 && !holdDeles || retrOK()
			if !more && roundCmds > 0 && (queue.len() < window || tailBracket) {
				// Nothing more joins this round: it ends with a reply
				// that names itself (see closeRound). The LIST after
				// its last RETR is one, if nothing came after it.
				switch {
				case tailBracket && queue.len() == 0:
					// Read and found in step already (without
					// PIPELINING), and the server silent since.
					if err := endRound(); err != nil {
						return err
					}
				case tailBracket:
					queue.last().close = true
					closing = true
				default:
					verb, send := "STAT", c.SendStat
					if last.Num != 0 {
						verb, send = "LIST", func() error { return c.SendList(last.Num) }
					}
					if err := send(); err != nil {
						return err
					}
					queue.push(op{verb: verb, e: last, close: true})
					closing = true
				}
				if closing && pipelined && next >= len(todo) && len(deles) == 0 && s.lastRound(roundRetrs > 0, running > 0 || len(recorded) > 0) {
					// Nothing is left to send: QUIT goes in
					// the same write, and the round ends with
					// its reply (see lastRound).
					if err := c.SendQuit(); err != nil {
						return err
					}
					queue.last().close = false
					queue.push(op{verb: "QUIT", close: true})
				}
			}
		}
		if queue.len() == 0 {
			if running > 0 {
				collect(<-results)
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			if len(deles) > 0 {
				continue
			}
			return ctx.Err()
		}
		o := queue.pop()
		switch o.verb {
		case "DELE":
			if err := c.ReadDele(); err != nil {
				if !pop3.IsERR(err) {
					return err
				}
				// The message stays; it is recorded, so a later poll
				// tries DELE again.
				s.deleRefused(o.e, err)
				s.audited(o.e, onServerRefused)
				continue
			}
			s.res.Deleted++
			if s.pending[o.e.Num] != nil {
				s.audited(o.e, onServerDeleted)
			} else if age, ok := s.exp.age[o.e.Num]; ok {
				// The audit line of a kept message's deletion.
				s.log.Info("deleted from the server: delivered longer ago than delete_after", "uid", o.e.UID, "msgnum", o.e.Num, "size", o.e.Size, "age", age.Round(time.Second))
			} else if !s.a.QuietMessages {
				// Delivered and recorded by an earlier poll that
				// ended (or was killed) before its DELE: that poll
				// wrote no audit line, so this one says where the
				// message went, as far as the journal knows.
				s.log.Info("message deleted", "uid", o.e.UID, "msgnum", o.e.Num, "size", o.e.Size, "note", noteEarlier, "on_server", onServerDeleted)
			}
			if err := s.deleAccepted(o.e); err != nil {
				s.log.Warn("uidl store: recording an accepted DELE failed", "uid", o.e.UID, "err", err)
			}
		case "RETR":
			retrs--
			inflight -= o.e.Size
			inflightMem -= inMemory(o.e.Size)
			m, id, err := s.retrieve(ctx, o.e)
			if err != nil {
				return err
			}
			s.res.Bytes += m.Size()
			held += m.Size()
			heldMem += inMemory(m.Size())
			unchecked = append(unchecked, retrieved{o.e, m, id})
			if !pipelined {
				// Its bracket: the queue is empty, the server
				// silent (checked as the reply ended).
				if err := c.SendList(o.e.Num); err != nil {
					return err
				}
				queue.push(op{verb: "LIST", e: o.e, bracket: true, close: o.close})
				tailBracket = true // nothing was sent after the RETR
			}
		case "QUIT":
			// Its -ERR (RFC 1939 §6) is Quit's to return, as it
			// is without pipelining; the replies were in step.
			if err := c.ReadQuit(); err != nil && !pop3.IsERR(err) {
				return err
			}
			if err := endRound(); err != nil {
				return err
			}
		case "LIST", "STAT":
			if err := s.closeRound(o.verb, o.e); err != nil {
				if o.bracket {
					// The reply to RETR n ran into the next one, or
					// stood where another should: n's own fault.
					return s.retrFailed(ctx, o.e, err)
				}
				return err
			}
			if o.close {
				if err := endRound(); err != nil {
					return err
				}
			}
		}
	}
}

// opQueue holds the commands sent whose replies are not yet read, in
// command order. It uses its array again from the start each time it
// empties (at least once per round), where taking the first by slicing
// would leave the array behind and allocate anew as commands are added.
type opQueue struct {
	ops  []op
	head int // ops[head:] are queued
}

func (q *opQueue) len() int { return len(q.ops) - q.head }

func (q *opQueue) push(o op) {
	if len(q.ops) == cap(q.ops) && q.head > 0 {
		// Full, with room before head: move the queue to the start
		// rather than grow, so the array stays within what is queued
		// at once even if the queue never empties.
		n := copy(q.ops, q.ops[q.head:])
		clear(q.ops[n:])
		q.ops, q.head = q.ops[:n], 0
	}
	q.ops = append(q.ops, o)
}

// last returns the command queued last; the queue must not be empty.
func (q *opQueue) last() *op { return &q.ops[len(q.ops)-1] }

// pop takes the first command off; the queue must not be empty.
func (q *opQueue) pop() op {
	o := q.ops[q.head]
	q.ops[q.head] = op{}
	q.head++
	if q.head == len(q.ops) {
		q.ops, q.head = q.ops[:0], 0
	}
	return o
}

// lastRound reports whether QUIT may go out with the round being closed,
// as its last command, when no RETR or DELE is left to send after it (the
// caller knows that): so that the session's end costs no round trip of
// its own. QUIT's reply is still waited for (the server's UPDATE may still
// be running until it is sent), and still ends the round, so that the
// round is known to be in step (closeRound, then nothing more from the
// server) before anything read in it is delivered. retrs: the round
// retrieves messages; busy: deliveries are still running or their records
// still to be made durable.
//
// QUIT starts the UPDATE state, which removes the messages marked with DELE
// (RFC 1939 §6), and on a server with EXPIRE 0 those retrieved too (RFC 2449
// §6.7). So QUIT goes early only where no DELE can follow, whatever the
// round's replies and deliveries bring:
//
//   - keep mode without delete_after due (see cutoff), or with no
//     message checked by its copy (reuse.go, deleteafter.go): nothing
//     is ever marked in this session but by the round's own DELEs, each
//     of a message recorded durably before it was sent;
//   - any mode, in a round without RETRs once every delivery is over and
//     recorded (the last round of DELEs): no DELE can come later;
//
// and never on a server with EXPIRE 0 while a retrieved message may still
// fail its delivery (see keepConnUpdate): there QUIT waits for the
// deliveries as before.
func (s *session) lastRound(retrs, busy bool) bool {
	if s.c.Expire0() && (retrs || busy || !s.keepConnUpdate()) {
		return false
	}
	if !retrs && !busy {
		return true
	}
	_, expiry := s.cutoff()
	return s.a.Keep && (!expiry || len(s.v.byCopy) == 0)
}

// closeRound reads the reply to a command whose reply names itself: the
// "LIST n" after each "RETR n" (which, after a round's last RETR, also
// closes the round), or the command that closes a round ending in DELEs.
// That is "LIST n", n being the round's last RETR, or for a round of DELEs
// only STAT (see pop3.Conn.ReadListOf and ReadStat): if the server sent
// one reply too many in the round, this read gets one of the round's own
// replies instead; if it skipped one, the round's last command got this
// one and runs into its deadline (or mistakes it likewise). Either way the
// round never ends in step and none of it is delivered. The Conn catches
// most surplus sooner (a reply when none is due); this closes the race
// with a surplus reply that arrives just after the last one was read.
func (s *session) closeRound(verb string, e entry) error {
	if verb == "STAT" {
		return s.c.ReadStat()
	}
	size, err := s.c.ReadListOf(e)
	if err != nil {
		return err
	}
	if size != e.Size {
		s.log.Debug("LIST size changed after RETR", "uid", e.UID, "msgnum", e.Num, "size", size, "previous", e.Size)
	}
	return nil
}

// retrieved is a message read in full, not yet handed to a delivery.
type retrieved struct {
	e entry
	m *deliver.Message
	// id is the message's identity, digested as it arrived (see
	// retrieve); nil: read the message back for it.
	id *uidl.Identity
}

// identity returns the identity of r's message (messageIdentity).
func (r retrieved) identity() (uidl.Identity, error) {
	if r.id != nil {
		return *r.id, nil
	}
	return messageIdentity(r.e.Size, r.m)
}

// Pipelining and batching limits of one session.
//
// memWindow bounds what a round may hold in memory together with the
// messages still being delivered, so a round can only be sent as the
// deliveries before it end: a small window serialises reading and
// delivering. At 1 MiB, alternating runs of 2000 mixed messages (82 MB)
// from a local dovecot took 1.27-1.39 s over plain POP3 and 1.27-2.07 s
// over POP3S (where the server is 2.5-3 times slower); at 4 MiB 1.18-1.22
// and 1.19-1.50 s, with less CPU, for 4 MiB more peak RSS
// (doc/bench/README.md, TLS=1 popfetch-run.sh).
const (
	deliverers  = 4        // concurrent deliveries through MDAs, SMTP and LMTP
	maildirPar  = 32       // concurrent deliveries when every target is a Maildir
	maxWindow   = 256      // commands (RETR and DELE) per round; with PIPELINING all outstanding at once
	memWindow   = 4 << 20  // memory of the outstanding RETRs plus messages being delivered (see inMemory and the comment above)
	spoolWindow = 64 << 20 // LIST sizes of the same (one message may exceed it alone)
	batch       = 64       // UIDs recorded per journal fsync
)

// parallel is how many deliveries of a session run at once: an MDA
// process or an SMTP/LMTP transaction each is a cost to someone else, so
// few; a Maildir copy is mostly waiting for its fsync, and many copies at
// once share the fsyncs of new/ (deliver.Maildir's group commit) and the
// disk's queue, so many.
func parallel(d Dispatcher) int {
	if m, ok := d.(interface{ allMaildir() bool }); ok && m.allMaildir() {
		return maildirPar
	}
	return deliverers
}

// inMemory is how much of a message of size bytes its spool holds in
// memory.
func inMemory(size int64) int64 { return min(size, deliver.DefaultSpoolMem) }

// delivery is the outcome of one message's delivery goroutine.
type delivery struct {
	e       entry
	size    int64  // of the message in memory, released now
	ok      bool   // delivered and recorded
	audit   *audit // with ok: what its audit line needs
	skipped bool   // not begun (a stop, or the session ended first): left on the server
	err     error  // the session cannot go on (the store failed)
}

// retrieve reads one RETR reply (see pop3.Conn.ReadRetr: any error ends
// the session).
func (s *session) retrieve(ctx context.Context, e entry) (*deliver.Message, *uidl.Identity, error) {
	// The body streams into the spool as it arrives (doc/design.md
	// §2.1): memory stays bounded whatever the message's size, and a
	// reply that fails part-way leaves only a spool that is closed here
	// unread.
	sp := s.newSpool()
	sp.Expect(e.Size)
	m := &deliver.Message{Account: s.a.Name, Server: s.a.Server, User: s.a.Username, UID: e.UID, Fetched: s.p.now(), Spool: sp}
	var w io.Writer = sp
	var dg *digester
	streamed := false
	if e.Size > deliver.DefaultSpoolMem {
		// A message that goes to the spool file is digested on the
		// way in, exactly as the spool takes it: reading it back
		// for its identity would cost a pass over the file after
		// the RETR (a tenth of a second for 50 MB). A smaller one
		// is digested from memory by its delivery, in parallel with
		// the others, rather than here in the session's one reader.
		dg = newDigester()
		defer dg.free()
		tee := &digestTee{sp: sp, d: dg}
		if st, ok := s.disp.(streamer); ok && e.Size >= streamMin {
			if md, rc, ok := st.streamTarget(); ok {
				// Its copy is written in the Maildir's tmp/ as it
				// arrives, beside the spool: the delivery takes it
				// if it is the copy it would write, and m.Close
				// removes it otherwise (a failed RETR, a round out
				// of step, a message delivered before). Its
				// Received field dates from the start of the RETR.
				tee.copy = md.Stream(ctx, m, rc, nil)
				streamed = tee.copy != nil
			}
		}
		w = tee
	}
	_, err := s.c.ReadRetrTo(e, w)
	if err == nil {
		err = sp.Flush()
		if err != nil {
			err = fmt.Errorf("retr %d (uid %s): spool: %w", e.Num, e.UID, err)
		}
	} else if errors.Is(err, pop3.ErrSink) {
		// The spool failed (a full disk), not the server: nothing to
		// count against the message. The server may take it as
		// retrieved (EXPIRE 0): counted, so no QUIT could expire it
		// (keepConnUpdate; the broken connection sends none anyway).
		s.retrieved++
		err = fmt.Errorf("retr %d (uid %s): %w", e.Num, e.UID, err)
	} else {
		err = s.retrFailed(ctx, e, err)
	}
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	s.retrieved++
	if !streamed {
		m.Fetched = s.p.now() // read completely
	}
	var id *uidl.Identity
	if dg != nil {
		i := dg.identity(e.Size)
		id = &i
	}
	return m, id, nil
}

// streamMin is the LIST size from which a message is streamed into its
// Maildir as it arrives (see retrieve): each such copy holds a file and a
// write buffer (64 KiB) until it is delivered, and the spool window lets
// few messages this large be in flight at once (16), where it lets 256
// of 256 KiB. Below it the second write costs little.
const streamMin = 4 << 20

// streamer is a Dispatcher whose messages all have their one copy in one
// Maildir (see singleDrop.streamTarget).
type streamer interface {
	streamTarget() (*deliver.Maildir, deliver.Recipient, bool)
}

// digestTee writes a message to its spool and the bytes the spool took
// to a digester.
type digestTee struct {
	sp   *deliver.Spool
	d    *digester
	copy io.Writer // the Maildir copy being written (deliver.Maildir.Stream), or nil
}

func (t *digestTee) Write(p []byte) (int, error) {
	n, err := t.sp.Write(p)
	t.d.Write(p[:n])
	if t.copy != nil {
		t.copy.Write(p[:n]) // never fails: a copy not written whole is not used
	}
	return n, err
}

// newSpool returns a spool for one message: in memory up to
// deliver.DefaultSpoolMem, beyond that in an unnamed file in the state
// directory's "spool" directory (see deliver.Spool), which is on the
// disk the journal is on and, like it, only popfetch's user can reach.
// The caller closes it when the message's delivery is over, or when the
// message is left.
//
// The spools share spoolMem: the windows that schedule the RETRs count
// the server's LIST sizes, which a server may understate up to the reply
// budget (2×size + 1 MiB), so that a round of maxWindow messages listed
// as tiny could otherwise hold maxWindow × 256 KiB of content, or as many
// headers of up to MaxHeaderBytes, in memory at once. A spool that finds
// no room goes to its file.
//
// The spool directory is opened, and checked, once per poll, when the
// first message needs a file (deliver.SpoolDir), not once per file.
func (s *session) newSpool() *deliver.Spool {
	if s.spoolMem == nil {
		s.spoolMem = deliver.NewSpoolMem(spoolMemShare)
	}
	if s.spoolDir == nil {
		s.spoolDir = deliver.NewSpoolDir(spoolDir(s.a))
	}
	sp := deliver.NewSpoolIn(s.spoolDir, 0)
	sp.Share(s.spoolMem)
	return sp
}

// spoolMemShare is what a session's spools hold in memory together (see
// newSpool): the memory window, with room for spools that grow past the
// size LIST gave them (a spool doubles its memory as it grows).
const spoolMemShare = 2 * memWindow

// spoolDir is where account a's large messages are spooled.
func spoolDir(a *rcfile.Account) string {
	return filepath.Join(a.StateDir, "spool")
}

// retrFailed handles a RETR reply that broke the session. A reply larger
// than its budget (2×LIST size + 1 MiB) is the message's own fault and will
// be again: it is noted at once, like a message over `limit`, so that the
// rest of the mailbox flows even for a one-shot `popfetch fetch`. A
// message that misses its deadline, is refused (-ERR) or gets a reply that
// does not fit it (pop3.ErrMismatch), its own or that of the "LIST n" right
// behind it, in poisonPolls polls in a row (counted in the UIDL journal,
// so that one-shot runs from cron count too) is given up the same way: a stray reply from the server lands on a
// different message each time, a message the server cannot send does not.
// Replies are read in command order and every RETR reply is checked by the
// LIST after it before the next RETR's is read, so the failure is pinned
// to this message even in a pipelined round: a reply that runs into the
// next ones (a "." glued to its last line) fails at its own LIST, not at
// the round's last RETR, which was sent later and is not to blame. A
// dropped connection, a cancelled poll or a surplus reply after this
// message's own says nothing about the message and is not counted:
// otherwise a flaky link would make popfetch abandon whatever happened to
// be on the wire.
func (s *session) retrFailed(ctx context.Context, e entry, err error) error {
	err = fmt.Errorf("retr %d (uid %s): %w", e.Num, e.UID, err)
	if ctx.Err() != nil {
		return err
	}
	var why string
	var ne net.Error
	switch {
	case errors.Is(err, pop3.ErrBudget):
		why = "its reply is far larger than the server's LIST size"
	case errors.As(err, &ne) && ne.Timeout(), pop3.IsERR(err), errors.Is(err, pop3.ErrMismatch):
		if n := s.retrFailures(e); n < poisonPolls {
			return err
		}
		why = fmt.Sprintf("its retrieval failed the same way in %d polls in a row", poisonPolls)
	default:
		return err
	}
	s.log.Error("message cannot be retrieved: "+why+"; leaving it on the server and skipping it from now on (hint: fetch or delete it with another client)",
		"uid", e.UID, "msgnum", e.Num, "size", e.Size, "err", err)
	if s.dryRun {
		return err
	}
	s.res.GivenUp++
	if nerr := s.store.GiveUpSize(e.UID, e.Size, s.p.now()); nerr != nil {
		s.log.Warn("uidl store: recording the message as given up failed", "uid", e.UID, "err", nerr)
	}
	return err
}

// retrFailures counts a poll that failed to retrieve e (see retrFailed)
// and returns the count so far. The journal holds the count, so that
// separate processes (`popfetch fetch` from cron) count together; a dry
// run writes nothing and only reads it.
func (s *session) retrFailures(e entry) int {
	if s.store == nil {
		return 1
	}
	if s.dryRun {
		return s.store.RetrFailures(e.UID) + 1
	}
	n, err := s.store.RetrFailed(e.UID, s.p.now())
	if err != nil {
		s.log.Warn("uidl store: recording a failed retrieval failed", "uid", e.UID, "err", err)
	}
	return n
}

// retrOK ends e's run of failed retrievals: its reply was read whole, in
// step with its round. Only then, not as soon as the reply is read: a
// reply that runs into the LIST after it fails at that LIST, and must not
// count from zero every time.
func (s *session) retrOK(e entry) {
	if s.store == nil || s.dryRun {
		return
	}
	if err := s.store.RetrOK(e.UID, s.p.now()); err != nil {
		s.log.Warn("uidl store: recording a retrieval failed", "uid", e.UID, "err", err)
	}
}

// failedBefore reports whether a message of todo failed to be retrieved
// in the polls before this one and has not been retrieved since: such a
// poll is careful (see fetch), so that the messages before the one that
// fails are delivered, also by a new process each poll.
func (s *session) failedBefore(todo []entry) bool {
	if s.store == nil {
		return false
	}
	for _, e := range todo {
		if s.store.RetrFailures(e.UID) > 0 {
			return true
		}
	}
	return false
}

// deliver dispatches one message and records its UID. It runs on its own
// goroutine; the Dispatcher and the store are safe for concurrent use. A
// failed delivery is logged here; the message stays on the server.
func (s *session) deliver(ctx context.Context, r retrieved) (d delivery) {
	e, m := r.e, r.m
	d.e, d.size = e, m.Size()
	ds := &deliveryState{}
	log := ds.log.init(s.log, slog.String("uid", e.UID), slog.Int("msgnum", e.Num))
	defer func() {
		// A panic in a target must not take the daemon down, nor count
		// as delivered.
		if r := recover(); r != nil {
			log.Error("delivery panicked; message stays on the server", "panic", r)
			d = delivery{e: e, size: m.Size()}
		}
	}()
	if err := s.store.Err(); err != nil {
		// The journal failed (a full or failing disk): a copy made now
		// could not be recorded and would be delivered again next poll.
		d.err = fmt.Errorf("uidl store: not delivering %s: %w", e.UID, err)
		return d
	}
	id, err := r.identity()
	if err != nil {
		log.Error("delivery failed; message stays on the server and is retried next poll", "size", m.Size(), "err", err)
		return d
	}
	p := &ds.p
	*p = progress{s: s.store, uid: e.UID, id: id, shared: s.v.listed[e.UID] > 1, now: s.nowFunc}
	p.copies = p.first[:0]
	if err := s.disp.Dispatch(ctx, m, p, log); err != nil {
		args := []any{"size", m.Size(), "err", err}
		if cs := p.made(); len(cs) > 0 {
			// Where the copies made before the failure went: they
			// are recorded, and the retry does not make them again.
			args = append(args, copiesAttr(cs))
		}
		if fv := p.filtered(); len(fv) > 0 {
			args = append(args, filtersAttr(fv))
		}
		log.Error("delivery failed; message stays on the server and is retried next poll", args...)
		return d
	}
	// The invariant (doc.go): recorded only after delivery; DELE only after
	// the store's Sync in fetch's flush.
	if err := s.store.AddIdentity(e.UID, id, s.p.now(), false); err != nil {
		d.err = fmt.Errorf("uidl store: record %s: %w", e.UID, err)
		return d
	}
	// recordCopy looks only at UIDs listed more than once (p.shared):
	// one map lookup per message fewer.
	if p.shared {
		if err := s.recordCopy(e, id); err != nil {
			d.err = err
			return d
		}
	}
	if s.a.QuietMessages {
		log.Debug("delivered", "size", m.Size())
	}
	ds.audit.fill(e, m, p.take(), s.auditLogged(ctx))
	ds.audit.filters = p.filtered()
	d.ok, d.audit = true, &ds.audit
	return d
}

// deliveryState is what one delivery needs beyond its message, in one
// allocation: its logger, its progress, and the audit kept until its DELE
// (which keeps the rest alive that long too: a few hundred bytes).
type deliveryState struct {
	log   lazyLog
	p     progress
	audit audit
}

type progress struct {
	mu     sync.Mutex
	copies []Copy  // where each copy went, as the Dispatcher said (Copied)
	first  [1]Copy // copies' array while it holds one (deliver)
	s      *uidl.Store
	uid    string
	id     uidl.Identity // of the message, recorded with an intent
	// shared: the listing names more than one message with this UID, so
	// recipients recorded without an identity are not taken as done.
	shared bool
	now    func() time.Time
	got    []string
	// filters are the filters' verdicts (Filtered), for the audit line.
	filters []FilterVerdict
}

func (p *progress) Done(rcpt string) bool {
	if p.got == nil {
		p.got = p.s.RecipientsOf(p.uid, p.id, p.shared)
		if p.got == nil {
			p.got = []string{}
		}
	}
	for _, r := range p.got {
		if r == rcpt {
			return true
		}
	}
	return false
}

func (p *progress) Intend(path string) error {
	if err := p.s.IntendIdentity(p.uid, path, p.id); err != nil {
		if p.s.Err() != nil {
			// The journal failed: the delivery could not be recorded
			// either, and a copy made now would come again.
			return fmt.Errorf("%w: %w", errJournalBroken, err)
		}
		return err
	}
	return nil
}

// errJournalBroken is wrapped by an Intend whose journal failed (a full
// or failing state disk): deliverCopy then withdraws the copy.
var errJournalBroken = errors.New("the UIDL journal failed")

// Copied notes where one copy went, for the audit line.
func (p *progress) Copied(c Copy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.copies = append(p.copies, c)
}

// Filtered notes the filters' verdicts on the message, for its audit
// line.
func (p *progress) Filtered(vs []FilterVerdict) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.filters = vs
}

// filtered returns the verdicts Filtered noted.
func (p *progress) filtered() []FilterVerdict {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.filters
}

// made returns the copies noted so far.
func (p *progress) made() []Copy {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Copy(nil), p.copies...)
}

// take returns the copies noted, once the Dispatcher is done: made
// without the copy. A Copied after it would start a slice of its own.
func (p *progress) take() []Copy {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.copies
	p.copies = nil
	if len(cs) == 0 {
		return nil // as made
	}
	return cs
}

func (p *progress) Record(rcpt string) error {
	if err := p.s.AddRecipientIdentity(p.uid, rcpt, p.id, p.now()); err != nil {
		return err
	}
	p.got = append(p.got, rcpt)
	return nil
}
