package fetch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestPollRoundTrips counts the round trips of whole sessions (the server's
// turns, pop3test.Server.Turns) against a server with PIPELINING: CAPA,
// then USER and PASS in one write, then the CAPA after login with STAT,
// UIDL and LIST, then the round of RETRs; in keep mode QUIT goes with that
// round, in delete mode with the round of DELEs after it. Where QUIT may
// not go early (EXPIRE 0, which may expire what a failed delivery still
// needs; a server without PIPELINING) the session is as before, and the
// QUIT reply is always read (the server's UPDATE must be over when the
// poll is).
func TestPollRoundTrips(t *testing.T) {
	const n = 20
	noPipe := []string{"USER", "UIDL", "TOP", "RESP-CODES"}
	for _, tt := range []struct {
		name  string
		keep  bool
		capa  []string
		turns int
		// lastWrite is the commands of the session's last write, at its
		// end (one ending in a space: any with that prefix); empty to skip.
		lastWrite []string
	}{
		{name: "keep", keep: true, turns: 4, lastWrite: []string{"RETR 20", "LIST 20", "QUIT"}},
		{name: "delete", turns: 5, lastWrite: []string{"DELE ", "STAT", "QUIT"}},
		{name: "keep EXPIRE 0", keep: true, capa: []string{"USER", "UIDL", "PIPELINING", "EXPIRE 0"}, turns: 5},
		{name: "keep without PIPELINING", keep: true, capa: noPipe, turns: 7 + 2*n + 1},
		{name: "delete without PIPELINING", capa: noPipe, turns: 7 + 3*n + 1 + 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(n), Capa: tt.capa})
			a := testAccount(t, srv)
			a.Keep = tt.keep
			res := poller(&recorder{}).Poll(context.Background(), a)
			deleted := n
			if tt.keep {
				deleted = 0
			}
			if res.Err != nil || res.Delivered != n || res.Deleted != deleted {
				t.Fatalf("Poll = %+v", res)
			}
			cmds := srv.Settled()
			if got := srv.Turns(); got != tt.turns {
				t.Errorf("%d round trips; want %d\n%s", got, tt.turns, srv.Transcript())
			}
			if cmds[len(cmds)-1] != "QUIT" || len(srv.Messages()) != n-deleted {
				t.Errorf("commands end %q, %d messages left; want QUIT, %d", cmds[max(0, len(cmds)-3):], len(srv.Messages()), n-deleted)
			}
			match := func(cmd, want string) bool {
				return cmd == want || strings.HasSuffix(want, " ") && strings.HasPrefix(cmd, want)
			}
			if k := len(tt.lastWrite); k > 0 && !slices.EqualFunc(cmds[len(cmds)-k:], tt.lastWrite, match) {
				t.Errorf("commands end %q; want %q", cmds[len(cmds)-k:], tt.lastWrite)
			}
		})
	}
}

// TestPollPipeliningWithdrawn: a server that announces PIPELINING before
// login and not after it breaks RFC 2449 (§5: what is announced before
// login is announced after it too; §6.6: PIPELINING does not differ
// between the states), and still gets its session: the CAPA after login
// goes out with STAT, UIDL and LIST, as for any server that announced
// PIPELINING before login, and from its reply on nothing more is
// pipelined. The Poller then trusts that server no more: its next session
// waits for the CAPA's reply before the listing.
func TestPollPipeliningWithdrawn(t *testing.T) {
	capaReply := func(tags ...string) string { return "+OK\r\n" + strings.Join(tags, "\r\n") + "\r\n." }
	before := capaReply("USER", "UIDL", "PIPELINING")
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3), Capa: []string{"USER", "UIDL"},
		Faults: []pop3test.Fault{{Cmd: "CAPA", N: 1, Reply: before}}})
	a := testAccount(t, srv)
	a.Keep, a.FetchAll = true, true
	p := poller(&recorder{})
	for i, want := range []struct{ turns int }{
		// greeting, CAPA, USER+PASS, CAPA+listing, then RETR and
		// LIST one at a time.
		{turns: 4 + 2*3},
		// The CAPA after login on its own, then STAT, UIDL and
		// LIST one at a time, as its reply says.
		{turns: 7 + 2*3},
	} {
		turns := srv.Turns()
		if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != 3 {
			t.Fatalf("poll %d = %+v", i+1, res)
		}
		srv.Settled()
		if got := srv.Turns() - turns; got != want.turns {
			t.Errorf("poll %d: %d round trips; want %d\n%s", i+1, got, want.turns, srv.Transcript())
		}
	}
}

// TestPollTrustKept: a session that ends in step with QUIT sent early
// leaves the Poller's trust in the server's PIPELINING as it was: the
// next poll sends the CAPA after login with the listing again. A server
// that hangs up after QUIT's reply (as every server does) breaks nothing.
func TestPollTrustKept(t *testing.T) {
	for _, keep := range []bool{true, false} {
		srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3)})
		a := testAccount(t, srv)
		a.Keep, a.FetchAll = keep, true
		p := poller(&recorder{})
		var turns []int
		for i := 0; i < 2; i++ {
			if i == 1 && !keep {
				more := msgs(6)[3:]
				srv.SetMessages(more)
			}
			before := srv.Turns()
			if res := p.Poll(context.Background(), a); res.Err != nil || res.Delivered != 3 {
				t.Fatalf("keep %v: poll %d = %+v", keep, i+1, res)
			}
			srv.Settled()
			turns = append(turns, srv.Turns()-before)
		}
		if turns[0] != turns[1] {
			t.Errorf("keep %v: round trips %v; want the second poll's equal to the first's (trust kept)\n%s", keep, turns, srv.Transcript())
		}
	}
}

// TestPollQuitEarlyKeep: in keep mode QUIT goes with the last round of
// RETRs, and the deliveries go on after it. A delivery that fails then is
// still counted and reported, its message stays on the server, is not
// recorded, and the next poll delivers it; a RETR refused in that round
// fails the poll and loses nothing (the messages read before it are not
// delivered: the round did not end in step).
func TestPollQuitEarlyKeep(t *testing.T) {
	for _, tt := range []struct {
		name   string
		faults []pop3test.Fault
		fail   string // UID whose first delivery fails
		err    bool   // the first poll fails
	}{
		{name: "delivery fails after QUIT", fail: msgs(3)[2].UID},
		{name: "RETR refused in the last round", faults: []pop3test.Fault{{Cmd: "RETR", N: 2, Session: 1, Reply: "-ERR gone"}}, err: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3), Faults: tt.faults})
			a := testAccount(t, srv)
			a.Keep = true
			failed := false
			r := &recorder{fail: func(uid string) error {
				if uid == tt.fail && !failed {
					failed = true
					return errors.New("mda says no")
				}
				return nil
			}}
			p := poller(r)
			res := p.Poll(context.Background(), a)
			if tt.err != (res.Err != nil) {
				t.Fatalf("poll 1 = %+v (err %v); want err %v", res, res.Err, tt.err)
			}
			if tt.fail != "" && (res.Failed != 1 || res.Delivered != 2) {
				t.Fatalf("poll 1 = %+v; want 1 failed, 2 delivered", res)
			}
			cmds := srv.Settled()
			// A round that broke off ends the session at once: the
			// client does not wait for the replies still coming, and
			// the server, whose write of RETR 3's reply then fails, may
			// never read the QUIT the round carried. Keep mode deletes
			// nothing either way.
			if !tt.err && cmds[len(cmds)-1] != "QUIT" || len(srv.Messages()) != 3 {
				t.Fatalf("poll 1: commands end %q, %d messages on the server; want QUIT, 3", cmds[max(0, len(cmds)-3):], len(srv.Messages()))
			}
			res = p.Poll(context.Background(), a)
			srv.Settled()
			if res.Err != nil || len(srv.Messages()) != 3 {
				t.Fatalf("poll 2 = %+v, %d on the server; want no error, 3 kept", res, len(srv.Messages()))
			}
			got := map[string]int{}
			for _, u := range r.got {
				got[u]++
			}
			for _, m := range msgs(3) {
				if got[m.UID] != 1 {
					t.Errorf("%s delivered %d times; want once (%v)", m.UID, got[m.UID], r.got)
				}
			}
		})
	}
}
