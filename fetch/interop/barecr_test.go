package interop

import (
	"bytes"
	"fmt"
	"testing"
)

// crMessage returns test message seq with bare CRs in its body, stored
// with LF line ends otherwise (as message is).
func crMessage(seq int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender <sender@example.net>\nTo: rcpt@example.com\nSubject: bare CR %d\nMessage-ID: <cr-%d@example.net>\nX-Seq: %d\n\n", seq, seq, seq)
	switch seq % 4 {
	case 0:
		b.WriteString("a bare\rCR\n")
	case 1:
		b.WriteString("CR CR LF\r\r\nCRLF\r\nend\n")
	case 2:
		b.WriteString("\r\n\r\r\rx\n")
	case 3:
		b.WriteString("last byte a bare CR\r")
	}
	return b.Bytes()
}

// TestBareCR: messages with bare CRs in their bodies, which the servers
// serve in their own ways (mailutils 3.15 serves a CRLF stored in an
// LF file as CR CR LF in most of its configurations here, two line ends
// in the copy; the mbox servers add the empty line before the next
// message), are delivered once each, and a later
// poll that retrieves them again to check them against the identity
// recorded (keep mode switched off, as after a kill between the record
// and DELE) takes them for the messages delivered: deleted, not delivered
// again. The identity is of what the server serves, so it matches
// whatever the server does with a CR as long as it does the same each
// time.
func TestBareCR(t *testing.T) {
	t.Parallel()
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := c.start(t)
			var msgs [][]byte
			for i := 1; i <= 8; i++ {
				msgs = append(msgs, crMessage(i))
			}
			s.Put(t, msgs...)
			a := account(t, s)
			if c.keep {
				a.Keep = true
				if res := poll(t, s, a); res.Err != nil || res.New != len(msgs) || res.Deleted != 0 {
					t.Errorf("keep poll = %+v; want %d new, none deleted", res, len(msgs))
				}
				if res := poll(t, s, a); res.Err != nil || res.New != 0 {
					t.Errorf("second keep poll = %+v; want nothing new", res)
				}
				a.Keep = false
				if res := poll(t, s, a); res.Err != nil || res.New != 0 || res.Delivered != 0 || res.Deleted != len(msgs) {
					t.Errorf("poll without keep = %+v; want 0 new or delivered, %d deleted", res, len(msgs))
				}
			} else if res := poll(t, s, a); res.Err != nil || res.Delivered != len(msgs) || res.Deleted != len(msgs) {
				t.Errorf("poll = %+v; want %d delivered and deleted", res, len(msgs))
			}
			got := delivered(t, s, a.Deliver.Maildir)
			for _, m := range msgs {
				if n := len(got[seqOf(m)]); n != 1 {
					t.Errorf("%s: message %s delivered %d times; want once", s.Name, seqOf(m), n)
				}
			}
			if len(got) != len(msgs) {
				t.Errorf("%s: %d messages delivered; want %d", s.Name, len(got), len(msgs))
			}
			if n := s.Count(t); n != 0 {
				t.Errorf("server holds %d messages; want 0", n)
			}
		})
	}
}
