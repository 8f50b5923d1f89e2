package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest/fault"
	"github.com/popfetch/popfetch/deliver/ldapdir"
	"github.com/popfetch/popfetch/deliver/learned"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// fakeLDAP is a directory the tests change between polls: users, groups
// and an error to answer with.
type fakeLDAP struct {
	mu     sync.Mutex
	users  map[string][]string
	groups map[string][]string
	err    error
	loads  int
	last   ldapdir.Config
}

func (f *fakeLDAP) load(_ context.Context, c ldapdir.Config) (*ldapdir.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads++
	f.last = c
	if f.err != nil {
		return nil, f.err
	}
	s := &ldapdir.Snapshot{Users: map[string][]string{}, Groups: map[string][]string{}}
	for u, as := range f.users {
		s.Users[u] = slices.Clone(as)
	}
	for g, ms := range f.groups {
		s.Groups[g] = slices.Clone(ms)
	}
	return s, nil
}

func (f *fakeLDAP) set(fn func(f *fakeLDAP)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeLDAP) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loads
}

// clock is a settable Poller.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ldapRig is a multidrop account with an ldap block (configured user
// alice; refresh 5m, grace 1h), a fake directory with dave, and a Poller
// delivering to fault targets.
type ldapRig struct {
	p         *Poller
	a         *rcfile.Account
	srv       *pop3test.Server
	dir       *fakeLDAP
	clk       *clock
	users, pm *fault.Target
	logs      *testutil.SyncBuffer
}

func newLDAPRig(t *testing.T, msgs ...pop3test.Message) *ldapRig {
	t.Helper()
	r := &ldapRig{
		srv:   pop3test.NewServer(t, pop3test.Options{Messages: msgs}),
		dir:   &fakeLDAP{users: map[string][]string{"dave": {"dave@example.com", "d.jones@example.com"}}},
		clk:   &clock{t: time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)},
		users: fault.New(), pm: fault.New(),
		logs: &testutil.SyncBuffer{},
	}
	r.a = testAccount(t, r.srv)
	r.a.Multidrop = testMultidrop(mdUser("alice", "alice"))
	r.a.Multidrop.LDAP = &rcfile.LDAP{URL: "ldaps://dc.example.com", BaseDN: "dc=example,dc=com",
		BindDN: "cn=popfetch,dc=example,dc=com", Password: rcfile.Password{Inline: "secret"},
		Refresh: 5 * time.Minute, Grace: time.Hour}
	r.p = &Poller{
		Log:           slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Now:           r.clk.now,
		LoadDirectory: r.dir.load,
		Dispatcher: func(a *rcfile.Account) (Dispatcher, error) {
			return newMultidrop(a, r.users, r.pm, "test.host")
		},
	}
	return r
}

func (r *ldapRig) poll(t *testing.T, opts PollOptions) Result {
	t.Helper()
	return r.p.PollWith(context.Background(), r.a, opts)
}

func (r *ldapRig) add(msgs ...pop3test.Message) {
	r.srv.SetMessages(append(r.srv.Messages(), msgs...))
}

func copies(t *fault.Target, user string) string {
	got := t.Copies(user)
	slices.Sort(got)
	return strings.Join(got, ",")
}

// An LDAP user routes on the first poll; after the refresh interval a
// user added in LDAP routes too, and before it the directory is not read
// again for mail to known users (mail to an unknown one reloads it: see
// TestDirectoryReloadForUnknown).
func TestDirectoryLoadAndRefresh(t *testing.T) {
	r := newLDAPRig(t, domainMsg("m1", "To: D. Jones <d.jones@example.com>\nMessage-ID: <1@x>"))
	res := r.poll(t, PollOptions{})
	if res.Err != nil || res.Delivered != 1 || copies(r.users, "dave") != "m1" {
		t.Fatalf("first poll = %+v; dave got %q", res, copies(r.users, "dave"))
	}
	if c := r.dir.last; c.URL != "ldaps://dc.example.com" || c.Password != "secret" || c.BindDN == "" || c.BaseDN != "dc=example,dc=com" {
		t.Errorf("loader got %+v", c)
	}
	st := res.Directory
	if st == nil || st.Source != "ldap" || st.Users != 1 || st.Addresses != 2 || st.Stale || !st.LoadedAt.Equal(r.clk.now()) || !st.Available() {
		t.Fatalf("Directory = %+v", st)
	}

	r.dir.set(func(f *fakeLDAP) { f.users["erin"] = []string{"erin@example.com"} })
	r.add(domainMsg("m2", "To: dave@example.com\nMessage-ID: <2@x>"))
	r.clk.add(4 * time.Minute)
	res = r.poll(t, PollOptions{})
	if res.Err != nil || r.dir.count() != 1 || copies(r.users, "dave") != "m1,m2" || res.Directory.Users != 1 {
		t.Fatalf("poll within refresh = %+v; loads %d, dave %q", res, r.dir.count(), copies(r.users, "dave"))
	}

	r.add(domainMsg("m3", "To: erin@example.com\nMessage-ID: <3@x>"))
	r.clk.add(time.Minute)
	res = r.poll(t, PollOptions{})
	if res.Err != nil || r.dir.count() != 2 || copies(r.users, "erin") != "m3" || res.Directory.Users != 2 {
		t.Fatalf("poll after refresh = %+v; loads %d, erin %q", res, r.dir.count(), copies(r.users, "erin"))
	}
}

// FreshDirectory loads within the refresh interval; a change of the ldap
// settings drops the copy and loads again; a moved block does not.
func TestDirectoryFreshAndSettingsChange(t *testing.T) {
	r := newLDAPRig(t)
	steps := []struct {
		name  string
		edit  func(l *rcfile.LDAP)
		fresh bool
		loads int
	}{
		{"first", nil, false, 1},
		{"cached", nil, false, 1},
		{"fresh", nil, true, 2},
		{"moved block", func(l *rcfile.LDAP) { l.Range.Start.Line = 42; l.Password.Range.Start.Line = 43 }, false, 2},
		{"base_dn changed", func(l *rcfile.LDAP) { l.BaseDN = "ou=staff,dc=example,dc=com" }, false, 3},
		{"cached again", nil, false, 3},
		{"password source changed", func(l *rcfile.LDAP) { l.Password = rcfile.Password{Env: "LDAP_PW"} }, false, 4},
	}
	t.Setenv("LDAP_PW", "pw2")
	for _, s := range steps {
		if s.edit != nil {
			l := *r.a.Multidrop.LDAP
			s.edit(&l)
			md := *r.a.Multidrop
			md.LDAP = &l
			r.a.Multidrop = &md
		}
		if res := r.poll(t, PollOptions{FreshDirectory: s.fresh}); res.Err != nil {
			t.Fatalf("%s: %v", s.name, res.Err)
		}
		if got := r.dir.count(); got != s.loads {
			t.Fatalf("%s: %d loads; want %d", s.name, got, s.loads)
		}
	}
	if r.dir.last.Password != "pw2" {
		t.Errorf("password after change = %q", r.dir.last.Password)
	}
}

// A failed load within the grace period routes with the last good copy
// (Stale, one Warn per failure streak); past it, or with no copy, or with
// an empty directory, the poll fails with ErrDirectory before anything is
// fetched: the mail stays on the server and nothing reaches the
// postmaster.
func TestDirectoryOutage(t *testing.T) {
	down := errors.New("dial tcp 192.0.2.1:636: connection refused")
	tests := []struct {
		name     string
		prime    bool          // a good load before the outage
		after    time.Duration // from the good load to the failing polls
		fail     func(f *fakeLDAP)
		wantErr  string
		wantDone bool // the polls route with the old copy
	}{
		{"within grace", true, 10 * time.Minute, func(f *fakeLDAP) { f.err = down }, "", true},
		{"beyond grace", true, 61 * time.Minute, func(f *fakeLDAP) { f.err = down }, "older than the grace period", false},
		{"no copy", false, 0, func(f *fakeLDAP) { f.err = down }, "no good copy", false},
		{"empty directory, no copy", false, 0, func(f *fakeLDAP) { f.users = nil }, "yields no users", false},
		{"empty directory within grace", true, 10 * time.Minute, func(f *fakeLDAP) { f.users = map[string][]string{} }, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newLDAPRig(t)
			if tc.prime {
				if res := r.poll(t, PollOptions{}); res.Err != nil {
					t.Fatal(res.Err)
				}
			}
			r.dir.set(tc.fail)
			r.clk.add(tc.after)
			failedAt := r.clk.now()
			for i, uid := range []string{"m1", "m2"} {
				r.add(domainMsg(uid, "To: dave@example.com\nMessage-ID: <"+uid+"@x>"))
				res := r.poll(t, PollOptions{})
				st := res.Directory
				if st == nil || st.LastError == "" || !st.FailingSince.Equal(failedAt) {
					t.Fatalf("poll %d: Directory = %+v", i, st)
				}
				if tc.wantDone {
					if res.Err != nil || !st.Stale || st.Users != 1 || !st.GraceUntil.Equal(failedAt.Add(-tc.after).Add(time.Hour)) {
						t.Fatalf("poll %d = %+v, Directory %+v", i, res, st)
					}
					continue
				}
				if !errors.Is(res.Err, ErrDirectory) || !strings.Contains(res.Err.Error(), tc.wantErr) || st.Available() || st.Stale {
					t.Fatalf("poll %d: err = %v, Directory %+v; want ErrDirectory with %q", i, res.Err, st, tc.wantErr)
				}
				if res.Messages != 0 || res.Delivered != 0 || len(r.srv.Messages()) != i+1 || r.srv.Sessions() != btoi(tc.prime) {
					t.Fatalf("poll %d fetched: %+v; %d on the server, %d sessions", i, res, len(r.srv.Messages()), r.srv.Sessions())
				}
				r.clk.add(time.Minute)
			}
			if got := copies(r.pm, "postmaster"); got != "" {
				t.Errorf("postmaster got %q", got)
			}
			if tc.wantDone && copies(r.users, "dave") != "m1,m2" {
				t.Errorf("dave got %q", copies(r.users, "dave"))
			}
			warns := strings.Count(r.logs.String(), "level=WARN msg=\"directory unavailable")
			if want := btoi(tc.wantDone); warns != want {
				t.Errorf("%d Warn lines; want %d:\n%s", warns, want, r.logs.String())
			}
			// The directory answers again: the mail waiting routes, and
			// a later failure warns again (a new streak).
			r.dir.set(func(f *fakeLDAP) { f.err, f.users = nil, map[string][]string{"dave": {"dave@example.com"}} })
			r.clk.add(5 * time.Minute) // past the retry backoff (at most refresh)
			res := r.poll(t, PollOptions{})
			if res.Err != nil || res.Directory.LastError != "" || res.Directory.Stale || copies(r.users, "dave") != "m1,m2" || len(r.srv.Messages()) != 0 {
				t.Fatalf("after recovery: %+v, Directory %+v, dave %q", res, res.Directory, copies(r.users, "dave"))
			}
			r.dir.set(tc.fail)
			r.clk.add(6 * time.Minute)
			r.poll(t, PollOptions{})
			if got := strings.Count(r.logs.String(), "level=WARN msg=\"directory unavailable"); got != 1+btoi(tc.wantDone) {
				t.Errorf("after a second outage: %d Warn lines", got)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A group address delivers to its members; a configured user wins an
// address the directory gives to another user, and a configured user who
// is in the directory keeps its own deliver block and gains the
// directory's addresses.
func TestDirectoryMerge(t *testing.T) {
	r := newLDAPRig(t,
		domainMsg("m1", "To: staff@example.com\nMessage-ID: <1@x>"),
		domainMsg("m2", "To: boss@example.com\nMessage-ID: <2@x>"),
		domainMsg("m3", "To: alice.smith@example.com\nMessage-ID: <3@x>"),
	)
	own := fault.New()
	r.a.Multidrop.Users = []*rcfile.User{{Name: "alice", Addresses: []string{"alice", "boss@example.com"},
		Deliver: &rcfile.Destination{Maildir: "/unused"}}}
	r.p.Dispatcher = func(a *rcfile.Account) (Dispatcher, error) {
		d, err := newMultidrop(a, r.users, r.pm, "test.host")
		if err != nil {
			return nil, err
		}
		d.(*multidrop).users["alice"] = own // alice's own deliver block
		return d, nil
	}
	r.dir.set(func(f *fakeLDAP) {
		f.users = map[string][]string{
			"alice": {"alice.smith@example.com"},
			"dave":  {"dave@example.com", "boss@example.com"},
			"erin":  {"erin@example.com"},
		}
		f.groups = map[string][]string{"staff@example.com": {"dave", "erin"}}
	})
	res := r.poll(t, PollOptions{})
	if res.Err != nil || res.Delivered != 3 || res.Directory.Groups != 1 {
		t.Fatalf("Poll = %+v", res)
	}
	for who, want := range map[string]string{"dave": "m1", "erin": "m1", "alice": ""} {
		if got := copies(r.users, who); got != want {
			t.Errorf("default target: %s got %q; want %q", who, got, want)
		}
	}
	if got := copies(own, "alice"); got != "m2,m3" {
		t.Errorf("alice's own target got %q; want m2,m3", got)
	}
	if got := copies(r.pm, "postmaster"); got != "" {
		t.Errorf("postmaster got %q", got)
	}
	if l := r.logs.String(); !strings.Contains(l, "boss@example.com of user dave already belongs to alice") {
		t.Errorf("conflict not logged:\n%s", l)
	}
}

// A learned route to a user only the directory has routes at the poll,
// and the merge reports only its own skipped entries: not a learned route
// whose user the merge made known (once counted among the ignored, which
// made the merge's report shrink under it), nor one to a user still
// unknown.
func TestDirectoryLearnedRouteToDirectoryUser(t *testing.T) {
	r := newLDAPRig(t,
		domainMsg("m1", "To: old.dave@example.com\nMessage-ID: <1@x>"),
		domainMsg("m2", "To: alice@example.com\nMessage-ID: <2@x>"),
	)
	path := LearnedPath(r.a)
	for _, l := range []struct{ key, user string }{{"old.dave@example.com", "dave"}, {"old.zed@example.com", "zed"}} {
		if _, err := learned.Add(path, l.key, l.user, "test"); err != nil {
			t.Fatal(err)
		}
	}
	r.dir.set(func(f *fakeLDAP) {
		f.users = map[string][]string{"dave": {"dave@example.com"}, "erin": {"alice@example.com"}}
	})
	res := r.poll(t, PollOptions{})
	if res.Err != nil || res.Delivered != 2 {
		t.Fatalf("Poll = %+v", res)
	}
	for who, want := range map[string]string{"dave": "m1", "alice": "m2"} {
		if got := copies(r.users, who); got != want {
			t.Errorf("%s got %q; want %q", who, got, want)
		}
	}
	l := r.logs.String()
	if !strings.Contains(l, "alice@example.com of user erin already belongs to alice") || strings.Contains(l, "learned route") {
		t.Errorf("want the merge's conflict logged and no learned route among its skipped entries:\n%s", l)
	}
}

// The Poller's directories are safe for concurrent polls of different
// accounts, and a slow load of one account does not hold up another's.
func TestDirectorySlowLoadDoesNotBlockOthers(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var p Poller
	p.LoadDirectory = func(ctx context.Context, c ldapdir.Config) (*ldapdir.Snapshot, error) {
		if c.URL == "ldaps://slow" {
			close(started)
			<-release
		}
		return &ldapdir.Snapshot{Users: map[string][]string{"u": {"u@example.com"}}}, nil
	}
	acct := func(name, url string) *rcfile.Account {
		return &rcfile.Account{Name: name, Multidrop: &rcfile.Multidrop{LDAP: &rcfile.LDAP{URL: url}}}
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := p.directory(context.Background(), acct("slow", "ldaps://slow"), false, slog.New(slog.DiscardHandler))
		done <- err
	}()
	<-started
	fast := make(chan error, 1)
	go func() {
		_, _, err := p.directory(context.Background(), acct("fast", "ldaps://fast"), false, slog.New(slog.DiscardHandler))
		fast <- err
	}()
	select {
	case err := <-fast:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a slow directory load blocks another account's")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// CheckDirectory loads without the cache and reports an empty directory
// or a failure as ErrDirectory.
func TestCheckDirectory(t *testing.T) {
	f := &fakeLDAP{users: map[string][]string{"dave": {"dave@example.com"}}}
	p := &Poller{LoadDirectory: f.load}
	a := &rcfile.Account{Name: "x", Multidrop: &rcfile.Multidrop{LDAP: &rcfile.LDAP{URL: "ldaps://dc"}}}
	for i := 0; i < 2; i++ {
		if s, err := p.CheckDirectory(context.Background(), a); err != nil || len(s.Users) != 1 {
			t.Fatalf("CheckDirectory = %v, %v", s, err)
		}
	}
	if f.count() != 2 {
		t.Errorf("%d loads; want 2", f.count())
	}
	f.set(func(f *fakeLDAP) { f.users = nil })
	if _, err := p.CheckDirectory(context.Background(), a); !errors.Is(err, ErrDirectory) || !strings.Contains(err.Error(), "no users") {
		t.Errorf("empty: %v", err)
	}
	f.set(func(f *fakeLDAP) { f.err = fmt.Errorf("bind: invalid credentials") })
	if _, err := p.CheckDirectory(context.Background(), a); !errors.Is(err, ErrDirectory) {
		t.Errorf("failure: %v", err)
	}
	if s, err := p.CheckDirectory(context.Background(), &rcfile.Account{Multidrop: &rcfile.Multidrop{}}); s != nil || err != nil {
		t.Errorf("no ldap: %v, %v", s, err)
	}
}

var _ deliver.Target = (*fault.Target)(nil)

// While loads fail, a regular poll does not load again before the
// backoff (a minute, doubling per failure up to refresh): within grace it
// routes with the last good copy, without a copy it fails with
// ErrDirectory and fetches nothing. A FreshDirectory poll always loads.
func TestDirectoryRetryBackoff(t *testing.T) {
	for _, grace := range []time.Duration{time.Hour, 0} {
		t.Run(fmt.Sprint("grace ", grace), func(t *testing.T) {
			r := newLDAPRig(t)
			r.a.Multidrop.LDAP.Grace = grace
			if res := r.poll(t, PollOptions{}); res.Err != nil {
				t.Fatal(res.Err)
			}
			r.dir.set(func(f *fakeLDAP) { f.err = errors.New("i/o timeout") })
			r.clk.add(6 * time.Minute)
			// step: clock advance before the poll, fresh, loads wanted after it.
			for i, st := range []struct {
				after time.Duration
				fresh bool
				loads int
			}{
				{0, false, 2},                // refresh due: loads, fails (1)
				{30 * time.Second, false, 2}, // within 1m: not tried
				{30 * time.Second, false, 3}, // 1m after: tries, fails (2)
				{time.Minute, false, 3},      // within 2m: not tried
				{0, true, 4},                 // fresh: tries, fails (3)
				{3 * time.Minute, false, 4},  // within 4m
				{time.Minute, false, 5},      // 4m after: fails (4)
				{4 * time.Minute, false, 5},  // within 5m (refresh caps 8m)
				{time.Minute, false, 6},      // 5m after
			} {
				r.clk.add(st.after)
				r.add(domainMsg(fmt.Sprint("m", i), fmt.Sprintf("To: dave@example.com\nMessage-ID: <%d@x>", i)))
				res := r.poll(t, PollOptions{FreshDirectory: st.fresh})
				if got := r.dir.count(); got != st.loads {
					t.Fatalf("step %d: %d loads; want %d", i, got, st.loads)
				}
				if grace > 0 && (res.Err != nil || !res.Directory.Stale) {
					t.Fatalf("step %d within grace: err %v, directory %+v; want the stale copy", i, res.Err, res.Directory)
				}
				if grace == 0 && (!errors.Is(res.Err, ErrDirectory) || res.Messages != 0 || res.Directory.Available()) {
					t.Fatalf("step %d, grace 0: %+v (err %v); want ErrDirectory before fetching", i, res, res.Err)
				}
			}
			if got := copies(r.pm, "postmaster"); got != "" {
				t.Errorf("postmaster got %q", got)
			}
		})
	}
}

// A timed refresh that more than halves the users is not taken (the last
// good copy serves within grace, one Warn with both counts); a
// FreshDirectory load (popfetch now, SIGHUP) confirms it; a shrink to
// half exactly is taken.
func TestDirectoryShrinkConfirmed(t *testing.T) {
	r := newLDAPRig(t)
	big := map[string][]string{}
	for i := range 10 {
		big[fmt.Sprintf("u%d", i)] = []string{fmt.Sprintf("u%d@example.com", i)}
	}
	r.dir.set(func(f *fakeLDAP) { f.users = big })
	if res := r.poll(t, PollOptions{}); res.Err != nil {
		t.Fatal(res.Err)
	}
	half := map[string][]string{}
	for i := range 5 {
		half[fmt.Sprintf("u%d", i)] = []string{fmt.Sprintf("u%d@example.com", i)}
	}
	r.dir.set(func(f *fakeLDAP) { f.users = half })
	r.clk.add(6 * time.Minute)
	if res := r.poll(t, PollOptions{}); res.Err != nil || res.Directory.Users != 5 || res.Directory.Stale {
		t.Fatalf("shrink to half: err %v, directory %+v; want it taken", res.Err, res.Directory)
	}
	r.dir.set(func(f *fakeLDAP) { f.users = map[string][]string{"u0": {"u0@example.com"}, "u1": {"u1@example.com"}} })
	r.clk.add(6 * time.Minute)
	r.add(domainMsg("m1", "To: u4@example.com\nMessage-ID: <m1@x>"))
	res := r.poll(t, PollOptions{})
	if res.Err != nil || !res.Directory.Stale || res.Directory.Users != 5 || !strings.Contains(res.Directory.LastError, "yields 2 users where the last good copy") ||
		copies(r.users, "u4") != "m1" {
		t.Fatalf("shrink 5 → 2: err %v, directory %+v, u4 %q; want the last good copy", res.Err, res.Directory, copies(r.users, "u4"))
	}
	if !strings.Contains(r.logs.String(), `level=WARN msg="directory shrank by more than half; not used until confirmed (popfetch now or SIGHUP)"`) ||
		!strings.Contains(r.logs.String(), "users=2 last_good_users=5") {
		t.Errorf("no Warn with both counts:\n%s", r.logs.String())
	}
	r.add(domainMsg("m2", "To: u4@example.com\nMessage-ID: <m2@x>"))
	res = r.poll(t, PollOptions{FreshDirectory: true})
	if res.Err != nil || res.Directory.Stale || res.Directory.Users != 2 || copies(r.pm, "postmaster") != "m2" {
		t.Fatalf("fresh after the shrink: err %v, directory %+v, postmaster %q; want the small copy taken", res.Err, res.Directory, copies(r.pm, "postmaster"))
	}
}

// A message to a user added in the directory after the copy was loaded
// reloads it once (the copy is older than a minute) and reaches the user,
// not the postmaster; two such messages in one poll cost one load; within
// a minute of a load there is none, and a failed reload routes with the
// copy in use (the outage rules apply to the next poll).
func TestDirectoryReloadForUnknown(t *testing.T) {
	r := newLDAPRig(t)
	if res := r.poll(t, PollOptions{}); res.Err != nil {
		t.Fatal(res.Err)
	}
	r.dir.set(func(f *fakeLDAP) {
		f.users["erin"] = []string{"erin@example.com"}
		f.users["finn"] = []string{"finn@example.com"}
	})
	// Within a minute of the load: no reload, the postmaster gets it.
	r.clk.add(30 * time.Second)
	r.add(domainMsg("m0", "To: erin@example.com\nMessage-ID: <m0@x>"))
	if res := r.poll(t, PollOptions{}); res.Err != nil || r.dir.count() != 1 || copies(r.pm, "postmaster") != "m0" {
		t.Fatalf("within a minute: err %v, loads %d, postmaster %q", res.Err, r.dir.count(), copies(r.pm, "postmaster"))
	}
	r.clk.add(time.Minute)
	r.add(domainMsg("m1", "To: erin@example.com\nMessage-ID: <m1@x>"),
		domainMsg("m2", "To: finn@example.com, nobody@example.com\nMessage-ID: <m2@x>"),
		domainMsg("m3", "To: dave@example.com\nMessage-ID: <m3@x>"))
	res := r.poll(t, PollOptions{})
	if res.Err != nil || r.dir.count() != 2 {
		t.Fatalf("poll = %+v; loads %d, want 2", res, r.dir.count())
	}
	if copies(r.users, "erin") != "m1" || copies(r.users, "finn") != "m2" || copies(r.users, "dave") != "m3" {
		t.Errorf("erin %q, finn %q, dave %q; want m1, m2, m3", copies(r.users, "erin"), copies(r.users, "finn"), copies(r.users, "dave"))
	}
	// m2 also names an unknown address: its postmaster copy is expected.
	if got := copies(r.pm, "postmaster"); got != "m0,m2" {
		t.Errorf("postmaster %q; want m0,m2", got)
	}
	if st := res.Directory; st.Users != 3 || !st.LoadedAt.Equal(r.clk.now()) {
		t.Errorf("Directory = %+v; want the reloaded copy", st)
	}
	// A failed reload: the message routes with the copy in use.
	r.dir.set(func(f *fakeLDAP) { f.err = errors.New("connection refused") })
	r.clk.add(2 * time.Minute)
	r.add(domainMsg("m4", "To: gus@example.com\nMessage-ID: <m4@x>"))
	res = r.poll(t, PollOptions{})
	if res.Err != nil || r.dir.count() != 3 || copies(r.pm, "postmaster") != "m0,m2,m4" {
		t.Fatalf("failed reload: %+v, loads %d, postmaster %q", res, r.dir.count(), copies(r.pm, "postmaster"))
	}
	// The next poll knows of the failure: within the backoff it routes
	// with the stale copy, not silently.
	r.add(domainMsg("m5", "To: dave@example.com\nMessage-ID: <m5@x>"))
	res = r.poll(t, PollOptions{})
	if res.Err != nil || !res.Directory.Stale || r.dir.count() != 3 || copies(r.users, "dave") != "m3,m5" {
		t.Fatalf("after the failed reload: %+v, directory %+v, loads %d", res, res.Directory, r.dir.count())
	}
}

// A loader error that names the server already (ldapdir's do) is not
// prefixed with the URL again: the status line has room for the reason.
func TestDirectoryErrorNamesURLOnce(t *testing.T) {
	for _, tc := range []struct{ err, want string }{
		{"ldap directory ldaps://dc.example.com:636: bind: Invalid Credentials", "ldap directory ldaps://dc.example.com:636: bind: Invalid Credentials"},
		{"dial tcp: connection refused", "ldap ldaps://dc.example.com: dial tcp: connection refused"},
	} {
		r := newLDAPRig(t)
		r.dir.set(func(f *fakeLDAP) { f.err = errors.New(tc.err) })
		res := r.poll(t, PollOptions{})
		if res.Directory == nil || res.Directory.LastError != tc.want {
			t.Errorf("LastError = %+v; want %q", res.Directory, tc.want)
		}
	}
}
