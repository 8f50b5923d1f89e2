package main

import (
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	milter "github.com/d--j/go-milter"
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

	const n = 200
	maildir, kills, dups, mb := filteredCrashRun(t, "crashbody", n, "body", addr, 40, 3, scans.Load)
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
