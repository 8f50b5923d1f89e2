package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// One reply lost and another sent twice leave the count of replies right:
// a round's closing LIST alone would find it in step, and a message would
// be delivered under the UID of the one whose reply was lost, which would
// then be deleted unread. Every RETR is followed by "LIST n" for its own
// message, so a reply that stands where another should is caught at the
// message it concerns, pipelined or not, and even when the surplus reply
// arrives only after popfetch has looked for one. Over a few polls every
// message arrives once, with its own content, and none is deleted before.
func TestPollReplyLostAndAnotherDoubled(t *testing.T) {
	const n = 4
	mailbox := msgs(n)
	for _, m := range mailbox[1:] {
		if len(m.Data) != len(mailbox[0].Data) {
			t.Fatalf("test messages differ in size: the test would not prove that replies are matched to commands")
		}
	}
	twice := func(c *pop3test.Conn) { c.Write(append(c.Answer(), c.Answer()...)) }
	twiceLate := func(c *pop3test.Conn) {
		c.Write(c.Answer())
		time.Sleep(50 * time.Millisecond)
		c.Write(c.Answer())
	}
	for _, tt := range []struct {
		name   string
		faults []pop3test.Fault
	}{
		{"RETR 1 answered twice, RETR 2 not at all", []pop3test.Fault{
			{Cmd: "RETR", N: 1, Action: pop3test.Custom, Func: twice},
			{Cmd: "RETR", N: 2, Action: pop3test.Skip},
		}},
		{"RETR 1 answered twice, late, RETR 2 not at all", []pop3test.Fault{
			{Cmd: "RETR", N: 1, Action: pop3test.Custom, Func: twiceLate},
			{Cmd: "RETR", N: 2, Action: pop3test.Skip},
		}},
		{"RETR 2 not answered, RETR 3 twice", []pop3test.Fault{
			{Cmd: "RETR", N: 2, Action: pop3test.Skip},
			{Cmd: "RETR", N: 3, Action: pop3test.Custom, Func: twice},
		}},
	} {
		for _, pipelining := range []bool{true, false} {
			name := tt.name + "/pipelined"
			capa := []string{"USER", "UIDL", "RESP-CODES"}
			if pipelining {
				capa = append(capa, "PIPELINING")
			} else {
				name = tt.name + "/without pipelining"
			}
			t.Run(name, func(t *testing.T) {
				var faults []pop3test.Fault
				for _, f := range tt.faults {
					f.Session = 1
					faults = append(faults, f)
				}
				srv := pop3test.NewServer(t, pop3test.Options{Messages: mailbox, Capa: capa, Faults: faults})
				a := testAccount(t, srv)
				a.Timeout = 500 * time.Millisecond
				rec := &contentRecorder{}
				p := poller(nil)
				p.Dispatcher = func(*rcfile.Account) (Dispatcher, error) { return rec, nil }
				var errs []error
				for poll := 1; poll <= 4 && len(srv.Messages()) > 0; poll++ {
					errs = append(errs, p.Poll(context.Background(), a).Err)
					for _, m := range mailbox {
						for _, got := range rec.delivered(m.UID) {
							if !bytes.Equal(got, m.Data) {
								t.Fatalf("poll %d delivered %s with another message's content %q (errors %v)\n%s", poll, m.UID, got, errs, srv.Transcript())
							}
						}
						if !slices.Contains(uidsOn(srv), m.UID) && len(rec.delivered(m.UID)) == 0 {
							t.Fatalf("poll %d deleted %s, never delivered (errors %v)\n%s", poll, m.UID, errs, srv.Transcript())
						}
					}
				}
				if errs[0] == nil {
					t.Errorf("the first poll reported no error; the fault went unnoticed\n%s", srv.Transcript())
				}
				if left := uidsOn(srv); len(left) > 0 {
					t.Errorf("after %d polls the server still holds %v (errors %v)", len(errs), left, errs)
				}
				for _, m := range mailbox {
					if got := len(rec.delivered(m.UID)); got != 1 {
						t.Errorf("%s delivered %d times; want once (errors %v)", m.UID, got, errs)
					}
				}
			})
		}
	}
}

// A reply that swallows the next one (a "." glued to the last line of a
// message, so the terminating line never comes; or a RETR never answered)
// is the fault of that message alone. Only it may be counted towards being
// given up, not the messages whose replies the broken one ran into; and
// the messages before and after it must keep flowing: after a round
// breaks, the next polls of the account fetch one message per round
// without pipelining until a poll gets through. The same holds for
// one-shot runs (a new Poller each poll, as `popfetch fetch` from cron),
// which know of earlier polls only what the UIDL journal holds.
func TestPollBrokenReplyBlamesItsMessage(t *testing.T) {
	// pop3test counts a command's occurrences per session, and message
	// numbers change as messages are deleted: the faults pick their
	// message by its content.
	of := func(i int, broken func(c *pop3test.Conn)) pop3test.Fault {
		return pop3test.Fault{Cmd: "RETR", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
			if bytes.Contains(c.Answer(), []byte(fmt.Sprintf("Subject: test %d\r\n", i))) {
				broken(c)
				return
			}
			c.Write(c.Answer())
		}}
	}
	glued := func(c *pop3test.Conn) {
		ans := bytes.TrimSuffix(c.Answer(), []byte("\r\n.\r\n"))
		c.Write(append(ans, ".\r\n"...))
	}
	silent := func(*pop3test.Conn) {}
	for _, tt := range []struct {
		name  string
		fault pop3test.Fault
		bad   string
	}{
		{"message 2 terminator glued", of(2, glued), "uid-0002"},
		{"message 1 terminator glued", of(1, glued), "uid-0001"},
		{"message 4 terminator glued", of(4, glued), "uid-0004"},
		{"message 2 never answered", of(2, silent), "uid-0002"},
	} {
		for _, mode := range []struct {
			name       string
			pipelining bool
			oneShot    bool
		}{{"pipelined", true, false}, {"without pipelining", false, false}, {"pipelined, one-shot runs", true, true}} {
			name := tt.name + "/" + mode.name
			capa := []string{"USER", "UIDL", "RESP-CODES"}
			if mode.pipelining {
				capa = append(capa, "PIPELINING")
			}
			t.Run(name, func(t *testing.T) {
				mailbox := msgs(4)
				srv := pop3test.NewServer(t, pop3test.Options{Messages: mailbox, Capa: capa, Faults: []pop3test.Fault{tt.fault}})
				a := testAccount(t, srv)
				a.Timeout = 300 * time.Millisecond
				rec := &contentRecorder{}
				logs := &logCapture{}
				newPoller := func() *Poller {
					p := poller(nil)
					p.Log = logs.logger()
					p.Dispatcher = func(*rcfile.Account) (Dispatcher, error) { return rec, nil }
					return p
				}
				p := newPoller()
				var errs []error
				for poll := 1; poll <= 8; poll++ {
					if mode.oneShot {
						p = newPoller()
					}
					errs = append(errs, p.Poll(context.Background(), a).Err)
				}
				if left := uidsOn(srv); !slices.Equal(left, []string{tt.bad}) {
					t.Errorf("left on the server: %v; want only %s (errors %v)", left, tt.bad, errs)
				}
				for _, m := range mailbox {
					got := rec.delivered(m.UID)
					switch {
					case m.UID == tt.bad:
						if len(got) != 0 {
							t.Errorf("%s delivered %d times; its reply never fit it", m.UID, len(got))
						}
						if !storeGivenUp(t, a, m.UID) {
							t.Errorf("%s not given up after 8 polls", m.UID)
						}
					case len(got) != 1 || !bytes.Equal(got[0], m.Data):
						t.Errorf("%s delivered %d times (want once, intact)", m.UID, len(got))
					case storeGivenUp(t, a, m.UID):
						t.Errorf("%s given up, for another message's broken reply", m.UID)
					}
				}
				if t.Failed() {
					t.Logf("errors: %v\n%s", errs, logs.String())
				}
			})
		}
	}
}

// The LIST after a RETR names the message by its number; its size may
// differ from the listing's (GNU mailutils pop3d on an mbox grows a
// message once it has been retrieved), within the bounds a RETR reply is
// held to. Another number, or a size far outside them, is out of step.
func TestPollListAfterRetr(t *testing.T) {
	size := len(msg(1).Data)
	for _, tt := range []struct {
		name  string
		reply string
		ok    bool
	}{
		{"same size", fmt.Sprintf("+OK 1 %d", size), true},
		{"grown", fmt.Sprintf("+OK 1 %d", size+118), true},
		{"shrunk", fmt.Sprintf("+OK 1 %d", size-10), true},
		{"text after the size", fmt.Sprintf("+OK 1 %d octets", size), true},
		{"another message", fmt.Sprintf("+OK 2 %d", size), false},
		{"size far too large", "+OK 1 999999999", false},
		{"no size", "+OK 1", false},
		{"size not a number", "+OK 1 octets", false},
		{"-ERR", "-ERR no such message", false},
	} {
		for _, pipelining := range []bool{true, false} {
			capa := []string{"USER", "UIDL", "RESP-CODES"}
			if pipelining {
				capa = append(capa, "PIPELINING")
			}
			t.Run(fmt.Sprintf("%s/pipelining=%v", tt.name, pipelining), func(t *testing.T) {
				// LIST 1 is the session's second LIST, after the listing.
				srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2), Capa: capa,
					Faults: []pop3test.Fault{{Cmd: "LIST", N: 2, Session: 1, Reply: tt.reply}}})
				a := testAccount(t, srv)
				rec := &contentRecorder{}
				p := poller(nil)
				p.Dispatcher = func(*rcfile.Account) (Dispatcher, error) { return rec, nil }
				res := p.Poll(context.Background(), a)
				if !slices.Contains(srv.Commands(), "LIST 1") {
					t.Fatalf("no LIST 1 after RETR 1: %q", srv.Commands())
				}
				if tt.ok {
					if res.Err != nil || res.Delivered != 2 {
						t.Fatalf("Poll = %+v; want both delivered", res)
					}
					return
				}
				if !errors.Is(res.Err, pop3.ErrMismatch) || res.Delivered != 0 || len(srv.Messages()) != 2 {
					t.Fatalf("Poll = %+v, server holds %d; want a mismatch, nothing delivered or deleted", res, len(srv.Messages()))
				}
			})
		}
	}
}
