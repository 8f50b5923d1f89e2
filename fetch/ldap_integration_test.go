package fetch

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/ldapdir/slapdtest"
	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// Multidrop routing by an LDAP directory end to end: a real slapd (over
// ldaps with its own CA, read with ca_file through the trust check) tells
// a real POP3 fetch from dovecot where each message of a catch-all
// mailbox goes. The routing and cache tests with a fake directory
// (directory_test.go) prove the decisions; these prove that the real
// server's answers (AD's filter with the bitwise-AND rule, proxyAddresses
// prefixes, group members by DN, an outage as a refused or silent
// connection) lead to them.

// ldapDirectory is the tree of the routing tests: both shapes side by
// side, each read only by its own filter.
//   - AD: alice (mail and proxyAddresses, one of them X500), bob (an
//     smtp: alias only in proxyAddresses), carol, dave (disabled), and the
//     group sales@ holding alice, bob and dave.
//   - OpenLDAP: erin (two mail values), frank, nomail (no mail: not
//     matched by the filter), and the groupOfNames team@ with erin and
//     frank.
var ldapDirectory = strings.Join([]string{
	slapdtest.ADUser("alice", "Alice Adams", 512, "alice@example.com",
		"SMTP:alice@example.com", "smtp:a.adams@example.com", "X500:/o=Example/ou=Exchange/cn=Recipients/cn=alice"),
	slapdtest.ADUser("bob", "Bob Brown", 512, "bob@example.com", "smtp:bobby@example.com"),
	slapdtest.ADUser("carol", "Carol Clark", 512, "carol@example.com", "SMTP:carol@example.com"),
	slapdtest.ADUser("dave", "Dave Disabled", 514, "dave@example.com", "SMTP:dave@example.com"),
	slapdtest.ADGroup("Sales", "sales@example.com",
		slapdtest.ADUserDN("Alice Adams"), slapdtest.ADUserDN("Bob Brown"), slapdtest.ADUserDN("Dave Disabled")),
	slapdtest.InetOrgPerson("erin", "erin@example.com", "e.smith@example.com"),
	slapdtest.InetOrgPerson("frank", "frank@example.com"),
	slapdtest.InetOrgPerson("nomail"),
	slapdtest.GroupOfNames("Team", "team@example.com", slapdtest.InetOrgPersonDN("erin"), slapdtest.InetOrgPersonDN("frank")),
}, "")

// ldapTimeout bounds the directory loads of the integration tests. It is
// a safety net: a load that must succeed (bind over TLS, two searches)
// took more than 2 s under the race detector on a loaded 2-core machine.
// TestLDAPIntegrationOutage, whose subject is the timeout, sets a short
// one where it wants it to fire.
const ldapTimeout = 30 * time.Second

// ldapBlock is the ldap block of an AD directory served by s, as the rc
// file's defaults make it (openLDAP switches it to the inetOrgPerson
// shape): read over ldaps with the instance's CA as ca_file.
func ldapBlock(s *slapdtest.Server) *rcfile.LDAP {
	return &rcfile.LDAP{
		URL: s.URL(), CAFile: s.CAFile, BindDN: s.BindDN(), Password: rcfile.Password{Inline: s.Password()},
		BaseDN: s.BaseDN(), Filter: rcfile.DefaultLDAPFilter, UserAttribute: "sAMAccountName",
		AddressAttributes: []string{"mail", "proxyAddresses"}, Groups: true, GroupFilter: "(objectClass=group)",
		MemberAttribute: "member", Refresh: 5 * time.Minute, Grace: time.Hour, Timeout: ldapTimeout,
		MaxEntries: 100_000,
	}
}

func openLDAP(l *rcfile.LDAP) {
	l.Filter = "(&(objectClass=inetOrgPerson)(mail=*))"
	l.UserAttribute = "uid"
	l.AddressAttributes = []string{"mail"}
	l.GroupFilter = "(objectClass=groupOfNames)"
}

// ldapAccount is a multidrop account on mb without configured users:
// the directory l names them all. Users deliver to <vmail>/{user}/Maildir.
func ldapAccount(t *testing.T, srv *dovecottest.Server, mb *dovecottest.Mailbox, l *rcfile.LDAP) (a *rcfile.Account, vmail string) {
	t.Helper()
	a = dovecotAccount(t, srv, mb, rcfile.TLSNone)
	dir := t.TempDir()
	vmail = filepath.Join(dir, "vmail")
	a.Deliver = rcfile.Destination{Maildir: filepath.Join(vmail, "{user}", "Maildir")}
	a.Postmaster = &rcfile.Destination{Maildir: filepath.Join(dir, "postmaster")}
	a.Multidrop = testMultidrop()
	a.Multidrop.LDAP = l
	return a, vmail
}

// envelopeMsg is message seq with the envelope recipient rcpt in
// Delivered-To, and a To header that names no local user, so that only
// the envelope (and so the directory) decides.
func envelopeMsg(seq int, rcpt string) []byte {
	b := &mdBuilder{seq: seq, body: fmt.Sprintf("body of %d\r\n", seq)}
	b.add("Delivered-To: %s", rcpt)
	b.add("Return-Path: <sender%d@example.net>", seq)
	b.add("From: Sender <sender%d@example.net>", seq)
	b.add("To: undisclosed-recipients:;")
	return b.bytes()
}

// ldapPlaced reads every user's Maildir below vmail and the postmaster's.
func ldapPlaced(t *testing.T, a *rcfile.Account, vmail string, users []string) *placed {
	t.Helper()
	p := newPlaced()
	for _, u := range users {
		p.add(u, readCopies(t, filepath.Join(vmail, u, "Maildir")))
	}
	p.add("postmaster", readCopies(t, a.Postmaster.Maildir))
	onlyDirs(t, vmail, users)
	return p
}

func TestLDAPIntegrationRouting(t *testing.T) {
	t.Parallel()
	s := slapdtest.Start(t, slapdtest.Options{LDIF: ldapDirectory})
	srv := dovecottest.Start(t, dovecottest.Options{})

	tests := []struct {
		name  string
		shape func(*rcfile.LDAP)
		users []string // every directory user (Maildirs that may exist)
		cases []mdCase
		dir   DirectoryState // Users, Addresses, Groups of the copy
	}{{
		name:  "active-directory",
		users: []string{"alice", "bob", "carol"},
		cases: []mdCase{
			{kind: "mail", users: []string{"alice"}},
			{kind: "proxyAddresses smtp: alias", users: []string{"alice"}},
			{kind: "alias only in proxyAddresses", users: []string{"bob"}},
			{kind: "mixed case", users: []string{"carol"}},
			{kind: "disabled user", postmaster: true, reason: "unknown user dave@example.com"},
			{kind: "group", users: []string{"alice", "bob"}},
			{kind: "unknown", postmaster: true, reason: "unknown user nobody@example.com"},
			{kind: "openldap user is not in the AD filter", postmaster: true, reason: "unknown user erin@example.com"},
		},
		// alice 2, bob 2, carol 1; sales@.
		dir: DirectoryState{Users: 3, Addresses: 5, Groups: 1},
	}, {
		name:  "openldap",
		shape: openLDAP,
		users: []string{"erin", "frank"},
		cases: []mdCase{
			{kind: "mail", users: []string{"erin"}},
			{kind: "second mail value", users: []string{"erin"}},
			{kind: "mail", users: []string{"frank"}},
			{kind: "groupOfNames", users: []string{"erin", "frank"}},
			{kind: "unknown", postmaster: true, reason: "unknown user nobody@example.com"},
			{kind: "AD user is not in the filter", postmaster: true, reason: "unknown user alice@example.com"},
		},
		dir: DirectoryState{Users: 2, Addresses: 3, Groups: 1},
	}}
	rcpts := map[string][]string{
		"active-directory": {"alice@example.com", "a.adams@example.com", "bobby@example.com", "Carol@EXAMPLE.com",
			"dave@example.com", "sales@example.com", "nobody@example.com", "erin@example.com"},
		"openldap": {"erin@example.com", "e.smith@example.com", "frank@example.com", "team@example.com",
			"nobody@example.com", "alice@example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := ldapBlock(s)
			if tc.shape != nil {
				tc.shape(l)
			}
			mb := srv.AddUser(t, "catchall-"+tc.name, "pw")
			a, vmail := ldapAccount(t, srv, mb, l)
			for i := range tc.cases {
				c := &tc.cases[i]
				c.seq = i + 1
				c.raw = envelopeMsg(c.seq, rcpts[tc.name][i])
				mb.Put(t, c.raw)
			}
			n := len(tc.cases)
			res := (&Poller{}).Poll(context.Background(), a)
			if res.Err != nil || res.New != n || res.Delivered != n || res.Deleted != n || res.Failed != 0 {
				t.Fatalf("Poll = %+v (err %v); want %d new, delivered and deleted", res, res.Err, n)
			}
			if c := mb.Count(t); c != 0 {
				t.Fatalf("server still holds %d messages after the poll", c)
			}
			ldapPlaced(t, a, vmail, tc.users).check(t, tc.cases)
			st := res.Directory
			if !st.Available() || st.Stale || st.LastError != "" || st.URL != s.URL() ||
				st.Users != tc.dir.Users || st.Addresses != tc.dir.Addresses || st.Groups != tc.dir.Groups {
				t.Errorf("Result.Directory = %+v; want %d users, %d addresses, %d groups, fresh", st, tc.dir.Users, tc.dir.Addresses, tc.dir.Groups)
			}
		})
	}
}

// ldapRun is one account routed by a private slapd, polled by a Poller
// with a settable clock.
type ldapRun struct {
	s     *slapdtest.Server
	mb    *dovecottest.Mailbox
	a     *rcfile.Account
	vmail string
	clk   *clock
	p     *Poller
	seq   int
}

func newLDAPRun(t *testing.T, srv *dovecottest.Server, name string) *ldapRun {
	t.Helper()
	r := &ldapRun{
		s:   slapdtest.Start(t, slapdtest.Options{LDIF: ldapDirectory}),
		mb:  srv.AddUser(t, name, "pw"),
		clk: &clock{t: time.Now()},
	}
	r.a, r.vmail = ldapAccount(t, srv, r.mb, ldapBlock(r.s))
	r.p = &Poller{Now: r.clk.now}
	return r
}

// put stores a message to rcpt on the server and returns its X-Seq.
func (r *ldapRun) put(t *testing.T, rcpt string) string {
	t.Helper()
	r.seq++
	r.mb.Put(t, envelopeMsg(r.seq, rcpt))
	return fmt.Sprint(r.seq)
}

func (r *ldapRun) poll(t *testing.T, fresh bool) Result {
	t.Helper()
	return r.p.PollWith(context.Background(), r.a, PollOptions{FreshDirectory: fresh})
}

// at returns the X-Seqs in dest's Maildir ("postmaster" or a user).
func (r *ldapRun) at(t *testing.T, dest string) []string {
	t.Helper()
	dir := filepath.Join(r.vmail, dest, "Maildir")
	if dest == "postmaster" {
		dir = r.a.Postmaster.Maildir
	}
	var out []string
	for _, c := range readCopies(t, dir) {
		out = append(out, c.seq)
	}
	return out
}

// A user added in LDAP routes without a restart (a new Poller): mail to
// the new address before the next refresh reloads the directory once
// (the copy in use is older than a minute) and reaches the user, not the
// postmaster; after that the reloaded copy serves until its refresh.
func TestLDAPIntegrationRefresh(t *testing.T) {
	t.Parallel()
	srv := dovecottest.Start(t, dovecottest.Options{})
	r := newLDAPRun(t, srv, "catchall-refresh")

	first := r.put(t, "alice@example.com")
	if res := r.poll(t, false); res.Err != nil || res.Delivered != 1 || !res.Directory.Available() {
		t.Fatalf("first Poll = %+v (err %v)", res, res.Err)
	}
	loaded := r.clk.now()

	r.s.Add(t, slapdtest.ADUser("gina", "Gina Green", 512, "gina@example.com", "smtp:g.green@example.com"))
	r.clk.add(r.a.Multidrop.LDAP.Refresh - time.Second)
	early := r.put(t, "gina@example.com")
	res := r.poll(t, false)
	reloaded := r.clk.now()
	if res.Err != nil || res.Delivered != 1 || reloaded.Equal(loaded) || !res.Directory.LoadedAt.Equal(reloaded) || res.Directory.Users != 4 {
		t.Fatalf("Poll before the refresh = %+v, directory %+v; want a copy reloaded for gina", res, res.Directory)
	}

	r.clk.add(time.Second)
	late := r.put(t, "g.green@example.com")
	res = r.poll(t, false)
	if res.Err != nil || res.Delivered != 1 || res.Directory.Users != 4 || !res.Directory.LoadedAt.Equal(reloaded) {
		t.Fatalf("Poll after the refresh = %+v, directory %+v; want the reloaded copy with gina", res, res.Directory)
	}
	for dest, want := range map[string][]string{"alice": {first}, "postmaster": nil, "gina": {early, late}} {
		// Which messages, not in what order: readCopies lists a Maildir
		// in directory order.
		got := r.at(t, dest)
		slices.Sort(got)
		want = slices.Sorted(slices.Values(want))
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s holds %v; want %v", dest, got, want)
		}
	}
	if c := r.mb.Count(t); c != 0 {
		t.Errorf("server holds %d messages; want 0", c)
	}
}

// slapd stops mid-run. Within the grace period the last good copy routes
// (Stale); past it the poll fails with ErrDirectory before it touches the
// mailbox, so the message waits on the server and the postmaster gets
// nothing; after a restart the next poll delivers it. The times a failing
// load takes are logged for the documentation: connection refused is
// immediate, a server that accepts but never answers costs the timeout.
func TestLDAPIntegrationOutage(t *testing.T) {
	t.Parallel()
	srv := dovecottest.Start(t, dovecottest.Options{})
	r := newLDAPRun(t, srv, "catchall-outage")
	l := r.a.Multidrop.LDAP

	if res := r.poll(t, false); res.Err != nil || !res.Directory.Available() {
		t.Fatalf("first Poll = %+v (err %v)", res, res.Err)
	}
	loaded := r.clk.now()
	r.s.Stop(t)

	// (a) Within the grace period: a forced load fails, the copy routes.
	r.clk.add(time.Minute)
	inGrace := r.put(t, "a.adams@example.com")
	start := time.Now()
	res := r.poll(t, true)
	refusedPoll := time.Since(start)
	st := res.Directory
	if res.Err != nil || res.Delivered != 1 || res.Deleted != 1 {
		t.Fatalf("Poll within grace = %+v (err %v); want the message routed with the last good copy", res, res.Err)
	}
	if !st.Stale || !st.LoadedAt.Equal(loaded) || !st.GraceUntil.Equal(loaded.Add(l.Grace)) || st.LastError == "" || st.Users != 3 {
		t.Errorf("Result.Directory within grace = %+v; want stale, the first copy, grace until %v, the error", st, loaded.Add(l.Grace))
	}
	if !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("LastError = %q; want connection refused", st.LastError)
	}
	t.Logf("directory load against a stopped slapd fails in %v (poll with the last good copy: %v): %s",
		refusedLoad(t, r), refusedPoll, st.LastError)

	// (b) Past the grace period: the poll fails, nothing is fetched.
	r.clk.add(l.Grace)
	waits := r.put(t, "bobby@example.com")
	res = r.poll(t, false)
	if !errors.Is(res.Err, ErrDirectory) || res.Messages != 0 || res.Delivered != 0 || res.Directory.Available() || res.Directory.LastError == "" {
		t.Fatalf("Poll past grace = %+v (err %v), directory %+v; want ErrDirectory before any message", res, res.Err, res.Directory)
	}
	t.Logf("past grace: %v", res.Err)
	if c := r.mb.Count(t); c != 1 {
		t.Fatalf("server holds %d messages; want the one waiting", c)
	}

	// A slapd that accepts connections but never answers (SIGSTOP): the
	// timeout bounds the load. A short one, as nothing can succeed.
	l.Timeout = 2 * time.Second
	r.s.Restart(t)
	r.s.Pause(t)
	start = time.Now()
	res = r.poll(t, true)
	hung := time.Since(start)
	r.s.Resume(t)
	if !errors.Is(res.Err, ErrDirectory) || res.Messages != 0 {
		t.Fatalf("Poll against a hung slapd = %+v (err %v); want ErrDirectory", res, res.Err)
	}
	if hung < l.Timeout || hung > l.Timeout+testutil.Slow(5*time.Second) {
		t.Errorf("Poll against a hung slapd took %v; want about the timeout %v", hung, l.Timeout)
	}
	t.Logf("directory load against a hung slapd (SIGSTOP, timeout %v): poll failed after %v: %s", l.Timeout, hung, res.Directory.LastError)
	l.Timeout = ldapTimeout

	// Back: the next poll after the retry backoff (at most refresh)
	// loads the directory and delivers.
	r.clk.add(l.Refresh)
	res = r.poll(t, false)
	if res.Err != nil || res.Delivered != 1 || res.Deleted != 1 || res.Directory.Stale || res.Directory.LastError != "" {
		t.Fatalf("Poll after the restart = %+v (err %v), directory %+v", res, res.Err, res.Directory)
	}
	for dest, want := range map[string][]string{"alice": {inGrace}, "bob": {waits}, "postmaster": nil} {
		// Which messages, not in what order: readCopies lists a Maildir
		// in directory order.
		got := r.at(t, dest)
		slices.Sort(got)
		want = slices.Sorted(slices.Values(want))
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s holds %v; want %v", dest, got, want)
		}
	}
	if c := r.mb.Count(t); c != 0 {
		t.Errorf("server holds %d messages; want 0", c)
	}
}

// refusedLoad times one load against the stopped slapd, without the poll
// around it.
func refusedLoad(t *testing.T, r *ldapRun) time.Duration {
	t.Helper()
	start := time.Now()
	_, err := r.p.CheckDirectory(context.Background(), r.a)
	d := time.Since(start)
	if !errors.Is(err, ErrDirectory) {
		t.Fatalf("CheckDirectory against a stopped slapd: %v; want ErrDirectory", err)
	}
	return d
}

// With grace 0 a failed load is never covered: the first poll after slapd
// stops fails even with a copy a second old.
func TestLDAPIntegrationNoGrace(t *testing.T) {
	t.Parallel()
	srv := dovecottest.Start(t, dovecottest.Options{})
	r := newLDAPRun(t, srv, "catchall-nograce")
	r.a.Multidrop.LDAP.Grace = 0
	if res := r.poll(t, false); res.Err != nil || !res.Directory.Available() {
		t.Fatalf("first Poll = %+v (err %v)", res, res.Err)
	}
	r.s.Stop(t)
	seq := r.put(t, "carol@example.com")
	r.clk.add(time.Second)
	res := r.poll(t, true)
	if !errors.Is(res.Err, ErrDirectory) || res.Messages != 0 || r.mb.Count(t) != 1 {
		t.Fatalf("Poll with slapd stopped, grace 0 = %+v (err %v), server %d; want ErrDirectory and the mail waiting", res, res.Err, r.mb.Count(t))
	}
	// The next regular poll, though the copy is younger than refresh,
	// does not route with a copy whose last load failed: within the
	// retry backoff it fails without loading.
	res = r.poll(t, false)
	if !errors.Is(res.Err, ErrDirectory) || res.Messages != 0 || r.mb.Count(t) != 1 || res.Directory.Available() {
		t.Fatalf("regular Poll with slapd stopped, grace 0 = %+v (err %v), server %d, directory %+v; want ErrDirectory and the mail waiting",
			res, res.Err, r.mb.Count(t), res.Directory)
	}
	for _, dest := range []string{"postmaster", "carol"} {
		if got := r.at(t, dest); len(got) != 0 {
			t.Fatalf("%s got %v during the outage", dest, got)
		}
	}
	r.s.Restart(t)
	r.clk.add(time.Minute) // past the retry backoff: a minute after one failed load
	if res := r.poll(t, false); res.Err != nil || res.Delivered != 1 {
		t.Fatalf("Poll after the restart = %+v (err %v)", res, res.Err)
	}
	if got := r.at(t, "carol"); len(got) != 1 || got[0] != seq {
		t.Errorf("carol holds %v; want [%s]", got, seq)
	}
}
