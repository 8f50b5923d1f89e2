package fetch

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/uidl"
)

// TestPollCarefulMarkKeptOnStop: a careful poll (the mark beside the
// journal set by a broken round) that a graceful stop ends before it got
// through its messages keeps the mark: the message that broke the round
// may be among those left, and the next one-shot run (or a restarted
// daemon, a new process) must take it carefully too. A careful poll that
// gets through clears it.
func TestPollCarefulMarkKeptOnStop(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(50)})
	a := testAccount(t, srv)
	j := uidl.Path(a.StateDir, a.Mailbox())
	if err := os.MkdirAll(filepath.Dir(j), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := uidl.SetCareful(j, true); err != nil {
		t.Fatal(err)
	}
	stop, rec := stopAtThirdDelivery()
	res := poller(rec).PollWith(context.Background(), a, PollOptions{Stop: stop})
	if res.Err != nil || len(srv.Messages()) == 0 {
		t.Fatalf("Poll = %+v, server %d; want a stop before the end", res, len(srv.Messages()))
	}
	if !uidl.Careful(j) {
		t.Error("a careful poll stopped before the end cleared the careful mark")
	}
	res = poller(&recorder{}).Poll(context.Background(), a)
	if res.Err != nil || len(srv.Messages()) != 0 {
		t.Fatalf("second Poll = %+v, server %d", res, len(srv.Messages()))
	}
	if uidl.Careful(j) {
		t.Error("a careful poll that got through kept the careful mark")
	}
}
