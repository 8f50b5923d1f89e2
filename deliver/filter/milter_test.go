package filter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	milter "github.com/d--j/go-milter"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/internal/testutil"
)

// sampleMessage is a message as Gmail delivers it: the trusted Received
// field is the one by mx.google.com (the second).
const sampleMessage = "Return-Path: <alice@example.net>\r\n" +
	"Received: by 2002:a05:6a10:8c0c:b0:4f1:2a4b:8d3 with SMTP id ja12csp1234567pxb;\r\n" +
	"        Mon, 1 Jan 2024 08:00:01 -0800 (PST)\r\n" +
	"Received: from mail.example.net (mail.example.net. [203.0.113.25])\r\n" +
	"        by mx.google.com with ESMTPS id s20si123456ejf.22.2024.01.01.08.00.01\r\n" +
	"        for <joe@gmail.com>\r\n" +
	"        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);\r\n" +
	"        Mon, 01 Jan 2024 08:00:01 -0800 (PST)\r\n" +
	"Received: from forged.example (forged.example [192.0.2.66])\r\n" +
	"        by mail.example.net; Mon, 01 Jan 2024 08:00:00 -0800\r\n" +
	"From: Alice <alice@example.net>\r\n" +
	"To: joe@gmail.com\r\n" +
	"Subject: lunch\r\n" +
	"X-Old: remove me\r\n" +
	"\r\n" +
	"Shall we?\r\n" +
	"-- \r\nAlice\r\n"

// recorder is a go-milter test server backend that records what the
// client tells it, macros included.
type recorder struct {
	milter.NoOpMilter
	mu  *sync.Mutex
	log *[]string
	eom func(m milter.Modifier) (*milter.Response, error)
}

var recordedMacros = []milter.MacroName{"j", "{daemon_name}", "v", "{client_addr}", "{client_name}", "{client_ptr}", "{if_addr}", "_",
	"i", "{mail_addr}", "{mail_host}", "{mail_mailer}", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.log = append(*r.log, fmt.Sprintf(format, args...))
}

func (r *recorder) macros(stage string, m milter.Modifier) {
	var kv []string
	for _, n := range recordedMacros {
		if v, ok := m.GetEx(n); ok {
			kv = append(kv, n+"="+v)
		}
	}
	r.add("macros@%s %s", stage, strings.Join(kv, " "))
}

func (r *recorder) Connect(host, family string, port uint16, addr string, m milter.Modifier) (*milter.Response, error) {
	r.macros("connect", m)
	r.add("connect host=%s family=%s port=%d addr=%s", host, family, port, addr)
	return milter.RespContinue, nil
}
func (r *recorder) Helo(name string, m milter.Modifier) (*milter.Response, error) {
	r.add("helo %s", name)
	return milter.RespContinue, nil
}
func (r *recorder) MailFrom(from, args string, m milter.Modifier) (*milter.Response, error) {
	r.macros("mail", m)
	r.add("mail from=<%s>", from)
	return milter.RespContinue, nil
}
func (r *recorder) RcptTo(to, args string, m milter.Modifier) (*milter.Response, error) {
	r.macros("rcpt", m)
	r.add("rcpt to=<%s>", to)
	return milter.RespContinue, nil
}
func (r *recorder) Header(name, value string, m milter.Modifier) (*milter.Response, error) {
	r.add("header %s: %q", name, value)
	return milter.RespContinue, nil
}
func (r *recorder) BodyChunk(chunk []byte, m milter.Modifier) (*milter.Response, error) {
	r.add("body %q", chunk)
	return milter.RespContinue, nil
}
func (r *recorder) EndOfMessage(m milter.Modifier) (*milter.Response, error) {
	r.macros("eom", m)
	if r.eom != nil {
		return r.eom(m)
	}
	return milter.RespAccept, nil
}

// startMilter serves backend on a loopback port and returns its
// "inet:" address.
func startMilter(t testing.TB, backend func() milter.Milter) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := milter.NewServer(milter.WithMilter(backend),
		milter.WithAction(milter.OptAddHeader|milter.OptChangeHeader|milter.OptChangeBody|milter.OptQuarantine),
		milter.WithMacroRequest(milter.StageConnect, recordedMacros),
		milter.WithMacroRequest(milter.StageMail, recordedMacros),
		milter.WithMacroRequest(milter.StageRcpt, recordedMacros),
		milter.WithMacroRequest(milter.StageEOM, recordedMacros))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "inet:" + ln.Addr().String()
}

func sampleEnv(t testing.TB, raw string) (*Envelope, *deliver.Message) {
	t.Helper()
	m := &deliver.Message{Account: "acct", UID: "uid1", Raw: []byte(raw)}
	rcv, err := TrustedReceived(m.Head(), Trust{By: "mx.google.com"})
	if err != nil {
		t.Fatal(err)
	}
	env := &Envelope{Sender: deliver.ReturnPath(m.Head()), Rcpts: []string{"joe@gmail.com", "jane@gmail.com"},
		Client: rcv, QueueID: "4F00AB12", SpoolDir: testutil.PrivateDir(t)}
	return env, m
}

// TestMilterConversation checks what a milter is told for the sample
// message (the client, HELO and macros from the trusted Received field,
// the envelope, the header as written, the body) and that its changes
// come back as data and Apply makes them.
func TestMilterConversation(t *testing.T) {
	var mu sync.Mutex
	var log []string
	addr := startMilter(t, func() milter.Milter {
		return &recorder{mu: &mu, log: &log, eom: func(m milter.Modifier) (*milter.Response, error) {
			m.AddHeader("X-Spam-Flag", "YES")
			m.AddHeader("X-Folded", "a\nb\r\n\r\nc")
			m.ChangeHeader(1, "Subject", "[SPAM] lunch")
			m.ChangeHeader(1, "X-Old", "")
			m.InsertHeader(0, "X-Top", "first")
			return milter.RespAccept, nil
		}}
	})
	f, err := NewMilter("test", addr, MilterOptions{LocalHost: "popfetch.test"})
	if err != nil {
		t.Fatal(err)
	}
	env, m := sampleEnv(t, sampleMessage)
	res, err := Run(context.Background(), []Step{{Filter: f, Timeout: testutil.Slow(10 * time.Second)}}, env, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	got := strings.Join(log, "\n")
	want := []string{
		"macros@connect j=popfetch.test {daemon_name}=popfetch v=popfetch " + deliver.Version +
			" {client_addr}=203.0.113.25 {client_name}=mail.example.net {client_ptr}=mail.example.net {if_addr}=127.0.0.1" +
			" _=mail.example.net [203.0.113.25]",
		"connect host=mail.example.net family=tcp4 port=0 addr=203.0.113.25",
		"helo mail.example.net",
		"mail from=<alice@example.net>",
		"{mail_addr}=alice@example.net {mail_host}=example.net {mail_mailer}=esmtp",
		"rcpt to=<joe@gmail.com>",
		"rcpt to=<jane@gmail.com>",
		"{rcpt_addr}=jane@gmail.com {rcpt_host}=gmail.com {rcpt_mailer}=local",
		`header Received: "from mail.example.net (mail.example.net. [203.0.113.25])\n        by mx.google.com`,
		`header Subject: "lunch"`,
		`body "Shall we?\r\n-- \r\nAlice\r\n"`,
		"macros@eom j=popfetch.test",
		" i=4F00AB12",
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("milter was not told %q; it recorded:\n%s", w, got)
		}
	}
	t.Logf("recorded by the test milter:\n%s", got)
	if res.Action != Accept || len(res.Verdicts) != 1 {
		t.Fatalf("result %+v", res)
	}
	var changes []string
	for _, c := range res.Verdicts[0].Changes {
		changes = append(changes, c.String())
	}
	wantChanges := []string{`add 0 X-Spam-Flag: "YES"`, `add 0 X-Folded: "a\nb\n\nc"`, `change 1 Subject: "[SPAM] lunch"`, `remove 1 X-Old: ""`, `insert 0 X-Top: "first"`}
	if strings.Join(changes, "|") != strings.Join(wantChanges, "|") {
		t.Errorf("changes\n%v\nwant\n%v", changes, wantChanges)
	}
	if res.Message == nil {
		t.Fatal("no filtered copy")
	}
	out, _ := io.ReadAll(res.Message.Reader())
	wantOut := "X-Top: first\r\n" + strings.Replace(strings.Replace(sampleMessage, "Subject: lunch\r\n", "Subject: [SPAM] lunch\r\n", 1),
		"X-Old: remove me\r\n", "X-Spam-Flag: YES\r\nX-Folded: a\r\n\tb\r\n\tc\r\n", 1)
	if string(out) != wantOut {
		t.Errorf("filtered copy:\n%q\nwant\n%q", out, wantOut)
	}
}

// TestMilterVerdicts: each answer of a milter, and each way of not
// answering, gives its verdict under both on_unavailable policies.
func TestMilterVerdicts(t *testing.T) {
	answer := func(resp func() (*milter.Response, error), delay time.Duration) string {
		return startMilter(t, func() milter.Milter {
			var mu sync.Mutex
			var log []string
			return &recorder{mu: &mu, log: &log, eom: func(m milter.Modifier) (*milter.Response, error) {
				time.Sleep(delay)
				r, err := resp()
				if err == errQuarantine {
					m.Quarantine("Infected (Eicar-Test-Signature)")
					return milter.RespAccept, nil
				}
				return r, err
			}}
		})
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "inet:" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name        string
		addr        string
		timeout     time.Duration
		want        Action // on_unavailable = tempfail
		wantOpen    Action // on_unavailable = accept
		unavailable bool
		reply       string
	}{
		{"accept", answer(func() (*milter.Response, error) { return milter.RespAccept, nil }, 0), 0, Accept, Accept, false, ""},
		{"reject with reply", answer(func() (*milter.Response, error) {
			return milter.RejectWithCodeAndReason(554, "5.7.1 Spam message rejected")
		}, 0), 0, Reject, Reject, false, "554 5.7.1 Spam message rejected"},
		{"plain reject", answer(func() (*milter.Response, error) { return milter.RespReject, nil }, 0), 0, Reject, Reject, false, "550 5.7.1 Command rejected"},
		{"discard", answer(func() (*milter.Response, error) { return milter.RespDiscard, nil }, 0), 0, Discard, Discard, false, ""},
		{"tempfail", answer(func() (*milter.Response, error) { return milter.RespTempFail, nil }, 0), 0, TempFail, Accept, true, "451 4.7.1 Service unavailable - try again later"},
		{"4xx reply", answer(func() (*milter.Response, error) { return milter.RejectWithCodeAndReason(451, "4.7.1 Try again later") }, 0), 0, TempFail, Accept, true, "451 4.7.1 Try again later"},
		{"quarantine", answer(func() (*milter.Response, error) { return nil, errQuarantine }, 0), 0, Reject, Reject, false, "quarantine: Infected (Eicar-Test-Signature)"},
		{"down", down, 0, TempFail, Accept, true, "connection refused"},
		{"timeout", answer(func() (*milter.Response, error) { return milter.RespAccept, nil }, 3*time.Second), 300 * time.Millisecond, TempFail, Accept, true, "no answer within 300ms"},
	}
	for _, tt := range tests {
		for _, policy := range []OnUnavailable{UnavailableTempFail, UnavailableAccept} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, policy), func(t *testing.T) {
				f, err := NewMilter(tt.name, tt.addr, MilterOptions{})
				if err != nil {
					t.Fatal(err)
				}
				env, m := sampleEnv(t, sampleMessage)
				timeout := tt.timeout
				if timeout == 0 {
					timeout = testutil.Slow(10 * time.Second)
				}
				start := time.Now()
				res, err := Run(context.Background(), []Step{{Filter: f, Timeout: timeout, OnUnavailable: policy}}, env, m, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Close()
				if tt.timeout > 0 && time.Since(start) > 2*time.Second {
					t.Errorf("took %v with a %v timeout", time.Since(start), tt.timeout)
				}
				v := res.Verdicts[0]
				want := tt.want
				if policy == UnavailableAccept {
					want = tt.wantOpen
				}
				if res.Action != want || v.Unavailable != tt.unavailable || !strings.Contains(v.Reply, tt.reply) {
					t.Errorf("got %v unavailable=%v reply=%q; want %v unavailable=%v reply~%q", res.Action, v.Unavailable, v.Reply, want, tt.unavailable, tt.reply)
				}
			})
		}
	}
}

// TestMilterChain: the second milter sees the first one's changes, and a
// reject stops the chain.
func TestMilterChain(t *testing.T) {
	var mu sync.Mutex
	var log2 []string
	first := startMilter(t, func() milter.Milter {
		var l []string
		return &recorder{mu: &mu, log: &l, eom: func(m milter.Modifier) (*milter.Response, error) {
			m.AddHeader("X-First", "was here")
			m.ReplaceBody(strings.NewReader("replaced\r\n"))
			return milter.RespAccept, nil
		}}
	})
	second := startMilter(t, func() milter.Milter {
		return &recorder{mu: &mu, log: &log2, eom: func(m milter.Modifier) (*milter.Response, error) {
			return milter.RejectWithCodeAndReason(550, "5.7.1 no")
		}}
	})
	f1, _ := NewMilter("first", first, MilterOptions{})
	f2, _ := NewMilter("second", second, MilterOptions{})
	env, m := sampleEnv(t, sampleMessage)
	res, err := Run(context.Background(), []Step{{Filter: f1}, {Filter: f2}}, env, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	got := strings.Join(log2, "\n")
	if !strings.Contains(got, `header X-First: "was here"`) || !strings.Contains(got, `body "replaced\r\n"`) {
		t.Errorf("second milter did not see the first's changes:\n%s", got)
	}
	if res.Action != Reject || len(res.Verdicts) != 2 || res.Verdicts[1].Reply != "550 5.7.1 no" {
		t.Errorf("result %v %+v", res.Action, res.Verdicts)
	}
}

// TestMilterHugePacket: a milter announcing a packet larger than
// popfetch reads is refused before go-milter allocates it.
func TestMilterHugePacket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var n uint32
		binary.Read(c, binary.BigEndian, &n)
		io.CopyN(io.Discard, c, int64(n))
		binary.Write(c, binary.BigEndian, uint32(500<<20))
		c.Write([]byte("O"))
		time.Sleep(time.Second)
	}()
	f, _ := NewMilter("huge", "inet:"+ln.Addr().String(), MilterOptions{})
	env, m := sampleEnv(t, sampleMessage)
	_, err = f.Check(context.Background(), env, m)
	if !errors.Is(err, errMilterTooMuch) {
		t.Fatalf("got %v, want errMilterTooMuch", err)
	}
}

func TestParseMilterAddr(t *testing.T) {
	for _, tt := range []struct{ in, network, addr string }{
		{"inet:127.0.0.1:11332", "tcp", "127.0.0.1:11332"},
		{"inet6:[::1]:11332", "tcp", "[::1]:11332"},
		{"unix:/run/rspamd/milter.sock", "unix", "/run/rspamd/milter.sock"},
		{"unix:relative.sock", "", ""},
		{"127.0.0.1:11332", "", ""},
		{"inet:nohost", "", ""},
	} {
		n, a, err := parseMilterAddr(tt.in)
		if n != tt.network || a != tt.addr || (err != nil) != (tt.network == "") {
			t.Errorf("%q: got %q %q %v", tt.in, n, a, err)
		}
	}
}

var errQuarantine = errors.New("quarantine")
