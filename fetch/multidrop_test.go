package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest/fault"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/uidl"
)

func domainMsg(uid, headers string) pop3test.Message {
	return pop3test.Message{UID: uid, Data: []byte(strings.ReplaceAll(headers, "\n", "\r\n") + "\r\n\r\nbody\r\n")}
}

func multidropPoller(t *testing.T, users, pm *fault.Target, dedupe bool) *Poller {
	t.Helper()
	return mdPoller(t, users, pm, func(md *rcfile.Multidrop) { md.DedupeMessageID = dedupe }, nil)
}

// testMultidrop is the multidrop block the tests share: example.com, the
// topmost Delivered-To, then To/Cc, "+" details, and the given users.
func testMultidrop(users ...*rcfile.User) *rcfile.Multidrop {
	return &rcfile.Multidrop{
		LocalDomains:    []string{"example.com"},
		EnvelopeHeader:  "Delivered-To",
		EnvelopeCount:   1,
		FallbackHeaders: []string{"To", "Cc"},
		DetailDelimiter: "+",
		Users:           users,
	}
}

func mdUser(name string, addrs ...string) *rcfile.User {
	return &rcfile.User{Name: name, Addresses: addrs}
}

// mdPoller is a Poller whose accounts are multidrop with users alice
// (alice, sales), bob and carol; edit changes the multidrop block.
func mdPoller(t *testing.T, users, pm *fault.Target, edit func(*rcfile.Multidrop), log *slog.Logger) *Poller {
	t.Helper()
	md := testMultidrop(mdUser("alice", "alice", "sales"), mdUser("bob", "bob"), mdUser("carol", "carol"))
	if edit != nil {
		edit(md)
	}
	return &Poller{Log: log, Dispatcher: func(a *rcfile.Account) (Dispatcher, error) {
		b := *a // the polled account (its username matters), made multidrop
		b.Multidrop = md
		var p deliver.Target
		if pm != nil {
			p = pm
		}
		return newMultidrop(&b, users, p, "test.host")
	}}
}

func TestMultidropRoutes(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "Delivered-To: alice@example.com\nTo: someone@example.net\nMessage-ID: <1@x>"), // bcc via envelope
		domainMsg("m2", "To: Bob <bob@example.com>, Carol <carol+x@example.com>\nMessage-ID: <2@x>"),   // To/Cc fallback
		domainMsg("m3", "Delivered-To: nobody@example.com\nTo: nobody@example.com\nMessage-ID: <3@x>"), // unknown
		domainMsg("m4", "To: list@lists.example.org\nList-Id: <l.example.org>\nMessage-ID: <4@x>"),     // list, no envelope
	}})
	users, pm := fault.New(), fault.New()
	res := multidropPoller(t, users, pm, false).Poll(context.Background(), testAccount(t, srv))
	if res.Err != nil || res.Delivered != 4 || res.Postmaster != 2 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v; want 4 delivered, 2 of them (m3, m4) to the postmaster", res)
	}
	want := map[string]string{"alice": "m1", "bob": "m2", "carol": "m2"}
	for u, uid := range want {
		if got := strings.Join(users.Copies(u), ","); got != uid {
			t.Errorf("%s got %q; want %q", u, got, uid)
		}
	}
	pmGot := pm.Copies("postmaster")
	slices.Sort(pmGot) // deliveries run concurrently
	if got := strings.Join(pmGot, ","); got != "m3,m4" {
		t.Fatalf("postmaster got %q; want m3,m4", got)
	}
	if r := pm.Reason("m3"); !strings.Contains(r, "nobody@example.com") {
		t.Errorf("reason for m3 = %q", r)
	}
	if r := pm.Reason("m4"); r == "" {
		t.Errorf("no reason for m4")
	}
}

// A temporary failure for one user keeps the message on the server; the
// retry delivers only to that user: no duplicate for the others.
func TestMultidropResumesWithoutDuplicates(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: alice@example.com, bob@example.com, carol@example.com\nMessage-ID: <1@x>"),
	}})
	a := testAccount(t, srv)
	users := fault.New()
	users.Temporary("bob", "mailbox busy")
	res := multidropPoller(t, users, fault.New(), false).Poll(context.Background(), a)
	if res.Failed != 1 || res.Delivered != 0 || len(srv.Messages()) != 1 {
		t.Fatalf("Poll = %+v", res)
	}
	users.Fail("bob", nil)
	res = multidropPoller(t, users, fault.New(), false).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("retry Poll = %+v", res)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		if n := len(users.Copies(u)); n != 1 {
			t.Errorf("%s has %d copies; want 1", u, n)
		}
	}
}

// A permanent failure for one user goes to the postmaster with the reason;
// the others get their copies and the message is deleted.
func TestMultidropPermanentFailure(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: alice@example.com, bob@example.com\nMessage-ID: <1@x>"),
	}})
	users, pm := fault.New(), fault.New()
	users.Permanent("bob", "MDA exit 67")
	res := multidropPoller(t, users, pm, false).Poll(context.Background(), testAccount(t, srv))
	if res.Err != nil || res.Delivered != 1 || res.Postmaster != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	if len(users.Copies("alice")) != 1 || len(pm.Copies("postmaster")) != 1 || !strings.Contains(pm.Reason("m1"), "bob: MDA exit 67") {
		t.Fatalf("alice %v, postmaster %v reason %q", users.Copies("alice"), pm.Copies("postmaster"), pm.Reason("m1"))
	}
}

// Without a postmaster, unroutable and permanently failed mail stays on the
// server (softbounce); nothing is dropped.
func TestMultidropNoPostmasterKeepsMail(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: stranger@example.net\nMessage-ID: <1@x>"),
		domainMsg("m2", ""), // headerless (CVE-2005-4348)
	}})
	res := multidropPoller(t, fault.New(), nil, false).Poll(context.Background(), testAccount(t, srv))
	if res.Failed != 2 || len(srv.Messages()) != 2 {
		t.Fatalf("Poll = %+v, server %d", res, len(srv.Messages()))
	}
}

// dedupeAlice polls msgs with dedupe_message_id on; every one must be
// delivered and deleted. It returns the UIDs alice got, sorted, joined by
// commas.
func dedupeAlice(t *testing.T, msgs ...pop3test.Message) string {
	t.Helper()
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs})
	users := fault.New()
	res := multidropPoller(t, users, fault.New(), true).Poll(context.Background(), testAccount(t, srv))
	if res.Err != nil || res.Delivered != len(msgs) || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	got := users.Copies("alice")
	slices.Sort(got)
	return strings.Join(got, ",")
}

func TestMultidropDedupeMessageID(t *testing.T) {
	// m1 and m2 are one message: exactly one of them reaches alice.
	s := dedupeAlice(t,
		domainMsg("m1", "To: alice@example.com, sales@example.com\nMessage-ID: <same@x>"),
		domainMsg("m2", "To: alice@example.com, sales@example.com\nMessage-ID: <same@x>"),
		domainMsg("m3", "To: alice@example.com\nMessage-ID: <other@x>"))
	if s != "m1,m3" && s != "m2,m3" {
		t.Fatalf("alice got %s; want m3 and one of m1, m2 (the same message twice)", s)
	}
}

// A partial route (some users found, something else not routable) gives
// the users their copies and the postmaster one copy naming what was not
// routed; both are logged with Via and Reason. Before, the rest vanished
// without a trace.
func TestMultidropPartialRoute(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: alice@example.com, dave@example.com\nMessage-ID: <1@x>"),           // unknown user
		domainMsg("m2", "To: bob@example.com, a@b@@c\nMessage-ID: <2@x>"),                       // unparseable (bad-among-good)
		domainMsg("m3", "To: carol@example.com\nCc: someone@elsewhere.test\nMessage-ID: <3@x>"), // fully routed: non-local is not "unrouted"
		domainMsg("m4", "Received: from pop.isp.example by h with POP3 (popfetch 1) (account a, user b, uid 9); x\n"+ // a loop for bob only
			"Delivered-To: bob@example.com\nTo: bob@example.com, carol@example.com\nMessage-ID: <4@x>"),
	}})
	users, pm, logs := fault.New(), fault.New(), &logCapture{}
	res := mdPoller(t, users, pm, nil, logs.logger()).Poll(context.Background(), testAccount(t, srv))
	if res.Err != nil || res.Delivered != 4 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v, %d left on the server", res, len(srv.Messages()))
	}
	for u, want := range map[string]string{"alice": "m1", "bob": "m2", "carol": "m3,m4"} {
		got := users.Copies(u)
		slices.Sort(got)
		if strings.Join(got, ",") != want {
			t.Errorf("%s got %v; want %s", u, got, want)
		}
	}
	pmGot := pm.Copies("postmaster")
	slices.Sort(pmGot)
	if strings.Join(pmGot, ",") != "m1,m2,m4" {
		t.Fatalf("postmaster got %v; want m1, m2, m4 once each", pmGot)
	}
	for uid, want := range map[string]string{
		"m1": "partly routed (to alice); not routed: unknown user dave@example.com",
		"m2": `partly routed (to bob); not routed: unparseable To: "a@b@@c"`,
		"m4": "partly routed (to carol); not routed: mail loop: already delivered to bob@example.com",
	} {
		if got := pm.Reason(uid); got != want {
			t.Errorf("X-Popfetch-Reason of %s = %q; want %q", uid, got, want)
		}
	}
	if l := logs.lines("level=WARN", "uid=m1", "partly routed", `via="header To"`, "dave@example.com"); len(l) != 1 {
		t.Errorf("want one warning for m1 with via and reason; log:\n%s", logs.String())
	}
	if l := logs.lines("level=DEBUG", "uid=m3", "multidrop: routed", `via="header To"`, "users=1"); len(l) != 1 {
		t.Errorf("want one debug line for m3 with via; log:\n%s", logs.String())
	}
}

// The postmaster copy of a partial route is made once: it waits while a
// user's delivery fails temporarily, and a retry after it neither repeats
// it nor any user's copy.
func TestMultidropPartialRouteRetry(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: alice@example.com, bob@example.com, dave@example.com\nMessage-ID: <1@x>"),
	}})
	a := testAccount(t, srv)
	users, pm := fault.New(), fault.New()
	users.Temporary("alice", "mailbox busy")
	if res := mdPoller(t, users, pm, nil, nil).Poll(context.Background(), a); res.Failed != 1 || len(srv.Messages()) != 1 {
		t.Fatalf("first Poll = %+v", res)
	}
	if n := len(pm.Copies("postmaster")); n != 0 {
		t.Fatalf("postmaster got %d copies while alice's delivery is pending; want 0", n)
	}
	// Now the postmaster's target fails: the users are done, the message
	// still stays.
	users.Fail("alice", nil)
	pm.Temporary("postmaster", "disk full")
	if res := mdPoller(t, users, pm, nil, nil).Poll(context.Background(), a); res.Failed != 1 || len(srv.Messages()) != 1 {
		t.Fatalf("second Poll = %+v", res)
	}
	pm.Fail("postmaster", nil)
	if res := mdPoller(t, users, pm, nil, nil).Poll(context.Background(), a); res.Err != nil || res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("third Poll = %+v", res)
	}
	for _, u := range []string{"alice", "bob", "postmaster"} {
		got := len(users.Copies(u)) + len(pm.Copies(u))
		if got != 1 {
			t.Errorf("%s has %d copies; want 1", u, got)
		}
	}
	if r := pm.Reason("m1"); !strings.Contains(r, "unknown user dave@example.com") || !strings.Contains(r, "alice, bob") {
		t.Errorf("X-Popfetch-Reason = %q", r)
	}
}

// Without a postmaster, a partial route still reaches its users and the
// message is deleted (keeping it would refetch it forever); the unrouted
// part is in a warning. Nothing routed at all still stays on the server.
func TestMultidropPartialRouteNoPostmaster(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: alice@example.com, dave@example.com\nMessage-ID: <1@x>"),
		domainMsg("m2", "To: dave@example.com\nMessage-ID: <2@x>"),
	}})
	users, logs := fault.New(), &logCapture{}
	res := mdPoller(t, users, nil, nil, logs.logger()).Poll(context.Background(), testAccount(t, srv))
	if res.Delivered != 1 || res.Failed != 1 {
		t.Fatalf("Poll = %+v", res)
	}
	if left := srv.Messages(); len(left) != 1 || left[0].UID != "m2" {
		t.Fatalf("left on the server: %v; want m2 only", left)
	}
	if got := users.Copies("alice"); len(got) != 1 || got[0] != "m1" {
		t.Errorf("alice got %v; want m1", got)
	}
	if l := logs.lines("level=WARN", "uid=m1", "no postmaster configured", "unknown user dave@example.com"); len(l) != 1 {
		t.Errorf("want one warning naming dave for m1; log:\n%s", logs.String())
	}
}

// A Postfix virtual catch-all stamps the mailbox's own address as
// Delivered-To on every message: it is ignored (the account's username
// automatically, others by envelope_ignore), so To/Cc route the message.
func TestMultidropCatchAllEnvelopeIgnored(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{User: "catchall@example.com", Messages: []pop3test.Message{
		domainMsg("m1", "Delivered-To: catchall@example.com\nTo: bob@example.com\nMessage-ID: <1@x>"),
		domainMsg("m2", "Delivered-To: <CatchAll@Example.com>\nCc: Carol <carol@example.com>\nMessage-ID: <2@x>"),
		domainMsg("m3", "Delivered-To: old-box@example.com\nTo: alice@example.com\nMessage-ID: <3@x>"),
		domainMsg("m4", "Delivered-To: alice@example.com\nTo: bob@example.com\nMessage-ID: <4@x>"), // a real envelope still wins
	}})
	a := testAccount(t, srv)
	a.Username = "catchall@example.com"
	users, pm := fault.New(), fault.New()
	edit := func(md *rcfile.Multidrop) { md.EnvelopeIgnore = []string{"old-box@example.com"} }
	res := mdPoller(t, users, pm, edit, nil).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 4 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	if got := pm.Copies("postmaster"); len(got) != 0 {
		t.Errorf("postmaster got %v (reasons %v); want nothing", got, pm.All())
	}
	for u, want := range map[string]string{"alice": "m3,m4", "bob": "m1", "carol": "m2"} {
		got := users.Copies(u)
		slices.Sort(got)
		if strings.Join(got, ",") != want {
			t.Errorf("%s got %v; want %s", u, got, want)
		}
	}
}

// An alias reaching more users than the UIDL store can record per message
// used to leave the message stuck on the server, re-delivered to the users
// past the store's cap every poll. Now the route is capped below the
// store's limit, the rest goes to the postmaster, and the message is done.
func TestMultidropUserCap(t *testing.T) {
	if deliver.MaxRoutedUsers+1 > uidl.MaxRecipients { // +1: the postmaster's record
		t.Fatalf("deliver.MaxRoutedUsers = %d does not fit uidl.MaxRecipients = %d", deliver.MaxRoutedUsers, uidl.MaxRecipients)
	}
	const n = deliver.MaxRoutedUsers + 50
	var cfgUsers []*rcfile.User
	var addrs []string
	for i := range n {
		u := fmt.Sprintf("u%03d", i)
		cfgUsers = append(cfgUsers, &rcfile.User{Name: u, Addresses: []string{u}})
		addrs = append(addrs, u+"@example.com")
	}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: "+strings.Join(addrs, ",\n\t")+"\nMessage-ID: <1@x>"),
	}})
	a := testAccount(t, srv)
	users, pm := fault.New(), fault.New()
	edit := func(md *rcfile.Multidrop) { md.Users = cfgUsers }
	res := mdPoller(t, users, pm, edit, nil).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v, %d left on the server", res, len(srv.Messages()))
	}
	if users.Users() != deliver.MaxRoutedUsers || len(users.Copies("u000")) != 1 || len(users.Copies(fmt.Sprintf("u%03d", deliver.MaxRoutedUsers))) != 0 {
		t.Errorf("%d users got a copy; want the first %d", users.Users(), deliver.MaxRoutedUsers)
	}
	if got := pm.Copies("postmaster"); len(got) != 1 {
		t.Fatalf("postmaster got %v; want one copy", got)
	}
	if r := pm.Reason("m1"); !strings.Contains(r, fmt.Sprintf("more than %d users: not routed to u%03d", deliver.MaxRoutedUsers, deliver.MaxRoutedUsers)) {
		t.Errorf("X-Popfetch-Reason = %q", r)
	}
}

// TestMultidropAliasesFileUntrusted: the aliases file is checked on the
// descriptor read at each poll, not only when the rc file was loaded:
// one made writable by others since is refused, nothing routed by it.
func TestMultidropAliasesFileUntrusted(t *testing.T) {
	aliases := testutil.WriteFile(t, testutil.PrivateDir(t), "aliases", "info: alice\n", 0o644)
	a := &rcfile.Account{Name: "md", Username: "catchall", Multidrop: testMultidrop(mdUser("alice", "alice"))}
	a.Multidrop.AliasesFile = aliases
	if _, err := newMultidrop(a, nil, nil, "pop.example"); err != nil {
		t.Fatalf("newMultidrop(0644 aliases) = %v", err)
	}
	if err := os.Chmod(aliases, 0o646); err != nil {
		t.Fatal(err)
	}
	if _, err := newMultidrop(a, nil, nil, "pop.example"); !errors.Is(err, trust.ErrUntrustedFile) || !strings.Contains(err.Error(), "aliases_file") {
		t.Fatalf("newMultidrop(other-writable aliases) = %v; want ErrUntrustedFile naming aliases_file", err)
	}
}

// dedupe_message_id settles a second copy only once the first is durable:
// when the first fails permanently (and goes to the postmaster), the second
// is delivered after all. Before, the second was deleted as soon as the
// first was claimed, and the user got neither.
func TestMultidropDedupeWaitsForDurableCopy(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: alice@example.com\nMessage-ID: <same@x>"),
		domainMsg("m2", "To: alice@example.com\nMessage-ID: <same@x>"),
	}})
	users, pm := fault.New(), fault.New()
	// The first delivery to alice fails permanently, after a delay long
	// enough for the other copy of the message to look at the claim.
	users.FailOnce("alice", &deliver.Error{Target: "fake", Permanent: true, Reason: "MDA exit 67"}, 300*time.Millisecond)
	p := mdPoller(t, users, pm, func(md *rcfile.Multidrop) { md.DedupeMessageID = true }, nil)
	res := p.Poll(context.Background(), testAccount(t, srv))
	if res.Err != nil || res.Delivered != 2 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	if got := users.Copies("alice"); len(got) != 1 {
		t.Errorf("alice got %v; want one copy (the first copy failed, so the second is delivered)", got)
	}
	if got := pm.Copies("postmaster"); len(got) != 1 {
		t.Errorf("postmaster got %v; want the copy that failed", got)
	}
}

// Two messages that share only a Message-ID (a forged or reused one) are
// two messages: both are delivered. Copies that also share the author's
// fields and the body are one.
func TestMultidropDedupeNeedsSameContent(t *testing.T) {
	msg := func(uid, body string) pop3test.Message {
		return pop3test.Message{UID: uid, Data: []byte("From: a@x\r\nTo: alice@example.com\r\nMessage-ID: <same@x>\r\n\r\n" + body + "\r\n")}
	}
	s := dedupeAlice(t, msg("m1", "the real message"), msg("m2", "a forgery reusing its Message-ID"),
		pop3test.Message{UID: "m3", Data: []byte("Delivered-To: alice@example.com\r\nFrom: a@x\r\nTo: alice@example.com\r\nMessage-ID: <same@x>\r\n\r\nthe real message\r\n")})
	if s != "m1,m2" && s != "m2,m3" {
		t.Fatalf("alice got %s; want m2 and one of m1, m3 (the same message twice)", s)
	}
}
