package fetch

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/uidl"
)

// dyingProgress is the journal of a popfetch that dies while recording
// the failAt-th copy of a message: that Record and every later one fail.
// What the journal holds then is what a restart would see. onRecord runs
// at each Record before it is written, with its number.
type dyingProgress struct {
	p        Progress
	mu       sync.Mutex
	calls    int
	failAt   int
	onRecord func(n int)
}

func (d *dyingProgress) Done(rcpt string) bool    { return d.p.Done(rcpt) }
func (d *dyingProgress) Intend(path string) error { return d.p.Intend(path) }
func (d *dyingProgress) Copied(c Copy)            { d.p.Copied(c) }

func (d *dyingProgress) Record(rcpt string) error {
	d.mu.Lock()
	d.calls++
	n := d.calls
	d.mu.Unlock()
	if d.onRecord != nil {
		d.onRecord(n)
	}
	if d.failAt > 0 && n >= d.failAt {
		return errors.New("killed (simulated)")
	}
	return d.p.Record(rcpt)
}

// recordSink is an LMTP server that stores one copy per recipient and
// sends its reply, which names the recipient as dovecot's do (go-smtp's
// server sends "250 2.0.0 <rcpt> OK: queued"), then waits (up to ten
// seconds) until the client has recorded that copy (a value on recorded)
// before it stores the next: if the client records only when the whole
// transaction is over, every wait runs out, which late counts.
type recordSink struct {
	*delivertest.Sink
	late     atomic.Int32
	recorded chan struct{}
}

func startRecordSink(t *testing.T) (*recordSink, string) {
	sink := &recordSink{Sink: &delivertest.Sink{}, recorded: make(chan struct{}, 100)}
	sink.AfterStatus = func(string) {
		select {
		case <-sink.recorded:
		case <-time.After(10 * time.Second):
			sink.late.Add(1)
		}
	}
	return sink, sink.Start(t, delivertest.SinkOptions{LMTP: true, Timeout: 10 * time.Second})
}

// countGlob counts the files matching pattern.
func countGlob(t *testing.T, pattern string) int {
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// A multidrop message to many users who share one target ({user} Maildir
// template, one MDA argv, one LMTP server) records each user's copy as it
// completes. popfetch "dies" while recording the k-th copy (its Record
// fails): the journal holds the k-1 before it, at most k copies exist
// (those plus the one in flight), and the retry after the restart gives
// every user exactly one copy but that one. Before, the group was recorded
// only when it had all returned: the first Record came after every copy
// was made, so a kill then duplicated all of them.
func TestMultidropRecordsEachCopy(t *testing.T) {
	const n, k = 12, 5
	var cfgUsers []*rcfile.User
	var addrs []string
	for i := range n {
		u := fmt.Sprintf("u%02d", i)
		cfgUsers = append(cfgUsers, mdUser(u, u))
		addrs = append(addrs, u+"@example.com")
	}
	raw := []byte("To: " + strings.Join(addrs, ",\r\n\t") + "\r\nMessage-ID: <many@x>\r\nSubject: to many\r\n\r\nbody\r\n")

	dir := t.TempDir()
	stub := delivertest.NewMDA(t)
	mda, err := deliver.NewMDA(stub.Argv("{user}"), deliver.MDAOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sink, lmtpAddr := startRecordSink(t)
	for _, tc := range []struct {
		name    string
		target  deliver.Target
		copies  func() int
		perUser func(u string) int
		after   func() // after each successful Record
	}{
		{"maildir", deliver.NewMaildir(filepath.Join(dir, "md", "{user}"), deliver.MaildirOptions{LocalHost: "test.host"}),
			func() int { return countGlob(t, filepath.Join(dir, "md", "*", "new", "*")) },
			func(u string) int { return delivertest.MaildirCount(t, filepath.Join(dir, "md", u), "new") }, nil},
		{"mda", mda,
			func() int { return stub.Total(t) },
			func(u string) int { return stub.Count(t, u) }, nil},
		{"lmtp", deliver.NewSMTP(deliver.SMTPOptions{Addr: lmtpAddr, LMTP: true, Timeout: 10 * time.Second}),
			sink.Total,
			func(u string) int { return sink.Copies(u + "@example.com") },
			func() { sink.recorded <- struct{}{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, err := uidl.Open(filepath.Join(t.TempDir(), "journal"))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			a := &rcfile.Account{Name: "t", Username: "catchall", Multidrop: testMultidrop(cfgUsers...)}
			m := &deliver.Message{Account: "t", Server: "pop.test", User: "catchall", UID: "m1", Fetched: time.Now(), Raw: raw}
			atFail, lateAtFail := -1, 0
			dp := &dyingProgress{p: &progress{s: store, uid: "m1", now: time.Now}, failAt: k}
			dp.onRecord = func(c int) {
				if c == k {
					atFail = tc.copies()
					lateAtFail = int(sink.late.Load())
				}
			}
			if tc.after != nil {
				// The LMTP sink goes on once a copy is recorded (or the
				// record failed: the client is gone then).
				inner := dp.onRecord
				dp.onRecord = func(c int) { inner(c); tc.after() }
			}
			disp, err := newMultidrop(a, tc.target, nil, "test.host")
			if err != nil {
				t.Fatal(err)
			}
			if err := disp.Dispatch(context.Background(), m, dp, nil); err == nil {
				t.Fatal("Dispatch = nil; want the record failure")
			}
			if got := store.RecipientsOf("m1", uidl.Identity{}, false); len(got) != k-1 {
				t.Errorf("journal holds %d recipients %v; want the %d recorded before the kill", len(got), got, k-1)
			}
			if atFail > k {
				t.Errorf("%d copies existed when the %d-th was being recorded; want at most %d (the recorded ones plus the one in flight)", atFail, k, k)
			}
			inFlight := 1
			if tc.name == "lmtp" {
				// The server has the data and delivers to every
				// recipient whatever happens to the client: the replies
				// not yet read are in flight. Let it finish.
				inFlight = n - (k - 1)
				if lateAtFail > 0 {
					t.Errorf("%d LMTP replies were not recorded as they arrived", lateAtFail)
				}
				for range n {
					sink.recorded <- struct{}{}
				}
				for start := time.Now(); sink.Total() < n && time.Since(start) < 10*time.Second; {
					time.Sleep(10 * time.Millisecond)
				}
			} else if got := tc.copies(); got > k {
				t.Errorf("%d copies after the kill; want at most %d: no copy after a failed record", got, k)
			}

			// The restart: the same journal, and nothing fails.
			disp, _ = newMultidrop(a, tc.target, nil, "test.host")
			p := &dyingProgress{p: &progress{s: store, uid: "m1", now: time.Now}, onRecord: func(int) {
				if tc.after != nil {
					tc.after()
				}
			}}
			if err := disp.Dispatch(context.Background(), m, p, nil); err != nil {
				t.Fatalf("retry: Dispatch = %v", err)
			}
			dups := 0
			for i := range n {
				switch c := tc.perUser(fmt.Sprintf("u%02d", i)); c {
				case 1:
				case 2:
					dups++
				default:
					t.Errorf("u%02d has %d copies", i, c)
				}
			}
			if dups > inFlight {
				t.Errorf("%d users got two copies; want at most %d (the copies in flight at the kill)", dups, inFlight)
			}
			for _, rc := range store.RecipientsOf("m1", uidl.Identity{}, false)[:k-1] {
				if c := tc.perUser(strings.TrimPrefix(rc, "u:")); c != 1 {
					t.Errorf("%s, recorded before the kill, has %d copies; want 1", rc, c)
				}
			}
		})
	}
}
