package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// benchMessage is a message of about size bytes in the shape of mail:
// header fields, then 72-character lines with CRLF, one in ten starting
// with a dot (dot-stuffed on the wire).
func benchMessage(i, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: a@example.com\r\nTo: b@example.org\r\nSubject: message %d\r\nMessage-ID: <%d@example.com>\r\n\r\n", i, i)
	line := strings.Repeat("abcdefghij", 7) + "xy\r\n"
	for n := 0; b.Len() < size; n++ {
		if n%10 == 9 {
			b.WriteString("." + line[1:])
			continue
		}
		b.WriteString(line)
	}
	return b.Bytes()
}

// benchServer serves RETR from msgs over loopback, the replies built once,
// so that the server side allocates nothing per message: what the
// benchmark's allocs/op count is the client's. Anything but RETR n gets
// -ERR (CAPA included: Dial then keeps no capabilities).
func benchServer(b *testing.B, msgs [][]byte) (*Conn, []Entry) {
	return benchServerTLS(b, msgs, false)
}

// benchRecord is the TLS record size of benchServerTLS: Dovecot's writes.
const benchRecord = 8 << 10

// benchServerTLS is benchServer, over implicit TLS if secure, with the
// replies written in records of benchRecord bytes, as Dovecot writes them.
func benchServerTLS(b *testing.B, msgs [][]byte, secure bool) (*Conn, []Entry) {
	b.Helper()
	var serverTLS *tls.Config
	var pool *x509.CertPool
	if secure {
		_, serverTLS, pool = pop3test.GenerateCert(b)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	replies := make([][]byte, len(msgs))
	list := make([]Entry, len(msgs))
	for i, m := range msgs {
		var r bytes.Buffer
		fmt.Fprintf(&r, "+OK %d octets\r\n", len(m))
		for _, l := range bytes.SplitAfter(m, []byte("\n")) {
			if len(l) > 0 && l[0] == '.' {
				r.WriteByte('.')
			}
			r.Write(l)
		}
		r.WriteString(".\r\n")
		replies[i] = r.Bytes()
		list[i] = Entry{Num: i + 1, UID: fmt.Sprint(i + 1), Size: int64(len(m))}
	}
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer c.Close()
		write := c.Write
		if secure {
			tc := tls.Server(c, serverTLS)
			c = tc
			write = func(p []byte) (int, error) {
				for len(p) > 0 {
					k := min(len(p), benchRecord)
					if _, err := tc.Write(p[:k]); err != nil {
						return 0, err
					}
					p = p[k:]
				}
				return 0, nil
			}
		}
		c.Write([]byte("+OK bench\r\n"))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			// "RETR n", parsed without allocating.
			n := 0
			if arg, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("RETR ")); ok {
				for _, d := range arg {
					if d < '0' || d > '9' || n > len(replies) {
						n = 0
						break
					}
					n = 10*n + int(d-'0')
				}
			}
			if n < 1 || n > len(replies) {
				c.Write([]byte("-ERR no\r\n"))
				continue
			}
			if _, err := write(replies[n-1]); err != nil {
				return
			}
		}
	}()
	addr := ln.Addr().(*net.TCPAddr)
	o := Options{Host: "127.0.0.1", Port: addr.Port, TLS: TLSNone, Timeout: 30 * time.Second}
	if secure {
		o.Host, o.TLS, o.RootCAs = "localhost", TLSImplicit, pool
	}
	c, err := Dial(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c, list
}

// benchWindow is the number of RETRs in flight, as in a pipelined round.
const benchWindow = 64

// benchRetr reads every message of list once per iteration with read,
// benchWindow RETRs in flight at a time.
func benchRetr(b *testing.B, c *Conn, list []Entry, read func(Entry) (int64, error)) {
	var total int64
	for _, e := range list {
		total += e.Size
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < len(list); i += benchWindow {
			w := list[i:min(i+benchWindow, len(list))]
			for _, e := range w {
				if err := c.SendRetr(e.Num); err != nil {
					b.Fatal(err)
				}
			}
			for _, e := range w {
				n, err := read(e)
				if err != nil || n != e.Size {
					b.Fatalf("RETR %d: %d bytes, %v; want %d", e.Num, n, err, e.Size)
				}
			}
		}
	}
}

func benchMessages(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = benchMessage(i, size)
	}
	return out
}

// BenchmarkRetr reads 5000 small (3 KB) messages and 20 of 5 MB from a
// fake server over loopback, whole into memory (ReadRetr) and streamed
// into io.Discard (ReadRetrTo), that also over TLS.
func BenchmarkRetr(b *testing.B) {
	for _, tt := range []struct {
		name    string
		n, size int
	}{{"5000x3KB", 5000, 3 << 10}, {"20x5MB", 20, 5 << 20}} {
		msgs := benchMessages(tt.n, tt.size)
		b.Run(tt.name+"/ReadRetr", func(b *testing.B) {
			c, list := benchServer(b, msgs)
			benchRetr(b, c, list, func(e Entry) (int64, error) {
				raw, err := c.ReadRetr(e)
				return int64(len(raw)), err
			})
		})
		b.Run(tt.name+"/ReadRetrTo", func(b *testing.B) {
			c, list := benchServer(b, msgs)
			benchRetr(b, c, list, func(e Entry) (int64, error) {
				return c.ReadRetrTo(e, io.Discard)
			})
		})
		b.Run(tt.name+"/ReadRetrTo/TLS", func(b *testing.B) {
			c, list := benchServerTLS(b, msgs, true)
			benchRetr(b, c, list, func(e Entry) (int64, error) {
				return c.ReadRetrTo(e, io.Discard)
			})
		})
	}
}
