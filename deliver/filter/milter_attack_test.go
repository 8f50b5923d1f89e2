package filter

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/internal/testutil"
)

// TestMilterProgressForever: a milter that negotiates, then answers every
// step with SMFIR_PROGRESS packets, one byte at a time, forever. Each
// packet arrives well within the per-packet read timeout, so only the
// step's timeout can end the conversation; it must, and the message be
// kept (tempfail).
func TestMilterProgressForever(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				var hdr [4]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				buf := make([]byte, binary.BigEndian.Uint32(hdr[:]))
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				// SMFIC_OPTNEG reply: version 6, no actions, no protocol flags.
				opt := []byte{0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0}
				if _, err := c.Write(opt); err != nil {
					return
				}
				go io.Copy(io.Discard, c)
				progress := []byte{0, 0, 0, 1, 'p'}
				for {
					for _, b := range progress {
						if _, err := c.Write([]byte{b}); err != nil {
							return
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
			}(c)
		}
	}()
	f, err := NewMilter("slow", "inet:"+ln.Addr().String(), MilterOptions{Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := &deliver.Message{Account: "acct", UID: "u1", Raw: []byte("From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n")}
	env := &Envelope{Sender: "a@example.org", Rcpts: []string{"u@example.org"}, SpoolDir: testutil.PrivateDir(t)}
	start := time.Now()
	res, err := Run(context.Background(), []Step{{Filter: f, Timeout: time.Second}}, env, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if took := time.Since(start); took > testutil.Slow(3*time.Second) {
		t.Errorf("the conversation took %v; the step's timeout is 1s", took)
	}
	if res.Action != TempFail || !res.Verdicts[0].Unavailable {
		t.Errorf("result %v %+v; want an unavailable tempfail", res.Action, res.Verdicts)
	}
}
