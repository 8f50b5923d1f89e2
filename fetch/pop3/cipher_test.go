package pop3

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"

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
