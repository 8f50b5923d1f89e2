package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	milter "github.com/d--j/go-milter"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// stampMilter is a go-milter test server that adds X-Filtered to every
// message after a short scan, counting the conversations.
type stampMilter struct {
	milter.NoOpMilter
	n *atomic.Int64
}

func (s *stampMilter) EndOfMessage(m milter.Modifier) (*milter.Response, error) {
	time.Sleep(time.Millisecond)
	s.n.Add(1)
	if err := m.AddHeader("X-Filtered", "yes"); err != nil {
		return nil, err
	}
	return milter.RespAccept, nil
}

// startStampMilter serves a stampMilter on a loopback port; it returns
// the milter address and the conversation count.
func startStampMilter(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &atomic.Int64{}
	srv := milter.NewServer(milter.WithMilter(func() milter.Milter { return &stampMilter{n: n} }),
		milter.WithAction(milter.OptAddHeader))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "inet:" + ln.Addr().String(), n
}

// TestCrashSafetyFiltered is TestCrashSafety with a milter in the path
// (a go-milter test server adding a field, not rspamd, to keep it fast):
// killed at random moments, restarted, every message ends up in the
// Maildir exactly as filtered, each kill duplicates at most the one
// message in flight, and the server is emptied.
func TestCrashSafetyFiltered(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: 300 messages, several kills")
	}
	addr, scans := startStampMilter(t)
	const n = 300
	maildir, kills, dups, mb := filteredCrashRun(t, "crashfilter", n, "stamp", addr, 50, 2, scans.Load)
	if dups > kills {
		t.Errorf("%d duplicates after %d kills: more than the one in-flight message per kill", dups, kills)
	}
	for _, f := range maildirFiles(t, maildir) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "\nX-Filtered: yes\n") {
			t.Fatalf("%s was delivered unfiltered:\n%s", f, b)
		}
	}
	if got := mb.Count(t); got != 0 {
		t.Errorf("server holds %d messages; want 0", got)
	}
}

// filteredCrashRun puts n numbered messages (X-Seq) for user on a private
// dovecot, fetches them with one milter filter (name, addr) while
// killLoop kills popfetch about six times, at most maxGap messages apart
// (seed picks the moments), and returns the Maildir, the kills, the
// duplicates and the mailbox; scans counts the milter's conversations
// for the log.
func filteredCrashRun(t *testing.T, user string, n int, name, addr string, maxGap int, seed uint64, scans func() int64) (string, int, int, *dovecottest.Mailbox) {
	t.Helper()
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, user, "pw")
	var msgs [][]byte
	for i := 1; i <= n; i++ {
		msgs = append(msgs, []byte(fmt.Sprintf("Received: from mail.example.net (mail.example.net [203.0.113.25]) by mx.example.com; Mon, 01 Jan 2024 08:00:00 +0000\r\n"+
			"From: a@example.net\r\nTo: b@example.com\r\nSubject: crash %d\r\nX-Seq: %d\r\n\r\n%s\r\n", i, i, bytes.Repeat([]byte("crash-test body line\r\n"), i%50+1))))
	}
	mb.Put(t, msgs...)
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "popfetch.hcl")
	writeFile(t, filepath.Join(dir, "pw"), "pw\n")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{
		name: "crash", port: srv.PlainPort, user: mb.User, passFile: filepath.Join(dir, "pw"), maildir: maildir,
		extra: []string{fmt.Sprintf("filter %q {\n    milter = %q\n  }", name, addr)},
	}))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), seed))
	const wantKills = 6
	killedAt := killLoop(t, rc, 31, func() int { return maildirCount(t, maildir) }, func(base, kills int) int {
		if left := n - base; kills < wantKills && left > 1 {
			return base + 1 + rng.IntN(min(left-1, maxGap))
		}
		return -1
	}, nil)
	t.Logf("Maildir count at each kill: %v; %d milter conversations", killedAt, scans())
	return maildir, len(killedAt), delivertest.Duplicates(t, seqCounts(t, maildir), n), mb
}
