package fetch

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/uidl"
)

// rawRec records every delivered message byte for byte.
type rawRec struct {
	mu  sync.Mutex
	got []string
}

func (r *rawRec) Dispatch(_ context.Context, m *deliver.Message, _ Progress, _ *slog.Logger) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, string(rawOf(m)))
	return nil
}

// has counts the deliveries of exactly s.
func (r *rawRec) has(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, g := range r.got {
		if g == s {
			n++
		}
	}
	return n
}

// rawPoller is a Poller delivering to rec and logging to logs.
func rawPoller(rec *rawRec, logs *logCapture) *Poller {
	return &Poller{Log: logs.logger(), Dispatcher: func(*rcfile.Account) (Dispatcher, error) { return rec, nil }}
}

// noLoss fails t if a message of want left the server without having been
// delivered.
func noLoss(t *testing.T, srv *pop3test.Server, rec *rawRec, want ...pop3test.Message) {
	t.Helper()
	on := map[string]bool{}
	for _, m := range srv.Messages() {
		on[string(m.Data)] = true
	}
	for _, m := range want {
		if !on[string(m.Data)] && rec.has(string(m.Data)) == 0 {
			t.Fatalf("message %q (uid %s) left the server undelivered\n%s", m.Data, m.UID, srv.Transcript())
		}
	}
}

// multidropBody is one message a provider stores once per recipient,
// each copy with its own envelope field on top.
const multidropBody = "Received: from mx by pop with ESMTP id 1234; Fri, 4 Dec 2026 10:00:00 +0000\r\nFrom: x@example.org\r\nTo: a@example.com, b@example.com\r\nSubject: hi\r\nDate: Fri, 4 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nhello\r\n"

// An ordinary server (unique UIDs) in delete mode: the next poll's listing
// shares no UID with the journal, which is normal. A per-recipient copy
// under a new UID, or any new message, is never compared with the
// identities of other UIDs: it is delivered. Nothing is logged as
// renumbering.
func TestDeleteModeNewUIDsNeverMatchOthers(t *testing.T) {
	headerless := func(uid, s string) pop3test.Message {
		return pop3test.Message{UID: uid, Data: []byte(s + "\r\n")}
	}
	same := func(uid string) pop3test.Message { return pop3test.Message{UID: uid, Data: []byte(multidropBody)} }
	for _, tc := range []struct {
		name        string
		first, next []pop3test.Message
	}{
		{"multidrop copy", []pop3test.Message{{UID: "u1", Data: []byte("Delivered-To: a@example.com\r\n" + multidropBody)}, withUID(msg(9), "u2")},
			[]pop3test.Message{{UID: "u3", Data: []byte("Delivered-To: b@example.com\r\n" + multidropBody)}}},
		{"headerless", []pop3test.Message{headerless("u1", "backup of host-a failed"), headerless("u2", "backup of host-b ok")},
			[]pop3test.Message{headerless("u3", "RAID degraded on host-c, replace disk 3 now")}},
		// Even a byte-identical message under a new UID is new mail
		// (the server delivered it twice): a duplicate, never a loss.
		{"identical", []pop3test.Message{same("u1"), withUID(msg(9), "u2")}, []pop3test.Message{same("u3")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: tc.first})
			a := testAccount(t, srv)
			rec, logs := &rawRec{}, &logCapture{}
			p := rawPoller(rec, logs)
			if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != len(tc.first) {
				t.Fatalf("first poll = %+v", res)
			}
			srv.SetMessages(tc.next)
			if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != len(tc.next) {
				t.Fatalf("second poll = %+v; want %d delivered\n%s", res, len(tc.next), logs.String())
			}
			noLoss(t, srv, rec, tc.next...)
			if l := logs.lines("renumber"); len(l) != 0 {
				t.Fatalf("a normal delete mode poll logged renumbering: %q", l)
			}
		})
	}
}

func withUID(m pop3test.Message, uid string) pop3test.Message {
	m.UID = uid
	return m
}

// fetch_limit makes the previous case deterministic: both per-recipient
// copies are on the server from the start, under distinct UIDs, and the
// second is left to the next poll.
func TestFetchLimitMultidropCopies(t *testing.T) {
	o1, o2 := msg(8), msg(9)
	ca := pop3test.Message{UID: "u3", Data: []byte("X-Original-To: a@example.com\r\n" + multidropBody)}
	cb := pop3test.Message{UID: "u4", Data: []byte("X-Original-To: b@example.com\r\n" + multidropBody)}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{o1, o2, ca, cb}})
	a := testAccount(t, srv)
	a.FetchLimit = 3
	rec, logs := &rawRec{}, &logCapture{}
	p := rawPoller(rec, logs)
	for i := range 2 {
		if res := p.Poll(context.Background(), a); res.Err != nil {
			t.Fatalf("poll %d: %v", i+1, res.Err)
		}
	}
	noLoss(t, srv, rec, o1, o2, ca, cb)
	if len(srv.Messages()) != 0 || len(rec.got) != 4 {
		t.Fatalf("server holds %v, %d delivered; want all 4 delivered and deleted", uidsOn(srv), len(rec.got))
	}
}

// A UID whose DELE the server kept refusing is suspended only for the
// message recorded under it: a new message the server lists under the
// same UID (beside it, or in its place) is delivered at once.
func TestSuspendedDeleNewMailSameUID(t *testing.T) {
	old := pop3test.Message{UID: "x", Data: []byte("From: a@b\r\nSubject: old\r\nMessage-ID: <o@x>\r\n\r\nold\r\n")}
	nw := pop3test.Message{UID: "x", Data: []byte("From: c@d\r\nSubject: NEW\r\nMessage-ID: <n@x>\r\n\r\nnew mail\r\n")}
	for _, tc := range []struct {
		name string
		next []pop3test.Message
	}{
		{"listed twice", []pop3test.Message{old, nw}},
		{"in its place", []pop3test.Message{nw}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{old},
				Faults: []pop3test.Fault{{Cmd: "DELE", Reply: "-ERR [SYS/PERM] mailbox read-only"}}})
			a := testAccount(t, srv)
			rec, logs := &rawRec{}, &logCapture{}
			p := rawPoller(rec, logs)
			for range deleRefusalPolls + 1 {
				p.Poll(context.Background(), a)
			}
			if !strings.Contains(logs.String(), "not asking for DELE again") {
				t.Fatalf("DELE not suspended after %d refusals\n%s", deleRefusalPolls, logs.String())
			}
			srv.SetMessages(tc.next)
			res := p.Poll(context.Background(), a)
			if rec.has(string(nw.Data)) != 1 {
				t.Fatalf("poll = %+v: new message under the suspended UID delivered %d times; want 1", res, rec.has(string(nw.Data)))
			}
			if rec.has(string(old.Data)) != 1 {
				t.Fatalf("old message delivered %d times; want 1", rec.has(string(old.Data)))
			}
			// Neither is delivered again by later polls.
			p.Poll(context.Background(), a)
			if rec.has(string(nw.Data)) != 1 || rec.has(string(old.Data)) != 1 {
				t.Fatalf("later poll delivered again: %d new, %d old", rec.has(string(nw.Data)), rec.has(string(old.Data)))
			}
		})
	}
}

// Messages without a header/body separator are identified by their whole
// content: a new one under a reused UID is delivered, not deleted as the
// old one.
func TestHeaderlessMessageReusedUID(t *testing.T) {
	a1 := pop3test.Message{UID: "1", Data: []byte("alert: disk full on host-a\r\n")}
	b1 := pop3test.Message{UID: "1", Data: []byte("alert: power failure in rack 7\r\n")}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{a1}})
	a := testAccount(t, srv)
	rec, logs := &rawRec{}, &logCapture{}
	p := rawPoller(rec, logs)
	if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != 1 {
		t.Fatalf("first poll = %+v", res)
	}
	srv.SetMessages([]pop3test.Message{b1}) // the server reuses UID 1 for new mail
	if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != 1 {
		t.Fatalf("second poll = %+v; want the new message delivered\n%s", res, srv.Transcript())
	}
	noLoss(t, srv, rec, b1)
	if rec.has(string(b1.Data)) != 1 {
		t.Fatalf("new message delivered %d times; want 1", rec.has(string(b1.Data)))
	}
}

// Per-recipient copies (Delivered-To differs) that a server whose UIDs
// derive from a few header fields (popa3d, solid-pop3d) lists under one
// UID, the second arriving after the first was delivered and deleted: the
// second is a new message.
func TestEnvelopeCopiesReusedUID(t *testing.T) {
	for _, field := range []string{"Delivered-To", "X-Original-To", "Envelope-To"} {
		t.Run(field, func(t *testing.T) {
			ca := pop3test.Message{UID: "h1", Data: []byte(field + ": a@example.com\r\n" + multidropBody)}
			cb := pop3test.Message{UID: "h1", Data: []byte(field + ": b@example.com\r\n" + multidropBody)}
			srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{ca}})
			a := testAccount(t, srv)
			rec, logs := &rawRec{}, &logCapture{}
			p := rawPoller(rec, logs)
			if res := p.Poll(context.Background(), a); res.Err != nil {
				t.Fatal(res.Err)
			}
			srv.SetMessages([]pop3test.Message{cb})
			if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != 1 {
				t.Fatalf("second poll = %+v; want the copy for b delivered", res)
			}
			noLoss(t, srv, rec, cb)
		})
	}
}

// A digest recorded by an older popfetch (another rule for the header
// digest) matches no retrieved copy: the message is delivered again, once,
// and recorded with its new identity; later polls neither deliver nor
// retrieve it again. In keep mode an unchanged size still counts as the
// same message (no command); a changed size costs the one duplicate.
func TestOldDigestDeliveredOnce(t *testing.T) {
	for _, tc := range []struct {
		name      string
		keep      bool
		sizeDelta int64
		want      int // deliveries of the message
	}{
		{"delete mode", false, 0, 1},
		{"keep mode, same size", true, 0, 0},
		{"keep mode, size changed", true, 7, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := note(1, "1")
			srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{m}})
			a := testAccount(t, srv)
			a.Keep = tc.keep
			s := openStore(t, a)
			old := uidl.Identity{Size: int64(len(m.Data)) + tc.sizeDelta, Digest: strings.Repeat("5a", 32)}
			if err := s.AddIdentity("1", old, time.Now(), true); err != nil {
				t.Fatal(err)
			}
			s.Close()
			rec, logs := &rawRec{}, &logCapture{}
			p := rawPoller(rec, logs)
			for i := range 3 {
				n := len(srv.Commands())
				if res := p.Poll(context.Background(), a); res.Err != nil {
					t.Fatalf("poll %d: %v", i+1, res.Err)
				}
				if i > 0 && slices.ContainsFunc(srv.Commands()[n:], func(c string) bool { return strings.HasPrefix(c, "RETR") }) {
					t.Fatalf("poll %d retrieved again: %v", i+1, srv.Commands()[n:])
				}
			}
			if got := rec.has(string(m.Data)); got != tc.want {
				t.Fatalf("delivered %d times; want %d", got, tc.want)
			}
			if !tc.keep && len(srv.Messages()) != 0 {
				t.Fatalf("server still holds %v", uidsOn(srv))
			}
		})
	}
}

// Two messages under one UID, the server refusing DELE of one and
// accepting the other's: the refusals are counted per poll, and the
// accepted DELE does not end the run, so the refusal escalates after
// deleRefusalPolls polls as it does for a UID listed once.
func TestDeleRefusalsSharedUID(t *testing.T) {
	stuck := note(1, "dup")
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{stuck},
		// The first DELE of each session is the stuck message's: it is
		// confirmed by its copy when its round ends, before the new
		// message's delivery is recorded and its DELE queued.
		Faults: []pop3test.Fault{{Cmd: "DELE", N: 1, Action: pop3test.Reply, Reply: "-ERR [IN-USE] locked"}}})
	a := testAccount(t, srv)
	rec, logs := &rawRec{}, &logCapture{}
	p := rawPoller(rec, logs)
	var res Result
	for i := range deleRefusalPolls {
		if i > 0 {
			srv.SetMessages([]pop3test.Message{stuck, bigNote(10+i, "dup")})
		}
		if res = p.Poll(context.Background(), a); res.Err != nil {
			t.Fatalf("poll %d: %v", i+1, res.Err)
		}
	}
	if res.Undeletable != 1 || len(logs.lines("level=ERROR", "refused DELE in 3 polls")) != 1 {
		t.Fatalf("poll %d = %+v; want the stuck message undeletable, one ERROR\n%s", deleRefusalPolls, res, logs.String())
	}
	if len(rec.got) != deleRefusalPolls {
		t.Fatalf("%d deliveries; want %d (each message once)", len(rec.got), deleRefusalPolls)
	}
}

// In keep mode a UID listed twice is checked until every copy is recorded
// (identical copies once each, as popa3d and solid-pop3d list them); then
// polls send no RETR for it, as for a UID listed once.
func TestKeepDuplicateUIDNotFetchedEveryPoll(t *testing.T) {
	for _, tc := range []struct {
		name string
		msgs []pop3test.Message
	}{
		{"identical", []pop3test.Message{note(1, "same"), note(1, "same"), note(2, "x")}},
		{"same size", []pop3test.Message{note(1, "dup"), twinNote(1, "dup")}},
		{"other sizes", []pop3test.Message{note(1, "dup"), bigNote(2, "dup")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMailbox(t, pop3test.Options{}, true)
			m.add(tc.msgs...)
			if res := m.poll(); res.Delivered != len(tc.msgs) {
				t.Fatalf("first poll = %+v; want %d delivered", res, len(tc.msgs))
			}
			m.poll() // a second poll may still check
			n := len(m.srv.Commands())
			m.poll()
			m.poll()
			for _, c := range m.srv.Commands()[n:] {
				if strings.HasPrefix(c, "RETR") {
					t.Fatalf("%q sent by a later poll: %v", c, m.srv.Commands()[n:])
				}
			}
			// A new message under the UID, of another size, is
			// still delivered.
			m.add(withUID(bigNote(9, ""), tc.msgs[0].UID))
			m.poll()
			m.check()
		})
	}
}

// A keep mode poll after delete mode polls: the messages those deleted are
// not expected to stay, so an all-new listing is not taken as renumbered,
// and a message identical to one deleted (the sender's MTA delivered it
// twice) is delivered, not recorded as seen.
func TestKeepAfterDeleteNotRenumbered(t *testing.T) {
	m := newMailbox(t, pop3test.Options{}, false)
	m.add(note(1, "a1"), note(2, "a2"))
	if res := m.poll(); res.Deleted != 2 {
		t.Fatalf("delete mode poll = %+v", res)
	}
	m.a.Keep = true
	m.add(note(1, "b1"), note(3, "b2"))
	if res := m.poll(); res.Delivered != 2 {
		t.Fatalf("keep mode poll = %+v; want both delivered\n%s", res, m.logs.String())
	}
	if l := m.logs.lines("renumber"); len(l) != 0 {
		t.Fatalf("logged renumbering: %q", l)
	}
}
