package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestCipherReadAhead: under TLS the TCP connection is read through
// cipherConn's buffer, so that records waiting on the socket are taken
// several at a time: 128 KiB sent in records of 8 KiB (as Dovecot writes
// them) take a few reads of the socket, not one (and often a wait for the
// poller) per record, as crypto/tls alone reads them.
func TestCipherReadAhead(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const record, records = 8 << 10, 16
	sent := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sent <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, serverTLS)
		chunk := make([]byte, record)
		for i := 0; i < records && err == nil; i++ {
			_, err = tc.Write(chunk) // one record each
		}
		sent <- err
		io.Copy(io.Discard, tc) // until the client closes
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tc, cc, err := handshake(context.Background(), raw, Options{Host: "localhost", RootCAs: pool, Timeout: tlsTimeout})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	// Every record is on the socket (a loopback write is queued at the
	// receiver when it returns): the reads from here take them.
	before := cc.reads
	if _, err := io.ReadFull(tc, make([]byte, record*records)); err != nil {
		t.Fatal(err)
	}
	if n := cc.reads - before; n > 4 {
		t.Fatalf("%d reads of the socket for %d records of %d bytes; want at most 4", n, records, record)
	}
}

// TestCipherSession: a session under TLS, read through cipherConn, keeps
// the guarantees of a plain one: a server that stalls part-way through a
// reply is cut by the deadline (SetDeadline reaches the socket under the
// buffer), one that sends a reply a byte at a time (a record each) is
// read in full, and one that sends more after QUIT's reply, in the same
// write (the surplus then sits in the buffer, not on the socket), is
// caught. Implicit TLS and STLS alike.
func TestCipherSession(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t)
	for _, mode := range []TLSMode{TLSImplicit, TLSStartTLS} {
		for _, tt := range []struct {
			name    string
			fault   pop3test.Fault
			retrErr bool  // ReadRetr fails (by the deadline)
			quitErr error // of ReadQuit
		}{
			{name: "in step"},
			{name: "RETR stalls", fault: pop3test.Fault{Cmd: "RETR", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
				c.WriteLine("+OK message follows")
				c.Write([]byte("Subject: half"))
				c.Hang()
			}}, retrErr: true},
			{name: "RETR a byte per record", fault: pop3test.Fault{Cmd: "RETR", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
				for _, b := range []byte("+OK\r\n" + string(msg(1).Data[:len(msg(1).Data)-len(".dotted line\r\n")]) + ".\r\n") {
					c.Write([]byte{b})
				}
			}}},
			{name: "surplus after QUIT", fault: pop3test.Fault{Cmd: "QUIT", Action: pop3test.Append, Reply: "+OK stray"}, quitErr: ErrSurplus},
		} {
			t.Run(string(mode)+"/"+tt.name, func(t *testing.T) {
				m := msgs(1)
				srv := pop3test.NewServer(t, pop3test.Options{TLS: serverTLS, Implicit: mode == TLSImplicit, STLS: mode == TLSStartTLS,
					Messages: m, Faults: []pop3test.Fault{tt.fault}})
				timeout := tlsTimeout
				if tt.retrErr {
					timeout = 2 * time.Second
				}
				c, err := Dial(context.Background(), Options{Host: "localhost", Port: srv.Port(), TLS: mode, RootCAs: pool, Timeout: timeout})
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
				if err := c.SendRetr(1); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				raw, err := c.ReadRetr(list[0])
				if tt.retrErr {
					if err == nil {
						t.Fatalf("ReadRetr of a stalled reply = %q; want an error", raw)
					}
					if d := time.Since(start); d > timeout+3*time.Second {
						t.Fatalf("ReadRetr of a stalled reply took %v; the deadline is %v", d, timeout)
					}
					return
				}
				if err != nil || !strings.Contains(string(raw), "body 1") {
					t.Fatalf("ReadRetr = %q, %v\n%s", raw, err, srv.Transcript())
				}
				if err := c.SendQuit(); err != nil {
					t.Fatal(err)
				}
				if err := c.ReadQuit(); tt.quitErr == nil && err != nil || tt.quitErr != nil && !errors.Is(err, tt.quitErr) {
					t.Fatalf("ReadQuit = %v; want %v\n%s", err, tt.quitErr, srv.Transcript())
				}
			})
		}
	}
}
