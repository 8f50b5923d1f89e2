package fetch

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
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

// note returns message n under uid. Every note has the same size (n <
// 1000), so only the header digest tells them apart: the case the LIST size
// alone gets wrong.
func note(n int, uid string) pop3test.Message {
	return pop3test.Message{UID: uid, Data: fmt.Appendf(nil,
		"From: monitor@example.com\r\nTo: b@example.com\r\nDate: Fri, 4 Dec 2026 10:%02d:00 +0000\r\nSubject: disk %03d\r\nMessage-ID: <%03d@example.com>\r\n\r\nbody %03d\r\n",
		n%60, n, n, n)}
}

// twinNote is note n with another body of the same size: the same UID
// (popa3d and solid-pop3d derive it from header fields), the same size and
// the same header, so only the body digest tells it from note n.
func twinNote(n int, uid string) pop3test.Message {
	m := note(n, uid)
	m.Data = []byte(strings.Replace(string(m.Data), "\r\n\r\nbody ", "\r\n\r\nBODY ", 1))
	return m
}

// rewrittenNote is note n as mailutils pop3d serves it once it rewrote
// the mbox at a QUIT after a RETR: X-IMAPbase, X-UID and Status fields
// added, so a larger size, same body.
func rewrittenNote(n int, uid string) pop3test.Message {
	m := note(n, uid)
	m.Data = []byte(strings.Replace(string(m.Data), "\r\n\r\n", "\r\nX-IMAPbase: 1764840000 3\r\nX-UID: 1\r\nStatus: RO\r\n\r\n", 1))
	return m
}

// bigNote is note n with a longer body: another size.
func bigNote(n int, uid string) pop3test.Message {
	m := note(n, uid)
	m.Data = append(m.Data, "more text\r\n"...)
	return m
}

// mailbox runs polls of one account against a fake server whose content
// the test changes between polls, and checks after each poll that nothing
// left the server undelivered, and at the end that every message put on
// it was delivered exactly once per copy.
type mailbox struct {
	t    *testing.T
	srv  *pop3test.Server
	a    *rcfile.Account
	p    *Poller
	logs *logCapture

	mu       sync.Mutex
	got      map[string]int // deliveries by msgKey
	inserted map[string]int // copies put on the server, by msgKey
}

func newMailbox(t *testing.T, opts pop3test.Options, keep bool) *mailbox {
	m := &mailbox{t: t, got: map[string]int{}, inserted: map[string]int{}, logs: &logCapture{}}
	m.srv = pop3test.NewServer(t, opts)
	m.a = testAccount(t, m.srv)
	m.a.Keep = keep
	m.p = &Poller{Log: m.logs.logger(), Dispatcher: func(*rcfile.Account) (Dispatcher, error) { return m, nil }}
	return m
}

func (m *mailbox) Dispatch(_ context.Context, msg *deliver.Message, _ Progress, _ *slog.Logger) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got[msgKey(rawOf(msg))]++
	return nil
}

// msgKey tells messages apart by Message-ID and body, so that two messages
// that differ only in their bodies count apart.
func msgKey(raw []byte) string {
	return headerValue(raw, "Message-ID") + " body " + bodyDigest(raw)
}

func mids(msgs []pop3test.Message) map[string]int {
	out := map[string]int{}
	for _, x := range msgs {
		out[msgKey(x.Data)]++
	}
	return out
}

// add puts msgs on the server beside what is there.
func (m *mailbox) add(msgs ...pop3test.Message) {
	m.srv.SetMessages(append(m.srv.Messages(), msgs...))
	for id, n := range mids(msgs) {
		m.inserted[id] += n
	}
}

// replace sets the server's content; copies it did not hold before count
// as new mail.
func (m *mailbox) replace(msgs ...pop3test.Message) {
	before := mids(m.srv.Messages())
	for id, n := range mids(msgs) {
		m.inserted[id] += max(0, n-before[id])
	}
	m.srv.SetMessages(msgs)
}

// poll runs one poll and checks it: no error, and every copy that left
// the server was delivered.
func (m *mailbox) poll() Result {
	m.t.Helper()
	return m.pollErr(false)
}

// pollErr is poll; with failing, the poll must fail instead.
func (m *mailbox) pollErr(failing bool) Result {
	m.t.Helper()
	before := mids(m.srv.Messages())
	res := m.p.Poll(context.Background(), m.a)
	if (res.Err != nil) != failing {
		m.t.Fatalf("Poll: %v\n%s", res.Err, m.srv.Transcript())
	}
	after := mids(m.srv.Messages())
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, n := range before {
		if gone := n - after[id]; gone > m.got[id] {
			m.t.Fatalf("%d copies of %s left the server, %d delivered\n%s", gone, id, m.got[id], m.srv.Transcript())
		}
	}
	return res
}

// check verifies that every copy put on the server was delivered exactly
// once.
func (m *mailbox) check() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !maps.Equal(m.got, m.inserted) {
		m.t.Fatalf("deliveries by Message-ID = %v; want %v\n%s", m.got, m.inserted, m.srv.Transcript())
	}
}

// modes runs f for delete and keep mode, on servers with and without TOP
// (popfetch does not use TOP; both must behave alike).
func modes(t *testing.T, f func(t *testing.T, keep, noTop bool)) {
	for _, keep := range []bool{false, true} {
		for _, noTop := range []bool{false, true} {
			t.Run(fmt.Sprintf("keep=%v/noTop=%v", keep, noTop), func(t *testing.T) { f(t, keep, noTop) })
		}
	}
}

// A server that derives UIDs from message numbers gives new mail the UIDs
// of messages popfetch delivered and deleted. Same size or not, the new
// message is delivered, never deleted unread.
func TestReusedUIDs(t *testing.T) {
	modes(t, func(t *testing.T, keep, noTop bool) {
		m := newMailbox(t, pop3test.Options{NoTOP: noTop}, keep)
		m.add(note(1, "1"), note(2, "2"))
		m.poll()
		if keep {
			// The user removes message 1 with another client; the
			// server gives its UID to new mail of another size (in
			// keep mode a reused UID is checked only when the size
			// differs: see reuse.go).
			m.replace(note(2, "2"), bigNote(3, "1"))
		} else {
			m.add(note(3, "1"), note(4, "3")) // same size as message 1
		}
		m.poll()
		if keep {
			m.replace(note(2, "2"), bigNote(3, "1"), note(5, "3"))
		} else {
			m.add(bigNote(5, "1"), note(6, "2"))
		}
		m.poll()
		res := m.poll()
		if res.New != 0 || res.Delivered != 0 {
			t.Fatalf("idle poll = %+v; want nothing new", res)
		}
		m.check()
		if !keep && len(m.srv.Messages()) != 0 {
			t.Fatalf("server still holds %v", uidsOn(m.srv))
		}
	})
}

// Messages delivered but left on the server (QUIT dropped, so no UPDATE)
// are confirmed by their retrieved copy (TOP or not) and deleted by the
// next poll without being delivered again; every DELE of a message the
// session did not deliver follows its RETR.
func TestSeenMessagesConfirmedBeforeDele(t *testing.T) {
	for _, tc := range []struct {
		noTop, noPipelining bool
	}{{false, false}, {true, false}, {false, true}} {
		noTop := tc.noTop
		t.Run(fmt.Sprintf("noTop=%v/noPipelining=%v", tc.noTop, tc.noPipelining), func(t *testing.T) {
			opts := pop3test.Options{NoTOP: noTop, Faults: []pop3test.Fault{{Cmd: "QUIT", Session: 1, Action: pop3test.Drop}}}
			if tc.noPipelining {
				// One command at a time: the server reports any
				// command sent before the previous answer.
				opts.Capa, opts.CheckPipelining = []string{"USER", "UIDL", "TOP"}, true
			}
			m := newMailbox(t, opts, false)
			m.add(note(1, "1"), note(2, "2"), note(3, "3"))
			m.pollErr(true)
			if len(m.srv.Messages()) != 3 {
				t.Fatalf("QUIT was dropped, yet the server holds %d", len(m.srv.Messages()))
			}
			n := len(m.srv.Commands())
			res := m.poll()
			if res.Deleted != 3 || res.Delivered != 0 || len(m.srv.Messages()) != 0 {
				t.Fatalf("second poll = %+v, server %v", res, uidsOn(m.srv))
			}
			m.check()
			check := "RETR %d"
			cmds := m.srv.Commands()[n:]
			for i, c := range cmds {
				var num int
				if _, err := fmt.Sscanf(c, "DELE %d", &num); err != nil {
					continue
				}
				if !slices.Contains(cmds[:i], fmt.Sprintf(check, num)) {
					t.Fatalf("%q sent before %q: %v", c, fmt.Sprintf(check, num), cmds)
				}
			}
		})
	}
}

// The same UID listed twice for two different messages (RFC 1939 §7 says
// it must not happen) blocks nothing: both are delivered once, and the
// rest of the mailbox flows, over several polls with new mail between.
func TestDuplicateUIDListed(t *testing.T) {
	modes(t, func(t *testing.T, keep, noTop bool) {
		m := newMailbox(t, pop3test.Options{NoTOP: noTop}, keep)
		m.add(note(1, "a"), note(2, "dup"), note(3, "dup"), bigNote(4, "dup"), note(5, "b"))
		res := m.poll()
		if res.Delivered != 5 {
			t.Fatalf("first poll = %+v; want 5 delivered", res)
		}
		m.add(note(6, "dup"), note(7, "c"))
		m.poll()
		m.poll()
		m.check()
	})
}

// popa3d and solid-pop3d give identical messages one UID. Each copy
// present in a poll is delivered once; in delete mode each is deleted (one
// whose DELE was refused is confirmed and deleted by the next poll, not
// delivered again); later polls deliver nothing.
func TestIdenticalMessagesSameUID(t *testing.T) {
	modes(t, func(t *testing.T, keep, noTop bool) {
		m := newMailbox(t, pop3test.Options{NoTOP: noTop, Faults: []pop3test.Fault{{Cmd: "DELE", N: 1, Session: 1, Action: pop3test.Reply, Reply: "-ERR busy"}}}, keep)
		m.add(note(1, "same"), note(1, "same"), note(2, "x"))
		res := m.poll()
		if res.Delivered != 3 {
			t.Fatalf("first poll = %+v; want 3 delivered", res)
		}
		m.poll()
		res = m.poll()
		if res.Delivered != 0 {
			t.Fatalf("third poll = %+v; want nothing delivered", res)
		}
		m.check()
		if want := map[bool]int{false: 0, true: 3}[keep]; len(m.srv.Messages()) != want {
			t.Fatalf("server holds %v; want %d messages", uidsOn(m.srv), want)
		}
	})
}

// A keep mode mailbox whose server renumbers every UID at once (a rebuilt
// index) gets one ERROR, with the right counts, and the messages delivered
// before are recognised by their identity rather than fetched again; new
// mail that arrived meanwhile is delivered.
func TestRenumberedListing(t *testing.T) {
	for _, noTop := range []bool{false, true} {
		t.Run(fmt.Sprintf("noTop=%v", noTop), func(t *testing.T) {
			m := newMailbox(t, pop3test.Options{NoTOP: noTop}, true)
			m.add(note(1, "a1"), note(2, "a2"), bigNote(3, "a3"))
			m.poll()
			m.replace(note(1, "b1"), note(2, "b2"), bigNote(3, "b3"), note(4, "b4"))
			res := m.poll()
			if res.Delivered != 1 {
				t.Fatalf("poll after renumbering = %+v; want only the new message", res)
			}
			m.poll()
			m.poll()
			m.check()
			l := m.logs.lines("level=ERROR", "renumbered")
			if len(l) != 1 || !strings.Contains(l[0], "messages=4") || !strings.Contains(l[0], "previous=3") {
				t.Fatalf("ERROR lines about renumbering = %q; want one, messages=4 previous=3\n%s", l, m.logs.String())
			}
		})
	}
}

// In delete mode a message under a new UID is never matched against the
// identities of other UIDs (see survey): a server that renumbered the
// messages whose DELE it refused gets them delivered again (a duplicate,
// once) and a warning with the right counts; a listing that merely shares
// no UID with the journal after a clean poll is normal and logs nothing.
func TestRenumberedListingDeleteMode(t *testing.T) {
	m := newMailbox(t, pop3test.Options{Faults: []pop3test.Fault{{Cmd: "DELE", Session: 1, Action: pop3test.Reply, Reply: "-ERR busy"}}}, false)
	m.add(note(1, "a1"), note(2, "a2"), bigNote(3, "a3"))
	if res := m.poll(); res.Delivered != 3 || res.Deleted != 0 {
		t.Fatalf("first poll = %+v; want 3 delivered, DELE refused", res)
	}
	m.replace(note(1, "b1"), note(2, "b2"), bigNote(3, "b3"), note(4, "b4"))
	res := m.poll()
	if res.Delivered != 4 || res.Deleted != 4 || len(m.srv.Messages()) != 0 {
		t.Fatalf("poll after renumbering = %+v, server %v; want all 4 delivered and deleted", res, uidsOn(m.srv))
	}
	l := m.logs.lines("level=WARN", "renumbered")
	if len(l) != 1 || !strings.Contains(l[0], "messages=4") || !strings.Contains(l[0], "previous=3") {
		t.Fatalf("WARN lines about renumbering = %q; want one, messages=4 previous=3\n%s", l, m.logs.String())
	}
	m.add(note(5, "c1"), note(6, "c2"))
	if res := m.poll(); res.Delivered != 2 {
		t.Fatalf("poll = %+v; want the 2 new messages", res)
	}
	m.poll()
	if n := len(m.logs.lines("renumbered")); n != 1 {
		t.Fatalf("%d lines about renumbering; want 1\n%s", n, m.logs.String())
	}
	for i, want := range []int{2, 2, 2, 1, 1, 1} {
		key := msgKey(map[int]pop3test.Message{0: note(1, ""), 1: note(2, ""), 2: bigNote(3, ""), 3: note(4, ""), 4: note(5, ""), 5: note(6, "")}[i].Data)
		if got := m.got[key]; got != want {
			t.Errorf("message %d delivered %d times; want %d", i+1, got, want)
		}
	}
}

// An mbox server that rewrites a kept message (Status: after it was read)
// changes its size, not its identity: it is not delivered again.
func TestKeepRewrittenMessage(t *testing.T) {
	m := newMailbox(t, pop3test.Options{}, true)
	m.add(note(1, "1"), note(2, "2"))
	m.poll()
	rewritten := note(1, "1")
	rewritten.Data = []byte(strings.Replace(string(rewritten.Data), "\r\n\r\n", "\r\nStatus: RO\r\n\r\n", 1))
	m.replace(rewritten, note(2, "2"))
	if res := m.poll(); res.Delivered != 0 {
		t.Fatalf("poll after the rewrite = %+v; want nothing delivered", res)
	}
	n := len(m.srv.Commands())
	m.poll()
	for _, c := range m.srv.Commands()[n:] {
		if strings.HasPrefix(c, "RETR") {
			t.Fatalf("the rewritten size was not recorded: %q sent again", c)
		}
	}
	m.check()
}

// One mailbox is one journal whatever the port (rcfile.Account.Mailbox):
// moving a keep-mode account from one port to another (STLS on 110 to
// implicit TLS on 995) fetches nothing again.
func TestJournalSurvivesPortChange(t *testing.T) {
	srv1 := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3)})
	srv2 := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3)})
	a := testAccount(t, srv1)
	a.Keep = true
	rec := &recorder{}
	if res := poller(rec).Poll(context.Background(), a); res.Err != nil || res.Delivered != 3 {
		t.Fatalf("first poll = %+v", res)
	}
	a.Port = srv2.Port()
	if res := poller(rec).Poll(context.Background(), a); res.Err != nil || res.Delivered != 0 {
		t.Fatalf("poll on the other port = %+v; want nothing delivered again", res)
	}
}

// A journal an older popfetch kept per port (USER@SERVER:PORT, format 1)
// is moved to the mailbox's name on the first poll: a keep-mode mailbox is
// not fetched again.
func TestPollMigratesPortJournal(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3)})
	a := testAccount(t, srv)
	a.Keep = true
	old := uidl.LegacyPath(a.StateDir, a.Username, a.Server, 995)
	if err := os.MkdirAll(filepath.Dir(old), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, []byte("popfetch-uidl 1\n+ uid-0001 1\n+ uid-0002 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	res := poller(rec).Poll(context.Background(), a)
	if res.Err != nil || strings.Join(rec.got, ",") != "uid-0003" {
		t.Fatalf("Poll = %+v, delivered %v; want only uid-0003", res, rec.got)
	}
	if _, err := os.Lstat(old); !os.IsNotExist(err) {
		t.Fatalf("old journal still there: %v", err)
	}
	s := openStore(t, a)
	defer s.Close()
	// Keep mode leaves the old records as they are (no command per
	// poll); the new message has a full identity.
	for uid, want := range map[string]int{"uid-0001": 0, "uid-0002": 0, "uid-0003": 1} {
		if ids := s.Identities(uid); len(ids) != want || want == 1 && len(ids[0].Digest) != fullDigestLen {
			t.Errorf("Identities(%s) = %v; want %d full identities", uid, ids, want)
		}
	}
}

// mailbox_id tells two mailboxes behind one host and user apart (two
// tunnels): each keeps its own journal, moved from its own port's old one.
func TestMailboxIDSeparatesJournals(t *testing.T) {
	srv1 := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2)})
	srv2 := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2)})
	a1, a2 := testAccount(t, srv1), testAccount(t, srv2)
	a1.Keep, a2.Keep = true, true
	a2.StateDir = a1.StateDir
	a1.MailboxID, a2.MailboxID = "tunnel1", "tunnel2"
	// Older popfetch versions kept one journal per port: each tunnel's
	// moves to its own mailbox_id; without mailbox_id the two would be
	// ambiguous (and the config a duplicate).
	for i, a := range []*rcfile.Account{a1, a2} {
		old := uidl.LegacyPath(a.StateDir, a.Username, a.Server, a.Port)
		os.MkdirAll(filepath.Dir(old), 0o700)
		if err := os.WriteFile(old, fmt.Appendf(nil, "popfetch-uidl 1\n+ uid-000%d 1\n", i+1), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, a := range []*rcfile.Account{a1, a2} {
		rec := &recorder{}
		if res := poller(rec).Poll(context.Background(), a); res.Err != nil || res.Delivered != 1 || rec.got[0] != fmt.Sprintf("uid-000%d", 2-i) {
			t.Fatalf("Poll(%s) = %+v, delivered %v; want only the message its old journal lacks", a.MailboxID, res, rec.got)
		}
	}
}

// A message given up is skipped, but a message of another size that the
// server lists later under its UID (numbered UIDs) is fetched.
func TestGivenUpUIDReused(t *testing.T) {
	m := newMailbox(t, pop3test.Options{}, false)
	given := bigNote(1, "1")
	s, err := uidl.Open(uidl.Path(m.a.StateDir, m.a.Mailbox()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.GiveUpSize("1", int64(len(given.Data)), time.Now()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	m.add(given, note(2, "2"))
	delete(m.inserted, msgKey(given.Data)) // never to be delivered
	if res := m.poll(); res.Delivered != 1 || res.Skipped != 1 {
		t.Fatalf("poll = %+v; want message 2 delivered, the given-up one skipped", res)
	}
	// Another client removed the given-up message; new mail took its UID.
	m.replace(note(3, "1"))
	if res := m.poll(); res.Delivered != 1 {
		t.Fatalf("poll = %+v; want the new message under the given-up UID delivered", res)
	}
	m.check()
}

// partialDisp serves one recipient of each message through Progress and
// fails message 1 after it, as a multidrop delivery that failed part-way.
type partialDisp struct {
	mu    sync.Mutex
	calls []string
}

func (d *partialDisp) Dispatch(_ context.Context, m *deliver.Message, p Progress, _ *slog.Logger) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	mid := headerValue(rawOf(m), "Message-ID")
	done := p.Done("r1@example.com")
	d.calls = append(d.calls, fmt.Sprintf("%s done=%v", mid, done))
	if !done {
		if err := p.Record("r1@example.com"); err != nil {
			return err
		}
	}
	if mid == "<001@example.com>" {
		return fmt.Errorf("r2: temporary failure")
	}
	return nil
}

// The recipients a failed multidrop delivery recorded belong to that
// message: new mail the server lists later under its UID (the first
// message removed by another client) is served to all of them.
func TestPartialProgressNotInherited(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{note(1, "u")}})
	a := testAccount(t, srv)
	d := &partialDisp{}
	p := &Poller{Dispatcher: func(*rcfile.Account) (Dispatcher, error) { return d, nil }}
	if res := p.Poll(context.Background(), a); res.Err != nil || res.Failed != 1 {
		t.Fatalf("first poll = %+v", res)
	}
	srv.SetMessages([]pop3test.Message{note(2, "u")})
	if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != 1 {
		t.Fatalf("second poll = %+v", res)
	}
	want := []string{"<001@example.com> done=false", "<002@example.com> done=false"}
	if !slices.Equal(d.calls, want) {
		t.Fatalf("dispatches = %q; want %q (message 2 never reached r1)", d.calls, want)
	}
}

// A new message with the UID, size and header fields of one delivered
// before (popa3d: UID from Date, Message-ID and Received; solid-pop3d:
// Subject, Date and Received) differs only in its body. It is delivered,
// never deleted unread: in delete mode at once; in keep mode an unchanged
// size is not checked (the documented gap), but switching keep off
// retrieves and compares it, and delivers it then.
func TestReusedUIDSameHeaderOtherBody(t *testing.T) {
	for _, keepFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepFirst=%v", keepFirst), func(t *testing.T) {
			m := newMailbox(t, pop3test.Options{}, keepFirst)
			m.add(note(1, "1"), note(2, "2"))
			m.poll()
			if keepFirst {
				// Another client removed message 1; a new one took
				// its UID.
				m.replace(twinNote(1, "1"), note(2, "2"))
				if res := m.poll(); res.Delivered != 0 {
					t.Fatalf("keep mode poll = %+v; an unchanged size is taken as the same message", res)
				}
				m.a.Keep = false
			} else {
				m.add(twinNote(1, "1"))
			}
			res := m.poll()
			if res.Delivered != 1 {
				t.Fatalf("poll = %+v; want the new message delivered\n%s", res, m.srv.Transcript())
			}
			m.poll()
			m.check()
			if len(m.srv.Messages()) != 0 {
				t.Fatalf("server still holds %v", uidsOn(m.srv))
			}
		})
	}
}

// mailutils pop3d rewrites an mbox message at the first QUIT after its
// RETR (X-IMAPbase, X-UID, Status): a larger size, the same message. It is
// never delivered again: not in keep mode, and not when keep is switched
// off, whether or not a keep mode poll saw the new size first.
func TestRewrittenMessageNotDeliveredAgain(t *testing.T) {
	for _, keepPolls := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("keepPolls=%d", keepPolls), func(t *testing.T) {
			m := newMailbox(t, pop3test.Options{}, true)
			m.add(note(1, "1"), note(2, "2"))
			m.poll()
			m.replace(rewrittenNote(1, "1"), rewrittenNote(2, "2"))
			for range keepPolls {
				if res := m.poll(); res.Delivered != 0 {
					t.Fatalf("keep mode poll after the rewrite = %+v; want nothing delivered", res)
				}
			}
			m.a.Keep = false
			res := m.poll()
			if res.Delivered != 0 || res.Deleted != 2 {
				t.Fatalf("delete mode poll = %+v; want 2 deleted, none delivered\n%s", res, m.srv.Transcript())
			}
			m.check()
		})
	}
}

// mailutilsRewrite is what mailutils pop3d does to an mbox message read
// by RETR, at the session's QUIT: X-IMAPbase (first message only), X-UID
// and Status fields added once.
func mailutilsRewrite(m pop3test.Message) pop3test.Message {
	if strings.Contains(string(m.Data), "\r\nX-UID: ") {
		return m
	}
	m.Data = []byte(strings.Replace(string(m.Data), "\r\n\r\n", "\r\nX-IMAPbase: 1764840000 2\r\nX-UID: 1\r\nStatus: O\r\n\r\n", 1))
	return m
}

// The same as TestRewrittenMessageNotDeliveredAgain, with the server doing
// the rewrite itself at the QUIT after each RETR (pop3test's
// RewriteRetrieved), as mailutils does: kept messages are not delivered
// again in keep mode, nor when keep is switched off, and are then deleted.
func TestMboxRewriteAtQuit(t *testing.T) {
	for _, keepPolls := range []int{1, 3} {
		t.Run(fmt.Sprintf("keepPolls=%d", keepPolls), func(t *testing.T) {
			m := newMailbox(t, pop3test.Options{RewriteRetrieved: mailutilsRewrite}, true)
			m.add(note(1, "1"), note(2, "2"))
			for i := range keepPolls {
				if res := m.poll(); i > 0 && res.Delivered != 0 {
					t.Fatalf("keep mode poll %d = %+v; want nothing delivered\n%s", i+1, res, m.srv.Transcript())
				}
			}
			m.add(note(3, "3"))
			m.a.Keep = false
			res := m.poll()
			if res.Delivered != 1 || res.Deleted != 3 || len(m.srv.Messages()) != 0 {
				t.Fatalf("delete mode poll = %+v, server %v; want 1 delivered, 3 deleted\n%s", res, uidsOn(m.srv), m.srv.Transcript())
			}
			m.check()
		})
	}
}

// In delete mode a listing that shares no UID with the journal is normal
// (the last poll deleted what it listed), and each of its messages is
// checked by its retrieved copy as it is delivered: fetch_limit still
// bounds what one poll retrieves.
func TestFetchLimitAllNewListing(t *testing.T) {
	m := newMailbox(t, pop3test.Options{}, false)
	m.add(note(1, "a1"), note(2, "a2"))
	if res := m.poll(); res.Delivered != 2 {
		t.Fatalf("first poll = %+v", res)
	}
	m.a.FetchLimit = 1
	m.add(note(3, "b1"), note(4, "b2"), note(5, "b3"))
	for i := range 3 {
		if res := m.poll(); res.Delivered != 1 || res.New != 1 {
			t.Fatalf("poll %d = %+v; want 1 new and delivered (fetch_limit 1)", i+2, res)
		}
	}
	m.check()
}
