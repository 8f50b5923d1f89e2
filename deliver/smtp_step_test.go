package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// TestSMTPRepliesInStep plays servers whose replies are out of step with
// the commands: a stray reply after 354, after RCPT or after the final
// replies, a missing reply, one too many, LMTP replies in the wrong order.
// go-smtp alone matches the n-th reply with the n-th command, so such a
// server made a recipient whose own reply was 450 count as delivered (and
// its message be deleted from the POP3 server). No recipient may be
// reported delivered unless the server said 250 for it in step.
func TestSMTPRepliesInStep(t *testing.T) {
	// A delayed stray reaches the socket before the check it is meant
	// for: the server signals strayed once it has written it, and the
	// waitAt-th look at the socket (1: after 354, 2: before the final
	// dot, 3: after the final replies) waits for that.
	var strayed chan struct{} // new for each case
	signal := func() { strayed <- struct{}{} }
	greet := func(c net.Conn, r *bufio.Reader) {
		io.WriteString(c, "220 raw.test ESMTP\r\n")
		rawCmd(c, r, "250-raw.test\r\n250 8BITMIME")
		rawCmd(c, r, "250 ok") // MAIL
	}
	// final plays RCPT a, RCPT b, DATA (354 + after354), the data, then
	// sends replies and answers QUIT. With later, those replies follow
	// 10ms after the first ones, and then the server signals.
	final := func(after354, replies string, later ...string) func(c net.Conn, r *bufio.Reader) {
		return func(c net.Conn, r *bufio.Reader) {
			greet(c, r)
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "354 go ahead"+after354)
			rawReadData(r)
			io.WriteString(c, replies)
			if len(later) > 0 {
				time.Sleep(10 * time.Millisecond)
				io.WriteString(c, strings.Join(later, ""))
				signal()
			}
			rawCmd(c, r, "221 bye")
		}
	}
	// duringData sends early after the first line of the data, while the
	// client is still sending, then a's and b's replies to the final dot.
	duringData := func(early string) func(c net.Conn, r *bufio.Reader) {
		return func(c net.Conn, r *bufio.Reader) {
			greet(c, r)
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "354 go ahead")
			r.ReadString('\n')
			io.WriteString(c, early)
			rawReadData(r)
			io.WriteString(c, "450 4.2.0 <a@x> busy\r\n250 2.0.0 <b@x> ok\r\n")
			rawCmd(c, r, "221 bye")
		}
	}
	for _, tc := range []struct {
		name    string
		lmtp    bool
		timeout time.Duration
		script  func(c net.Conn, r *bufio.Reader)
		waitAt  int
		want    []string
	}{
		// In step, for reference.
		{name: "smtpInStep", script: final("", "250 2.0.0 queued\r\n"), want: []string{"", ""}},
		{name: "lmtpInStep", lmtp: true, script: final("", "250 2.0.0 <a@x> ok\r\n450 4.2.0 <b@x> busy\r\n"), want: []string{"", "temp:LMTP 450"}},
		{name: "smtpMultilineInStep", script: final("", "250-2.0.0 ok\r\n250 2.0.0 queued\r\n"), want: []string{"", ""}},

		// The audit's case: the stray 250 comes with the 354.
		{name: "lmtpStrayWith354", lmtp: true, script: final("\r\n250 2.0.0 stray", "450 4.2.0 <a@x> busy\r\n250 2.0.0 <b@x> ok\r\n"), want: []string{"temp:out of step", "temp:out of step"}},
		{name: "smtpStrayWith354", script: final("\r\n250 2.0.0 stray", "450 4.2.0 busy\r\n"), want: []string{"temp:out of step", "temp:out of step"}},
		{name: "smtpStrayPartWith354", script: final("\r\n25", "450 4.2.0 busy\r\n"), want: []string{"temp:out of step", "temp:out of step"}},
		{name: "smtpStrayAfter354", script: func(c net.Conn, r *bufio.Reader) {
			greet(c, r)
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "354 go ahead")
			time.Sleep(10 * time.Millisecond)
			io.WriteString(c, "250 2.0.0 stray\r\n")
			signal()
			rawReadData(r)
			io.WriteString(c, "450 4.2.0 busy\r\n")
			rawCmd(c, r, "221 bye")
		}, waitAt: 1, want: []string{"temp:out of step", "temp:out of step"}},
		// A reply to the final dot before the data was complete, then
		// the real one.
		{name: "smtpReplyDuringData", script: func(c net.Conn, r *bufio.Reader) {
			greet(c, r)
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "354 go ahead")
			r.ReadString('\n')
			time.Sleep(50 * time.Millisecond)
			io.WriteString(c, "250 2.0.0 early\r\n")
			rawReadData(r)
			io.WriteString(c, "451 4.3.0 failed\r\n")
			signal()
			rawCmd(c, r, "221 bye")
		}, waitAt: 3, want: []string{"temp:out of step", "temp:out of step"}},
		{name: "smtpStrayAfterRcpt", script: func(c net.Conn, r *bufio.Reader) {
			greet(c, r)
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "250 ok\r\n354 go ahead")
			r.ReadString('\n') // DATA, answered in advance
			rawReadData(r)
			io.WriteString(c, "250 2.0.0 queued\r\n")
			rawCmd(c, r, "221 bye")
		}, want: []string{"temp:out of step", "temp:out of step"}},
		{name: "lmtpStrayAfterRcpt", lmtp: true, script: func(c net.Conn, r *bufio.Reader) {
			greet(c, r)
			rawCmd(c, r, "250 ok\r\n250 ok")
			rawCmd(c, r, "354 go ahead") // read as DATA's reply: b's RCPT got the stray
			r.ReadString('\n')
			rawReadData(r)
			io.WriteString(c, "450 4.2.0 <a@x> busy\r\n250 2.0.0 <b@x> ok\r\n")
			rawCmd(c, r, "221 bye")
		}, want: []string{"temp", "temp"}},
		{name: "smtpStrayAfterFinal", script: final("", "450 4.2.0 busy\r\n250 2.0.0 queued\r\n"), want: []string{"temp:out of step", "temp:out of step"}},
		{name: "smtpStrayAfterFinalLate", script: final("", "250 2.0.0 queued\r\n"+"\x00"), want: []string{"temp:out of step", "temp:out of step"}},
		{name: "smtpDelayedStrayAfterFinal", script: final("", "250 2.0.0 stray\r\n", "450 4.2.0 busy\r\n"), waitAt: 3, want: []string{"temp:out of step", "temp:out of step"}},
		{name: "lmtpOneTooMany", lmtp: true, script: final("", "250 2.0.0 stray\r\n450 4.2.0 <a@x> busy\r\n250 2.0.0 <b@x> ok\r\n"), want: []string{"temp:out of step", "temp:out of step"}},
		{name: "lmtpOneTooManyLater", lmtp: true, script: final("", "250 2.0.0 stray\r\n250 2.0.0 <a@x> ok\r\n", "450 4.2.0 <b@x> busy\r\n"), waitAt: 3, want: []string{"temp:out of step", "temp:out of step"}},
		// LMTP replies that name no recipient are held to the end, and
		// count if the session ends in step.
		{name: "lmtpUnnamedInStep", lmtp: true, script: final("", "250 2.0.0 ok\r\n250 2.0.0 ok\r\n"), want: []string{"", ""}},
		{name: "lmtpNamedStrayWith354", lmtp: true, script: final("\r\n250 2.0.0 <a@x> stray", "450 4.2.0 <a@x> busy\r\n250 2.0.0 <b@x> ok\r\n"), want: []string{"temp:out of step", "temp:out of step"}},
		// A reply to the final dot while the data was going out: read as
		// a's reply, it names b (or no one, and then b's reply names a).
		{name: "lmtpReplyDuringDataNamed", lmtp: true, script: duringData("250 2.0.0 <b@x> early\r\n"), want: []string{"temp:out of step", "temp:out of step"}},
		{name: "lmtpReplyDuringDataUnnamed", lmtp: true, script: duringData("250 2.0.0 early\r\n"), want: []string{"temp:out of step", "temp:out of step"}},
		// a's own 250, naming a, came in step and was reported at once;
		// the stray after it voids only what was not yet reported.
		{name: "lmtpNamedThenStray", lmtp: true, script: final("", "250 2.0.0 <a@x> ok\r\n250 2.0.0 stray\r\n450 4.2.0 <b@x> busy\r\n"), want: []string{"", "temp:out of step"}},
		// One reply missing: a's 250 came in step, b's never did.
		{name: "lmtpMissingReply", lmtp: true, timeout: 300 * time.Millisecond, script: func(c net.Conn, r *bufio.Reader) {
			greet(c, r)
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "354 go ahead")
			rawReadData(r)
			io.WriteString(c, "250 2.0.0 <a@x> ok\r\n")
			r.ReadString('\n')
		}, want: []string{"", "temp:final dot"}},
		{name: "smtpMissing354", timeout: 300 * time.Millisecond, script: func(c net.Conn, r *bufio.Reader) {
			greet(c, r)
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "250 ok")
			r.ReadString('\n')
			r.ReadString('\n')
		}, want: []string{"temp:DATA", "temp:DATA"}},
		{name: "lmtpWrongOrder", lmtp: true, script: final("", "250 2.0.0 <b@x> ok\r\n450 4.2.0 <a@x> busy\r\n"), want: []string{"temp:out of step", "temp:out of step"}},
		{name: "lmtpWrongOrderCase", lmtp: true, script: final("", "250 2.0.0 <B@X> ok\r\n250 2.0.0 <A@x> ok\r\n"), want: []string{"temp:out of step", "temp:out of step"}},
		{name: "lmtpNamesBoth", lmtp: true, script: final("", "250 2.0.0 <a@x> ok, not <b@x>\r\n450 4.2.0 <b@x> busy\r\n"), want: []string{"", "temp:LMTP 450"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			strayed = make(chan struct{}, 1)
			opts := SMTPOptions{Addr: smtpRaw(t, tc.script), LMTP: tc.lmtp, Timeout: tc.timeout}
			if opts.Timeout == 0 {
				opts.Timeout = 4 * time.Second
			}
			d := NewSMTP(opts)
			if tc.waitAt > 0 {
				dial, looks := d.dial, 0
				d.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := dial(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					return &peekHookConn{TCPConn: c.(*net.TCPConn), before: func() {
						if looks++; looks == tc.waitAt {
							select {
							case <-strayed:
							case <-time.After(2 * time.Second):
								t.Errorf("look %d at the socket: the server sent no stray", looks)
							}
						}
					}}, nil
				}
			}
			var delivered []int
			hook := func(i int, err error, _ Receipt) {
				if err == nil {
					delivered = append(delivered, i)
				}
			}
			errs := d.DeliverReporting(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{Address: "a@x"}, {Address: "b@x"}}, nil, hook)
			checkResults(t, errs, tc.want...)
			checkReasons(t, errs)
			var want []int
			for i, w := range tc.want {
				if w == "" {
					want = append(want, i)
				}
			}
			if len(delivered) != len(want) {
				t.Errorf("hook reported %v delivered; want %v", delivered, want)
			}
		})
	}
}

// peekHookConn calls before whenever the client looks at the socket for
// bytes not yet read (sockpeek.Readable asks for SyscallConn).
type peekHookConn struct {
	*net.TCPConn
	before func()
}

func (c *peekHookConn) SyscallConn() (syscall.RawConn, error) {
	c.before()
	return c.TCPConn.SyscallConn()
}

// Bytes after the 220 to STARTTLS would be read as if they came over TLS
// (STARTTLS response injection): the connection is refused.
func TestSMTPStartTLSInjection(t *testing.T) {
	_, pool := smtpTestCert(t)
	addr := smtpRaw(t, func(c net.Conn, r *bufio.Reader) {
		io.WriteString(c, "220 raw.test ESMTP\r\n")
		rawCmd(c, r, "250-raw.test\r\n250 STARTTLS")
		rawCmd(c, r, "220 go ahead\r\n250-injected\r\n250 AUTH PLAIN")
		r.ReadString('\n')
	})
	d := NewSMTP(SMTPOptions{Addr: addr, TLS: "starttls", RootCAs: pool, Timeout: 2 * time.Second})
	errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{Address: "a@x"}}, nil)
	checkResults(t, errs, "temp:starttls required: server sent data after its reply to STARTTLS")
}

// FuzzReplyTapStep: whatever the server sends, a tap that reports itself
// in step at a point where no reply is due has seen exactly the replies
// that were due, no more and no fewer.
func FuzzReplyTapStep(f *testing.F) {
	f.Add([]byte("250 ok\r\n250-a\r\n250 b\r\n"), uint8(2), uint8(3))
	f.Add([]byte("354 go\r\n250 stray\r\n"), uint8(1), uint8(5))
	f.Add([]byte("250 ok\r\n25"), uint8(1), uint8(0))
	f.Add([]byte("250-a\r\n550 x\r\n250 b\r\n250 c\n"), uint8(2), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, due, step uint8) {
		tap := newReplyTap()
		tap.due = int(due)
		var n int
		tap.onReply = func(k, code int, _ string) { n++ }
		for rest := data; len(rest) > 0; {
			c := min(len(rest), int(step)+1)
			tap.feed(rest[:c])
			rest = rest[c:]
		}
		if tap.stray == "" && !tap.dead && tap.due == 0 && !tap.partial() && n != int(due) {
			t.Fatalf("in step with %d replies; %d were due", n, due)
		}
		if n > int(due) && tap.stray == "" {
			t.Fatalf("%d replies for %d due, still in step", n, due)
		}
	})
}

// FuzzLMTPOrder: the LMTP order check (the reply hook in SMTP.Deliver
// puts the session out of step when reply k names another accepted
// recipient and not its own) never panics, and accepts replies that name
// only their own recipient.
func FuzzLMTPOrder(f *testing.F) {
	f.Add("a@x", "b@x", "250 2.0.0 <a@x> ok", "250 2.0.0 <b@x> ok")
	f.Add("a@x", "b@x", "250 <b@x>", "450 <a@x")
	f.Add("a@x", "b@x", "250 <<a@x>>", "<>")
	f.Fuzz(func(t *testing.T, a, b, ta, tb string) {
		groups := []*rcptGroup{{addr: a}, {addr: b}}
		m := lmtpOwn(groups)
		for k, text := range []string{ta, tb} {
			lmtpNames(m, k, text)
		}
		// One recipient twice, as lmtpOwn compares addresses (lower
		// case, which makes "\u0130@x" and "i@x" one though
		// strings.EqualFold tells them apart): no reply can name
		// either as its own.
		if la, lb := strings.ToLower(a), strings.ToLower(b); la == lb {
			return
		}
		for k, g := range groups {
			if mine, other := lmtpNames(m, k, "250 2.0.0 <"+g.addr+"> ok"); other >= 0 && !mine && !strings.ContainsAny(a+b, "<>") {
				t.Fatalf("reply %d naming its own recipient <%s> refused: names <%s>", k, g.addr, groups[other].addr)
			}
		}
		// What makes a reply count as it arrives: it names its own
		// recipient and no other.
		for k, g := range groups {
			mine, other := lmtpNames(m, k, "250 2.0.0 <"+g.addr+"> ok")
			if !strings.ContainsAny(a+b, "<>") && (!mine || other >= 0) {
				t.Fatalf("reply naming <%s> for recipient %d: mine %v, other %d", g.addr, k, mine, other)
			}
			if mine, _ := lmtpNames(m, 1-k, "250 2.0.0 <"+g.addr+"> ok"); mine && !strings.ContainsAny(a+b, "<>") {
				t.Fatalf("reply naming <%s> taken as recipient %d's", g.addr, 1-k)
			}
		}
	})
}

// The checks that the session is in step cost no waiting: a delivery in
// step takes a round trip per command, not a pause for stray replies
// (which once made every transaction take 40ms more, capping throughput
// at 25 messages a second per connection).
func TestSMTPInStepNoWait(t *testing.T) {
	cfg, pool := smtpTestCert(t)
	for _, tc := range []struct {
		name     string
		lmtp     bool
		tls      string
		implicit bool
	}{
		{name: "smtp"},
		{name: "lmtp", lmtp: true},
		{name: "starttls", tls: "starttls"},
		{name: "implicit", tls: "implicit", implicit: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &delivertest.Sink{}
			var scfg *tls.Config
			if tc.tls != "" {
				scfg = cfg
			}
			d := NewSMTP(SMTPOptions{Addr: startSink(t, sink, tc.lmtp, scfg, tc.implicit), LMTP: tc.lmtp, TLS: tc.tls, RootCAs: pool, Timeout: 4 * time.Second})
			// A pause for stray replies is in every delivery; a busy
			// machine slows some. So the fastest of n deliveries shows a
			// pause and load does not: 20ms is ten times what one takes
			// here, and half the pause this test was written against.
			const n = 20
			fastest := time.Hour
			for range n {
				start := time.Now()
				errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{Address: "a@x"}, {Address: "b@x"}}, nil)
				fastest = min(fastest, time.Since(start))
				checkResults(t, errs, "", "")
			}
			if fastest > 20*time.Millisecond {
				t.Errorf("the fastest of %d deliveries took %v; want less than 20ms", n, fastest)
			}
		})
	}
}

// Under TLS a stray reply is found in the record of the 354, in a record
// the TLS layer has read but not returned, or on the socket.
func TestSMTPTLSStray(t *testing.T) {
	cfg, pool := smtpTestCert(t)
	for _, tc := range []struct {
		name  string
		write func(c net.Conn) // after the DATA command
		look  bool             // wait for the write before the first look at the socket
	}{
		{name: "sameRecord", write: func(c net.Conn) { io.WriteString(c, "354 go ahead\r\n250 2.0.0 stray\r\n") }},
		{name: "nextRecord", write: func(c net.Conn) {
			io.WriteString(c, "354 go ahead\r\n")
			io.WriteString(c, "250 2.0.0 stray\r\n")
		}, look: true},
		{name: "later", write: func(c net.Conn) {
			io.WriteString(c, "354 go ahead\r\n")
			time.Sleep(10 * time.Millisecond)
			io.WriteString(c, "250 2.0.0 stray\r\n")
		}, look: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			written := make(chan struct{}, 1)
			addr := smtpRaw(t, func(raw net.Conn, _ *bufio.Reader) {
				c := tls.Server(raw, cfg)
				r := bufio.NewReader(c)
				io.WriteString(c, "220 raw.test ESMTP\r\n")
				rawCmd(c, r, "250-raw.test\r\n250 8BITMIME")
				rawCmd(c, r, "250 ok")
				rawCmd(c, r, "250 ok")
				rawCmd(c, r, "250 ok")
				r.ReadString('\n') // DATA
				tc.write(c)
				written <- struct{}{}
				rawReadData(r)
				io.WriteString(c, "450 4.2.0 busy\r\n")
				rawCmd(c, r, "221 bye")
			})
			d := NewSMTP(SMTPOptions{Addr: addr, TLS: "implicit", RootCAs: pool, Timeout: 4 * time.Second})
			if tc.look {
				dial := d.dial
				d.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := dial(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					first := true
					return &peekHookConn{TCPConn: c.(*net.TCPConn), before: func() {
						if first {
							first = false
							<-written
						}
					}}, nil
				}
			}
			errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{Address: "a@x"}, {Address: "b@x"}}, nil)
			// Found by the check after the 354, before any data.
			checkResults(t, errs, "temp:DATA: server out of step", "temp:DATA: server out of step")
		})
	}
}
