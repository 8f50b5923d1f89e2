package fetch

import (
	"context"
	"fmt"
	"github.com/popfetch/popfetch/rcfile"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/uidl"
)

// oldJournal rewrites k's journal as the popfetch before delivery times
// wrote it: format 2, whose every "+" record of a UID carries the UID's
// first-seen time (uidl.Store.record used e.first for every kind), and removes the length
// mark (a journal without one is accepted).
func (k *kept) oldJournal() string {
	k.t.Helper()
	path := uidl.Path(k.a.StateDir, k.a.Mailbox())
	b, err := os.ReadFile(path)
	if err != nil {
		k.t.Fatal(err)
	}
	first := map[string]string{}
	var out []string
	for i, l := range strings.SplitAfter(string(b), "\n") {
		if i == 0 {
			// The older popfetch's header: format 2.
			l = "popfetch-uidl 2\n"
		}
		f := strings.Split(l, " ")
		if len(f) >= 3 && len(f[0]) == 1 {
			if _, ok := first[f[1]]; !ok {
				first[f[1]] = f[2]
			}
			if f[0] == "+" {
				f[2] = first[f[1]]
			}
		}
		out = append(out, strings.Join(f, " "))
	}
	j := strings.Join(out, "")
	if err := os.WriteFile(path, []byte(j), 0o600); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Remove(path + ".len"); err != nil && !os.IsNotExist(err) {
		k.t.Fatal(err)
	}
	return j
}

// TestDeleteAfterOldJournalReusedUID: a journal written before "+"
// records carried their delivery time holds, under a UID the server
// reused, a second message delivered a month after the first, recorded
// (as the older popfetch did) with the UID's first-seen time. After the
// upgrade, one day after that second delivery, delete_after = 7d must not
// delete it: it was delivered one day ago.
func TestDeleteAfterOldJournalReusedUID(t *testing.T) {
	k := newKept(t, pop3test.Options{Messages: []pop3test.Message{note(1, "u1")}})
	if res, _ := k.poll(0); res.Delivered != 1 {
		t.Fatalf("first poll = %+v", res)
	}
	// A month later the server gives u1 to new mail; delete_after was
	// not configured yet (the older popfetch).
	k.a.DeleteAfter = 0
	k.srv.SetMessages([]pop3test.Message{bigNote(2, "u1")})
	if res, _ := k.poll(30 * day); res.Delivered != 1 {
		t.Fatalf("poll at 30 days = %+v", res)
	}
	j := k.oldJournal()
	k.a.DeleteAfter = 7 * day
	res, cmds := k.poll(day)
	if res.Deleted != 0 || count(cmds, "DELE") != 0 {
		t.Errorf("a message delivered 1 day ago was deleted by delete_after = 7d (poll = %+v, commands %q); journal as the older popfetch wrote it:\n%s\nlog:\n%s", res, cmds, j, k.logs.String())
	}
}

// TestDeleteAfterOldJournalMultidropPartial: the same for a
// multidrop message whose second recipient was served 9 days after the
// first: the older popfetch's "+" carried the time of the first "r".
func TestDeleteAfterOldJournalMultidropPartial(t *testing.T) {
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
	k.a.DeleteAfter = 0
	if res, _ := poll(0); res.Failed != 1 {
		t.Fatalf("first poll = %+v", res)
	}
	d.down = false
	if res, _ := poll(9 * day); res.Delivered != 1 {
		t.Fatalf("poll at 9 days = %+v", res)
	}
	j := k.oldJournal()
	k.a.DeleteAfter = 7 * day
	res, cmds := poll(day)
	if res.Deleted != 0 || count(cmds, "DELE") != 0 {
		t.Errorf("a message fully delivered 1 day ago was deleted by delete_after = 7d (poll = %+v, commands %q); journal as the older popfetch wrote it:\n%s", res, cmds, j)
	}
	_ = fmt.Sprint
}

// TestDeleteAfterDuplicateUIDListing: the server lists the UID of a
// message delivered 8 days ago twice, the old message and new mail under
// the same UID. The new mail is delivered and stays; at most the old
// copy is deleted.
func TestDeleteAfterDuplicateUIDListing(t *testing.T) {
	k := newKept(t, pop3test.Options{Messages: []pop3test.Message{note(1, "u1")}})
	if res, _ := k.poll(0); res.Delivered != 1 {
		t.Fatalf("first poll = %+v", res)
	}
	k.srv.SetMessages([]pop3test.Message{note(1, "u1"), bigNote(2, "u1")})
	res, cmds := k.poll(8 * day)
	if k.delivered("u1") != 2 {
		t.Fatalf("new mail under the listed-twice UID not delivered: poll %+v, commands %q", res, cmds)
	}
	left := k.srv.Messages()
	if len(left) != 1 || string(left[0].Data) != string(bigNote(2, "u1").Data) {
		t.Fatalf("on the server after the poll: %d messages; want the new mail only (poll %+v, commands %q)", len(left), res, cmds)
	}
	// A week later the new mail is deleted too, once.
	res, cmds = k.poll(7 * day)
	if res.Deleted != 1 || len(k.srv.Messages()) != 0 || k.delivered("u1") != 2 {
		t.Fatalf("poll at 15 days = %+v, commands %q", res, cmds)
	}
}

// TestDeleteAfterDropBeforeDele: the connection drops at the DELE
// that follows a successful check (and, in another session, at the RETR
// of the check). Nothing is deleted by a session without QUIT, nothing is
// delivered again, and a later poll deletes the message once.
func TestDeleteAfterDropBeforeDele(t *testing.T) {
	for _, cmd := range []string{"DELE", "RETR", "QUIT"} {
		t.Run(cmd, func(t *testing.T) {
			k := newKept(t, pop3test.Options{Messages: msgs(2), Faults: []pop3test.Fault{{Cmd: cmd, N: 1, Session: 2, Action: pop3test.Drop}}})
			k.poll(0)
			k.now = k.now.Add(8 * day)
			p := poller(k.rec)
			p.Now = func() time.Time { return k.now }
			res := p.Poll(context.Background(), k.a)
			if res.Err == nil {
				t.Fatalf("dropped session: no error: %+v", res)
			}
			if n := len(k.srv.Messages()); n != 2 {
				t.Fatalf("after the dropped session %d messages on the server; want 2", n)
			}
			res, cmds := k.poll(time.Hour)
			if res.Deleted != 2 || len(k.srv.Messages()) != 0 || k.delivered("uid-0001") != 1 || k.delivered("uid-0002") != 1 {
				t.Fatalf("next poll = %+v, commands %q, deliveries %q", res, cmds, k.rec.got)
			}
		})
	}
}

// TestDeleteAfterClockJumps: a clock that jumps back after a
// delivery deletes nothing early; one that jumps forward and back again
// deletes only messages delivered before the jump (delivered, so no
// loss), and a message delivered while the clock was ahead is not deleted
// once it is back (its delivery time lies in the future).
func TestDeleteAfterClockJumps(t *testing.T) {
	k := newKept(t, pop3test.Options{Messages: msgs(1)})
	k.poll(0)
	if res, cmds := k.poll(-30 * day); res.Deleted != 0 || count(cmds, "RETR") != 0 {
		t.Fatalf("clock 30 days back: %+v %q", res, cmds)
	}
	k.srv.SetMessages(append(k.srv.Messages(), msg(2)))
	// +1 year: both old? uid-0001 was delivered at t0, 1 year before;
	// uid-0002 is delivered now.
	res, _ := k.poll(30*day + 365*day)
	if res.Delivered != 1 || res.Deleted != 1 {
		t.Fatalf("clock a year ahead: %+v", res)
	}
	// Back to t0+1d: uid-0002's delivery is a year ahead: kept.
	if res, cmds := k.poll(-364 * day); res.Deleted != 0 || count(cmds, "DELE") != 0 || k.delivered("uid-0002") != 1 {
		t.Fatalf("clock back to normal: %+v %q", res, cmds)
	}
}

// TestDeleteAfterYoungCopyNotRechecked: a UID whose old message is due
// but whose listed copy (same size) is a newer message delivered under it
// recently is not retrieved on every poll: the check waits until the
// newer message is due itself.
func TestDeleteAfterYoungCopyNotRechecked(t *testing.T) {
	k := newKept(t, pop3test.Options{Messages: []pop3test.Message{note(1, "u1")}})
	if res, _ := k.poll(0); res.Delivered != 1 {
		t.Fatalf("first poll = %+v", res)
	}
	// The server gives u1 to new mail of the same size; the check of
	// the old message finds and delivers it.
	k.srv.SetMessages([]pop3test.Message{note(2, "u1")})
	if res, cmds := k.poll(8 * day); res.Delivered != 1 || res.Deleted != 0 {
		t.Fatalf("poll at 8 days = %+v, commands %q", res, cmds)
	}
	for _, adv := range []time.Duration{time.Hour, day} {
		if res, cmds := k.poll(adv); count(cmds, "RETR") != 0 || res.Deleted != 0 {
			t.Fatalf("poll %v later: %+v, commands %q; want no RETR of a copy delivered days ago", adv, res, cmds)
		}
	}
	if res, cmds := k.poll(7 * day); res.Deleted != 1 || k.delivered("u1") != 2 {
		t.Fatalf("once the newer message is due: %+v, commands %q", res, cmds)
	}
}
