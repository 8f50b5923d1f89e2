package deliver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// startSink serves sink on a loopback port, or on a unix socket for LMTP.
// With cfg the server offers STARTTLS, or speaks implicit TLS.
func startSink(t testing.TB, sink *delivertest.Sink, lmtp bool, cfg *tls.Config, implicit bool) string {
	t.Helper()
	return sink.Start(t, delivertest.SinkOptions{LMTP: lmtp, Unix: lmtp, TLS: cfg, Implicit: implicit})
}

// smtpTestCert makes a server certificate for 127.0.0.1 and localhost
// and a pool that trusts its issuer.
func smtpTestCert(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	_, cfg, pool := pop3test.GenerateCert(t, "127.0.0.1", "localhost")
	return cfg, pool
}

// smtpRaw runs script on the first connection to a loopback listener, for
// faults a real server does not produce.
func smtpRaw(t testing.TB, script func(c net.Conn, r *bufio.Reader)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		script(c, bufio.NewReader(c))
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

// rawCmd reads one command line and sends reply (with CRLF) unless empty.
func rawCmd(c net.Conn, r *bufio.Reader, reply string) string {
	line, _ := r.ReadString('\n')
	if reply != "" {
		io.WriteString(c, reply+"\r\n")
	}
	return line
}

// rawDialogue plays greeting, EHLO, MAIL and n RCPTs and DATA's 354.
func rawDialogue(c net.Conn, r *bufio.Reader, n int) {
	io.WriteString(c, "220 raw.test ESMTP\r\n")
	rawCmd(c, r, "250-raw.test\r\n250 8BITMIME")
	rawCmd(c, r, "250 ok")
	for range n {
		rawCmd(c, r, "250 ok")
	}
	rawCmd(c, r, "354 go ahead")
}

// rawReadData reads message data up to and including the final dot.
func rawReadData(r *bufio.Reader) ([]byte, error) {
	var b []byte
	for !bytes.HasSuffix(b, []byte("\r\n.\r\n")) {
		c, err := r.ReadByte()
		if err != nil {
			return b, err
		}
		b = append(b, c)
	}
	return b, nil
}

func smtpMsg(raw string) *Message {
	return &Message{Account: "acct", Server: "pop.example.net", User: "joe", UID: "u1",
		Fetched: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Raw: []byte(raw)}
}

// checkResults compares per-recipient results with want: "" nil, "temp",
// or "perm:<reason prefix>".
func checkResults(t *testing.T, errs []error, want ...string) {
	t.Helper()
	if len(errs) != len(want) {
		t.Fatalf("Deliver returned %d results %v; want %d", len(errs), errs, len(want))
	}
	for i, err := range errs {
		w := want[i]
		var de *Error
		switch {
		case w == "":
			if err != nil {
				t.Errorf("result %d = %v; want nil", i, err)
			}
		case !errors.As(err, &de):
			t.Errorf("result %d = %v; want *Error", i, err)
		case w == "temp" || strings.HasPrefix(w, "temp:"):
			if de.Permanent || !strings.Contains(de.Reason, strings.TrimPrefix(strings.TrimPrefix(w, "temp"), ":")) {
				t.Errorf("result %d = %v (reason %q); want %s", i, err, de.Reason, w)
			}
		case strings.HasPrefix(w, "perm:"):
			if !de.Permanent || !strings.HasPrefix(de.Reason, w[5:]) {
				t.Errorf("result %d = %v (reason %q); want %s", i, err, de.Reason, w)
			}
		}
	}
}

// checkCRLF fails if data holds a CR or LF that is not part of CRLF.
func checkCRLF(t *testing.T, data []byte) {
	t.Helper()
	for i, c := range data {
		if c == '\r' && (i+1 >= len(data) || data[i+1] != '\n') || c == '\n' && (i == 0 || data[i-1] != '\r') {
			t.Fatalf("bare CR or LF at byte %d: %q", i, data[max(0, i-20):min(len(data), i+20)])
		}
	}
}

const smtpRawMsg = "Return-Path: <bounce@example.org>\r\nFrom: a@example.org\r\nSubject: hi\r\n\r\nline1\r\nbare\rcr\nlf\r\n.\r\n..two\r\nend"

func TestSMTPDelivered(t *testing.T) {
	sink := &delivertest.Sink{}
	d := NewSMTP(SMTPOptions{Addr: startSink(t, sink, false, nil, false), Helo: "popfetch.test", LocalHost: "mx.local", Timeout: 4 * time.Second})
	rcpts := []Recipient{{User: "a", Address: "a@example.com"}, {User: "b@y"}, {User: "a2", Address: "a@example.com"}}
	errs := d.Deliver(context.Background(), smtpMsg(smtpRawMsg), "", rcpts, []Field{{"X-Popfetch-Reason", "test"}})
	checkResults(t, errs, "", "", "")
	msgs := sink.Messages()
	if len(msgs) != 1 {
		t.Fatalf("sink got %d messages; want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "bounce@example.org" || strings.Join(m.Rcpts, ",") != "a@example.com,b@y" {
		t.Errorf("envelope = %q %q; want Return-Path and one RCPT per distinct address", m.From, m.Rcpts)
	}
	checkCRLF(t, m.Data)
	s := string(m.Data)
	if !strings.HasPrefix(s, "X-Popfetch-Reason: test\r\nReceived: from pop.example.net\r\n\tby mx.local") {
		t.Errorf("copy does not start with extra fields and Received:\n%s", s)
	}
	if strings.Contains(s, "\tfor <") || strings.Contains(s, "Delivered-To") {
		t.Errorf("multi-recipient copy names a recipient:\n%s", s)
	}
	if want := "\r\n\r\nline1\r\nbare\r\ncr\r\nlf\r\n.\r\n..two\r\nend\r\n"; !strings.HasSuffix(s, want) {
		t.Errorf("body = %q; want suffix %q", s, want)
	}
}

// Delivered-To names the routed address when one RCPT is sent, over SMTP
// and LMTP alike, and is left out when one copy serves several recipients
// or the recipient has no routed address.
func TestSMTPDeliveredTo(t *testing.T) {
	for _, lmtp := range []bool{false, true} {
		sink := &delivertest.Sink{}
		d := NewSMTP(SMTPOptions{Addr: startSink(t, sink, lmtp, nil, false), LMTP: lmtp, LocalHost: "mx.local", Timeout: 4 * time.Second})
		for _, tc := range []struct {
			name  string
			rcpts []Recipient
			want  string // the Delivered-To value, "" = none
		}{
			{"multidropUser", []Recipient{{User: "alice", Address: "sales@example.com", Domain: "example.com"}}, "sales@example.com"},
			{"address", []Recipient{{Address: "me@example.net"}}, "me@example.net"},
			// No routed address (single-drop, postmaster); a domain only
			// so that the test server takes the RCPT.
			{"noAddress", []Recipient{{User: "joe", Domain: "example.com"}}, ""},
			{"twoRcpts", []Recipient{{User: "alice", Address: "alice@example.com", Domain: "example.com"}, {User: "bob", Address: "bob@example.com", Domain: "example.com"}}, ""},
			// One RCPT for two routed addresses: neither is the one.
			{"oneRcptTwoAddresses", []Recipient{{User: "alice", Address: "sales@example.com", Domain: "example.com"}, {User: "alice", Address: "alice@example.com", Domain: "example.com"}}, ""},
			{"sameAddressTwice", []Recipient{{User: "u", Address: "u@x", Domain: "x"}, {User: "u", Address: "u@x", Domain: "x"}}, "u@x"},
		} {
			before := len(sink.Messages())
			errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "s@x", tc.rcpts, nil)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("lmtp=%v %s: result %d = %v", lmtp, tc.name, i, err)
				}
			}
			msgs := sink.Messages()
			if len(msgs) != before+1 {
				t.Fatalf("lmtp=%v %s: sink got %d new messages; want 1", lmtp, tc.name, len(msgs)-before)
			}
			data := string(msgs[len(msgs)-1].Data)
			checkCRLF(t, []byte(data))
			n := strings.Count(data, "Delivered-To:")
			switch {
			case tc.want == "" && n != 0:
				t.Errorf("lmtp=%v %s: copy has Delivered-To; want none:\n%s", lmtp, tc.name, data)
			case tc.want != "" && (n != 1 || !strings.Contains(data, "\r\nDelivered-To: "+tc.want+"\r\nSubject: x\r\n")):
				t.Errorf("lmtp=%v %s: copy lacks \"Delivered-To: %s\" right after Received:\n%s", lmtp, tc.name, tc.want, data)
			}
		}
	}
}

func TestSMTPEnvelopeSender(t *testing.T) {
	for _, tc := range []struct {
		opt, arg, raw, want string
	}{
		{"", "", smtpRawMsg, "bounce@example.org"},
		{"cfg@x", "arg@x", smtpRawMsg, "cfg@x"},
		{"", "arg@x", smtpRawMsg, "arg@x"},
		{"", "<>", smtpRawMsg, "bounce@example.org"},
		{"", "a b@x", "Return-Path: <>\r\n\r\n", ""},
		{"", "a@x\r\nRCPT TO:<e@x>", "Subject: x\r\n\r\n", ""},
		{"", "", "Return-Path: Joe <joe@example.org>\r\n\r\n", "joe@example.org"},
		{"", "", "Return-Path: <a@x>\r\n\t\r\nReturn-Path: <b@x>\r\n\r\n", "a@x"},
		{"", "", "Return-Path: not an address\r\n\r\n", ""},
		{"", "", "Return-Path: <" + strings.Repeat("a", 600) + "@x>\r\n\r\n", ""},
		{"", "", "Subject: x\r\n\r\nReturn-Path: <body@x>\r\n", ""},
	} {
		d := NewSMTP(SMTPOptions{Addr: "127.0.0.1:25", Sender: tc.opt})
		if got := d.envelopeSender(smtpMsg(tc.raw), tc.arg); got != tc.want {
			t.Errorf("envelopeSender(opt %q, arg %q, %q) = %q; want %q", tc.opt, tc.arg, tc.raw, got, tc.want)
		}
	}
}

func TestSMTPRecipientResults(t *testing.T) {
	sink := &delivertest.Sink{}
	sink.FailRcpt("temp@x", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"})
	sink.FailRcpt("gone@x", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user\x1b[2J"})
	d := NewSMTP(SMTPOptions{Addr: startSink(t, sink, false, nil, false), Timeout: 4 * time.Second})
	rcpts := []Recipient{{Address: "ok@x"}, {Address: "temp@x"}, {Address: "gone@x"}, {Address: "bad@x>\r\nDATA"}, {}}
	errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "s@x", rcpts, nil)
	checkResults(t, errs, "", "temp:SMTP 451 4.3.0 try later", "perm:SMTP 550 5.1.1 no such user", "perm:invalid recipient", "perm:invalid recipient")
	if msgs := sink.Messages(); len(msgs) != 1 || strings.Join(msgs[0].Rcpts, ",") != "ok@x" {
		t.Errorf("sink got %+v; want one message for ok@x", msgs)
	}

	// Nobody accepted: no DATA at all.
	errs = d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "s@x", []Recipient{{Address: "temp@x"}, {Address: "gone@x"}}, nil)
	checkResults(t, errs, "temp", "perm:SMTP 550")
	if n := len(sink.Messages()); n != 1 {
		t.Errorf("sink has %d messages after all RCPTs failed; want still 1", n)
	}
}

func TestLMTPPerRecipient(t *testing.T) {
	sink := &delivertest.Sink{}
	sink.FailAfterData("full@x", &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"})
	sink.FailAfterData("bad@x", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "rejected"})
	addr := startSink(t, sink, true, nil, false)
	d := NewSMTP(SMTPOptions{Addr: addr, LMTP: true, Timeout: 4 * time.Second})
	errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{Address: "ok@x"}, {Address: "full@x"}, {Address: "bad@x"}}, nil)
	checkResults(t, errs, "", "temp:LMTP 452 4.2.2", "perm:LMTP 554 5.6.0")
	if msgs := sink.Messages(); len(msgs) != 1 || len(msgs[0].Rcpts) != 3 || msgs[0].From != "" {
		t.Errorf("sink got %+v; want one message, three recipients, null sender", msgs)
	}
}

// TestSMTPWireIsCRLF looks at the raw DATA bytes: no bare CR or LF may
// reach the wire, and a lone "." line is dot-stuffed, so a message cannot
// end the transaction early and smuggle a second one (CVE-2023-51764).
func TestSMTPWireIsCRLF(t *testing.T) {
	smuggle := "Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@x>\r\nx\r.\rRCPT TO:<v@x>\r\n.\r\nDATA\n\r.\r\n\n.\rend"
	data := make(chan []byte, 1)
	addr := smtpRaw(t, func(c net.Conn, r *bufio.Reader) {
		rawDialogue(c, r, 1)
		b, _ := rawReadData(r)
		data <- b
		io.WriteString(c, "250 ok\r\n")
		rawCmd(c, r, "221 bye")
	})
	d := NewSMTP(SMTPOptions{Addr: addr, Timeout: 4 * time.Second})
	checkResults(t, d.Deliver(context.Background(), smtpMsg(smuggle), "s@x", []Recipient{{Address: "v@x"}}, nil), "")
	b := <-data
	checkCRLF(t, b)
	lines := strings.Split(strings.TrimSuffix(string(b), "\r\n"), "\r\n")
	for i, l := range lines[:len(lines)-1] {
		if l == "." {
			t.Errorf("line %d is a lone dot before the end: data would end early", i)
		}
	}
	if lines[len(lines)-1] != "." {
		t.Errorf("data does not end with the final dot: %q", b)
	}
	if !strings.Contains(string(b), "\r\nhi\r\n..\r\nMAIL FROM:<evil@x>\r\nx\r\n..\r\nRCPT TO:") {
		t.Errorf("smuggling lines not normalised and stuffed:\n%q", b)
	}
}

func TestSMTPFaults(t *testing.T) {
	two := []Recipient{{Address: "a@x"}, {Address: "b@x"}}
	for _, tc := range []struct {
		name    string
		lmtp    bool
		timeout time.Duration
		final   time.Duration
		script  func(c net.Conn, r *bufio.Reader)
		want    []string
		maxTime time.Duration
	}{
		{name: "dropDuringData", script: func(c net.Conn, r *bufio.Reader) {
			rawDialogue(c, r, 2)
			r.ReadString('\n')
		}, want: []string{"temp", "temp"}},
		{name: "dropAfterDot", script: func(c net.Conn, r *bufio.Reader) {
			rawDialogue(c, r, 2)
			rawReadData(r)
		}, want: []string{"temp:final dot", "temp:final dot"}},
		{name: "dropDuringRcpt", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 raw\r\n")
			rawCmd(c, r, "250 raw")
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "250 ok")
			r.ReadString('\n')
		}, want: []string{"temp", "temp"}},
		{name: "finalDotSilent", timeout: 150 * time.Millisecond, final: 300 * time.Millisecond, script: func(c net.Conn, r *bufio.Reader) {
			rawDialogue(c, r, 2)
			rawReadData(r)
			r.ReadString('\n') // silent until the client gives up and closes
		}, want: []string{"temp:final dot: timed out after 300ms", "temp:final dot: timed out after 300ms"}, maxTime: 2 * time.Second},
		// A slow final reply within FinalTimeout but beyond Timeout is a
		// delivery: the final dot gets the longer wait.
		{name: "finalDotSlow", timeout: 150 * time.Millisecond, final: 3 * time.Second, script: func(c net.Conn, r *bufio.Reader) {
			rawDialogue(c, r, 2)
			rawReadData(r)
			time.Sleep(500 * time.Millisecond)
			io.WriteString(c, "250 queued\r\n")
			rawCmd(c, r, "221 bye")
		}, want: []string{"", ""}},
		{name: "greeting554", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "554 go away\r\n")
			r.ReadString('\n')
		}, want: []string{"temp:SMTP 554", "temp:SMTP 554"}},
		{name: "mail550", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 raw\r\n")
			rawCmd(c, r, "250 raw")
			rawCmd(c, r, "550 5.7.1 sender refused")
			rawCmd(c, r, "221 bye")
		}, want: []string{"perm:SMTP 550 5.7.1 sender refused", "perm:SMTP 550 5.7.1 sender refused"}},
		{name: "data554", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 raw\r\n")
			rawCmd(c, r, "250 raw")
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "554 no")
			rawCmd(c, r, "221 bye")
		}, want: []string{"perm:SMTP 554 no", "perm:SMTP 554 no"}},
		{name: "endlessEHLO", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 raw\r\n")
			r.ReadString('\n')
			line := "250-" + strings.Repeat("X", 900) + "\r\n"
			for i := 0; i < 3000; i++ {
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		}, want: []string{"temp", "temp"}},
		{name: "garbageReply", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 raw\r\n")
			rawCmd(c, r, "250 raw")
			rawCmd(c, r, "2x0 what")
		}, want: []string{"temp", "temp"}},
		{name: "lmtpDropAfterFirstReply", lmtp: true, script: func(c net.Conn, r *bufio.Reader) {
			rawDialogue(c, r, 2)
			rawReadData(r)
			io.WriteString(c, "250 2.0.0 a delivered\r\n")
		}, want: []string{"", "temp:final dot"}},
		// The drop after a 5xx for a must not make b permanent too.
		{name: "lmtpPermThenDrop", lmtp: true, script: func(c net.Conn, r *bufio.Reader) {
			rawDialogue(c, r, 2)
			rawReadData(r)
			io.WriteString(c, "550 5.1.1 a gone\r\n")
		}, want: []string{"perm:LMTP 550 5.1.1 a gone", "temp:final dot"}},
		{name: "lmtpPermThenGarbage", lmtp: true, script: func(c net.Conn, r *bufio.Reader) {
			rawDialogue(c, r, 2)
			rawReadData(r)
			io.WriteString(c, "550 5.1.1 a gone\r\nxyz\r\n")
			r.ReadString('\n')
		}, want: []string{"perm:LMTP 550 5.1.1 a gone", "temp:final dot"}},
		{name: "lmtpMixed", lmtp: true, script: func(c net.Conn, r *bufio.Reader) {
			rawDialogue(c, r, 2)
			rawReadData(r)
			io.WriteString(c, "452 4.2.2 full\r\n250 2.0.0 ok\r\n")
			rawCmd(c, r, "221 bye")
		}, want: []string{"temp:LMTP 452 4.2.2 full", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := SMTPOptions{Addr: smtpRaw(t, tc.script), LMTP: tc.lmtp, Timeout: tc.timeout, FinalTimeout: tc.final}
			if opts.Timeout == 0 {
				opts.Timeout, opts.FinalTimeout = 2*time.Second, 2*time.Second
			}
			d := NewSMTP(opts)
			start := time.Now()
			errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nbody\r\n"), "s@x", two, nil)
			checkResults(t, errs, tc.want...)
			if el := time.Since(start); tc.maxTime > 0 && el > tc.maxTime {
				t.Errorf("Deliver took %v; want < %v", el, tc.maxTime)
			}
		})
	}
}

func TestSMTPCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr := smtpRaw(t, func(c net.Conn, r *bufio.Reader) {
		rawDialogue(c, r, 1)
		rawReadData(r)
		cancel() // the server "hangs" on the final dot; popfetch shuts down
		r.ReadString('\n')
	})
	d := NewSMTP(SMTPOptions{Addr: addr})
	start := time.Now()
	errs := d.Deliver(ctx, smtpMsg("Subject: x\r\n\r\nbody\r\n"), "s@x", []Recipient{{Address: "a@x"}}, nil)
	checkResults(t, errs, "temp:cancelled")
	if !errors.Is(errs[0], context.Canceled) {
		t.Errorf("Deliver = %v; want it to wrap context.Canceled", errs[0])
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("cancelled Deliver took %v", el)
	}
}

func TestSMTPTLS(t *testing.T) {
	cfg, pool := smtpTestCert(t)
	for _, tc := range []struct {
		name      string
		serverTLS bool
		implicit  bool
		mode      string
		roots     *x509.CertPool
		want      string
	}{
		{name: "starttls", serverTLS: true, mode: "starttls", roots: pool},
		{name: "implicit", serverTLS: true, implicit: true, mode: "implicit", roots: pool},
		{name: "starttlsNotOffered", mode: "starttls", roots: pool, want: "temp:starttls required: server does not offer STARTTLS"},
		{name: "starttlsUntrusted", serverTLS: true, mode: "starttls", roots: x509.NewCertPool(), want: "temp:starttls required: tls handshake: tls: failed to verify certificate"},
		{name: "implicitUntrusted", serverTLS: true, implicit: true, mode: "implicit", roots: x509.NewCertPool(), want: "temp:tls handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &delivertest.Sink{}
			var scfg *tls.Config
			if tc.serverTLS {
				scfg = cfg
			}
			addr := startSink(t, sink, false, scfg, tc.implicit)
			d := NewSMTP(SMTPOptions{Addr: addr, TLS: tc.mode, RootCAs: tc.roots, Timeout: 4 * time.Second})
			errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nb\r\n"), "s@x", []Recipient{{Address: "a@x"}}, nil)
			checkResults(t, errs, tc.want)
			mails := sink.Mails()
			if tc.want != "" {
				if mails != 0 {
					t.Errorf("MAIL sent %d times over an unverified or plain connection", mails)
				}
				return
			}
			if msgs := sink.Messages(); len(msgs) != 1 || !msgs[0].TLS {
				t.Errorf("sink got %+v; want one message over TLS", msgs)
			}
		})
	}
}

func TestSMTPConfigErrors(t *testing.T) {
	for _, o := range []SMTPOptions{
		{},
		{Addr: "nohostport"},
		{Addr: "127.0.0.1:25", TLS: "maybe"},
		{Addr: "/run/lmtp", TLS: "starttls", LMTP: true},
		{Addr: "127.0.0.1:24", TLS: "starttls", LMTP: true},
		{Addr: "127.0.0.1:25", Helo: "bad name"},
		{Addr: "127.0.0.1:25", Sender: "a@x\r\nRSET"},
	} {
		errs := NewSMTP(o).Deliver(context.Background(), smtpMsg("a: b\r\n\r\n"), "", []Recipient{{Address: "a@x"}}, nil)
		var de *Error
		if !errors.As(errs[0], &de) || de.Permanent || !strings.HasPrefix(de.Reason, "configuration: ") {
			t.Errorf("NewSMTP(%+v).Deliver = %v; want temporary configuration error", o, errs[0])
		}
	}
	d := NewSMTP(SMTPOptions{Addr: "127.0.0.1:25", Timeout: time.Hour, FinalTimeout: time.Minute})
	if d.opts.FinalTimeout != time.Hour {
		t.Errorf("FinalTimeout = %v; want raised to Timeout", d.opts.FinalTimeout)
	}
	if d := NewSMTP(SMTPOptions{Addr: "127.0.0.1:25"}); d.opts.Timeout != 5*time.Minute || d.opts.FinalTimeout != 10*time.Minute {
		t.Errorf("default timeouts = %v, %v; want 5m, 10m", d.opts.Timeout, d.opts.FinalTimeout)
	}
}

// A server that accepts the connection and then says nothing must cost one
// Timeout, whatever the TLS mode: go-smtp's own greeting timeout (5 min in
// NewClientStartTLS) and the implicit TLS handshake are bounded too.
func TestSMTPSilentServer(t *testing.T) {
	for _, mode := range []string{"none", "starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			addr := smtpRaw(t, func(c net.Conn, r *bufio.Reader) { io.Copy(io.Discard, r) })
			d := NewSMTP(SMTPOptions{Addr: addr, TLS: mode, Timeout: 200 * time.Millisecond})
			start := time.Now()
			errs := d.Deliver(context.Background(), smtpMsg("a: b\r\n\r\n"), "", []Recipient{{Address: "a@x"}}, nil)
			checkResults(t, errs, "temp")
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("Deliver took %v with Timeout 200ms", el)
			}
		})
	}
}

// A server that stops reading in the middle of DATA: go-smtp sets no
// deadline there, ours (Timeout per write) must end the delivery.
func TestSMTPStalledData(t *testing.T) {
	release := make(chan struct{})
	addr := smtpRaw(t, func(c net.Conn, r *bufio.Reader) {
		rawDialogue(c, r, 1)
		<-release // not reading until the client has given up
	})
	// Timeout is per step, so a busy machine must not spend it before
	// DATA: 1s is far more than any step takes here, and the stall is
	// forever.
	d := NewSMTP(SMTPOptions{Addr: addr, Timeout: time.Second})
	raw := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 400_000) // 32 MB: more than the socket buffers
	errs := d.Deliver(context.Background(), smtpMsg(raw), "s@x", []Recipient{{Address: "a@x"}}, nil)
	close(release)
	checkResults(t, errs, "temp:sending message data: timed out after 1s")
}

// Non-ASCII addresses need SMTPUTF8 (RFC 6531): without it the result is
// permanent and no MAIL is sent; with it MAIL carries the parameter.
func TestSMTPUTF8(t *testing.T) {
	for _, offered := range []bool{false, true} {
		mail := make(chan string, 1)
		addr := smtpRaw(t, func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 raw\r\n")
			ehlo := "250 raw"
			if offered {
				ehlo = "250-raw\r\n250 SMTPUTF8"
			}
			rawCmd(c, r, ehlo)
			line := rawCmd(c, r, "250 ok")
			mail <- line
			if !strings.HasPrefix(line, "MAIL") {
				return
			}
			rawCmd(c, r, "250 ok")
			rawCmd(c, r, "354 go")
			rawReadData(r)
			io.WriteString(c, "250 ok\r\n")
			rawCmd(c, r, "221 bye")
		})
		d := NewSMTP(SMTPOptions{Addr: addr, Timeout: 2 * time.Second})
		errs := d.Deliver(context.Background(), smtpMsg("a: b\r\n\r\n"), "s@x", []Recipient{{Address: "jörg@example.com"}}, nil)
		line := <-mail
		if !offered {
			checkResults(t, errs, "perm:SMTP server lacks SMTPUTF8")
			if strings.HasPrefix(line, "MAIL") {
				t.Errorf("MAIL sent without SMTPUTF8: %q", line)
			}
			continue
		}
		checkResults(t, errs, "")
		if !strings.Contains(line, "SMTPUTF8") {
			t.Errorf("MAIL = %q; want the SMTPUTF8 parameter", line)
		}
	}
}

// checkReasons fails unless every failure's reason is one bounded line of
// valid UTF-8 without control characters: it goes into X-Popfetch-Reason
// and the log, and comes from the server.
func checkReasons(t testing.TB, errs []error) {
	t.Helper()
	for i, err := range errs {
		var de *Error
		if err == nil || !errors.As(err, &de) {
			continue
		}
		if len(de.Reason) > 200 || !utf8.ValidString(de.Reason) || strings.ContainsFunc(de.Reason, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Errorf("result %d reason %q: want one line, at most 200 bytes, valid UTF-8, no control characters", i, de.Reason)
		}
	}
}

// TestSMTPMalformedReplies plays malformed, multiline and oversized
// replies at each stage (doc/design.md §3.6, fetchmail CVE-2025-61962): no
// hang, no unbounded read, a bounded one-line reason, and success only for
// a well-formed 2xx to the final dot.
func TestSMTPMalformedReplies(t *testing.T) {
	huge := strings.Repeat("x", 2*maxReplyBytes)
	// afterData plays a normal dialogue for two recipients up to the final
	// dot, then sends final.
	afterData := func(final string) func(c net.Conn, r *bufio.Reader) {
		return func(c net.Conn, r *bufio.Reader) {
			rawDialogue(c, r, 2)
			rawReadData(r)
			io.WriteString(c, final)
			rawCmd(c, r, "221 bye")
		}
	}
	// afterDataClose sends final and hangs up.
	afterDataClose := func(final string) func(c net.Conn, r *bufio.Reader) {
		return func(c net.Conn, r *bufio.Reader) {
			rawDialogue(c, r, 2)
			rawReadData(r)
			io.WriteString(c, final)
		}
	}
	for _, tc := range []struct {
		name   string
		lmtp   bool
		script func(c net.Conn, r *bufio.Reader)
		want   []string
	}{
		{name: "hugeGreetingLine", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 "+huge)
		}, want: []string{"temp:too long a line", "temp:too long a line"}},
		{name: "manyGreetingLines", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, strings.Repeat("220-x\r\n", 400_000)+"220 x\r\n")
		}, want: []string{"temp:more reply data", "temp:more reply data"}},
		// A 250 that does not end within the budget is not a delivery.
		{name: "hugeFinalReply", script: afterData("250 " + huge + "\r\n"), want: []string{"temp:final dot", "temp:final dot"}},
		{name: "endlessFinalContinuation", script: afterData(strings.Repeat("250-queued\r\n", 200_000) + "250 queued\r\n"), want: []string{"temp:final dot", "temp:final dot"}},
		{name: "multilineFinal", script: afterData("250-2.0.0 ok\r\n250-2.0.0 still ok\r\n250 2.0.0 queued\r\n"), want: []string{"", ""}},
		{name: "multilinePermanent", script: afterData("550-5.7.1 first\r\n550-5.7.1 \x1b[2Jsecond\r\n550 5.7.1 third\r\n"),
			want: []string{"perm:SMTP 550 5.7.1 first", "perm:SMTP 550 5.7.1 first"}},
		// A continuation with another code does not end the reply; the
		// drop after it leaves the message undelivered.
		{name: "mismatchedContinuation", script: afterDataClose("250-ok\r\n550 no\r\n"), want: []string{"temp:final dot", "temp:final dot"}},
		// net/textproto rejects a bare code (RFC 5321 allows it); that
		// errs toward a duplicate, never a loss.
		{name: "codeOnly", script: afterData("250\r\n"), want: []string{"temp:final dot: short response", "temp:final dot: short response"}},
		{name: "nonNumericCode", script: afterData("2x0 ok\r\n"), want: []string{"temp:final dot: invalid response code", "temp:final dot: invalid response code"}},
		{name: "code999", script: afterData("999 what\r\n"), want: []string{"temp:SMTP 999", "temp:SMTP 999"}},
		// The whole reply arrived, only its CRLF is missing.
		{name: "noCRLFThenClose", script: afterDataClose("250 ok"), want: []string{"", ""}},
		{name: "cutCodeThenClose", script: afterDataClose("25"), want: []string{"temp:final dot", "temp:final dot"}},
		{name: "cutContinuationThenClose", script: afterDataClose("250-ok\r\n250"), want: []string{"temp:final dot", "temp:final dot"}},
		// Lenient like most clients: bare LF ends a reply line.
		{name: "bareLF", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 raw\n")
			for _, reply := range []string{"250-raw\n250 8BITMIME\n", "250 ok\n", "250 ok\n", "250 ok\n", "354 go\n"} {
				r.ReadString('\n')
				io.WriteString(c, reply)
			}
			rawReadData(r)
			io.WriteString(c, "250 ok\n")
			r.ReadString('\n')
			io.WriteString(c, "221 bye\n")
		}, want: []string{"", ""}},
		{name: "controlAndInvalidUTF8", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 raw\r\n")
			rawCmd(c, r, "250 raw")
			rawCmd(c, r, "550 5.1.0 \x00bad\xff\xfe\x1b]0;title\x07 sender")
			rawCmd(c, r, "221 bye")
		}, want: []string{"perm:SMTP 550 5.1.0", "perm:SMTP 550 5.1.0"}},
		{name: "longPermanentReason", script: afterData("554 5.6.0 " + strings.Repeat("y", 1900) + "\r\n"), want: []string{"perm:SMTP 554 5.6.0 yyy", "perm:SMTP 554 5.6.0 yyy"}},
		// Over go-smtp's line limit even a 5xx is only an i/o error:
		// the message waits on the server rather than being refused on
		// the strength of a reply nobody could read.
		{name: "overlongPermanentReason", script: afterData("554 5.6.0 " + strings.Repeat("y", 100_000) + "\r\n"), want: []string{"temp:final dot: smtp: too long a line", "temp:final dot: smtp: too long a line"}},
		// 334 is an AUTH challenge (the CVE-2025-61962 reply), here in
		// answer to MAIL: an odd code, temporary, the session ended.
		{name: "challengeToMail", script: func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 raw\r\n")
			rawCmd(c, r, "250 raw")
			rawCmd(c, r, "334 "+strings.Repeat("=", 1000))
			rawCmd(c, r, "221 bye")
		}, want: []string{"temp:SMTP 334", "temp:SMTP 334"}},
		{name: "badEnhancedCode", script: afterData("550 5.99999999999999999999.1 x\r\n"), want: []string{"perm:SMTP 550", "perm:SMTP 550"}},
		{name: "lmtpMultilinePerRecipient", lmtp: true, script: afterData("250-2.0.0 a\r\n250 2.0.0 a ok\r\n452-4.2.2 b\r\n452 4.2.2 b full\r\n"),
			want: []string{"", "temp:LMTP 452 4.2.2 b b full"}},
		{name: "lmtpHugeFirstReply", lmtp: true, script: afterData("250 " + huge + "\r\n250 2.0.0 b ok\r\n"), want: []string{"temp:final dot", "temp:final dot"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewSMTP(SMTPOptions{Addr: smtpRaw(t, tc.script), LMTP: tc.lmtp, Timeout: 2 * time.Second})
			errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nbody\r\n"), "s@x", []Recipient{{Address: "a@x"}, {Address: "b@x"}}, nil)
			checkResults(t, errs, tc.want...)
			checkReasons(t, errs)
		})
	}
}

// FuzzSMTPReplies feeds arbitrary server output to the client: it must not
// panic or hang, every failure must be an *Error, and nil (delivered) is
// allowed only if the client really sent the final dot.
func FuzzSMTPReplies(f *testing.F) {
	f.Add([]byte("220 x\r\n250 x\r\n250 x\r\n250 x\r\n354 x\r\n250 x\r\n221 x\r\n"), false)
	f.Add([]byte("220 x\r\n250-x\r\n250 SMTPUTF8\r\n250 x\r\n451 4.0.0\r\n"), false)
	f.Add([]byte("220 x\r\n250 x\r\n250 x\r\n250 x\r\n354 x\r\n250 x\r\n"), true)
	f.Add([]byte("220-x\r\n220 x\r\n250 x\n250 x\r\n25"), false)
	f.Add([]byte("220 x\r\n250 x\r\n334 =\r\n999 \xff\x00\r\n"), true)
	f.Add([]byte("220 x\r\n250 x\r\n250 x\r\n250 x\r\n354 x\r\n250-x\r\n250 x\r\n"), true)
	f.Add([]byte("220 x\r\n250 x\r\n250 x\r\n250 x\r\n250 x\r\n354 x\r\n250-ok\r\n550 no\r\n"), false)
	f.Add([]byte("220 x\n250 x\n250 x\n250 x\n250 x\n354 x\n250"), false)
	f.Add([]byte("220 x\r\n250 x\r\n334 "+strings.Repeat("=", 2100)+"\r\n"), false)
	f.Fuzz(func(t *testing.T, script []byte, lmtp bool) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		sawDot := make(chan bool, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				sawDot <- false
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(script)
			c.(*net.TCPConn).CloseWrite()
			in, _ := io.ReadAll(c)
			sawDot <- bytes.Contains(in, []byte("\r\n.\r\n"))
		}()
		d := NewSMTP(SMTPOptions{Addr: l.Addr().String(), LMTP: lmtp, Timeout: time.Second})
		errs := d.Deliver(context.Background(), smtpMsg("Subject: x\r\n\r\nbody\r\n"), "s@x", []Recipient{{Address: "a@x"}, {Address: "b@x"}}, nil)
		dot := <-sawDot
		for i, err := range errs {
			var de *Error
			if err == nil && !dot {
				t.Errorf("result %d delivered without a final dot", i)
			}
			if err != nil && !errors.As(err, &de) {
				t.Errorf("result %d = %v; want *Error", i, err)
			}
		}
		checkReasons(t, errs)
	})
}

// TestLMTPDovecot delivers to a real dovecot-lmtpd, over its unix socket
// and over TCP: per-recipient replies for a known and an unknown user.
func TestLMTPDovecot(t *testing.T) {
	s := dovecottest.Start(t, dovecottest.Options{LMTP: true})
	alice := s.AddUser(t, "alice", "pw")
	bob := s.AddUser(t, "bob", "pw")
	raw := "From: a@example.org\r\nSubject: via popfetch\r\n\r\n.dot line\r\nbare\nlf\r\n"
	for _, addr := range []string{s.LMTPSocket, s.LMTPAddr} {
		d := NewSMTP(SMTPOptions{Addr: addr, LMTP: true, Helo: "popfetch.test", LocalHost: "mx.local", Timeout: 4 * time.Second})
		rcpts := []Recipient{{User: "alice", Address: "alice@example.com"}, {User: "bob"}, {Address: "nosuchuser@example.com"}}
		errs := d.Deliver(context.Background(), smtpMsg(raw), "sender@example.org", rcpts, nil)
		checkResults(t, errs, "", "", "perm:LMTP 550")
	}
	if got := alice.Count(t); got != 2 {
		t.Errorf("alice: Count() = %d; want 2", got)
	}
	msgs := bob.Messages(t)
	if len(msgs) != 2 || !bytes.Contains(msgs[0], []byte("Received: from pop.example.net")) || !bytes.Contains(msgs[0], []byte("\n.dot line\nbare\nlf\n")) {
		t.Errorf("bob: Messages() = %q; want two copies with Received: and the body intact", msgs)
	}
}

// BenchmarkLMTPDeliver measures whole deliveries (connect, LHLO, one
// transaction, QUIT) to the in-process LMTP server over a unix socket.
func BenchmarkLMTPDeliver(b *testing.B) {
	sink := &delivertest.Sink{}
	d := NewSMTP(SMTPOptions{Addr: startSink(b, sink, true, nil, false), LMTP: true, LocalHost: "mx.local", Helo: "popfetch.test"})
	m := smtpMsg("From: a@example.org\r\nSubject: bench\r\n\r\n" + strings.Repeat("0123456789 abcdefghij 0123456789 abcdefghij 0123456789 abcd\r\n", 64))
	rcpts := []Recipient{{Address: "a@x"}}
	b.SetBytes(int64(len(m.Raw)))
	for b.Loop() {
		if errs := d.Deliver(context.Background(), m, "s@x", rcpts, nil); errs[0] != nil {
			b.Fatal(errs[0])
		}
		sink.Forget()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkLMTPDovecot is the same against a real dovecot-lmtpd over its
// unix socket (each delivery is also fsynced into a Maildir by dovecot).
func BenchmarkLMTPDovecot(b *testing.B) {
	s := dovecottest.Start(b, dovecottest.Options{LMTP: true})
	s.AddUser(b, "alice", "pw")
	d := NewSMTP(SMTPOptions{Addr: s.LMTPSocket, LMTP: true, LocalHost: "mx.local", Helo: "popfetch.test"})
	m := smtpMsg("From: a@example.org\r\nSubject: bench\r\n\r\n" + strings.Repeat("0123456789 abcdefghij 0123456789 abcdefghij 0123456789 abcd\r\n", 64))
	rcpts := []Recipient{{Address: "alice@example.com"}}
	b.SetBytes(int64(len(m.Raw)))
	for b.Loop() {
		if errs := d.Deliver(context.Background(), m, "s@x", rcpts, nil); errs[0] != nil {
			b.Fatal(errs[0])
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func TestSMTPRcptAddr(t *testing.T) {
	tests := []struct {
		r    Recipient
		want string
	}{
		{Recipient{User: "alice", Address: "sales@example.com", Domain: "example.com"}, "alice@example.com"},
		{Recipient{User: "alice", Domain: "example.com"}, "alice@example.com"},
		{Recipient{Address: "me@example.net"}, "me@example.net"},
		{Recipient{User: "me"}, "me"},
	}
	for _, tt := range tests {
		if got := rcptAddr(tt.r); got != tt.want {
			t.Errorf("rcptAddr(%+v) = %q; want %q", tt.r, got, tt.want)
		}
	}
}
