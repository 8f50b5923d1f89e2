package fetch

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestPollDeleRefusedAcrossPolls: a server that refuses DELE of one
// message on every poll. Each poll is a new Poller (a one-shot `popfetch
// fetch` from cron), so the count lives in the journal. The first
// refusals are warnings; the third in a row is an Error and counts in
// Result.Undeletable; from then on DELE is not sent again until a day has
// passed or the poll asks to retry (SIGHUP, `popfetch now`, a config
// change), and the message still counts as undeletable. Once the server
// accepts, it is deleted and the count ends.
func TestPollDeleRefusedAcrossPolls(t *testing.T) {
	var faults []pop3test.Fault
	for sess := 1; sess <= 7; sess++ {
		faults = append(faults, pop3test.Fault{Cmd: "DELE", N: 1, Session: sess, Action: pop3test.Reply, Reply: "-ERR [SYS/PERM] cannot delete"})
	}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1), Faults: faults})
	a := testAccount(t, srv)
	rec := &recorder{}
	now := time.Unix(1_700_000_000, 0)
	steps := []struct {
		advance     time.Duration
		retry       bool
		wantDele    bool // DELE 1 sent in this poll
		undeletable int
		level       string // the refusal's log level, "" if none
	}{
		{0, false, true, 0, "WARN"},
		{time.Hour, false, true, 0, "WARN"},
		{time.Hour, false, true, 1, "ERROR"},
		{time.Hour, false, false, 1, ""},
		{deleRetryAfter + time.Hour, false, true, 1, "ERROR"},
		{time.Minute, true, true, 1, "ERROR"},
		{time.Minute, false, false, 1, ""},
		{time.Minute, true, true, 0, ""}, // session 8: the server accepts
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		var logs logCapture
		p := poller(rec)
		p.Log = logs.logger()
		p.Now = func() time.Time { return now }
		before := len(srv.Commands())
		res := p.PollWith(context.Background(), a, PollOptions{RetryDele: st.retry})
		if res.Err != nil {
			t.Fatalf("poll %d: %v", i+1, res.Err)
		}
		sent, retr := 0, 0
		for _, c := range srv.Commands()[before:] {
			switch c {
			case "DELE 1":
				sent++
			case "RETR 1":
				retr++
			}
		}
		if (sent == 1) != st.wantDele || sent > 1 {
			t.Errorf("poll %d: DELE 1 sent %d times; want sent = %v", i+1, sent, st.wantDele)
		}
		if !st.wantDele && retr > 0 {
			// The identity check before a DELE retrieves the
			// message; with no DELE to send it is not checked.
			t.Errorf("poll %d: RETR 1 sent for a DELE that is not asked for", i+1)
		}
		if res.Undeletable != st.undeletable {
			t.Errorf("poll %d: Undeletable = %d; want %d", i+1, res.Undeletable, st.undeletable)
		}
		refusal := logs.lines("uid=uid-0001", "refused")
		// The message's audit line (on_server=dele_refused, at Info)
		// records the refusal too; the warning is the one counted.
		refusal = slices.DeleteFunc(refusal, func(l string) bool { return strings.Contains(l, `msg="message delivered"`) })
		switch {
		case st.level == "" && len(refusal) > 0:
			t.Errorf("poll %d: refusal logged: %q", i+1, refusal)
		case st.level != "" && (len(refusal) != 1 || !strings.Contains(refusal[0], "level="+st.level)):
			t.Errorf("poll %d: refusal log %q; want one line at %s", i+1, refusal, st.level)
		}
	}
	if left := srv.Messages(); len(left) != 0 {
		t.Errorf("server still has %v", uidsOn(srv))
	}
	if len(rec.got) != 1 {
		t.Errorf("deliveries %v; want one", rec.got)
	}
}

// With fetch_all a recorded message is fetched again on every poll; a DELE
// the server kept refusing is not sent again for it either.
func TestPollDeleRefusedFetchAll(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1),
		Faults: []pop3test.Fault{{Cmd: "DELE", Action: pop3test.Reply, Reply: "-ERR cannot delete"}}})
	a := testAccount(t, srv)
	a.FetchAll = true
	for i, want := range []int{1, 1, 1, 0, 0} {
		before := len(srv.Commands())
		res := poller(&recorder{}).Poll(context.Background(), a)
		if res.Err != nil {
			t.Fatalf("poll %d: %v", i+1, res.Err)
		}
		sent := 0
		for _, c := range srv.Commands()[before:] {
			if strings.HasPrefix(c, "DELE") {
				sent++
			}
		}
		if sent != want {
			t.Errorf("poll %d: %d DELE sent; want %d", i+1, sent, want)
		}
		if wantU := min(1, i/2); res.Undeletable != wantU {
			t.Errorf("poll %d: Undeletable = %d; want %d", i+1, res.Undeletable, wantU)
		}
	}
}
