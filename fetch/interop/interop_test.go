package interop

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// Every test below checks the one promise against each real server: every
// message is delivered byte for byte (as the server stores and serves it)
// exactly once, and nothing leaves the server undelivered.

type config struct {
	name  string
	start func(t testing.TB) *Server
	keep  bool // the server can keep retrieved mail (not with expire 0)
}

var configs = []config{
	{"mailutils/plain", func(t testing.TB) *Server { return StartMailutils(t, MailutilsOptions{TLS: Plain}) }, true},
	{"mailutils/stls", func(t testing.TB) *Server { return StartMailutils(t, MailutilsOptions{TLS: STLS}) }, true},
	{"mailutils/implicit", func(t testing.TB) *Server { return StartMailutils(t, MailutilsOptions{TLS: Implicit}) }, true},
	{"mailutils/expire0", func(t testing.TB) *Server { return StartMailutils(t, MailutilsOptions{Expire0: true}) }, false},
	{"popa3d", StartPopa3d, true},
	{"solid-pop3d", StartSolidPOP3d, true},
}

func account(t *testing.T, s *Server) *rcfile.Account {
	t.Helper()
	dir := t.TempDir()
	mode := map[TLSMode]rcfile.TLSMode{Plain: rcfile.TLSNone, STLS: rcfile.TLSStartTLS, Implicit: rcfile.TLSImplicit}[s.TLS]
	return &rcfile.Account{
		Name: s.Name, Server: "localhost", Port: s.Port, TLS: mode, CAFile: s.CAFile,
		Username: s.User, Password: rcfile.Password{Inline: s.Pass},
		Timeout:  10 * time.Second,
		Deliver:  rcfile.Destination{Maildir: filepath.Join(dir, "Maildir")},
		StateDir: filepath.Join(dir, "state"),
	}
}

func poll(t *testing.T, s *Server, a *rcfile.Account) fetch.Result {
	t.Helper()
	res := (&fetch.Poller{}).Poll(context.Background(), a)
	// The server may still be writing its mailbox after QUIT.
	s.WaitIdle(t)
	return res
}

// message returns test message seq. The bodies cover what a POP3 client
// must carry through unchanged: dot lines (byte-stuffed on the wire), a
// line over RFC 5322's 998 octets, 8-bit text, a "From " line (quoted by
// mbox spools) and a last line without a line end. Messages are stored
// with LF line ends, as Unix mail stores are written: mailutils 3.15 parses
// no header at all in a Maildir file with CRLF line ends and serves such a
// message as an empty one (LIST size 2).
func message(seq int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender <sender@example.net>\nTo: rcpt@example.com\nSubject: interop %d\nMessage-ID: <interop-%d@example.net>\nX-Seq: %d\n\n", seq, seq, seq)
	switch seq % 6 {
	case 0:
		b.WriteString("plain body\n")
	case 1:
		b.WriteString(".\n..\n.leading dot\n...three\n. \nend\n")
	case 2:
		b.WriteString("long line: " + strings.Repeat("0123456789", 450) + "\nshort\n")
	case 3:
		b.WriteString("Gr\xc3\xbc\xc3\x9fe, 8-bit UTF-8 \xe2\x82\xac\nLatin-1 \xe9\xe8\xff\n")
	case 4:
		b.WriteString("first\nFrom the start of a line\n>From quoted\nno final newline")
	case 5:
		b.WriteString("line with trailing spaces   \n\ttab line\n")
	}
	return b.Bytes()
}

func messages(from, to int) [][]byte {
	var out [][]byte
	for i := from; i <= to; i++ {
		out = append(out, message(i))
	}
	return out
}

// want returns what must arrive in the Maildir for a stored message: what
// the server serves, with LF line ends (popfetch's Maildir form).
func want(s *Server, msg []byte) []byte { return s.Served(msg) }

// delivered returns the Maildir's messages by X-Seq, each without
// popfetch's leading Received field and without the fields the server
// adds (Server.Added).
func delivered(t *testing.T, s *Server, maildir string) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	ents, err := os.ReadDir(filepath.Join(maildir, "new"))
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(maildir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("Received: ")) {
			t.Fatalf("%s does not start with popfetch's Received field:\n%q", e.Name(), b)
		}
		hdr, body, ok := bytes.Cut(b, []byte("\n\n"))
		if !ok {
			t.Fatalf("%s has no header/body separator", e.Name())
		}
		// Drop Received (folded: its continuation lines too) and the
		// server's own fields.
		var keep [][]byte
		drop := true
		seq := ""
		for i, l := range bytes.SplitAfter(append(hdr, '\n'), []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			if l[0] == ' ' || l[0] == '\t' {
				if !drop {
					keep = append(keep, l)
				}
				continue
			}
			name, val, _ := bytes.Cut(l, []byte(":"))
			drop = i == 0
			for _, a := range s.Added {
				if strings.EqualFold(string(name), a) {
					drop = true
				}
			}
			if strings.EqualFold(string(name), "X-Seq") {
				seq = strings.TrimSpace(string(val))
			}
			if !drop {
				keep = append(keep, l)
			}
		}
		msg := append(bytes.Join(keep, nil), '\n')
		out[seq] = append(out[seq], append(msg, body...))
	}
	return out
}

// checkDelivered asserts that exactly the messages in msgs arrived, each
// once and byte for byte.
func checkDelivered(t *testing.T, s *Server, a *rcfile.Account, msgs [][]byte) {
	t.Helper()
	got := delivered(t, s, a.Deliver.Maildir)
	wantSeqs := map[string]bool{}
	for _, m := range msgs {
		seq := seqOf(m)
		wantSeqs[seq] = true
		switch copies := got[seq]; {
		case len(copies) == 0:
			t.Errorf("%s: message %s was not delivered", s.Name, seq)
		case len(copies) > 1:
			t.Errorf("%s: message %s delivered %d times", s.Name, seq, len(copies))
		case !bytes.Equal(copies[0], want(s, m)):
			t.Errorf("%s: message %s:\ngot  %q\nwant %q", s.Name, seq, copies[0], want(s, m))
		}
	}
	for seq, copies := range got {
		if !wantSeqs[seq] {
			t.Errorf("%s: unexpected message %q delivered %d times; first copy:\n%q", s.Name, seq, len(copies), copies[0])
		}
	}
}

func seqOf(msg []byte) string {
	_, rest, _ := bytes.Cut(msg, []byte("X-Seq: "))
	seq, _, _ := bytes.Cut(rest, []byte("\n"))
	return string(seq)
}

func TestDelete(t *testing.T) {
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			s := c.start(t)
			first := messages(1, 12)
			s.Put(t, first...)
			a := account(t, s)
			res := poll(t, s, a)
			if res.Err != nil || res.Delivered != len(first) || res.Deleted != len(first) {
				t.Errorf("first poll = %+v; want %d delivered and deleted", res, len(first))
			}
			checkDelivered(t, s, a, first)
			if n := s.Count(t); n != 0 {
				t.Errorf("server holds %d messages after the first poll; want 0", n)
			}

			// New mail between polls.
			more := messages(13, 15)
			s.Put(t, more...)
			res = poll(t, s, a)
			if res.Err != nil || res.New != len(more) || res.Deleted != len(more) {
				t.Errorf("second poll = %+v; want %d new and deleted", res, len(more))
			}
			all := append(first, more...)
			checkDelivered(t, s, a, all)
			if res = poll(t, s, a); res.Err != nil || res.Messages != 0 || res.New != 0 {
				t.Errorf("third poll = %+v; want an empty mailbox", res)
			}
			if n := s.Count(t); n != 0 {
				t.Errorf("server holds %d messages; want 0", n)
			}
		})
	}
}

func TestKeep(t *testing.T) {
	for _, c := range configs {
		if !c.keep {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			s := c.start(t)
			first := messages(1, 6)
			s.Put(t, first...)
			a := account(t, s)
			a.Keep = true
			if res := poll(t, s, a); res.Err != nil || res.New != len(first) || res.Deleted != 0 {
				t.Errorf("first poll = %+v; want %d new, none deleted", res, len(first))
			}
			if res := poll(t, s, a); res.Err != nil || res.New != 0 {
				t.Errorf("second poll = %+v; want nothing new", res)
			}
			more := messages(7, 8)
			s.Put(t, more...)
			if res := poll(t, s, a); res.Err != nil || res.New != len(more) {
				t.Errorf("poll after new mail = %+v; want %d new", res, len(more))
			}
			all := append(first, more...)
			checkDelivered(t, s, a, all)
			if n := s.Count(t); n != len(all) {
				t.Errorf("server holds %d messages; want %d (keep)", n, len(all))
			}

			// Switching keep off deletes what was delivered, without
			// fetching it again.
			a.Keep = false
			if res := poll(t, s, a); res.Err != nil || res.New != 0 || res.Deleted != len(all) {
				t.Errorf("poll without keep = %+v; want 0 new, %d deleted", res, len(all))
			}
			checkDelivered(t, s, a, all)
			if n := s.Count(t); n != 0 {
				t.Errorf("server holds %d messages; want 0", n)
			}
		})
	}
}

// TestIdentical stores the same message twice beside a different one.
// popa3d and solid-pop3d give both copies the same UID. Either both copies
// are delivered, or both stay on the server; the other message flows in
// any case, and nothing is deleted undelivered.
func TestIdentical(t *testing.T) {
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			s := c.start(t)
			twin, other := message(1), message(2)
			s.Put(t, twin, other, twin)
			a := account(t, s)
			for i := 0; i < 2; i++ {
				if res := poll(t, s, a); res.Err != nil {
					t.Errorf("poll %d: %v", i+1, res.Err)
				}
			}
			got := delivered(t, s, a.Deliver.Maildir)
			if len(got["2"]) != 1 || !bytes.Equal(got["2"][0], want(s, other)) {
				t.Errorf("the other message: %d copies; want 1 byte for byte", len(got["2"]))
			}
			for _, c := range got["1"] {
				if !bytes.Equal(c, want(s, twin)) {
					t.Errorf("twin:\ngot  %q\nwant %q", c, want(s, twin))
				}
			}
			if n, left := len(got["1"]), s.Count(t); n+left != 2 {
				t.Errorf("twins: %d delivered, %d left on the server; want 2 in all", n, left)
			} else if n != 2 {
				t.Errorf("twins: %d delivered, %d left on the server; want both delivered", n, left)
			}
		})
	}
}

// TestExpire0Failure: a server with "expire 0" deletes every retrieved
// message at QUIT. When delivery fails, popfetch must leave the session
// without QUIT, so the message stays; once delivery works, every message
// arrives once.
func TestExpire0Failure(t *testing.T) {
	s := StartMailutils(t, MailutilsOptions{Expire0: true})
	msgs := messages(1, 4)
	s.Put(t, msgs...)
	a := account(t, s)
	maildir := a.Deliver.Maildir
	// EX_TEMPFAIL: the message stays on the server for the next poll.
	a.Deliver = rcfile.Destination{MDA: []string{"/bin/sh", "-c", "cat >/dev/null; exit 75"}}
	res := poll(t, s, a)
	if res.Delivered != 0 || res.Deleted != 0 || res.Failed == 0 {
		t.Errorf("poll with a failing MDA = %+v; want failures, nothing delivered or deleted", res)
	}
	if n := s.Count(t); n != len(msgs) {
		t.Fatalf("server holds %d of %d messages after failed deliveries: expire 0 expunged undelivered mail", n, len(msgs))
	}
	a.Deliver = rcfile.Destination{Maildir: maildir}
	if res := poll(t, s, a); res.Err != nil || res.Delivered != len(msgs) {
		t.Errorf("poll with a working Maildir = %+v; want %d delivered", res, len(msgs))
	}
	checkDelivered(t, s, a, msgs)
	if n := s.Count(t); n != 0 {
		t.Errorf("server holds %d messages; want 0", n)
	}
}
