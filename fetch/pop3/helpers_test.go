package pop3

import (
	"fmt"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

func msg(i int) pop3test.Message {
	return pop3test.Message{
		UID:  fmt.Sprintf("uid-%04d", i),
		Data: []byte(fmt.Sprintf("From: a@example.com\r\nSubject: test %d\r\n\r\nbody %d\r\n.dotted line\r\n", i, i)),
	}
}

func msgs(n int) []pop3test.Message {
	var out []pop3test.Message
	for i := 1; i <= n; i++ {
		out = append(out, msg(i))
	}
	return out
}

// tlsTimeout bounds the TLS tests' sessions. It is a safety net, not
// their subject: a handshake under the race detector on a loaded 2-core
// machine took more than 1.5 s, and then a test expecting ErrTLS saw a
// timeout instead. A test whose subject is the deadline sets its own.
const tlsTimeout = 30 * time.Second

// plainOptions are the Options for srv without TLS.
func plainOptions(srv *pop3test.Server) Options {
	return Options{Host: srv.Host(), Port: srv.Port(), TLS: TLSNone, Timeout: 5 * time.Second}
}

// retrieveAll lists the maildrop and retrieves every message, one command
// at a time.
func retrieveAll(c *Conn) ([][]byte, error) {
	_, list, err := c.Listing()
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, e := range list {
		if err := c.SendRetr(e.Num); err != nil {
			return nil, err
		}
		raw, err := c.ReadRetr(e)
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	return out, nil
}
