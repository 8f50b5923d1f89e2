package fetch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// fakeTarget records copies per user and fails users on demand.
type fakeTarget struct {
	mu     sync.Mutex
	copies map[string][]string // user → UIDs
	extra  map[string]string   // UID → X-Popfetch-Reason seen
	fail   map[string]error    // user → error
}

func newFakeTarget() *fakeTarget {
	return &fakeTarget{copies: map[string][]string{}, extra: map[string]string{}, fail: map[string]error{}}
}

func (f *fakeTarget) Deliver(ctx context.Context, m *deliver.Message, sender string, rcpts []deliver.Recipient, extra []deliver.Field) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := make([]error, len(rcpts))
	for i, r := range rcpts {
		if err := f.fail[r.User]; err != nil {
			errs[i] = err
			continue
		}
		f.copies[r.User] = append(f.copies[r.User], m.UID)
		for _, x := range extra {
			if x.Name == "X-Popfetch-Reason" {
				f.extra[m.UID] = x.Value
			}
		}
	}
	return errs
}

func domainMsg(uid, headers string) pop3test.Message {
	return pop3test.Message{UID: uid, Data: []byte(strings.ReplaceAll(headers, "\n", "\r\n") + "\r\n\r\nbody\r\n")}
}

func multidropPoller(t *testing.T, users, pm *fakeTarget, dedupe bool) *Poller {
	t.Helper()
	a := &rcfile.Account{Multidrop: &rcfile.Multidrop{
		LocalDomains:    []string{"example.com"},
		EnvelopeHeader:  "Delivered-To",
		EnvelopeCount:   1,
		FallbackHeaders: []string{"To", "Cc"},
		DetailDelimiter: "+",
		DedupeMessageID: dedupe,
		Users: []*rcfile.User{
			{Name: "alice", Addresses: []string{"alice", "sales"}},
			{Name: "bob", Addresses: []string{"bob"}},
			{Name: "carol", Addresses: []string{"carol"}},
		},
	}}
	return &Poller{Dispatcher: func(*rcfile.Account) (Dispatcher, error) {
		var p deliver.Target
		if pm != nil {
			p = pm
		}
		return newMultidrop(a, users, p, "test.host")
	}}
}

func TestMultidropRoutes(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "Delivered-To: alice@example.com\nTo: someone@example.net\nMessage-ID: <1@x>"), // bcc via envelope
		domainMsg("m2", "To: Bob <bob@example.com>, Carol <carol+x@example.com>\nMessage-ID: <2@x>"),   // To/Cc fallback
		domainMsg("m3", "Delivered-To: nobody@example.com\nTo: nobody@example.com\nMessage-ID: <3@x>"), // unknown
		domainMsg("m4", "To: list@lists.example.org\nList-Id: <l.example.org>\nMessage-ID: <4@x>"),     // list, no envelope
	}})
	users, pm := newFakeTarget(), newFakeTarget()
	res := multidropPoller(t, users, pm, false).Poll(context.Background(), testAccount(t, srv))
	if res.Err != nil || res.Delivered != 4 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	want := map[string]string{"alice": "m1", "bob": "m2", "carol": "m2"}
	for u, uid := range want {
		if got := strings.Join(users.copies[u], ","); got != uid {
			t.Errorf("%s got %q; want %q", u, got, uid)
		}
	}
	pmGot := slices.Clone(pm.copies["postmaster"])
	slices.Sort(pmGot) // deliveries run concurrently
	if got := strings.Join(pmGot, ","); got != "m3,m4" {
		t.Fatalf("postmaster got %q; want m3,m4", got)
	}
	if r := pm.extra["m3"]; !strings.Contains(r, "nobody@example.com") {
		t.Errorf("reason for m3 = %q", r)
	}
	if r := pm.extra["m4"]; r == "" {
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
	users := newFakeTarget()
	users.fail["bob"] = &deliver.Error{Target: "fake", Err: errors.New("mailbox busy")}
	res := multidropPoller(t, users, newFakeTarget(), false).Poll(context.Background(), a)
	if res.Failed != 1 || res.Delivered != 0 || len(srv.Messages()) != 1 {
		t.Fatalf("Poll = %+v", res)
	}
	delete(users.fail, "bob")
	res = multidropPoller(t, users, newFakeTarget(), false).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("retry Poll = %+v", res)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		if n := len(users.copies[u]); n != 1 {
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
	users, pm := newFakeTarget(), newFakeTarget()
	users.fail["bob"] = &deliver.Error{Target: "fake", Permanent: true, Reason: "MDA exit 67"}
	res := multidropPoller(t, users, pm, false).Poll(context.Background(), testAccount(t, srv))
	if res.Err != nil || res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	if len(users.copies["alice"]) != 1 || len(pm.copies["postmaster"]) != 1 || !strings.Contains(pm.extra["m1"], "bob: MDA exit 67") {
		t.Fatalf("alice %v, postmaster %v reason %q", users.copies["alice"], pm.copies["postmaster"], pm.extra["m1"])
	}
}

// Without a postmaster, unroutable and permanently failed mail stays on the
// server (softbounce); nothing is dropped.
func TestMultidropNoPostmasterKeepsMail(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: stranger@example.net\nMessage-ID: <1@x>"),
		domainMsg("m2", ""), // headerless (CVE-2005-4348)
	}})
	res := multidropPoller(t, newFakeTarget(), nil, false).Poll(context.Background(), testAccount(t, srv))
	if res.Failed != 2 || len(srv.Messages()) != 2 {
		t.Fatalf("Poll = %+v, server %d", res, len(srv.Messages()))
	}
}

func TestMultidropDedupeMessageID(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: alice@example.com, sales@example.com\nMessage-ID: <same@x>"),
		domainMsg("m2", "To: alice@example.com, sales@example.com\nMessage-ID: <same@x>"),
		domainMsg("m3", "To: alice@example.com\nMessage-ID: <other@x>"),
	}})
	users := newFakeTarget()
	res := multidropPoller(t, users, newFakeTarget(), true).Poll(context.Background(), testAccount(t, srv))
	if res.Err != nil || res.Delivered != 3 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	// m1 and m2 are one message: exactly one of them reaches alice.
	got := slices.Clone(users.copies["alice"])
	slices.Sort(got)
	if s := strings.Join(got, ","); s != "m1,m3" && s != "m2,m3" {
		t.Fatalf("alice got %s; want m3 and one of m1, m2 (the same message twice)", s)
	}
}
