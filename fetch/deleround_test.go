package fetch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestPollDelesInOneRound: once every RETR is sent, the DELEs of the
// messages still being delivered wait for those deliveries and go out in
// one round, rather than one round (one round trip) per batch that
// becomes durable meanwhile.
func TestPollDelesInOneRound(t *testing.T) {
	const n = 200
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(n)})
	a := testAccount(t, srv)
	rec := &recorder{fail: func(uid string) error {
		// Deliveries that end over a while, as fsyncs do.
		time.Sleep(time.Duration(len(uid)%7) * time.Millisecond)
		return nil
	}}
	if res := poller(rec).Poll(context.Background(), a); res.Err != nil || res.Delivered != n || res.Deleted != n {
		t.Fatalf("Poll = %+v", res)
	}
	cmds := srv.Settled()
	last := 0
	for i, c := range cmds {
		if strings.HasPrefix(c, "RETR ") {
			last = i
		}
	}
	rounds := 0
	for _, c := range cmds[last:] {
		if c == "STAT" { // a round of DELEs ends with STAT
			rounds++
		}
	}
	if rounds != 1 {
		t.Errorf("%d rounds of DELEs after the last RETR; want 1: %q", rounds, cmds[last:])
	}
}
