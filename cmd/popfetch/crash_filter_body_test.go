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

// bodyMilter replaces every message's body (as a virus scanner that
// strips an attachment does) and adds a field: the copy delivered is
// then unlike the message on the server in size and content.
type bodyMilter struct {
	milter.NoOpMilter
	n *atomic.Int64
}

func (s *bodyMilter) EndOfMessage(m milter.Modifier) (*milter.Response, error) {
	s.n.Add(1)
	if err := m.AddHeader("X-Filtered", "body"); err != nil {
		return nil, err
	}
	if err := m.ReplaceBody(strings.NewReader("replaced by the filter\r\n")); err != nil {
		return nil, err
	}
	return milter.RespAccept, nil
}

// TestCrashSafetyFilteredBody is TestCrashSafetyFiltered with a milter
// that replaces the body: killed at random moments and restarted, every
// message is delivered filtered, each kill duplicates at most the
// deliveries in flight, and the server is emptied.
func TestCrashSafetyFilteredBody(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: 200 messages, several kills")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scans := &atomic.Int64{}
	msrv := milter.NewServer(milter.WithMilter(func() milter.Milter { return &bodyMilter{n: scans} }),
		milter.WithAction(milter.OptAddHeader|milter.OptChangeBody))
	go msrv.Serve(ln)
	t.Cleanup(func() { msrv.Close() })
	addr := "inet:" + ln.Addr().String()

	srv := dovecottest.Start(t, dovecottest.Options{})
	const n = 200
	mb := srv.AddUser(t, "crashbody", "pw")
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
		extra: []string{fmt.Sprintf("filter \"body\" {\n    milter = %q\n  }", addr)},
	}))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	const wantKills = 6
	killedAt := killLoop(t, rc, 31, func() int { return maildirCount(t, maildir) }, func(base, kills int) int {
		if left := n - base; kills < wantKills && left > 1 {
			return base + 1 + rng.IntN(min(left-1, 40))
		}
		return -1
	}, nil)
	kills := len(killedAt)
	t.Logf("Maildir count at each kill: %v; %d milter conversations", killedAt, scans.Load())
	dups := delivertest.Duplicates(t, seqCounts(t, maildir), n)
	// Recovery recognises a committed copy by the body digest of the
	// message as fetched (fetch/identity.go, ourCopy); a replaced body
	// defeats it, so every copy committed but not yet recorded at the
	// kill comes again: at most the deliveries in flight at once (32
	// with Maildir targets, fetch/session.go maildirPar), not one.
	t.Logf("%d duplicates after %d kills", dups, kills)
	if dups > kills*32 {
		t.Errorf("%d duplicates after %d kills: more than the deliveries in flight per kill", dups, kills)
	}
	for _, f := range maildirFiles(t, maildir) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "\nX-Filtered: body\n") || !strings.HasSuffix(string(b), "\nreplaced by the filter\n") {
			t.Fatalf("%s was not delivered as filtered:\n%s", f, b)
		}
	}
	if got := mb.Count(t); got != 0 {
		t.Errorf("server holds %d messages; want 0", got)
	}
}
