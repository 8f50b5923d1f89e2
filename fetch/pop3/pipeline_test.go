package pop3

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// writes runs f and returns the writes of commands it made.
func writes(c *Conn, f func()) int {
	n := c.g.writes
	f()
	return c.g.writes - n
}

// TestPipelinedRoundOneWrite: with PIPELINING, Listing's STAT, UIDL and
// LIST go out in one write, and so does a round of 256 commands (each
// RETR with its LIST, as package fetch sends them); without it, each
// command waits for the reply before.
func TestPipelinedRoundOneWrite(t *testing.T) {
	for _, tt := range []struct {
		name        string
		capa        []string
		listWrites  int
		roundWrites int
	}{
		{"pipelining", []string{"USER", "UIDL", "PIPELINING"}, 1, 1},
		{"without pipelining", []string{"USER", "UIDL"}, 3, 256},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(128), Capa: tt.capa, CheckPipelining: tt.listWrites == 1})
			c, err := Dial(context.Background(), plainOptions(srv))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Login("user", "pass"); err != nil {
				t.Fatal(err)
			}
			var list []Entry
			if n := writes(c, func() { _, list, err = c.Listing() }); err != nil || n != tt.listWrites || len(list) != 128 {
				t.Fatalf("Listing = %d entries, %v, in %d writes; want 128 in %d", len(list), err, n, tt.listWrites)
			}
			pipelined := c.Pipelining()
			n := writes(c, func() {
				for _, e := range list {
					if err = c.SendRetr(e.Num); err == nil {
						if !pipelined {
							_, err = c.ReadRetrTo(e, io.Discard)
						}
						if err == nil {
							err = c.SendList(e.Num)
						}
						if err == nil && !pipelined {
							_, err = c.ReadListOf(e)
						}
					}
					if err != nil {
						return
					}
				}
				for _, e := range list {
					if !pipelined {
						break
					}
					if _, err = c.ReadRetrTo(e, io.Discard); err == nil {
						_, err = c.ReadListOf(e)
					}
					if err != nil {
						return
					}
				}
			})
			if err != nil || n != tt.roundWrites {
				t.Fatalf("a round of 256 commands: %v, in %d writes; want %d", err, n, tt.roundWrites)
			}
			if pipelined && srv.Pipelined() < 255 {
				t.Fatalf("the server saw %d commands pipelined", srv.Pipelined())
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCommandsHeldBackAreBounded: commands held back go out once sendBuf
// bytes of them are waiting, without a reply being read.
func TestCommandsHeldBackAreBounded(t *testing.T) {
	sc := &scriptConn{r: strings.NewReader("")}
	c := scripted(t, sc, 5*time.Second)
	for i := 1; sc.writes == 0; i++ {
		if i > sendBuf {
			t.Fatalf("%d commands held back and none sent", i)
		}
		if err := c.SendDele(i); err != nil {
			t.Fatal(err)
		}
	}
	if n := sc.written.Len(); n < sendBuf || n > sendBuf+32 {
		t.Fatalf("first write of %d bytes; want about %d", n, sendBuf)
	}
}

// TestWriteDeadline: commands held back are sent by the Conn's timeout; a
// server that takes none of them ends the session, the error names the
// first command, and nothing more is sent.
func TestWriteDeadline(t *testing.T) {
	client, server := net.Pipe() // nobody reads server: writes block
	defer server.Close()
	c := scripted(t, client, 200*time.Millisecond)
	defer c.Close()
	c.SendRetr(1)
	c.SendList(1)
	start := time.Now()
	_, err := c.ReadRetrTo(Entry{Num: 1, UID: "u", Size: 5}, io.Discard)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !strings.HasPrefix(err.Error(), "RETR: ") || c.Broken() == nil {
		t.Fatalf("ReadRetrTo = %v (broken %v); want a write timeout naming RETR that ends the session", err, c.Broken())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the write took %v", d)
	}
	if err := c.SendDele(1); err == nil || len(c.g.out) != 0 {
		t.Fatalf("SendDele after the session ended = %v, %d bytes held back", err, len(c.g.out))
	}
}

// TestCapaAfterLoginPipelined: with Options.TrustPipelining and PIPELINING
// announced before login, the CAPA after login goes out with Listing's
// STAT, UIDL and LIST in one write, and its reply counts as it does read
// on its own: EXPIRE 0 from either reply sticks, PIPELINING and
// LOGIN-DELAY are the reply's, a -ERR keeps what was said before. Asked
// for before Listing, the capabilities are read then, on their own; and
// without PIPELINING before login, or without the option, at login.
func TestCapaAfterLoginPipelined(t *testing.T) {
	capaReply := func(tags ...string) string { return "+OK\r\n" + strings.Join(tags, "\r\n") + "\r\n." }
	for _, tt := range []struct {
		name        string
		trust       bool
		capa        []string         // the reply after login
		before      []pop3test.Fault // the reply before login
		early       bool             // LoginDelay asked for before Listing
		loginWrites int              // USER and PASS, in one write with PIPELINING before login (and CAPA)
		listWrites  int
		expire0     bool
		loginDelay  time.Duration
	}{
		{name: "in one write", trust: true, capa: []string{"USER", "UIDL", "PIPELINING", "LOGIN-DELAY 900", "EXPIRE 0"},
			before:      []pop3test.Fault{{Cmd: "CAPA", N: 1, Reply: capaReply("USER", "UIDL", "PIPELINING")}},
			loginWrites: 1, listWrites: 1, expire0: true, loginDelay: 900 * time.Second},
		{name: "EXPIRE 0 before login sticks", trust: true, capa: []string{"USER", "UIDL", "PIPELINING"},
			before:      []pop3test.Fault{{Cmd: "CAPA", N: 1, Reply: capaReply("USER", "UIDL", "PIPELINING", "EXPIRE 0")}},
			loginWrites: 1, listWrites: 1, expire0: true},
		{name: "refused after login", trust: true, capa: []string{"USER", "UIDL", "PIPELINING"},
			before:      []pop3test.Fault{{Cmd: "CAPA", N: 1, Reply: capaReply("USER", "UIDL", "PIPELINING", "LOGIN-DELAY 60")}, {Cmd: "CAPA", N: 2, Reply: "-ERR not now"}},
			loginWrites: 1, listWrites: 1, loginDelay: time.Minute},
		{name: "asked for before Listing", trust: true, early: true, capa: []string{"USER", "UIDL", "PIPELINING", "LOGIN-DELAY 900"},
			loginWrites: 1 + 1, listWrites: 1, loginDelay: 900 * time.Second},
		{name: "no PIPELINING before login", trust: true, capa: []string{"USER", "UIDL", "PIPELINING", "EXPIRE 0"},
			before:      []pop3test.Fault{{Cmd: "CAPA", N: 1, Reply: capaReply("USER", "UIDL")}},
			loginWrites: 3, listWrites: 1, expire0: true},
		{name: "without the option", capa: []string{"USER", "UIDL", "PIPELINING", "EXPIRE 0"},
			loginWrites: 2, listWrites: 1, expire0: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3), Capa: tt.capa, Faults: tt.before, CheckPipelining: true})
			o := plainOptions(srv)
			o.TrustPipelining = tt.trust
			c, err := Dial(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var d time.Duration
			n := writes(c, func() {
				if err = c.Login("user", "pass"); err == nil && tt.early {
					d = c.LoginDelay()
				}
			})
			if err != nil || n != tt.loginWrites {
				t.Fatalf("Login: %v, %d writes; want %d", err, n, tt.loginWrites)
			}
			var list []Entry
			if n := writes(c, func() { _, list, err = c.Listing() }); err != nil || n != tt.listWrites || len(list) != 3 {
				t.Fatalf("Listing = %d entries, %v, in %d writes; want 3 in %d", len(list), err, n, tt.listWrites)
			}
			if !tt.early {
				d = c.LoginDelay()
			}
			if c.Expire0() != tt.expire0 || d != tt.loginDelay || !c.Pipelining() {
				t.Fatalf("after Listing: Expire0 %v, LoginDelay %v, Pipelining %v; want %v, %v, true", c.Expire0(), d, c.Pipelining(), tt.expire0, tt.loginDelay)
			}
			cmds := srv.Commands()
			if i := slices.Index(cmds, "PASS pass"); i < 0 || !slices.Equal(cmds[i+1:], []string{"CAPA", "STAT", "UIDL", "LIST"}) {
				t.Fatalf("commands %q; want CAPA, STAT, UIDL, LIST after PASS", cmds)
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// oneByteNet hands out one byte of a real connection per Read.
type oneByteNet struct{ net.Conn }

func (c oneByteNet) Read(p []byte) (int, error) { return c.Conn.Read(p[:min(len(p), 1)]) }

// TestReadRetrToSurplus: whatever follows a RETR reply when no other reply
// is due, a line or part of one, in popfetch's reader or still on the
// socket, ends the session with ErrSurplus; after a -ERR to RETR too.
func TestReadRetrToSurplus(t *testing.T) {
	for _, tt := range []struct {
		name, reply string
		want        error
	}{
		{"a stray line", "+OK\r\na\r\n.\r\n+OK stray\r\n", ErrSurplus},
		{"part of a line", "+OK\r\na\r\n.\r\n+", ErrSurplus},
		{"the reply sent twice", "+OK\r\na\r\n.\r\n+OK\r\na\r\n.\r\n", ErrSurplus},
		{"a stray line after -ERR", "-ERR no\r\n+OK stray\r\n", ErrSurplus},
		{"nothing", "+OK\r\na\r\n.\r\n", nil},
	} {
		for _, oneByte := range []bool{false, true} {
			name := tt.name
			if oneByte {
				name += ", one byte per read"
			}
			t.Run(name, func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				go func() {
					s, err := ln.Accept()
					if err != nil {
						return
					}
					defer s.Close()
					// The reply and what follows it in one write,
					// once RETR has come.
					if _, err := bufio.NewReader(s).ReadString('\n'); err != nil {
						return
					}
					io.WriteString(s, tt.reply)
					io.Copy(io.Discard, s) // until the client closes
				}()
				raw, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				var nc net.Conn = raw
				if oneByte {
					nc = oneByteNet{raw}
				}
				c := scriptedGuard(t, newGuard(nc, raw, []byte("+OK hi\r\n")), 5*time.Second)
				defer c.Close()
				if err := c.SendRetr(1); err != nil {
					t.Fatal(err)
				}
				_, err = c.ReadRetrTo(Entry{Num: 1, UID: "u", Size: 3}, io.Discard)
				if tt.want == nil && err != nil || tt.want != nil && (!errors.Is(err, tt.want) || !strings.Contains(err.Error(), "after the reply to RETR")) {
					t.Fatalf("ReadRetrTo = %v; want %v after the reply to RETR", err, tt.want)
				}
			})
		}
	}
}
