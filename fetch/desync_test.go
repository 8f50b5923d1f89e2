package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// contentRecorder is a Dispatcher that keeps what it was given per UID.
type contentRecorder struct {
	mu  sync.Mutex
	got map[string][][]byte
}

func (r *contentRecorder) Dispatch(_ context.Context, m *deliver.Message, _ Progress, _ *slog.Logger) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][][]byte{}
	}
	r.got[m.UID] = append(r.got[m.UID], rawOf(m))
	return nil
}

func (r *contentRecorder) delivered(uid string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[uid]
}

// A server whose replies get out of step with popfetch's commands (one
// reply too many, a stray line sent at once or a little later, one reply
// lost) must not make popfetch deliver a message under another's UID,
// deliver a stray line as part of a message, or delete a message it has not
// delivered. Over a few polls every message arrives exactly once, intact.
// The messages all have the same size, so that LIST sizes cannot tell one
// from another: what tells is that replies are counted.
func TestPollRepliesOutOfStep(t *testing.T) {
	const n = 6
	mailbox := msgs(n)
	for _, m := range mailbox[1:] {
		if len(m.Data) != len(mailbox[0].Data) {
			t.Fatalf("test messages differ in size (%d, %d): the test would not prove that replies are counted", len(m.Data), len(mailbox[0].Data))
		}
	}
	late := func(stray string) func(c *pop3test.Conn) {
		return func(c *pop3test.Conn) {
			c.Write(c.Answer())
			time.Sleep(50 * time.Millisecond)
			c.WriteLine(stray)
		}
	}
	faults := []struct {
		name  string
		fault pop3test.Fault
	}{
		{"stray -ERR after RETR", pop3test.Fault{Cmd: "RETR", N: 2, Action: pop3test.Append, Reply: "-ERR stray"}},
		{"stray +OK after RETR", pop3test.Fault{Cmd: "RETR", N: 2, Action: pop3test.Append, Reply: "+OK stray"}},
		{"stray +OK after the last RETR", pop3test.Fault{Cmd: "RETR", N: n, Action: pop3test.Append, Reply: "+OK stray"}},
		{"late stray -ERR after RETR", pop3test.Fault{Cmd: "RETR", N: 2, Action: pop3test.Custom, Func: late("-ERR stray")}},
		{"late stray +OK after RETR", pop3test.Fault{Cmd: "RETR", N: 2, Action: pop3test.Custom, Func: late("+OK stray")}},
		{"RETR reply sent twice", pop3test.Fault{Cmd: "RETR", N: 2, Action: pop3test.Custom, Func: func(c *pop3test.Conn) { c.Write(append(c.Answer(), c.Answer()...)) }}},
		{"RETR reply sent twice, late", pop3test.Fault{Cmd: "RETR", N: 2, Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
			c.Write(c.Answer())
			time.Sleep(50 * time.Millisecond)
			c.Write(c.Answer())
		}}},
		{"RETR reply missing", pop3test.Fault{Cmd: "RETR", N: 2, Action: pop3test.Skip}},
		{"stray +OK after DELE", pop3test.Fault{Cmd: "DELE", N: 1, Action: pop3test.Append, Reply: "+OK stray"}},
		{"DELE reply missing", pop3test.Fault{Cmd: "DELE", N: 1, Action: pop3test.Skip}},
		{"stray +OK after LIST", pop3test.Fault{Cmd: "LIST", N: 1, Action: pop3test.Append, Reply: "+OK stray"}},
	}
	caPEM, serverTLS, _ := pop3test.GenerateCert(t)
	for _, mode := range []struct {
		name       string
		pipelining bool
		tls        bool
	}{
		{"pipelined", true, false},
		{"without pipelining", false, false},
		{"pipelined over TLS", true, true},
	} {
		capa := []string{"USER", "UIDL", "TOP", "RESP-CODES"}
		if mode.pipelining {
			capa = append(capa, "PIPELINING")
		}
		for _, tt := range faults {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				f := tt.fault
				f.Session = 1
				opts := pop3test.Options{Messages: mailbox, Capa: capa, Faults: []pop3test.Fault{f}}
				if mode.tls {
					opts.TLS, opts.Implicit = serverTLS, true
				}
				srv := pop3test.NewServer(t, opts)
				a := testAccount(t, srv)
				a.Timeout = time.Second
				if mode.tls {
					a.TLS, a.Server, a.CAFile = rcfile.TLSImplicit, "localhost", pop3test.WriteCAFile(t, caPEM)
				}
				rec := &contentRecorder{}
				p := poller(nil)
				p.Dispatcher = func(*rcfile.Account) (Dispatcher, error) { return rec, nil }
				var errs []error
				for poll := 1; poll <= 4 && len(srv.Messages()) > 0; poll++ {
					res := p.Poll(context.Background(), a)
					errs = append(errs, res.Err)
					// Never deleted before delivered.
					for _, m := range mailbox {
						if !slices.Contains(uidsOn(srv), m.UID) && len(rec.delivered(m.UID)) == 0 {
							t.Fatalf("poll %d deleted %s, never delivered (errors %v)\n%s", poll, m.UID, errs, srv.Transcript())
						}
					}
				}
				if errs[0] == nil {
					t.Errorf("the first poll reported no error; the fault went unnoticed")
				}
				if left := uidsOn(srv); len(left) > 0 {
					t.Fatalf("after %d polls the server still holds %v (errors %v)\n%s", len(errs), left, errs, srv.Transcript())
				}
				for _, m := range mailbox {
					got := rec.delivered(m.UID)
					if len(got) != 1 {
						t.Errorf("%s delivered %d times; want once (errors %v)", m.UID, len(got), errs)
						continue
					}
					if !bytes.Equal(got[0], m.Data) {
						t.Errorf("%s delivered as %q; want %q", m.UID, got[0], m.Data)
					}
				}
				if t.Failed() {
					t.Log(srv.Transcript())
				}
			})
		}
	}
}

// After a poll ends out of step, popfetch sends nothing more: no DELE, no
// QUIT (which would expunge what earlier DELEs marked).
func TestPollOutOfStepSendsNothingMore(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3), Capa: []string{"USER", "UIDL"},
		Faults: []pop3test.Fault{{Cmd: "RETR", N: 3, Action: pop3test.Append, Reply: "+OK stray"}}})
	a := testAccount(t, srv)
	res := poller(&recorder{}).Poll(context.Background(), a)
	if !errors.Is(res.Err, pop3.ErrSurplus) {
		t.Fatalf("Poll = %+v; want a surplus reply error", res)
	}
	cmds := srv.Commands()
	if last := cmds[len(cmds)-1]; last != "RETR 3" {
		t.Fatalf("commands %q: want nothing after RETR 3", cmds)
	}
	if len(srv.Messages()) != 3 {
		t.Fatalf("server holds %d messages; want 3 (no QUIT, no UPDATE)", len(srv.Messages()))
	}
}

// A RETR reply announcing another size than LIST is another message's
// reply, unless what follows is exactly what LIST counted (the server only
// announced a wrong number). A mismatch ends the poll, delivering nothing
// of its round; the message is retried, and given up after poisonPolls
// polls in a row.
func TestPollRetrAnnouncedSize(t *testing.T) {
	announce := func(status string) func(c *pop3test.Conn) {
		return func(c *pop3test.Conn) {
			_, rest := splitAnswer(c.Answer())
			c.Write(append([]byte(status+"\r\n"), rest...))
		}
	}
	size := len(msg(1).Data)
	for _, tt := range []struct {
		name, status string
		listSize     string // "" = the true size
		ok           bool
	}{
		{"as LIST", fmt.Sprintf("+OK %d octets", size), "", true},
		{"none", "+OK message follows", "", true},
		{"wrong number, right message", fmt.Sprintf("+OK %d octets", size+7), "", true},
		{"another message's", fmt.Sprintf("+OK %d octets", size), fmt.Sprint(size + 7), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			faults := []pop3test.Fault{{Cmd: "RETR", Action: pop3test.Custom, Func: announce(tt.status)}}
			if tt.listSize != "" {
				faults = append(faults, pop3test.Fault{Cmd: "LIST", N: 1, Action: pop3test.Reply, Reply: "+OK\r\n1 " + tt.listSize + "\r\n."})
			}
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1), Faults: faults})
			a := testAccount(t, srv)
			rec := &recorder{}
			p := poller(rec)
			res := p.Poll(context.Background(), a)
			if tt.ok {
				if res.Err != nil || len(rec.got) != 1 || len(srv.Messages()) != 0 {
					t.Fatalf("Poll = %+v, delivered %v", res, rec.got)
				}
				return
			}
			if !errors.Is(res.Err, pop3.ErrMismatch) || len(rec.got) != 0 || len(srv.Messages()) != 1 {
				t.Fatalf("Poll = %+v, delivered %v; want a mismatch and nothing delivered", res, rec.got)
			}
			for i := 2; i <= poisonPolls; i++ {
				res = p.Poll(context.Background(), a)
				// Given up in the poll that gave up, not before.
				if want := map[bool]int{true: 1}[i == poisonPolls]; res.GivenUp != want {
					t.Errorf("poll %d: GivenUp = %d; want %d", i, res.GivenUp, want)
				}
			}
			if res := p.Poll(context.Background(), a); res.GivenUp != 0 || res.Skipped != 1 {
				t.Errorf("the poll after: %+v; want it skipped, not given up again", res)
			}
			if !storeGivenUp(t, a, "uid-0001") || len(rec.got) != 0 {
				t.Fatalf("after %d mismatches: given up %v, delivered %v; want given up, never delivered", poisonPolls, storeGivenUp(t, a, "uid-0001"), rec.got)
			}
		})
	}
}

// A pipelined round is delivered once all its replies are in, while the
// loop already waits for the next round: a stuck reply in round two holds
// up none of round one's deliveries, and delivers nothing of round two.
func TestPollRoundsDeliverWhileNextRoundWaits(t *testing.T) {
	const n, stuck = maxWindow + 20, maxWindow + 10
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(n),
		Faults: []pop3test.Fault{{Cmd: "RETR", N: stuck, Session: 1, Action: pop3test.Hang}}})
	a := testAccount(t, srv)
	a.Keep = true
	a.Timeout = 5 * time.Second // the stuck reply's deadline; eventually waits at most 3s
	rec := &contentRecorder{}
	p := poller(nil)
	p.Dispatcher = func(*rcfile.Account) (Dispatcher, error) { return rec, nil }
	done := make(chan Result, 1)
	go func() { done <- p.Poll(context.Background(), a) }()
	count := func() int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.got)
	}
	if !pop3test.Eventually(func() bool { return count() == maxWindow }) {
		t.Fatalf("%d of the first round's %d messages delivered while the second round waited", count(), maxWindow)
	}
	res := <-done
	if res.Err == nil || count() != maxWindow {
		t.Fatalf("Poll = %+v with %d delivered; want a deadline error and only the first round", res, count())
	}
	for i := maxWindow + 1; i <= n; i++ {
		if len(rec.delivered(msg(i).UID)) != 0 {
			t.Fatalf("%s of the broken round was delivered", msg(i).UID)
		}
	}
}

// A poll that starts with a full round of DELEs (the previous poll
// delivered maxWindow messages and ended before deleting them) goes on to
// retrieve the rest in the rounds after it.
func TestPollDeleRoundThenRetrieve(t *testing.T) {
	const n, stuck = maxWindow + 72, maxWindow + 22
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(n),
		Faults: []pop3test.Fault{{Cmd: "RETR", N: stuck, Session: 1, Action: pop3test.Hang}}})
	a := testAccount(t, srv)
	a.Timeout = time.Second
	rec := &recorder{}
	p := poller(rec)
	if res := p.Poll(context.Background(), a); res.Err == nil || res.Delivered != maxWindow {
		t.Fatalf("first Poll = %+v; want the first round delivered, then a deadline error", res)
	}
	if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != n-maxWindow || res.Deleted != n || len(srv.Messages()) != 0 {
		t.Fatalf("second Poll = %+v, %d left; want the other %d delivered and all %d deleted", res, len(srv.Messages()), n-maxWindow, n)
	}
	if len(rec.got) != n {
		t.Fatalf("%d deliveries; want %d", len(rec.got), n)
	}
}
