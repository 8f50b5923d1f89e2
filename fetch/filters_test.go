package fetch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	milter "github.com/d--j/go-milter"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/deliver/rules"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// testMilter is a go-milter test server that decides by the Subject:
// "spam" adds X-Spam-Flag: YES, "reject" rejects with 550, "tempfail"
// answers 451, "virus" quarantines, "slow" sleeps past the client's
// timeout; everything else is accepted with X-Scanned added. It records
// the client, HELO and recipients it was told, per Subject.
type testMilter struct {
	mu    sync.Mutex
	seen  map[string][]string // subject -> "connect ...", "helo ...", "rcpt ..."
	calls map[string]int      // subject -> conversations
	// active/peak count the conversations at once.
	active, peak int
	// healed: "slow" and "tempfail" are accepted at once.
	healed bool
	ln     net.Listener
	srv    *milter.Server
}

type testMilterSession struct {
	milter.NoOpMilter
	tm      *testMilter
	events  []string
	subject string
}

func (s *testMilterSession) Connect(host, family string, port uint16, addr string, m milter.Modifier) (*milter.Response, error) {
	s.events = append(s.events, fmt.Sprintf("connect host=%s addr=%s client_addr=%s", host, addr, m.Get("{client_addr}")))
	return milter.RespContinue, nil
}
func (s *testMilterSession) Helo(name string, m milter.Modifier) (*milter.Response, error) {
	s.events = append(s.events, "helo "+name)
	return milter.RespContinue, nil
}
func (s *testMilterSession) MailFrom(from, _ string, m milter.Modifier) (*milter.Response, error) {
	s.events = append(s.events, "mail "+from)
	return milter.RespContinue, nil
}
func (s *testMilterSession) RcptTo(to, _ string, m milter.Modifier) (*milter.Response, error) {
	s.events = append(s.events, "rcpt "+to)
	return milter.RespContinue, nil
}
func (s *testMilterSession) Header(name, value string, m milter.Modifier) (*milter.Response, error) {
	if strings.EqualFold(name, "Subject") {
		s.subject = strings.TrimSpace(value)
	}
	return milter.RespContinue, nil
}
func (s *testMilterSession) EndOfMessage(m milter.Modifier) (*milter.Response, error) {
	tm := s.tm
	tm.mu.Lock()
	tm.seen[s.subject] = s.events
	tm.calls[s.subject]++
	tm.active++
	tm.peak = max(tm.peak, tm.active)
	healed := tm.healed
	tm.mu.Unlock()
	defer func() {
		tm.mu.Lock()
		tm.active--
		tm.mu.Unlock()
	}()
	switch {
	case healed && (strings.Contains(s.subject, "slow") || strings.Contains(s.subject, "tempfail")):
	case strings.Contains(s.subject, "counted"):
		// A field that differs in every conversation.
		tm.mu.Lock()
		n := tm.calls[s.subject]
		tm.mu.Unlock()
		m.ChangeHeader(1, "Subject", fmt.Sprintf("counted [scan %d]", n))
		return milter.RespAccept, nil
	case strings.Contains(s.subject, "slow"):
		time.Sleep(300 * time.Millisecond)
		return milter.RespAccept, nil
	case strings.Contains(s.subject, "spam"):
		m.AddHeader("X-Spam-Flag", "YES")
		return milter.RespAccept, nil
	case strings.Contains(s.subject, "reject"):
		return milter.RejectWithCodeAndReason(550, "5.7.1 spam detected")
	case strings.Contains(s.subject, "tempfail"):
		return milter.RespTempFail, nil
	case strings.Contains(s.subject, "virus"):
		m.Quarantine("Eicar-Signature FOUND")
		return milter.RespAccept, nil
	}
	m.AddHeader("X-Scanned", "clean")
	return milter.RespAccept, nil
}

// startTestMilter serves a testMilter on a unix socket (which, unlike
// a loopback port, a restarted milter gets back for sure).
func startTestMilter(t *testing.T) (*testMilter, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pfmilter")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tm := &testMilter{seen: map[string][]string{}, calls: map[string]int{}}
	addr := tm.start(t, filepath.Join(dir, "milter.sock"))
	return tm, addr
}

func (tm *testMilter) start(t *testing.T, path string) string {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	tm.ln = ln
	tm.srv = milter.NewServer(milter.WithMilter(func() milter.Milter { return &testMilterSession{tm: tm} }),
		milter.WithAction(milter.OptAddHeader|milter.OptChangeHeader|milter.OptQuarantine),
		milter.WithMacroRequest(milter.StageConnect, []milter.MacroName{"{client_addr}"}))
	go tm.srv.Serve(ln)
	t.Cleanup(func() { tm.srv.Close() })
	return "unix:" + path
}

// stop closes the milter, as a filter that is down. The listener is
// closed here too (which removes the socket): a Close before Serve has
// taken it over would leave it open.
func (tm *testMilter) stop() {
	tm.srv.Close()
	tm.ln.Close()
}

func (tm *testMilter) events(subject string) []string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.seen[subject]
}

// filterMsg is a message as the provider's MX received it from
// 203.0.113.25 (HELO mail.example.net); the field below is the
// sender's own and not to be trusted.
func filterMsg(uid, subject string) pop3test.Message {
	return pop3test.Message{UID: uid, Data: []byte("Return-Path: <alice@example.net>\r\n" +
		"Received: from mail.example.net (mail.example.net [203.0.113.25])\r\n" +
		"\tby mx.provider.example with ESMTPS id " + uid + "; Mon, 01 Jan 2024 08:00:01 +0000\r\n" +
		"Received: from forged.example (forged.example [192.0.2.66]) by mail.example.net; Mon, 01 Jan 2024 08:00:00 +0000\r\n" +
		"From: alice@example.net\r\nTo: user@example.com\r\nSubject: " + subject + "\r\nMessage-ID: <" + uid + "@example.net>\r\n" +
		"\r\nbody of " + uid + "\r\n")}
}

// filterAccount is a single-drop account with a Maildir, a postmaster
// Maildir, the milter at addr and a rule filing X-Spam-Flag: YES into
// Junk.
func filterAccount(t *testing.T, srv *pop3test.Server, addr string) *rcfile.Account {
	a := testAccount(t, srv)
	dir := filepath.Dir(a.StateDir)
	a.Postmaster = &rcfile.Destination{Maildir: filepath.Join(dir, "pm")}
	a.Filters = []rcfile.Filter{{Name: "testmilter", Milter: addr, Timeout: 5 * time.Second,
		OnUnavailable: rcfile.OnUnavailableTempFail, OnReject: rcfile.OnRejectPostmaster}}
	a.TrustedReceived = rcfile.TrustedReceived{By: "mx.provider.example"}
	a.Rules = []rcfile.Rule{{Spec: rules.Spec{Name: "spam", Field: "X-Spam-Flag", Op: rules.Equals, Value: "YES",
		Action: rules.Action{Kind: rules.Folder, Folder: "Junk"}}}}
	return a
}

func maildirHolds(t *testing.T, md string) []string {
	t.Helper()
	var out []string
	for _, f := range delivertest.MaildirFiles(t, md, "new") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// One poll through a milter: the clean message in the inbox with the
// milter's field, the spam (by the milter's field and a rule) in Junk,
// the rejected and the quarantined one to the postmaster with the reason,
// each deleted from the server; the milter told the client and HELO of
// the trusted Received field and the account's address; the audit line
// names the verdicts.
func TestPollFilters(t *testing.T) {
	tm, addr := startTestMilter(t)
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		filterMsg("m1", "hello"), filterMsg("m2", "cheap spam"), filterMsg("m3", "reject me"), filterMsg("m4", "virus inside"),
	}})
	a := filterAccount(t, srv, addr)
	var logBuf bytes.Buffer
	p := &Poller{Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	res := p.Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 4 || res.Postmaster != 2 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v\n%s", res, logBuf.String())
	}
	inbox := maildirHolds(t, a.Deliver.Maildir)
	if len(inbox) != 1 || !strings.Contains(inbox[0], "body of m1") || !strings.Contains(inbox[0], "X-Scanned: clean\n") {
		t.Errorf("inbox = %q", inbox)
	}
	junk := maildirHolds(t, filepath.Join(a.Deliver.Maildir, ".Junk"))
	if len(junk) != 1 || !strings.Contains(junk[0], "body of m2") || !strings.Contains(junk[0], "X-Spam-Flag: YES\n") {
		t.Errorf("Junk = %q", junk)
	}
	pm := maildirHolds(t, a.Postmaster.Maildir)
	slices.Sort(pm)
	if len(pm) != 2 {
		t.Fatalf("postmaster = %q", pm)
	}
	for _, w := range []string{"X-Popfetch-Reason: rejected by testmilter: 550 5.7.1 spam detected\n", "X-Popfetch-Reason: rejected by testmilter: quarantine: Eicar-Signature FOUND\n"} {
		if !strings.Contains(pm[0]+pm[1], w) {
			t.Errorf("postmaster copies lack %q:\n%s", w, pm)
		}
	}
	want := []string{"connect host=mail.example.net addr=203.0.113.25 client_addr=203.0.113.25", "helo mail.example.net",
		"mail alice@example.net", "rcpt user@" + srv.Host()}
	if got := tm.events("hello"); !slices.Equal(got, want) {
		t.Errorf("milter was told %q; want %q", got, want)
	}
	out := logBuf.String()
	for _, w := range []string{
		`copy.1.target=maildir`, `filter.1.name=testmilter filter.1.action=accept on_server=deleted`,
		`filter.1.name=testmilter filter.1.action=reject filter.1.reply="550 5.7.1 spam detected" on_server=deleted`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %q:\n%s", w, out)
		}
	}
}

// A filter that is down, too slow or answers tempfail keeps the message
// on the server with nothing delivered; the next poll, with the filter
// back, delivers it once.
func TestPollFilterTempFail(t *testing.T) {
	for _, tc := range []struct {
		name    string
		subject string
		down    bool
		timeout time.Duration
	}{
		{"down", "hello", true, 5 * time.Second},
		{"timeout", "slow", false, 100 * time.Millisecond},
		{"tempfail", "tempfail", false, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm, addr := startTestMilter(t)
			srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{filterMsg("m1", tc.subject)}})
			a := filterAccount(t, srv, addr)
			a.Filters[0].Timeout = tc.timeout
			if tc.down {
				tm.stop()
			}
			var logBuf bytes.Buffer
			p := &Poller{Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
			res := p.Poll(context.Background(), a)
			if res.Delivered != 0 || res.Failed != 1 || len(srv.Messages()) != 1 {
				t.Fatalf("Poll = %+v\n%s", res, logBuf.String())
			}
			if n := len(delivertest.MaildirFiles(t, a.Deliver.Maildir, "new")); n != 0 {
				t.Fatalf("%d copies delivered", n)
			}
			if !strings.Contains(logBuf.String(), "filter testmilter: temporary failure: ") {
				t.Errorf("log does not say why:\n%s", logBuf.String())
			}
			// The filter back (a fresh one on the same port, answering
			// accept), the next poll delivers the message once.
			if tc.down {
				tm = &testMilter{seen: map[string][]string{}, calls: map[string]int{}}
				tm.start(t, strings.TrimPrefix(addr, "unix:"))
			}
			a.Filters[0].Timeout = 5 * time.Second
			tm.mu.Lock()
			tm.healed = true
			tm.mu.Unlock()
			res = p.Poll(context.Background(), a)
			if res.Err != nil || res.Delivered != 1 || len(srv.Messages()) != 0 {
				t.Fatalf("second Poll = %+v\n%s", res, logBuf.String())
			}
			if inbox := maildirHolds(t, a.Deliver.Maildir); len(inbox) != 1 {
				t.Errorf("inbox holds %d copies", len(inbox))
			}
		})
	}
}

// on_reject = "delete" drops a rejected message, logged at warning level
// and in its audit line; on_unavailable = "accept" delivers unfiltered.
func TestPollFilterPolicies(t *testing.T) {
	tm, addr := startTestMilter(t)
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{filterMsg("m1", "reject me")}})
	a := filterAccount(t, srv, addr)
	a.Filters[0].OnReject = rcfile.OnRejectDelete
	var logBuf bytes.Buffer
	p := &Poller{Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	res := p.Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v\n%s", res, logBuf.String())
	}
	if n := len(maildirHolds(t, a.Deliver.Maildir)) + len(maildirHolds(t, a.Postmaster.Maildir)); n != 0 {
		t.Errorf("%d copies of a deleted message", n)
	}
	out := logBuf.String()
	for _, w := range []string{`level=WARN msg="filter rejected the message; deleted without a copy (on_reject = \"delete\")"`,
		`copy.1.note="deleted by filter testmilter" filter.1.name=testmilter filter.1.action=reject`} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %q:\n%s", w, out)
		}
	}

	tm.stop()
	srv2 := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{filterMsg("m2", "hello")}})
	a = filterAccount(t, srv2, addr)
	a.Filters[0].OnUnavailable = rcfile.OnUnavailableAccept
	logBuf.Reset()
	res = p.Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 1 || len(srv2.Messages()) != 0 {
		t.Fatalf("Poll = %+v\n%s", res, logBuf.String())
	}
	if inbox := maildirHolds(t, a.Deliver.Maildir); len(inbox) != 1 || strings.Contains(inbox[0], "X-Scanned") {
		t.Errorf("inbox = %q", inbox)
	}
	if !strings.Contains(logBuf.String(), "filter.1.action=accept filter.1.unavailable=true") {
		t.Errorf("audit line does not say the filter was unavailable:\n%s", logBuf.String())
	}
}

// A multidrop message is filtered once, told every routed recipient.
func TestPollFilterMultidrop(t *testing.T) {
	tm, addr := startTestMilter(t)
	msg := filterMsg("m1", "hello")
	msg.Data = []byte(strings.Replace(string(msg.Data), "To: user@example.com", "To: alice@example.com, bob@example.com", 1))
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{msg}})
	a := filterAccount(t, srv, addr)
	a.Deliver.Maildir = filepath.Join(filepath.Dir(a.StateDir), "{user}")
	a.Rules = nil
	a.Multidrop = testMultidrop(mdUser("alice", "alice"), mdUser("bob", "bob"))
	var logBuf bytes.Buffer
	p := &Poller{Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	res := p.Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v\n%s", res, logBuf.String())
	}
	ev := tm.events("hello")
	if !slices.Contains(ev, "rcpt alice@example.com") || !slices.Contains(ev, "rcpt bob@example.com") || tm.calls["hello"] != 1 {
		t.Errorf("milter was told %q in %d conversations", ev, tm.calls["hello"])
	}
	for _, u := range []string{"alice", "bob"} {
		got := maildirHolds(t, filepath.Join(filepath.Dir(a.StateDir), u))
		if len(got) != 1 || !strings.Contains(got[0], "X-Scanned: clean\n") {
			t.Errorf("%s got %q", u, got)
		}
	}
}

// Filters run concurrently across the messages of a poll, at most
// filterPar at once: 24 messages that each take 300 ms take far less
// than 24 × 300 ms, and the milter never sees more than filterPar.
func TestPollFilterConcurrency(t *testing.T) {
	tm, addr := startTestMilter(t)
	var msgs []pop3test.Message
	for i := range 24 {
		msgs = append(msgs, filterMsg(fmt.Sprintf("m%d", i), fmt.Sprintf("slow %d", i)))
	}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs})
	a := filterAccount(t, srv, addr)
	start := time.Now()
	res := (&Poller{}).Poll(context.Background(), a)
	took := time.Since(start)
	if res.Err != nil || res.Delivered != 24 {
		t.Fatalf("Poll = %+v", res)
	}
	if tm.peak > filterPar || tm.peak < 2 {
		t.Errorf("%d conversations at once; want 2 to %d", tm.peak, filterPar)
	}
	if took > 24*300*time.Millisecond/2 {
		t.Errorf("24 slow scans took %v: serialised", took)
	}
}

// dedupe_message_id judges the copies as fetched: two copies of one
// message that a filter stamps differently (a rewritten Subject) are
// still one message, delivered to the user once.
func TestPollFilterDedupe(t *testing.T) {
	_, addr := startTestMilter(t)
	var msgs []pop3test.Message
	for _, uid := range []string{"c1", "c2"} {
		msg := filterMsg(uid, "counted")
		msg.Data = []byte(strings.NewReplacer("To: user@example.com", "To: alice@example.com",
			"Message-ID: <"+uid+"@example.net>", "Message-ID: <same@example.net>", "id "+uid, "id x", "body of "+uid, "body of x").Replace(string(msg.Data)))
		msgs = append(msgs, msg)
	}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs})
	a := filterAccount(t, srv, addr)
	a.Deliver.Maildir = filepath.Join(filepath.Dir(a.StateDir), "{user}")
	a.Rules = nil
	a.Multidrop = testMultidrop(mdUser("alice", "alice"))
	a.Multidrop.DedupeMessageID = true
	var logBuf bytes.Buffer
	res := (&Poller{Log: slog.New(slog.NewTextHandler(&logBuf, nil))}).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 2 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v\n%s", res, logBuf.String())
	}
	got := maildirHolds(t, filepath.Join(filepath.Dir(a.StateDir), "alice"))
	if len(got) != 1 || !strings.Contains(got[0], "Subject: counted [scan") {
		t.Errorf("alice got %d copies: %q", len(got), got)
	}
}
