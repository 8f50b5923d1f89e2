package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/uidl"
)

func msg(i int) pop3test.Message {
	return pop3test.Message{
		UID:  fmt.Sprintf("uid-%04d", i),
		Data: []byte(fmt.Sprintf("From: a@example.com\r\nTo: b@example.com\r\nSubject: test %d\r\nMessage-ID: <%d@example.com>\r\n\r\nbody %d\r\n.dotted line\r\n", i, i, i)),
	}
}

func msgs(n int) []pop3test.Message {
	var out []pop3test.Message
	for i := 1; i <= n; i++ {
		out = append(out, msg(i))
	}
	return out
}

// testAccount returns a plaintext account for srv delivering into a fresh
// Maildir.
func testAccount(t *testing.T, srv *pop3test.Server) *rcfile.Account {
	t.Helper()
	dir := t.TempDir()
	return &rcfile.Account{
		Name: "test", Server: srv.Host(), Port: srv.Port(), TLS: rcfile.TLSNone,
		Username: "user", Password: rcfile.Password{Inline: "pass"},
		Timeout:  5 * time.Second,
		Deliver:  rcfile.Destination{Maildir: filepath.Join(dir, "Maildir")},
		StateDir: filepath.Join(dir, "state"),
	}
}

// recorder is a Dispatcher that records what it gets and fails on demand.
type recorder struct {
	mu   sync.Mutex
	got  []string // UIDs delivered
	fail func(uid string) error
}

func (r *recorder) Dispatch(ctx context.Context, m *deliver.Message, _ Progress, _ *slog.Logger) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(m.UID); err != nil {
			return err
		}
	}
	r.got = append(r.got, m.UID)
	return nil
}

func poller(r *recorder) *Poller {
	p := &Poller{}
	if r != nil {
		p.Dispatcher = func(*rcfile.Account) (Dispatcher, error) { return r, nil }
	}
	return p
}

func maildirCount(t *testing.T, a *rcfile.Account) int {
	t.Helper()
	return delivertest.MaildirCount(t, a.Deliver.Maildir, "new")
}

// openStore opens a's UIDL journal; the caller closes it before the next
// poll, which opens it too.
func openStore(t *testing.T, a *rcfile.Account) *uidl.Store {
	t.Helper()
	s, err := uidl.Open(uidl.Path(a.StateDir, a.Mailbox()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func storeHas(t *testing.T, a *rcfile.Account, uid string) bool {
	t.Helper()
	s := openStore(t, a)
	defer s.Close()
	return s.Has(uid)
}

func storeGivenUp(t *testing.T, a *rcfile.Account, uid string) bool {
	t.Helper()
	s := openStore(t, a)
	defer s.Close()
	return s.GivenUp(uid)
}

func uidsOn(srv *pop3test.Server) []string {
	var out []string
	for _, m := range srv.Messages() {
		out = append(out, m.UID)
	}
	return out
}

func TestPollDeliversDeletesAndRemembers(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(5)})
	a := testAccount(t, srv)
	res := poller(nil).Poll(context.Background(), a)
	if res.Err != nil || res.New != 5 || res.Delivered != 5 || res.Deleted != 5 {
		t.Fatalf("Poll = %+v", res)
	}
	if n := maildirCount(t, a); n != 5 {
		t.Fatalf("maildir has %d messages; want 5", n)
	}
	if left := srv.Messages(); len(left) != 0 {
		t.Fatalf("server still has %d messages", len(left))
	}
	// The delivered copy: Received trace first, LF endings, body intact.
	b := delivertest.MaildirMessages(t, a.Deliver.Maildir, "new")[0]
	if !strings.HasPrefix(string(b), "Received: from "+srv.Host()) || strings.Contains(string(b), "\r") || !strings.Contains(string(b), "\n.dotted line\n") {
		t.Fatalf("delivered copy:\n%s", b)
	}
	// Second poll: nothing new.
	srv.SetMessages(msgs(5)[:0])
	if res := poller(nil).Poll(context.Background(), a); res.Err != nil || res.New != 0 {
		t.Fatalf("second Poll = %+v", res)
	}
}

func TestPollKeepFetchesOnce(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3)})
	a := testAccount(t, srv)
	a.Keep = true
	for i, want := range []int{3, 0} {
		res := poller(nil).Poll(context.Background(), a)
		if res.Err != nil || res.New != want || res.Deleted != 0 {
			t.Fatalf("Poll %d = %+v; want %d new", i, res, want)
		}
	}
	if n := maildirCount(t, a); n != 3 || len(srv.Messages()) != 3 {
		t.Fatalf("maildir %d, server %d; want 3 and 3", n, len(srv.Messages()))
	}
	// fetch_all fetches them again.
	a.FetchAll = true
	if res := poller(nil).Poll(context.Background(), a); res.New != 3 || res.Err != nil {
		t.Fatalf("fetch_all Poll = %+v", res)
	}
}

// The transcript proves the order: every DELE comes after its RETR, and
// PASS never precedes the TLS gate (here: plaintext by configuration).
func TestPollNeverDeletesUndelivered(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(4)})
	a := testAccount(t, srv)
	rec := &recorder{fail: func(uid string) error {
		if uid == "uid-0002" {
			return &deliver.Error{Target: "test", Err: errors.New("disk full")}
		}
		return nil
	}}
	res := poller(rec).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 3 || res.Failed != 1 || res.Deleted != 3 {
		t.Fatalf("Poll = %+v", res)
	}
	if got := uidsOn(srv); len(got) != 1 || got[0] != "uid-0002" {
		t.Fatalf("server holds %v; want only uid-0002", got)
	}
	if storeHas(t, a, "uid-0002") {
		t.Fatal("undelivered UID recorded")
	}
	for _, c := range srv.Commands() {
		if c == "DELE 2" {
			t.Fatal("DELE sent for the undelivered message")
		}
	}
	// Next poll retries it.
	rec.fail = nil
	if res := poller(rec).Poll(context.Background(), a); res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("retry Poll = %+v, server %v", res, uidsOn(srv))
	}
}

// The invariant, checked at the server: when DELE n arrives, the UID of
// message n is already in the part of the journal that was fsynced.
func TestPollRecordDurableBeforeDele(t *testing.T) {
	var mu sync.Mutex
	var journal string
	synced := 0 // bytes of the journal known durable
	var problems []string
	checkDele := func(c *pop3test.Conn) {
		defer c.Write(c.Answer()) // +OK, without marking: only the order is tested here
		ans := string(c.Answer())
		var n int
		fmt.Sscanf(ans, "+OK message %d deleted", &n)
		mu.Lock()
		defer mu.Unlock()
		b, _ := os.ReadFile(journal)
		if want := fmt.Sprintf("\n+ uid-%04d ", n); !strings.Contains(string(b[:min(synced, len(b))]), want) {
			problems = append(problems, fmt.Sprintf("DELE %d before its record was fsynced", n))
		}
	}
	for _, capa := range [][]string{nil, {"USER", "UIDL"}} {
		srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2*batch + 3), Capa: capa, Faults: []pop3test.Fault{{Cmd: "DELE", Action: pop3test.Custom, Func: checkDele}}})
		a := testAccount(t, srv)
		mu.Lock()
		journal, synced = uidl.Path(a.StateDir, a.Mailbox()), 0
		mu.Unlock()
		p := poller(&recorder{})
		p.afterSync = func() {
			mu.Lock()
			defer mu.Unlock()
			fi, err := os.Stat(journal)
			if err != nil {
				t.Error(err)
				return
			}
			synced = int(fi.Size())
		}
		if res := p.Poll(context.Background(), a); res.Err != nil || res.Deleted != 2*batch+3 {
			t.Fatalf("Poll = %+v", res)
		}
	}
	if len(problems) > 0 {
		t.Fatalf("invariant broken: %v", problems)
	}
}

// Connection dropped after RETR's answer, before DELE's: the message was
// delivered and recorded, the session never reached UPDATE, so the server
// keeps it; the next poll deletes it without delivering it again.
func TestPollDropBeforeDeleAnswer(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{
		Messages: msgs(2),
		Capa:     []string{"USER", "UIDL"}, // no PIPELINING: one command at a time
		Faults:   []pop3test.Fault{{Cmd: "DELE", N: 1, Session: 1, Action: pop3test.Drop}},
		// The server fails the test if a command arrives before the
		// previous one was answered.
		CheckPipelining: true,
	})
	a := testAccount(t, srv)
	rec := &recorder{}
	res := poller(rec).Poll(context.Background(), a)
	if res.Err == nil {
		t.Fatalf("Poll = %+v; want an error", res)
	}
	if len(srv.Messages()) != 2 {
		t.Fatalf("server has %d; want 2 (no QUIT, no UPDATE)", len(srv.Messages()))
	}
	if !storeHas(t, a, "uid-0001") {
		t.Fatal("delivered message not recorded")
	}
	res = poller(rec).Poll(context.Background(), a)
	if res.Err != nil || len(srv.Messages()) != 0 {
		t.Fatalf("second Poll = %+v, server %v", res, uidsOn(srv))
	}
	got := slices.Clone(rec.got)
	slices.Sort(got) // deliveries run concurrently
	if strings.Join(got, ",") != "uid-0001,uid-0002" {
		t.Fatalf("deliveries %v; want each message once", rec.got)
	}
}

func TestPollDeleRefused(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{
		Messages: msgs(2),
		Faults:   []pop3test.Fault{{Cmd: "DELE", N: 1, Session: 1, Action: pop3test.Reply, Reply: "-ERR cannot delete"}},
	})
	a := testAccount(t, srv)
	rec := &recorder{}
	res := poller(rec).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 2 || res.Deleted != 1 {
		t.Fatalf("Poll = %+v", res)
	}
	if len(srv.Messages()) != 1 {
		t.Fatalf("server has %v", uidsOn(srv))
	}
	res = poller(rec).Poll(context.Background(), a)
	if res.Err != nil || res.New != 0 || res.Deleted != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("second Poll = %+v", res)
	}
	if len(rec.got) != 2 {
		t.Fatalf("deliveries %v", rec.got)
	}
}

func TestPollServerStopsAnswering(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{
		Messages: msgs(2),
		Faults:   []pop3test.Fault{{Cmd: "RETR", N: 1, Action: pop3test.Hang}},
	})
	a := testAccount(t, srv)
	a.Timeout = 300 * time.Millisecond
	start := time.Now()
	res := poller(&recorder{}).Poll(context.Background(), a)
	if res.Err == nil || res.Delivered != 0 {
		t.Fatalf("Poll = %+v; want a timeout", res)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("deadline fired after %v", d)
	}
	if len(srv.Messages()) != 2 {
		t.Fatal("messages lost")
	}
}

// splitAnswer returns a RETR answer's status line and the rest.
func splitAnswer(ans []byte) (status, rest []byte) {
	i := bytes.IndexByte(ans, '\n') + 1
	return ans[:i], ans[i:]
}

// A server trickling a message must hit the per-message deadline, not an
// idle timeout that each byte resets. The status line comes at once, so it
// is the body that runs into the deadline, not the status line's read.
func TestPollTrickleHitsMessageDeadline(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{
		Messages: msgs(1),
		Faults: []pop3test.Fault{{Cmd: "RETR", N: 1, Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
			status, body := splitAnswer(c.Answer())
			if _, err := c.Write(status); err != nil {
				return
			}
			for i := range body {
				time.Sleep(200 * time.Millisecond) // the pace of the trickle, not synchronisation
				if _, err := c.Write(body[i : i+1]); err != nil {
					return // the client gave up
				}
			}
		}}},
	})
	a := testAccount(t, srv)
	a.Timeout = 700 * time.Millisecond // each byte arrives within it; the whole message cannot
	res := poller(&recorder{}).Poll(context.Background(), a)
	if !errors.Is(res.Err, os.ErrDeadlineExceeded) || res.Delivered != 0 {
		t.Fatalf("Poll = %+v; want a deadline error", res)
	}
	if !strings.Contains(res.Err.Error(), "incomplete multi-line reply") {
		t.Fatalf("Poll error = %v; want it to hit the body, after the status line", res.Err)
	}
}

// One deadline covers a RETR's status line and body together: a server
// that spends most of it before the status line gets no fresh deadline for
// the body (which would double the bound).
func TestPollMessageDeadlineCoversStatusAndBody(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{
		Messages: msgs(1),
		Faults: []pop3test.Fault{{Cmd: "RETR", N: 1, Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
			status, body := splitAnswer(c.Answer())
			// Pacing: the status line at 0.6 s, the rest at 1.3 s,
			// within 1 s of the status line but not of the RETR.
			time.Sleep(600 * time.Millisecond)
			if _, err := c.Write(append(status, body[:len(body)/2]...)); err != nil {
				return
			}
			time.Sleep(700 * time.Millisecond)
			c.Write(body[len(body)/2:])
		}}},
	})
	a := testAccount(t, srv)
	a.Timeout = time.Second
	res := poller(&recorder{}).Poll(context.Background(), a)
	if !errors.Is(res.Err, os.ErrDeadlineExceeded) || res.Delivered != 0 {
		t.Fatalf("Poll = %+v; want a deadline error", res)
	}
}

// logCapture collects a Poller's log output (a SyncBuffer: the Poller logs
// from its delivery goroutines).
type logCapture struct{ testutil.SyncBuffer }

// lines returns the log lines that contain every one of subs.
func (l *logCapture) lines(subs ...string) []string {
	var out []string
next:
	for _, line := range strings.Split(l.String(), "\n") {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

func (l *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A LIST size above the hard maximum (the whole message would be held in
// memory) leaves the message on the server like one over limit: noted and
// warned about once, never retrieved, the rest of the mailbox fetched.
func TestPollMessageOverHardMax(t *testing.T) {
	for _, claim := range []string{"1073741825", "9223372036854775807"} {
		t.Run(claim, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{
				Messages: msgs(2),
				Faults: []pop3test.Fault{
					{Cmd: "LIST", N: 1, Session: 1, Action: pop3test.Reply, Reply: "+OK\r\n1 " + claim + "\r\n2 " + fmt.Sprint(len(msg(2).Data)) + "\r\n."},
					{Cmd: "LIST", N: 1, Session: 2, Action: pop3test.Reply, Reply: "+OK\r\n1 " + claim + "\r\n."}, // 2 was deleted
				},
			})
			a := testAccount(t, srv)
			logs := &logCapture{}
			for i := 0; i < 2; i++ {
				p := poller(&recorder{})
				p.Log = logs.logger()
				if res := p.Poll(context.Background(), a); res.Err != nil || res.Skipped != 1 || res.Delivered != 1-i {
					t.Fatalf("Poll %d = %+v", i, res)
				}
			}
			if slices.Contains(srv.Commands(), "RETR 1") {
				t.Fatal("message over the hard maximum retrieved")
			}
			if got := uidsOn(srv); len(got) != 1 || got[0] != "uid-0001" {
				t.Fatalf("server holds %v; want uid-0001 only", got)
			}
			if n := strings.Count(logs.String(), "uid=uid-0001"); n != 1 {
				t.Fatalf("%d log lines about uid-0001; want one warning:\n%s", n, logs)
			}
		})
	}
}

// A LIST size smaller than the message is common enough (dot-stuffing, bare
// LF sent as CRLF, servers that count wrong): the budget leaves room for
// twice the size plus 1 MiB. Such a server's RETR announces the same wrong
// size, if any.
func TestPollListUndercounts(t *testing.T) {
	m := pop3test.Message{UID: "under", Data: []byte("Subject: under\r\n\r\n" + strings.Repeat("x", 200<<10) + "\r\n")}
	srv := pop3test.NewServer(t, pop3test.Options{
		Messages: []pop3test.Message{m},
		Faults: []pop3test.Fault{
			{Cmd: "LIST", N: 1, Action: pop3test.Reply, Reply: "+OK\r\n1 1000\r\n."},
			{Cmd: "LIST", N: 2, Action: pop3test.Reply, Reply: "+OK 1 1000"}, // LIST 1, as the server counts
			{Cmd: "RETR", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
				_, rest := splitAnswer(c.Answer())
				c.Write(append([]byte("+OK 1000 octets\r\n"), rest...))
			}},
		},
	})
	a := testAccount(t, srv)
	if res := poller(&recorder{}).Poll(context.Background(), a); res.Err != nil || res.Delivered != 1 {
		t.Fatalf("Poll = %+v", res)
	}
}

// A message whose reply overruns any sane bound for its LIST size will do
// so again: popfetch gives up on it at once (durably, so a one-shot fetch
// from cron is not blocked either), says so loudly once, and the rest of
// the mailbox flows.
func TestPollPoisonMessageSkipped(t *testing.T) {
	poison := func(c *pop3test.Conn) {
		ans := c.Answer()
		if !bytes.Contains(ans, []byte("Subject: test 1\r\n")) {
			c.Write(ans)
			return
		}
		c.WriteLine("+OK here it comes")
		chunk := bytes.Repeat([]byte("poison poison poison poison poison poison poison\r\n"), 1000)
		for range 64 << 20 / len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				break // the client gave up
			}
		}
		c.Close()
	}
	srv := pop3test.NewServer(t, pop3test.Options{
		Messages: msgs(3),
		Faults:   []pop3test.Fault{{Cmd: "RETR", Action: pop3test.Custom, Func: poison}},
	})
	a := testAccount(t, srv)
	logs := &logCapture{}
	p := poller(&recorder{})
	p.Log = logs.logger()
	res := p.Poll(context.Background(), a)
	if !errors.Is(res.Err, ErrProtocol) || !strings.Contains(res.Err.Error(), "uid-0001") || res.Delivered != 0 {
		t.Fatalf("Poll = %+v; want the poison message to fail the poll", res)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "account=test") {
		t.Fatalf("no loud warning naming the account:\n%s", logs)
	}
	if !storeGivenUp(t, a, "uid-0001") {
		t.Fatal("poison message not recorded as given up in the store")
	}
	retr1 := func() int { return strings.Count(strings.Join(srv.Commands(), "\n")+"\n", "RETR 1\n") }
	before := retr1()
	// A new Poller each time: what was given up is remembered on disk,
	// as for `popfetch fetch` run from cron.
	for i := 0; i < 2; i++ {
		p := poller(&recorder{})
		p.Log = logs.logger()
		res := p.Poll(context.Background(), a)
		if res.Err != nil || res.Skipped != 1 || res.Delivered != 2*(1-i) {
			t.Fatalf("Poll after giving up = %+v", res)
		}
	}
	if got := uidsOn(srv); len(got) != 1 || got[0] != "uid-0001" {
		t.Fatalf("server holds %v; want the poison message only", got)
	}
	if retr1() != before {
		t.Fatal("poison message retrieved again after it was given up")
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Fatalf("%d ERROR lines; want the one warning:\n%s", n, logs)
	}
}

// A message that keeps missing its whole-message deadline is given up after
// poisonPolls polls in a row; a dropped connection, however often, is the
// link's fault, not the message's, and never makes popfetch give up.
func TestPollGiveUpOnlyForTheMessagesFault(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action pop3test.Action
		giveUp bool
	}{
		{"deadline", pop3test.Hang, true},
		{"dropped", pop3test.Drop, false},
		{"truncated", pop3test.Truncate, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := pop3test.NewServer(t, pop3test.Options{
				Messages: msgs(2),
				Faults:   []pop3test.Fault{{Cmd: "RETR", N: 1, Action: tc.action}},
			})
			a := testAccount(t, srv)
			a.Timeout = 200 * time.Millisecond
			p := poller(&recorder{})
			for i := 1; i <= poisonPolls+1; i++ {
				res := p.Poll(context.Background(), a)
				if res.Err == nil {
					if !tc.giveUp || i <= poisonPolls {
						t.Fatalf("Poll %d = %+v; want it to fail on uid-0001", i, res)
					}
					if res.Skipped != 1 || res.Delivered != 1 {
						t.Fatalf("Poll %d after giving up = %+v; want uid-0001 skipped, uid-0002 delivered", i, res)
					}
				}
			}
			if got := storeGivenUp(t, a, "uid-0001"); got != tc.giveUp {
				t.Fatalf("given up = %v after %d polls; want %v", got, poisonPolls+1, tc.giveUp)
			}
		})
	}
}

// A message the server never gives whole ends every session, so each
// `popfetch fetch` from cron, a new process every time, must count it as
// the daemon does: the count lives in the journal. A new Poller per poll
// stands for such a run. After poisonPolls runs the message is given up
// and the next run delivers the others; a dropped connection, however
// often, is never the message's fault.
func TestPollGiveUpAcrossOneShotRuns(t *testing.T) {
	bad := []byte("Message-ID: <2@example.com>")
	for _, tc := range []struct {
		name   string
		fault  func(c *pop3test.Conn)
		giveUp bool
	}{
		{"err", func(c *pop3test.Conn) { c.WriteLine("-ERR cannot read message") }, true},
		{"deadline", func(c *pop3test.Conn) { c.Hang() }, true},
		{"dropped", func(c *pop3test.Conn) { c.Close() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := pop3test.NewServer(t, pop3test.Options{
				Messages: msgs(4),
				Faults: []pop3test.Fault{{Cmd: "RETR", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
					if bytes.Contains(c.Answer(), bad) {
						tc.fault(c)
						return
					}
					c.Write(c.Answer())
				}}},
			})
			a := testAccount(t, srv)
			a.Timeout = 300 * time.Millisecond
			rec := &recorder{}
			for i := 1; i <= poisonPolls; i++ {
				if res := poller(rec).Poll(context.Background(), a); res.Err == nil {
					t.Fatalf("run %d = %+v; want it to fail on uid-0002", i, res)
				}
			}
			if got := storeGivenUp(t, a, "uid-0002"); got != tc.giveUp {
				t.Fatalf("given up = %v after %d runs; want %v", got, poisonPolls, tc.giveUp)
			}
			res := poller(rec).Poll(context.Background(), a)
			if !tc.giveUp {
				if res.Err == nil || storeGivenUp(t, a, "uid-0002") {
					t.Fatalf("run %d = %+v, given up %v; want a failure, not given up", poisonPolls+1, res, storeGivenUp(t, a, "uid-0002"))
				}
				return
			}
			if res.Err != nil {
				t.Fatalf("run %d after giving up = %+v", poisonPolls+1, res)
			}
			rec.mu.Lock()
			got := slices.Clone(rec.got)
			rec.mu.Unlock()
			slices.Sort(got)
			if want := []string{"uid-0001", "uid-0003", "uid-0004"}; !slices.Equal(slices.Compact(got), want) {
				t.Fatalf("delivered %v; want %v", got, want)
			}
			if on := uidsOn(srv); !slices.Equal(on, []string{"uid-0002"}) {
				t.Fatalf("server holds %v; want the refused message only", on)
			}
		})
	}
}

// A RETR reply read whole does not end the message's run of failures:
// the LIST behind it may still show it out of step (here the server
// answers "LIST 2" with another message's number), and that failure is
// the message's too. Were the count reset as the reply was read, it would
// never reach poisonPolls.
func TestPollRetrCountResetOnlyInStep(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{
		Messages: msgs(3),
		Faults: []pop3test.Fault{{Cmd: "LIST", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
			ans := c.Answer()
			if rest, ok := bytes.CutPrefix(ans, []byte("+OK 2 ")); ok {
				ans = append([]byte("+OK 3 "), rest...)
			}
			c.Write(ans)
		}}},
	})
	a := testAccount(t, srv)
	rec := &recorder{}
	for i := 1; i <= poisonPolls; i++ {
		if res := poller(rec).Poll(context.Background(), a); res.Err == nil {
			t.Fatalf("run %d = %+v; want it to fail on uid-0002", i, res)
		}
	}
	if !storeGivenUp(t, a, "uid-0002") {
		t.Fatalf("uid-0002 not given up after %d runs", poisonPolls)
	}
}

// However many messages larger than the spool window come, at most one is
// spooled at a time: the next RETR waits until its delivery is over.
func TestPollOneBigMessageAtATime(t *testing.T) {
	var big []pop3test.Message
	for i := 1; i <= 3; i++ {
		big = append(big, pop3test.Message{UID: fmt.Sprintf("big-%d", i), Data: []byte("Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef012345678901234\r\n", (1<<20)/64+1000))})
	}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: big})
	a := testAccount(t, srv)
	var mu sync.Mutex
	var overlaps []string
	rec := &recorder{fail: func(uid string) error {
		// While this big message is being delivered, no RETR for the
		// next may go out. Watch the server for a while: a client that
		// sends it does so at once.
		next := fmt.Sprintf("RETR %d", uid[len(uid)-1]-'0'+1)
		for range 20 {
			if slices.Contains(srv.Commands(), next) {
				mu.Lock()
				overlaps = append(overlaps, next+" while "+uid+" was being delivered")
				mu.Unlock()
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}}
	p := poller(rec)
	p.spoolWindow = 1 << 20
	if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != 3 {
		t.Fatalf("Poll = %+v", res)
	}
	if len(overlaps) > 0 {
		t.Fatalf("more than one big message spooled: %v", overlaps)
	}
}

func TestPollHostileReplies(t *testing.T) {
	tests := []struct {
		name  string
		fault pop3test.Fault
		want  error
	}{
		{"endless line", pop3test.Fault{Cmd: "STAT", Action: pop3test.EndlessLine}, ErrProtocol},
		{"endless listing", pop3test.Fault{Cmd: "UIDL", Action: pop3test.EndlessMulti}, ErrProtocol},
		{"endless message", pop3test.Fault{Cmd: "RETR", Action: pop3test.EndlessMulti}, ErrProtocol},
		{"truncated message", pop3test.Fault{Cmd: "RETR", Action: pop3test.Truncate}, nil},
		{"uid too long", pop3test.Fault{Cmd: "UIDL", Action: pop3test.Reply, Reply: "+OK\r\n1 " + strings.Repeat("x", 71) + "\r\n."}, ErrProtocol},
		{"uid with space", pop3test.Fault{Cmd: "UIDL", Action: pop3test.Reply, Reply: "+OK\r\n1 a b\r\n."}, ErrProtocol},
		{"number out of range", pop3test.Fault{Cmd: "UIDL", Action: pop3test.Reply, Reply: "+OK\r\n7 abc\r\n."}, ErrProtocol},
		{"negative number", pop3test.Fault{Cmd: "LIST", Action: pop3test.Reply, Reply: "+OK\r\n-1 100\r\n."}, ErrProtocol},
		{"uidl incomplete", pop3test.Fault{Cmd: "UIDL", Action: pop3test.Reply, Reply: "+OK\r\n."}, ErrProtocol},
		{"list incomplete", pop3test.Fault{Cmd: "LIST", Action: pop3test.Reply, Reply: "+OK\r\n."}, ErrProtocol},
		{"huge stat", pop3test.Fault{Cmd: "STAT", Action: pop3test.Reply, Reply: "+OK 4000000000 1"}, ErrProtocol},
		{"garbage status", pop3test.Fault{Cmd: "STAT", Action: pop3test.Reply, Reply: "HELLO"}, ErrProtocol},
		{"no uidl", pop3test.Fault{Cmd: "UIDL", Action: pop3test.Reply, Reply: "-ERR unknown command"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1), Faults: []pop3test.Fault{tt.fault}})
			a := testAccount(t, srv)
			a.Timeout = 2 * time.Second
			rec := &recorder{}
			res := poller(rec).Poll(context.Background(), a)
			if res.Err == nil {
				t.Fatalf("Poll = %+v; want an error", res)
			}
			if tt.want != nil && !errors.Is(res.Err, tt.want) {
				t.Fatalf("Poll error = %v; want %v", res.Err, tt.want)
			}
			if !strings.Contains(res.Err.Error(), "account test") {
				t.Fatalf("error %q does not name the account", res.Err)
			}
			if len(rec.got) != 0 || len(srv.Messages()) != 1 || storeHas(t, a, "uid-0001") {
				t.Fatalf("delivered %v, server %v: nothing may be delivered or recorded", rec.got, uidsOn(srv))
			}
		})
	}
}

// go-pop3 reads an empty line as a bare "+OK"; a status line must say +OK
// or -ERR, so an empty one is a protocol error, not a success.
func TestPollEmptyStatusLine(t *testing.T) {
	for _, tt := range []struct{ cmd, reply string }{
		{"RETR", "\r\nSubject: forged\r\n\r\nnot the message\r\n."},
		{"DELE", ""},
		{"STAT", ""},
	} {
		t.Run(tt.cmd, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1), Faults: []pop3test.Fault{{Cmd: tt.cmd, Action: pop3test.Reply, Reply: tt.reply}}})
			a := testAccount(t, srv)
			rec := &recorder{}
			res := poller(rec).Poll(context.Background(), a)
			if !errors.Is(res.Err, ErrProtocol) || res.Deleted != 0 {
				t.Fatalf("Poll = %+v; want a protocol error and no DELE counted", res)
			}
			if tt.cmd == "RETR" && len(rec.got) != 0 {
				t.Fatalf("delivered %v after an empty RETR status line", rec.got)
			}
			if len(srv.Messages()) != 1 {
				t.Fatalf("server holds %d messages; want 1", len(srv.Messages()))
			}
		})
	}
}

func TestPollLimit(t *testing.T) {
	big := pop3test.Message{UID: "big", Data: []byte("Subject: big\r\n\r\n" + strings.Repeat("x", 5000) + "\r\n")}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: append(msgs(2), big)})
	a := testAccount(t, srv)
	a.Limit = 1000
	for i := 0; i < 2; i++ {
		res := poller(nil).Poll(context.Background(), a)
		if res.Err != nil || res.Skipped != 1 {
			t.Fatalf("Poll %d = %+v", i, res)
		}
	}
	if got := uidsOn(srv); len(got) != 1 || got[0] != "big" {
		t.Fatalf("server holds %v; want the big message only", got)
	}
	for _, c := range srv.Commands() {
		if c == "RETR 3" {
			t.Fatal("oversized message retrieved")
		}
	}
	s := openStore(t, a)
	defer s.Close()
	if !s.Noted("big") {
		t.Fatal("oversized message not noted (it would be logged every poll)")
	}
}

// popfetch check --connect changes nothing: no note for an over-limit
// message (so the real poll still warns about it), no forgetting, no
// recovery records, not even a journal where there was none; and it
// counts the new messages before fetch_limit.
func TestCheckWritesNothing(t *testing.T) {
	big := pop3test.Message{UID: "big", Data: []byte("Subject: big\r\n\r\n" + strings.Repeat("x", 5000) + "\r\n")}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: append(msgs(3), big)})
	a := testAccount(t, srv)
	a.Limit = 1000
	a.FetchLimit = 1
	journal := uidl.Path(a.StateDir, a.Mailbox())

	res := poller(nil).Check(context.Background(), a)
	if res.Err != nil || res.New != 3 || res.Messages != 4 {
		t.Fatalf("Check = %+v; want 3 new (fetch_limit applies to fetching only)", res)
	}
	if _, err := os.Stat(a.StateDir); !os.IsNotExist(err) {
		t.Fatalf("Check created the state directory (stat: %v)", err)
	}

	// A journal with a message gone from the server, and an intent whose
	// copy exists (a real poll would record uid-0002 as delivered).
	inNew := commitCopy(t, a.Deliver.Maildir, "uid-0002", msg(2).Data)
	st, err := uidl.Open(journal)
	if err != nil {
		t.Fatal(err)
	}
	st.Add("gone-from-server", time.Now())
	st.IntendIdentity("uid-0002", inNew, identityOf(int64(len(msg(2).Data)), msg(2).Data))
	st.Close()
	before, _ := os.ReadFile(journal)

	logs := &logCapture{}
	p := poller(nil)
	p.Log = logs.logger()
	res = p.Check(context.Background(), a)
	if res.Err != nil || res.New != 2 {
		t.Fatalf("Check = %+v; want 2 new (uid-0002 is in the Maildir already)", res)
	}
	if after, _ := os.ReadFile(journal); !bytes.Equal(before, after) {
		t.Fatalf("Check changed the journal:\n%s\nto\n%s", before, after)
	}
	if len(srv.Messages()) != 4 || slices.ContainsFunc(srv.Commands(), func(c string) bool { return strings.HasPrefix(c, "RETR") }) {
		t.Fatal("Check retrieved or deleted messages")
	}

	// The real poll still warns about the big message.
	logs = &logCapture{}
	p.Log = logs.logger()
	if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != 1 {
		t.Fatalf("Poll = %+v", res)
	}
	if !strings.Contains(logs.String(), "larger than limit") {
		t.Fatalf("the poll after check did not warn about the big message:\n%s", logs)
	}
}

func TestPollFetchLimit(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(5)})
	a := testAccount(t, srv)
	a.FetchLimit = 2
	res := poller(nil).Poll(context.Background(), a)
	if res.New != 2 || res.Delivered != 2 || res.Skipped != 3 || len(srv.Messages()) != 3 {
		t.Fatalf("Poll = %+v, server %d", res, len(srv.Messages()))
	}
}

func TestPollAuthFailure(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1)})
	a := testAccount(t, srv)
	a.Password = rcfile.Password{Inline: "wrong-secret"}
	res := poller(nil).Poll(context.Background(), a)
	if !errors.Is(res.Err, ErrAuth) {
		t.Fatalf("Poll error = %v; want ErrAuth", res.Err)
	}
	if strings.Contains(res.Err.Error(), "wrong-secret") {
		t.Fatal("password in error message")
	}
}

// RFC 3206: only [AUTH] says the credentials are wrong. A server without
// response codes answers PASS with a bare -ERR for anything (solid-pop3d:
// "-ERR message is damaged"), which must not hold the account for good.
func TestPollLoginClassification(t *testing.T) {
	for _, tt := range []struct {
		cmd, reply string
		want       error // nil: a temporary failure, none of the sentinels
	}{
		{"PASS", "-ERR [AUTH] invalid credentials", ErrAuth},
		{"PASS", "-ERR [auth] bad password", ErrAuth},
		{"USER", "-ERR [AUTH] no such user", ErrAuth},
		{"PASS", "-ERR message is damaged", ErrLoginRefused},
		{"PASS", "-ERR", ErrLoginRefused},
		{"PASS", "-ERR invalid password", ErrLoginRefused},
		{"USER", "-ERR unknown user", ErrLoginRefused},
		{"PASS", "-ERR [SYS/PERM] account disabled", ErrLoginRefused},
		{"PASS", "-ERR [X-UNKNOWN] something", ErrLoginRefused},
		{"PASS", "-ERR [IN-USE] mailbox locked", ErrInUse},
		{"PASS", "-ERR [LOGIN-DELAY] too soon", ErrLoginDelay},
		{"PASS", "-ERR [SYS/TEMP] try later", nil},
	} {
		t.Run(tt.cmd+" "+tt.reply, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Capa: []string{"USER", "UIDL"}, Faults: []pop3test.Fault{{Cmd: tt.cmd, Action: pop3test.Reply, Reply: tt.reply}}})
			res := poller(nil).Poll(context.Background(), testAccount(t, srv))
			if res.Err == nil {
				t.Fatal("Poll succeeded; want a login failure")
			}
			for _, s := range []error{ErrAuth, ErrLoginRefused, ErrInUse, ErrLoginDelay} {
				if errors.Is(res.Err, s) != (s == tt.want) {
					t.Fatalf("Poll error = %v; want it to wrap %v and no other sentinel", res.Err, tt.want)
				}
			}
		})
	}
}

func TestPollInUse(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Faults: []pop3test.Fault{{Cmd: "PASS", Action: pop3test.Reply, Reply: "-ERR [IN-USE] mailbox locked"}}})
	res := poller(nil).Poll(context.Background(), testAccount(t, srv))
	if !errors.Is(res.Err, ErrInUse) || errors.Is(res.Err, ErrAuth) {
		t.Fatalf("Poll error = %v; want ErrInUse", res.Err)
	}
}

func TestPollLoginDelay(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Capa: []string{"USER", "UIDL", "LOGIN-DELAY 900"}})
	res := poller(nil).Poll(context.Background(), testAccount(t, srv))
	if res.Err != nil || res.LoginDelay != 900*time.Second {
		t.Fatalf("Poll = %+v", res)
	}
}

// Without PIPELINING every command waits for the previous answer: RETRs,
// and DELEs too, however many are due at once (keep switched off on a
// mailbox fetched with keep: every message is deleted in one session).
// RFC 2449 §6.5, §6.7: "LOGIN-DELAY n USER" and "EXPIRE n USER" before
// login mean the value varies per user; the CAPA after login has the real
// one, and that is the one that counts.
func TestPollPerUserCapabilities(t *testing.T) {
	preLogin := func(tags string) pop3test.Fault {
		return pop3test.Fault{Cmd: "CAPA", N: 1, Action: pop3test.Reply, Reply: "+OK\r\nUSER\r\nUIDL\r\n" + tags + "\r\n."}
	}
	capaAfterPass := func(srv *pop3test.Server) bool {
		cmds := srv.Commands()
		i := slices.IndexFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "PASS") })
		return i >= 0 && slices.Contains(cmds[i:], "CAPA")
	}
	t.Run("login delay", func(t *testing.T) {
		srv := pop3test.NewServer(t, pop3test.Options{Capa: []string{"USER", "UIDL", "LOGIN-DELAY 3600"}, Faults: []pop3test.Fault{preLogin("LOGIN-DELAY 900 USER")}})
		res := poller(nil).Poll(context.Background(), testAccount(t, srv))
		if res.Err != nil || res.LoginDelay != time.Hour || !capaAfterPass(srv) {
			t.Fatalf("Poll = %+v, commands %q; want the login delay of the CAPA after login", res, srv.Commands())
		}
	})
	t.Run("expire", func(t *testing.T) {
		srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1), Capa: []string{"USER", "UIDL", "EXPIRE 0"}, Faults: []pop3test.Fault{preLogin("EXPIRE 30 USER")}})
		a := testAccount(t, srv)
		rec := &recorder{fail: func(string) error { return errors.New("nope") }}
		poller(rec).Poll(context.Background(), a)
		if slices.Contains(srv.Settled(), "QUIT") {
			t.Fatalf("QUIT sent after a failed delivery; the CAPA after login said EXPIRE 0: %q", srv.Commands())
		}
	})
	t.Run("not per user", func(t *testing.T) {
		srv := pop3test.NewServer(t, pop3test.Options{Capa: []string{"USER", "UIDL", "LOGIN-DELAY 900"}})
		res := poller(nil).Poll(context.Background(), testAccount(t, srv))
		if res.Err != nil || res.LoginDelay != 900*time.Second || !capaAfterPass(srv) {
			t.Fatalf("Poll = %+v, commands %q; want the CAPA read again after login", res, srv.Commands())
		}
	})
}

// RFC 2449 §5: the capabilities after login may differ from those before
// it, per user or not. EXPIRE 0 announced in either reply counts (a server
// taken for one that keeps retrieved mail would get QUIT after a failed
// delivery and expunge the message); PIPELINING counts as the reply after
// login says; a server that refuses CAPA after login keeps what it said
// before.
func TestPollCapabilitiesAfterLogin(t *testing.T) {
	capaReply := func(tags ...string) string { return "+OK\r\n" + strings.Join(tags, "\r\n") + "\r\n." }
	for _, tt := range []struct {
		name      string
		capa      []string // the server's CAPA; the reply after login unless faulted
		faults    []pop3test.Fault
		wantQuit  bool // after a failed delivery: only if the server keeps retrieved mail
		wantPiped bool
	}{
		{"EXPIRE 0 only after login", []string{"USER", "UIDL", "PIPELINING", "EXPIRE 0"},
			[]pop3test.Fault{{Cmd: "CAPA", N: 1, Reply: capaReply("USER", "UIDL", "PIPELINING")}}, false, true},
		{"EXPIRE0 only after login", []string{"USER", "UIDL", "EXPIRE0"},
			[]pop3test.Fault{{Cmd: "CAPA", N: 1, Reply: capaReply("USER", "UIDL")}}, false, false},
		{"EXPIRE 0 only before login", []string{"USER", "UIDL", "PIPELINING"},
			[]pop3test.Fault{{Cmd: "CAPA", N: 1, Reply: capaReply("USER", "UIDL", "PIPELINING", "EXPIRE 0")}}, false, true},
		{"EXPIRE 0 before, NEVER after login", []string{"USER", "UIDL", "EXPIRE NEVER"},
			[]pop3test.Fault{{Cmd: "CAPA", N: 1, Reply: capaReply("USER", "UIDL", "EXPIRE 0")}}, false, false},
		{"CAPA refused after login", []string{"USER", "UIDL", "PIPELINING", "EXPIRE 0"},
			[]pop3test.Fault{{Cmd: "CAPA", N: 2, Reply: "-ERR not now"}}, false, true},
		{"PIPELINING only after login", []string{"USER", "UIDL", "PIPELINING"},
			[]pop3test.Fault{{Cmd: "CAPA", N: 1, Reply: capaReply("USER", "UIDL")}}, true, true},
		// PIPELINING only before login: TestPollPipeliningWithdrawn.
		{"EXPIRE NEVER throughout", []string{"USER", "UIDL", "EXPIRE NEVER"}, nil, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3), Capa: tt.capa, Faults: tt.faults, CheckPipelining: true})
			a := testAccount(t, srv)
			rec := &recorder{fail: func(uid string) error {
				if uid == "uid-0002" {
					return errors.New("temporary failure")
				}
				return nil
			}}
			res := poller(rec).Poll(context.Background(), a)
			if res.Err != nil || res.Delivered != 2 || res.Failed != 1 {
				t.Fatalf("Poll = %+v; want 2 delivered, 1 failed", res)
			}
			if quit := slices.Contains(srv.Settled(), "QUIT"); quit != tt.wantQuit {
				t.Errorf("QUIT sent: %v, want %v (commands %q)", quit, tt.wantQuit, srv.Commands())
			}
			if piped := srv.Pipelined() > 0; piped != tt.wantPiped {
				t.Errorf("pipelined: %v, want %v (commands %q)", piped, tt.wantPiped, srv.Commands())
			}
			if !slices.Contains(uidsOn(srv), "uid-0002") {
				t.Errorf("uid-0002, not delivered, is gone from the server: %v", uidsOn(srv))
			}
		})
	}
}

func TestPollWithoutPipelining(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3), Capa: []string{"USER", "UIDL"}, CheckPipelining: true})
	a := testAccount(t, srv)
	a.Keep = true
	if res := poller(nil).Poll(context.Background(), a); res.Err != nil || res.Delivered != 3 || res.Deleted != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	srv.SetMessages(msgs(3 + batch))
	a.Keep = false
	if res := poller(nil).Poll(context.Background(), a); res.Err != nil || res.Delivered != batch || res.Deleted != 3+batch {
		t.Fatalf("Poll = %+v", res)
	}
	if srv.Pipelined() != 0 || len(srv.Messages()) != 0 {
		t.Fatalf("%d commands pipelined, %d messages left", srv.Pipelined(), len(srv.Messages()))
	}
}

func TestPollLockedByAnotherProcess(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1)})
	a := testAccount(t, srv)
	s := openStore(t, a)
	defer s.Close()
	res := poller(nil).Poll(context.Background(), a)
	if !errors.Is(res.Err, ErrLocked) || srv.Sessions() != 0 {
		t.Fatalf("Poll = %+v, sessions %d; want ErrLocked before connecting", res, srv.Sessions())
	}
}

// stopAtThirdDelivery returns a graceful-stop channel closed by the third
// delivery to start, and the recorder that closes it. It counts starts, not
// a given message: delivery goroutines do not start in the order they were
// launched (Go runs the newest first), so the one for uid-0003 may start
// only after a dozen later ones have finished. The recorder calls fail
// under its mutex, so the count needs no lock of its own.
func stopAtThirdDelivery() (chan struct{}, *recorder) {
	stop := make(chan struct{})
	calls := 0
	return stop, &recorder{fail: func(uid string) error {
		if calls++; calls == 3 {
			close(stop)
		}
		return nil
	}}
}

func TestPollGracefulStop(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(50)})
	a := testAccount(t, srv)
	stop, rec := stopAtThirdDelivery()
	res := poller(rec).PollWith(context.Background(), a, PollOptions{Stop: stop})
	if res.Err != nil {
		t.Fatalf("Poll = %+v", res)
	}
	// What was delivered is deleted; the rest stays. Deliveries running
	// at the stop are finished, never dropped; replies already on their
	// way are read but not delivered. When the third delivery starts, two
	// have finished and at most deliverers more were launched; at most
	// one more can be launched by a reply that was checked just before
	// the stop.
	if res.Delivered < 3 || res.Delivered > 3+deliverers || res.Deleted != res.Delivered || len(srv.Messages()) != 50-res.Delivered {
		t.Fatalf("Poll = %+v, server %d", res, len(srv.Messages()))
	}
}

func TestPollCancelAbortsWithoutQuit(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(20)})
	a := testAccount(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	rec := &recorder{fail: func(uid string) error {
		if uid == "uid-0002" {
			cancel()
		}
		return nil
	}}
	res := poller(rec).Poll(ctx, a)
	if res.Err == nil {
		t.Fatalf("Poll = %+v; want an error", res)
	}
	// No QUIT, so no UPDATE: the server deleted nothing. What was
	// delivered is recorded and will be deleted next poll, not refetched.
	if len(srv.Messages()) != 20 {
		t.Fatalf("server has %d", len(srv.Messages()))
	}
	res = poller(rec).Poll(context.Background(), a)
	if res.Err != nil || len(srv.Messages()) != 0 {
		t.Fatalf("second Poll = %+v", res)
	}
	seen := map[string]int{}
	for _, u := range rec.got {
		seen[u]++
	}
	if len(seen) != 20 {
		t.Fatalf("delivered %d distinct; want 20", len(seen))
	}
	for u, n := range seen {
		if n > 1 && u != "uid-0002" {
			t.Fatalf("%s delivered %d times", u, n)
		}
	}
}

// A server with EXPIRE 0 may remove every retrieved message in the UPDATE
// state, delivered or not (RFC 2449 §6.7). So a session that retrieved a
// message it did not deliver, for whatever reason, must end without QUIT.
func TestPollExpireZeroDropsWithoutQuitAfterFailure(t *testing.T) {
	quitSent := func(srv *pop3test.Server) bool { return slices.Contains(srv.Settled(), "QUIT") }
	// Every spelling that means (or may mean) EXPIRE 0; GNU mailutils
	// pop3d writes "EXPIRE0".
	for _, expire := range []string{"EXPIRE 0", "EXPIRE0", "EXPIRE 0 USER", "EXPIRE", "EXPIRE soon"} {
		t.Run("delivery failed/"+expire, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2), Capa: []string{"USER", "UIDL", expire}})
			a := testAccount(t, srv)
			a.Keep = true
			rec := &recorder{fail: func(uid string) error { return errors.New("nope") }}
			poller(rec).Poll(context.Background(), a)
			if quitSent(srv) {
				t.Fatalf("QUIT sent after a failed delivery on a server that said %q", expire)
			}
		})
	}
	t.Run("delivery failed/EXPIRENEVER", func(t *testing.T) {
		srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2), Capa: []string{"USER", "UIDL", "EXPIRENEVER"}})
		a := testAccount(t, srv)
		rec := &recorder{fail: func(uid string) error { return errors.New("nope") }}
		poller(rec).Poll(context.Background(), a)
		if !quitSent(srv) {
			t.Fatal("no QUIT on a server that keeps retrieved mail (EXPIRENEVER)")
		}
	})
	// A graceful stop reads the RETR replies already on their way but
	// delivers none of them: those messages were retrieved, not delivered.
	t.Run("graceful stop", func(t *testing.T) {
		srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(50), Capa: []string{"USER", "UIDL", "PIPELINING", "EXPIRE 0"}})
		a := testAccount(t, srv)
		stop, rec := stopAtThirdDelivery()
		res := poller(rec).PollWith(context.Background(), a, PollOptions{Stop: stop})
		if res.Err != nil || res.Delivered >= 50 {
			t.Fatalf("Poll = %+v; want a stop part-way", res)
		}
		if quitSent(srv) {
			t.Fatalf("QUIT sent with %d of 50 messages retrieved but not delivered on an EXPIRE 0 server", 50-res.Delivered)
		}
		// Nothing is lost: the next poll delivers the rest and deletes
		// everything, delivering nothing twice.
		res = poller(rec).Poll(context.Background(), a)
		if res.Err != nil || len(srv.Messages()) != 0 {
			t.Fatalf("second Poll = %+v, server %d", res, len(srv.Messages()))
		}
		got := slices.Clone(rec.got)
		slices.Sort(got)
		if len(slices.Compact(got)) != 50 || len(rec.got) != 50 {
			t.Fatalf("%d deliveries of %d messages; want each of the 50 once", len(rec.got), len(slices.Compact(got)))
		}
	})
	// Everything retrieved was delivered: QUIT as usual, so that the DELEs
	// take effect.
	t.Run("all delivered", func(t *testing.T) {
		srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3), Capa: []string{"USER", "UIDL", "PIPELINING", "EXPIRE 0"}})
		a := testAccount(t, srv)
		if res := poller(&recorder{}).Poll(context.Background(), a); res.Err != nil || res.Delivered != 3 || !quitSent(srv) || len(srv.Messages()) != 0 {
			t.Fatalf("Poll = %+v, QUIT sent %v, server %d", res, quitSent(srv), len(srv.Messages()))
		}
	})
}

func TestPollPermanentFailureToPostmaster(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1)})
	a := testAccount(t, srv)
	dir := t.TempDir()
	a.Deliver = rcfile.Destination{MDA: []string{"/bin/false"}, MDATimeout: 5 * time.Second}
	// Without a postmaster the message stays on the server.
	res := poller(nil).Poll(context.Background(), a)
	if res.Failed != 1 || len(srv.Messages()) != 1 {
		t.Fatalf("Poll = %+v", res)
	}
	a.Postmaster = &rcfile.Destination{Maildir: filepath.Join(dir, "pm")}
	res = poller(nil).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	pm := delivertest.MaildirMessages(t, filepath.Join(dir, "pm"), "new")
	if len(pm) != 1 {
		t.Fatalf("postmaster has %d", len(pm))
	}
	b := pm[0]
	if !strings.Contains(string(b), "X-Popfetch-Reason: MDA exit 1") {
		t.Fatalf("postmaster copy lacks the reason:\n%s", b)
	}
}

// A run killed after a copy reached new/ but before its UID was recorded
// leaves an intent; the next poll finds the file (in new/, or moved to cur/
// by a reader) and records the UID, with the identity the intent carries,
// instead of delivering it again. An intent whose file never appeared
// changes nothing. An intent without identity (written by an older
// popfetch) confirms nothing on the server: that message is delivered
// again rather than deleted on its UID alone.
func TestPollRecoversInterruptedDelivery(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(4)})
	a := testAccount(t, srv)
	for _, sub := range []string{"new", "cur", "tmp"} {
		os.MkdirAll(filepath.Join(a.Deliver.Maildir, sub), 0o700)
	}
	// The copies as a Maildir delivery writes them (recovery checks
	// that the file is the copy, see TestRecoverOnlyOurCopy).
	inNew := commitCopy(t, a.Deliver.Maildir, "uid-0001", msg(1).Data)
	inCur := commitCopy(t, a.Deliver.Maildir, "uid-0002", msg(2).Data)
	legacy := commitCopy(t, a.Deliver.Maildir, "uid-0004", msg(4).Data)
	if err := os.Rename(inCur, filepath.Join(a.Deliver.Maildir, "cur", filepath.Base(inCur)+":2,S")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, a)
	idOf := func(i int) uidl.Identity { d := msg(i).Data; return identityOf(int64(len(d)), d) }
	s.IntendIdentity("uid-0001", inNew, idOf(1))
	s.IntendIdentity("uid-0002", inCur, idOf(2))
	s.IntendIdentity("uid-0003", filepath.Join(a.Deliver.Maildir, "new", "never-linked"), idOf(3))
	s.IntendIdentity("uid-0004", legacy, uidl.Identity{})
	s.Close()

	rec := &recorder{}
	res := poller(rec).Poll(context.Background(), a)
	if res.Err != nil || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v, server %v", res, uidsOn(srv))
	}
	slices.Sort(rec.got)
	if strings.Join(rec.got, ",") != "uid-0003,uid-0004" {
		t.Fatalf("delivered %v; want only uid-0003 and uid-0004 (1 and 2 were already in the Maildir)", rec.got)
	}
}
