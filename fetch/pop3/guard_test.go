package pop3

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// guardPair returns a guardConn on a loopback connection, plain or TLS, and
// the server's end of it.
func guardPair(t *testing.T, useTLS bool) (*guardConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, serverTLS, pool := pop3test.GenerateCert(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		if useTLS {
			tc := tls.Server(c, serverTLS)
			if tc.Handshake() != nil {
				accepted <- nil
				return
			}
			c = tc
		}
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var c net.Conn = raw
	if useTLS {
		tc := tls.Client(raw, &tls.Config{ServerName: "localhost", RootCAs: pool})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c = tc
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("server side failed")
	}
	t.Cleanup(func() { c.Close(); srv.Close() })
	return newGuard(c, raw, nil), srv
}

// waiting sees bytes the server sent when none was asked for: on the
// socket, or (TLS) already decrypted and kept by crypto/tls; but not TLS
// session tickets, which TLS 1.3 servers send after the handshake.
func TestGuardWaiting(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			g, srv := guardPair(t, useTLS)
			// Nothing sent (under TLS: perhaps tickets): nothing waiting,
			// however long one looks.
			for range 5 {
				if g.waiting() {
					t.Fatal("waiting() = true before the server sent anything")
				}
				time.Sleep(10 * time.Millisecond)
			}
			srv.Write([]byte("+OK stray\r\n"))
			if !pop3test.Eventually(g.waiting) {
				t.Fatal("waiting() = false after the server sent a line")
			}
		})
	}
	t.Run("tls buffered", func(t *testing.T) {
		g, srv := guardPair(t, true)
		srv.Write([]byte("+OK reply\r\n+OK stray\r\n")) // one record
		g.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [11]byte
		if n, err := g.Conn.Read(b[:]); n != len(b) || err != nil {
			t.Fatalf("Read = %d, %v", n, err)
		}
		// The stray line is inside crypto/tls now, not on the socket.
		if !g.waiting() {
			t.Fatal("waiting() = false with a line kept by crypto/tls")
		}
	})
}
