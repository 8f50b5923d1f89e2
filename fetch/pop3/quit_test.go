package pop3

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestLoginPipelined: with PIPELINING before login, USER and PASS go out in
// one write (RFC 2449 §6.6), and both replies are read, in order, whatever
// they say: a refused USER is the error (classified as a refused login
// always is), a refused PASS too, and a server that accepts PASS after
// refusing USER is out of step. Without PIPELINING each waits for the
// reply before it (the server checks: CheckPipelining).
func TestLoginPipelined(t *testing.T) {
	noPipe := []string{"USER", "UIDL", "TOP", "RESP-CODES"}
	for _, tt := range []struct {
		name   string
		capa   []string
		faults []pop3test.Fault
		pass   string
		writes int
		want   error // nil: logged in
		closed bool  // the server hangs up after its reply
	}{
		{name: "one write", pass: "pass", writes: 2}, // and the CAPA after login
		{name: "wrong password", pass: "wrong", writes: 1, want: ErrAuth},
		{name: "USER refused", pass: "pass", writes: 1, want: ErrAuth,
			faults: []pop3test.Fault{{Cmd: "USER", Reply: "-ERR [AUTH] no such user"}, {Cmd: "PASS", Reply: "-ERR no USER"}}},
		{name: "USER refused, PASS accepted", pass: "pass", writes: 1, want: ErrMismatch,
			faults: []pop3test.Fault{{Cmd: "USER", Reply: "-ERR [AUTH] no such user"}, {Cmd: "PASS", Reply: "+OK welcome"}}},
		{name: "in use", pass: "pass", writes: 1, want: ErrInUse,
			faults: []pop3test.Fault{{Cmd: "PASS", Reply: "-ERR [IN-USE] locked"}}},
		{name: "without PIPELINING", capa: noPipe, pass: "pass", writes: 3}, // USER, PASS, CAPA
		// A server that refuses USER and hangs up (as after too many
		// failures) never answers PASS: the refusal is the error, as
		// without pipelining, not the connection's end.
		{name: "USER refused, then closed", pass: "pass", writes: 1, want: ErrAuth, closed: true,
			faults: []pop3test.Fault{{Cmd: "USER", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
				c.WriteLine("-ERR [AUTH] no such user")
				c.Close()
			}}}},
		{name: "USER refused, then closed, no code", pass: "pass", writes: 1, want: ErrLoginRefused, closed: true,
			faults: []pop3test.Fault{{Cmd: "USER", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
				c.WriteLine("-ERR no such user")
				c.Close()
			}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1), Capa: tt.capa, Faults: tt.faults, CheckPipelining: true})
			c, err := Dial(context.Background(), plainOptions(srv))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			n := writes(c, func() { err = c.Login("user", tt.pass) })
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) || n != tt.writes {
				t.Fatalf("Login = %v in %d writes; want %v in %d\n%s", err, n, tt.want, tt.writes, srv.Transcript())
			}
			if !tt.closed && (tt.want == nil || !errors.Is(tt.want, ErrMismatch)) {
				// In step: the session goes on (a refused login may
				// try again; RFC 1939 §7).
				if _, _, err := c.Listing(); tt.want == nil && err != nil {
					t.Fatalf("Listing after Login: %v", err)
				}
				if c.Broken() != nil {
					t.Fatalf("session broken after Login: %v", c.Broken())
				}
			}
		})
	}
}

// TestSendQuit: QUIT sent with SendQuit goes out in the same write as the
// commands before it; its reply is read in order by ReadQuit, and a Quit
// after it sends nothing and returns the same result. Nothing can be sent
// after it. Anything the server sends after QUIT's reply is surplus.
func TestSendQuit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		faults []pop3test.Fault
		want   error // of ReadQuit and Quit
	}{
		{name: "in step"},
		{name: "QUIT refused", faults: []pop3test.Fault{{Cmd: "QUIT", Reply: "-ERR some messages not removed"}}, want: &RespError{}},
		{name: "surplus after QUIT", faults: []pop3test.Fault{{Cmd: "QUIT", Action: pop3test.Append, Reply: "+OK stray"}}, want: ErrSurplus},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2), Faults: tt.faults})
			c, err := Dial(context.Background(), plainOptions(srv))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Login("user", "pass"); err != nil {
				t.Fatal(err)
			}
			_, list, err := c.Listing()
			if err != nil {
				t.Fatal(err)
			}
			n := writes(c, func() {
				if err = c.SendRetr(1); err == nil {
					if err = c.SendQuit(); err == nil {
						_, err = c.ReadRetr(list[0])
					}
				}
			})
			if err != nil || n != 1 {
				t.Fatalf("RETR and QUIT: %v in %d writes; want 1", err, n)
			}
			if err := c.SendDele(1); !errors.Is(err, errQuitSent) {
				t.Fatalf("SendDele after SendQuit = %v; want errQuitSent", err)
			}
			check := func(what string, err error) {
				t.Helper()
				var re *RespError
				switch w := tt.want.(type) {
				case nil:
					if err != nil {
						t.Fatalf("%s = %v; want nil", what, err)
					}
				case *RespError:
					if !errors.As(err, &re) {
						t.Fatalf("%s = %v; want a -ERR", what, err)
					}
				default:
					if !errors.Is(err, w) {
						t.Fatalf("%s = %v; want %v", what, err, w)
					}
				}
			}
			check("ReadQuit", c.ReadQuit())
			check("Quit", c.Quit())
			if cmds := srv.Settled(); !slices.Equal(cmds[len(cmds)-2:], []string{"RETR 1", "QUIT"}) || slices.Contains(cmds, "DELE 1") {
				t.Fatalf("commands %q; want RETR 1, QUIT at the end and no DELE", cmds)
			}
		})
	}
}

// TestLoginPipelinedCleartext: USER and PASS go out in one write only
// where a PASS after a refused USER tells nothing to anyone but the
// server: over TLS or to a loopback peer, and to a server whose CAPA
// lists USER (RFC 2449 §6.8). Dovecot, by default, refuses USER on a
// connection without TLS ("-ERR [AUTH] Plaintext authentication
// disallowed on non-secure (SSL/TLS) connections.") and leaves USER out
// of its CAPA there: the password sent with that USER would cross the
// network in the clear, which a login one command at a time never does.
func TestLoginPipelinedCleartext(t *testing.T) {
	refuse := []pop3test.Fault{{Cmd: "USER", Reply: "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."}}
	for _, tt := range []struct {
		name   string
		capa   []string
		remote bool // the peer is not on loopback
	}{
		{name: "remote peer without TLS", remote: true},
		{name: "CAPA without USER", capa: []string{"UIDL", "TOP", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.remote {
				old := peerLoopback
				peerLoopback = func(net.Addr) bool { return false }
				t.Cleanup(func() { peerLoopback = old })
			}
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(1), Capa: tt.capa, Faults: refuse})
			c, err := Dial(context.Background(), plainOptions(srv))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Login("user", "pass"); !errors.Is(err, ErrAuth) {
				t.Fatalf("Login = %v; want ErrAuth", err)
			}
			c.Close()
			srv.Settled()
			if cmds := srv.Commands(); slices.ContainsFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "PASS") }) {
				t.Fatalf("PASS sent after a refused USER: %q\n%s", cmds, srv.Transcript())
			}
		})
	}
}
