package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/uidl"
)

const day = 24 * time.Hour

// kept is a keep mode account with delete_after = 7d against a fake
// server, polled by one-shot Pollers (a new process each poll, as from
// cron) on a clock the test moves.
type kept struct {
	t    *testing.T
	srv  *pop3test.Server
	a    *rcfile.Account
	rec  *recorder
	now  time.Time
	logs *logCapture
}

var t0 = time.Unix(1_700_000_000, 0)

func newKept(t *testing.T, opts pop3test.Options) *kept {
	k := &kept{t: t, srv: pop3test.NewServer(t, opts), rec: &recorder{}, now: t0}
	k.a = testAccount(t, k.srv)
	k.a.Keep, k.a.DeleteAfter = true, 7*day
	return k
}

// poll runs one poll at the clock's time plus advance and returns its
// result and the commands it sent.
func (k *kept) poll(advance time.Duration) (Result, []string) {
	k.t.Helper()
	k.now = k.now.Add(advance)
	k.logs = &logCapture{}
	p := poller(k.rec)
	p.Log = k.logs.logger()
	p.Now = func() time.Time { return k.now }
	before := len(k.srv.Commands())
	res := p.Poll(context.Background(), k.a)
	if res.Err != nil {
		k.t.Fatalf("poll at +%v: %v\n%s", k.now.Sub(t0), res.Err, k.srv.Transcript())
	}
	return res, k.srv.Commands()[before:]
}

func count(cmds []string, prefix string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func (k *kept) delivered(uid string) int {
	k.rec.mu.Lock()
	defer k.rec.mu.Unlock()
	n := 0
	for _, u := range k.rec.got {
		if u == uid {
			n++
		}
	}
	return n
}

// TestDeleteAfter: a message delivered 8 days ago is deleted by a poll
// with delete_after = 7d, one delivered 6 days ago is kept; nothing costs
// a command before it is due; the deletion is an Info audit line with
// its age and counts as deleted in the summary; the next polls neither
// deliver nor delete anything again.
func TestDeleteAfter(t *testing.T) {
	k := newKept(t, pop3test.Options{Messages: msgs(1)})
	if res, _ := k.poll(0); res.Delivered != 1 || res.Deleted != 0 || res.Kept != 1 || res.Bytes != int64(len(msg(1).Data)) {
		t.Fatalf("first poll = %+v; want 1 delivered and kept", res)
	}
	k.srv.SetMessages(append(k.srv.Messages(), msg(2)))
	if res, _ := k.poll(2 * day); res.Delivered != 1 || res.Deleted != 0 {
		t.Fatalf("second poll = %+v", res)
	}
	// +6d: the first message is 6 days old; not even retrieved.
	res, cmds := k.poll(4 * day)
	if res.Deleted != 0 || count(cmds, "RETR") != 0 || count(cmds, "DELE") != 0 {
		t.Fatalf("poll at 6 days = %+v, commands %q", res, cmds)
	}
	// +8d: the first is 8 days old, the second 6.
	res, cmds = k.poll(2 * day)
	// The first is retrieved for its check (Bytes), deleted, and was
	// not delivered in this poll: not counted as kept.
	if res.Kept != 0 || res.Bytes != int64(len(msg(1).Data)) {
		t.Errorf("poll at 8 days = %+v; want Kept 0, Bytes of the one retrieved", res)
	}
	if res.Deleted != 1 || res.Delivered != 0 || count(cmds, "RETR") != 1 || count(cmds, "DELE") != 1 || count(cmds, "RETR 1") != 1 || count(cmds, "DELE 1") != 1 {
		t.Fatalf("poll at 8 days = %+v, commands %q", res, cmds)
	}
	if got := uidsOn(k.srv); len(got) != 1 || got[0] != "uid-0002" {
		t.Fatalf("on the server: %q; want uid-0002 only", got)
	}
	audit := k.logs.lines("level=INFO", "delete_after", "account=test", "uid=uid-0001", "age=192h0m0s")
	summary := k.logs.lines("poll done", "deleted=1")
	if len(audit) != 1 || len(summary) != 1 {
		t.Fatalf("audit lines %q, summary %q; log:\n%s", audit, summary, k.logs.String())
	}
	// +9d: the second is 7 days old (the cutoff is inclusive).
	res, cmds = k.poll(day)
	if res.Deleted != 1 || count(cmds, "DELE") != 1 || len(k.srv.Messages()) != 0 {
		t.Fatalf("poll at 9 days = %+v, commands %q", res, cmds)
	}
	res, cmds = k.poll(day)
	if res.Deleted != 0 || res.Delivered != 0 || count(cmds, "RETR") != 0 {
		t.Fatalf("poll after = %+v, commands %q", res, cmds)
	}
	if k.delivered("uid-0001") != 1 || k.delivered("uid-0002") != 1 {
		t.Fatalf("deliveries %q; want each once", k.rec.got)
	}
}

// TestDeleteAfterNeverUndelivered: only a message the journal records as
// delivered is deleted. A message given up (its UID once held a message
// delivered long ago), one over limit, one whose delivery keeps failing,
// and an old message now too large to retrieve for its check all stay.
func TestDeleteAfterNeverUndelivered(t *testing.T) {
	big := msg(3)
	big.Data = append(big.Data, strings.Repeat("x", 4000)+"\r\n"...)
	k := newKept(t, pop3test.Options{Messages: []pop3test.Message{msg(1), msg(2), big, msg(4)}})
	k.a.Limit = 2000
	k.rec.fail = func(uid string) error {
		if uid == "uid-0002" {
			return errors.New("mailbox full")
		}
		return nil
	}
	if res, _ := k.poll(0); res.Delivered != 2 || res.Failed != 1 || res.Skipped != 1 {
		t.Fatalf("first poll = %+v", res)
	}
	// uid-0004 was delivered; its UID is then given up for a message of
	// another size (a server that reuses UIDs), now listed at that size.
	s := openStore(t, k.a)
	m4 := msg(4)
	m4.Data = append(m4.Data, "another message\r\n"...)
	if err := s.GiveUpSize("uid-0004", int64(len(m4.Data)), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// uid-0001 was delivered and is now over the lowered limit.
	k.a.Limit = int64(len(msg(1).Data)) - 1
	k.srv.SetMessages([]pop3test.Message{msg(1), msg(2), big, m4})
	res, cmds := k.poll(30 * day)
	if res.Deleted != 0 || count(cmds, "DELE") != 0 || len(k.srv.Messages()) != 4 {
		t.Fatalf("poll at 30 days = %+v, commands %q", res, cmds)
	}
	if count(cmds, "RETR 1") != 0 || count(cmds, "RETR 3") != 0 || count(cmds, "RETR 4") != 0 {
		t.Fatalf("retrieved a message it may not retrieve: %q", cmds)
	}
}

// TestDeleteAfterReusedUID: a server that gives the UID of a message
// delivered 8 days ago to another message of the same size (only the body
// differs: the case the size cannot tell) is not trusted on the UID: the
// copy is retrieved, found to be new mail, delivered, and kept; it is
// deleted only 7 days after its own delivery.
func TestDeleteAfterReusedUID(t *testing.T) {
	k := newKept(t, pop3test.Options{Messages: []pop3test.Message{note(1, "u1")}})
	if res, _ := k.poll(0); res.Delivered != 1 {
		t.Fatalf("first poll = %+v", res)
	}
	k.srv.SetMessages([]pop3test.Message{twinNote(1, "u1")})
	res, cmds := k.poll(8 * day)
	if res.Deleted != 0 || res.Delivered != 1 || count(cmds, "DELE") != 0 || len(k.srv.Messages()) != 1 {
		t.Fatalf("poll at 8 days = %+v, commands %q", res, cmds)
	}
	if len(k.logs.lines("reuses a UID")) != 1 {
		t.Fatalf("no warning about the reused UID:\n%s", k.logs.String())
	}
	// Checked again (the old message's identity is still recorded under
	// the UID), found to be the young one, kept.
	res, cmds = k.poll(6 * day)
	if res.Deleted != 0 || res.Delivered != 0 || count(cmds, "DELE") != 0 {
		t.Fatalf("poll at 14 days = %+v, commands %q", res, cmds)
	}
	res, cmds = k.poll(day)
	if res.Deleted != 1 || res.Delivered != 0 || count(cmds, "DELE") != 1 || len(k.srv.Messages()) != 0 {
		t.Fatalf("poll at 15 days = %+v, commands %q", res, cmds)
	}
	if len(k.logs.lines("delete_after", "uid=u1", "age=168h0m0s")) != 1 {
		t.Fatalf("audit line:\n%s", k.logs.String())
	}
}

// partial is a Dispatcher for a multidrop message of two recipients of
// which only the first can be served while down is set.
type partial struct {
	mu   sync.Mutex
	down bool
}

func (d *partial) Dispatch(_ context.Context, m *deliver.Message, p Progress, _ *slog.Logger) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, rcpt := range []string{"x@example.com", "y@example.com"} {
		if p.Done(rcpt) {
			continue
		}
		if rcpt == "y@example.com" && d.down {
			return fmt.Errorf("deliver %s to %s: temporary failure", m.UID, rcpt)
		}
		if err := p.Record(rcpt); err != nil {
			return err
		}
	}
	return nil
}

// TestDeleteAfterMultidropPending: a multidrop message served to one
// user 8 days ago, whose other user's copy is still pending, is not
// deleted; once the pending copy is delivered the clock starts from that
// delivery, not from the first user's.
func TestDeleteAfterMultidropPending(t *testing.T) {
	k := newKept(t, pop3test.Options{Messages: msgs(1)})
	d := &partial{down: true}
	poll := func(advance time.Duration) (Result, []string) {
		k.now = k.now.Add(advance)
		k.logs = &logCapture{}
		p := &Poller{Log: k.logs.logger(), Now: func() time.Time { return k.now }, Dispatcher: func(*rcfile.Account) (Dispatcher, error) { return d, nil }}
		before := len(k.srv.Commands())
		res := p.Poll(context.Background(), k.a)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res, k.srv.Commands()[before:]
	}
	if res, _ := poll(0); res.Failed != 1 {
		t.Fatalf("first poll = %+v", res)
	}
	res, cmds := poll(8 * day)
	if res.Deleted != 0 || res.Failed != 1 || count(cmds, "DELE") != 0 || len(k.srv.Messages()) != 1 {
		t.Fatalf("poll at 8 days, y pending = %+v, commands %q", res, cmds)
	}
	d.down = false
	if res, cmds := poll(day); res.Delivered != 1 || res.Deleted != 0 || count(cmds, "DELE") != 0 {
		t.Fatalf("poll at 9 days, y served = %+v, commands %q", res, cmds)
	}
	if res, cmds := poll(6 * day); res.Deleted != 0 || count(cmds, "DELE") != 0 {
		t.Fatalf("poll 6 days after full delivery = %+v, commands %q", res, cmds)
	}
	if res, cmds := poll(day); res.Deleted != 1 || count(cmds, "DELE") != 1 {
		t.Fatalf("poll 7 days after full delivery = %+v, commands %q", res, cmds)
	}
}

// TestDeleteAfterDeleRefused: a DELE refused for an old kept message is
// handled as in delete mode: the message stays, the refusals are counted
// across polls, the third is an Error and Undeletable, and then the
// message is neither retrieved nor asked for until retried.
func TestDeleteAfterDeleRefused(t *testing.T) {
	var faults []pop3test.Fault
	for sess := 2; sess <= 5; sess++ {
		faults = append(faults, pop3test.Fault{Cmd: "DELE", N: 1, Session: sess, Action: pop3test.Reply, Reply: "-ERR [SYS/PERM] cannot delete"})
	}
	k := newKept(t, pop3test.Options{Messages: msgs(1), Faults: faults})
	k.poll(0)
	for i, want := range []struct {
		retr, dele, undeletable int
		level                   string
	}{
		{1, 1, 0, "WARN"},
		{1, 1, 0, "WARN"},
		{1, 1, 1, "ERROR"},
		{0, 0, 1, ""},
	} {
		advance := time.Hour
		if i == 0 {
			advance = 8 * day
		}
		res, cmds := k.poll(advance)
		if count(cmds, "RETR") != want.retr || count(cmds, "DELE") != want.dele || res.Undeletable != want.undeletable || res.Deleted != 0 || len(k.srv.Messages()) != 1 {
			t.Fatalf("poll %d = %+v, commands %q", i+2, res, cmds)
		}
		if want.level != "" && len(k.logs.lines("level="+want.level, "DELE", "uid=uid-0001")) != 1 {
			t.Fatalf("poll %d: no %s about the refusal:\n%s", i+2, want.level, k.logs.String())
		}
	}
}

// TestDeleteAfterRecordDurableBeforeDele: what a check recorded (here the
// new size of a message the server rewrote) is durable before its DELE is
// sent, and keeps the time of the message's delivery.
func TestDeleteAfterRecordDurableBeforeDele(t *testing.T) {
	k := newKept(t, pop3test.Options{Messages: []pop3test.Message{note(1, "u1")}})
	k.poll(0)
	// The server rewrote the message (a new size, same header and body
	// digests): its check records the new size before any DELE.
	k.srv.SetMessages([]pop3test.Message{rewrittenNote(1, "u1")})
	path := uidl.Path(k.a.StateDir, k.a.Mailbox())
	p := poller(k.rec)
	p.Now = func() time.Time { return t0.Add(8 * day) }
	var dele []string
	p.afterSync = func() {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Error(err)
			return
		}
		dele = append(dele, string(b))
	}
	before := len(k.srv.Commands())
	res := p.Poll(context.Background(), k.a)
	if res.Err != nil || res.Deleted != 1 {
		t.Fatalf("poll = %+v\n%s", res, k.srv.Transcript())
	}
	cmds := k.srv.Commands()[before:]
	if count(cmds, "DELE") != 1 || len(dele) != 1 {
		t.Fatalf("commands %q, syncs %d", cmds, len(dele))
	}
	// The rewritten size was recorded, with the delivery's time, before
	// the DELE was sent.
	if want := fmt.Sprintf("\n+ u1 %d %d ", t0.Unix(), len(rewrittenNote(1, "u1").Data)); !strings.Contains(dele[0], want) {
		t.Fatalf("journal at the DELE lacks %q:\n%s", want, dele[0])
	}
}

// TestDeleteAfterJournalDiskFull: the state disk fills up while a poll
// checks old kept messages (half of them rewritten by the server: their
// checks record the new size before their DELE; the others' DELEs go out
// and their acceptance is recorded). The poll fails, and since the session then ends
// without QUIT no DELE takes effect: every message stays on the server
// (RFC 1939 §6). Once space is back the next poll deletes them all, and
// none is delivered again.
func TestDeleteAfterJournalDiskFull(t *testing.T) {
	n := max(300, 6*os.Getpagesize()/100)
	var first, rewritten []pop3test.Message
	for i := range n {
		first = append(first, note(i, fmt.Sprintf("u%d", i)))
		if i%2 == 0 {
			rewritten = append(rewritten, rewrittenNote(i, fmt.Sprintf("u%d", i)))
		} else {
			rewritten = append(rewritten, note(i, fmt.Sprintf("u%d", i)))
		}
	}
	k := newKept(t, pop3test.Options{Messages: first})
	fill, free := fillTmpfs(t, k.a.StateDir)
	if res, _ := k.poll(0); res.Delivered != n {
		t.Fatalf("first poll = %+v", res)
	}
	// The first poll's QUIT goes out without waiting for its reply
	// (nothing was marked for deletion): let the server see it first.
	k.srv.Settled()
	k.srv.SetMessages(rewritten)
	fill()
	k.now = k.now.Add(8 * day)
	p := poller(k.rec)
	p.Now = func() time.Time { return k.now }
	before := len(k.srv.Commands())
	res := p.Poll(context.Background(), k.a)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "no space") {
		t.Fatalf("poll on a full state disk = %+v; want ENOSPC", res)
	}
	cmds := k.srv.Settled()[before:]
	if count(cmds, "QUIT") != 0 || len(k.srv.Messages()) != n {
		t.Fatalf("after the failed poll the server has %d of %d messages; commands %q", len(k.srv.Messages()), n, cmds)
	}
	t.Logf("the failed poll checked %d messages and sent %d DELEs", count(cmds, "RETR"), count(cmds, "DELE"))
	if count(cmds, "RETR") == 0 {
		t.Fatalf("the poll checked nothing")
	}
	free()
	if res, _ := k.poll(time.Minute); res.Deleted != n || res.Delivered != 0 || len(k.srv.Messages()) != 0 {
		t.Fatalf("poll after freeing space = %+v, %d left", res, len(k.srv.Messages()))
	}
	if len(k.rec.got) != n {
		t.Fatalf("%d deliveries; want %d (none again)", len(k.rec.got), n)
	}
}
