package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// Every test below checks the one promise against each real server: every
// message is delivered byte for byte (as the server stores and serves it)
// exactly once, and nothing leaves the server undelivered. Each subtest has
// its own server instance, so they run in parallel: the time goes into
// process start-up and the servers' own waits, not CPU.

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
	{"mailutils/mbox", func(t testing.TB) *Server { return StartMailutils(t, MailutilsOptions{Mbox: true}) }, true},
	{"popa3d", StartPopa3d, true},
	{"solid-pop3d", StartSolidPOP3d, true},
}

// onEachServer runs f as a parallel subtest against a fresh instance of
// every server configuration.
func onEachServer(t *testing.T, f func(t *testing.T, s *Server)) {
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f(t, c.start(t))
		})
	}
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

// testLog writes popfetch's log lines into the test's log, so that a
// failure shows what popfetch did and said.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func poll(t *testing.T, s *Server, a *rcfile.Account) fetch.Result {
	t.Helper()
	start := time.Now()
	res := (&fetch.Poller{Log: slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}).Poll(context.Background(), a)
	// The server may still be writing its mailbox after QUIT.
	s.WaitIdle(t)
	t.Logf("poll: %v (idle after %v)", res.Elapsed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
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
	for _, b := range delivertest.MaildirMessages(t, maildir, "new") {
		if !bytes.HasPrefix(b, []byte("Received: ")) {
			t.Fatalf("a delivered message does not start with popfetch's Received field:\n%q", b)
		}
		hdr, body, ok := bytes.Cut(b, []byte("\n\n"))
		if !ok {
			t.Fatalf("a delivered message has no header/body separator:\n%q", b)
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
	t.Parallel()
	onEachServer(t, func(t *testing.T, s *Server) {
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

func TestKeep(t *testing.T) {
	t.Parallel()
	for _, c := range configs {
		if !c.keep {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
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

// checkColliding polls twice and checks a mailbox in which the messages
// of group may share a UID (popa3d and solid-pop3d derive it from the
// content) while other's do not. Each message of group is told apart by a
// marker line in its body; a message may occur in group more than once
// (identical copies). popfetch may deliver the whole group or leave it all
// on the server with a loud warning, but every copy must be accounted for:
// delivered byte for byte, or still on the server, never both and never
// neither; and other flows as usual.
func checkColliding(t *testing.T, s *Server, group [][]byte, markers []string, other []byte) {
	t.Helper()
	a := account(t, s)
	for i := 0; i < 2; i++ {
		if res := poll(t, s, a); res.Err != nil {
			t.Errorf("poll %d: %v", i+1, res.Err)
		}
	}
	got := delivered(t, s, a.Deliver.Maildir)
	if o := got[seqOf(other)]; len(o) != 1 || !bytes.Equal(o[0], want(s, other)) {
		t.Errorf("the other message: %d copies; want 1 byte for byte", len(o))
	}
	var copies [][]byte
	for seq, c := range got {
		if seq != seqOf(other) {
			copies = append(copies, c...)
		}
	}
	stored := s.Stored(t)
	total := 0
	for i, m := range group {
		if slices.Index(markers, markers[i]) != i {
			continue // counted with its first copy
		}
		k := 0
		for _, mk := range markers {
			if mk == markers[i] {
				k++
			}
		}
		d, left := 0, 0
		for _, c := range copies {
			if bytes.Contains(c, []byte(markers[i]+"\n")) {
				if !bytes.Equal(c, want(s, m)) {
					t.Errorf("%s:\ngot  %q\nwant %q", markers[i], c, want(s, m))
				}
				d++
			}
		}
		for _, st := range stored {
			if bytes.Contains(st, []byte(markers[i]+"\n")) {
				left++
			}
		}
		if d+left != k {
			t.Errorf("%s: %d delivered, %d left on the server; want %d in all (nothing lost, nothing twice)", markers[i], d, left, k)
		}
		total += d
	}
	switch total {
	case len(group):
		t.Logf("%s: all %d colliding messages delivered", s.Name, total)
	case 0:
		t.Logf("%s: the %d colliding messages were left on the server", s.Name, len(group))
	default:
		t.Errorf("%s: %d of %d colliding messages delivered; want all or none", s.Name, total, len(group))
	}
	if len(copies) != total {
		t.Errorf("%d unexpected copies delivered", len(copies)-total)
	}
}

// TestIdentical stores the same message twice beside a different one.
// popa3d and solid-pop3d give both copies the same UID.
func TestIdentical(t *testing.T) {
	t.Parallel()
	onEachServer(t, func(t *testing.T, s *Server) {
		twin := []byte("From: a@example.net\nSubject: twin\nMessage-ID: <twin@example.net>\nX-Seq: twin\n\nmarker-twin\n")
		other := message(2)
		s.Put(t, twin, other, twin)
		checkColliding(t, s, [][]byte{twin, twin}, []string{"marker-twin", "marker-twin"}, other)
	})
}

// TestSameHeader stores two messages with the same header and bodies of
// the same size but different content (a resent or duplicated notice
// whose copy was altered): solid-pop3d's UID digests the header only, so
// both get one UID, and a header digest with the size cannot tell them
// apart either. Taking the second for the first would delete it unread.
func TestSameHeader(t *testing.T) {
	t.Parallel()
	onEachServer(t, func(t *testing.T, s *Server) {
		hdr := "From: a@example.net\nSubject: same header\nMessage-ID: <same@example.net>\nX-Seq: same\n\n"
		m1 := []byte(hdr + "marker-alpha\n")
		m2 := []byte(hdr + "marker-bravo\n")
		other := message(3)
		s.Put(t, m1, other, m2)
		checkColliding(t, s, [][]byte{m1, m2}, []string{"marker-alpha", "marker-bravo"}, other)
	})
}

// TestExpire0Failure: a server with "expire 0" deletes every retrieved
// message at QUIT. When a delivery fails, popfetch must leave the session
// without QUIT, so the message stays; once delivery works, every message
// arrives once.
func TestExpire0Failure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		failed string // the X-Seq values whose delivery fails; "" = all
	}{
		{"all fail", ""},
		{"one of four fails", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := StartMailutils(t, MailutilsOptions{Expire0: true})
			msgs := messages(1, 4)
			s.Put(t, msgs...)
			a := account(t, s)
			maildir := a.Deliver.Maildir
			// The MDA writes into the same Maildir's new/, so that
			// checkDelivered sees all copies; it fails with EX_TEMPFAIL
			// (the message stays on the server for the next poll) for
			// the chosen messages.
			script := fmt.Sprintf(`set -e
d=%q/new
mkdir -p "$d"
f=$(mktemp "$d/.mda.XXXXXX")
cat >"$f"
if [ -z "$1" ] || grep -q "^X-Seq: $1\$" "$f"; then rm -f "$f"; exit 75; fi
mv "$f" "$d/mda.${f##*.}"
`, maildir)
			a.Deliver = rcfile.Destination{MDA: []string{"/bin/sh", "-c", script, "mda", tc.failed}}
			wantFailed := len(msgs)
			if tc.failed != "" {
				wantFailed = 1
			}
			res := poll(t, s, a)
			if res.Failed != wantFailed || res.Delivered != len(msgs)-wantFailed {
				t.Errorf("poll with a failing MDA = %+v; want %d failed", res, wantFailed)
			}
			for _, m := range msgs {
				seq := seqOf(m)
				if tc.failed != "" && seq != tc.failed {
					continue
				}
				if _, left := place(t, s, a, m, "X-Seq: "+seq); left != 1 {
					t.Errorf("message %s: delivery failed and it is gone from the server: expire 0 expunged undelivered mail", seq)
				}
			}
			a.Deliver = rcfile.Destination{Maildir: maildir}
			for i := 0; i < 2; i++ {
				if res := poll(t, s, a); res.Err != nil {
					t.Errorf("poll %d with a working Maildir: %v", i+2, res.Err)
				}
			}
			checkDelivered(t, s, a, msgs)
			if n := s.Count(t); n != 0 {
				t.Errorf("server holds %d messages; want 0", n)
			}
		})
	}
}

// place counts the delivered copies of the message with marker, checking
// each byte for byte, and its copies still on the server.
func place(t *testing.T, s *Server, a *rcfile.Account, msg []byte, marker string) (d, left int) {
	t.Helper()
	for _, copies := range delivered(t, s, a.Deliver.Maildir) {
		for _, c := range copies {
			if bytes.Contains(c, []byte(marker+"\n")) {
				if !bytes.Equal(c, want(s, msg)) {
					t.Errorf("%s:\ngot  %q\nwant %q", marker, c, want(s, msg))
				}
				d++
			}
		}
	}
	for _, st := range s.Stored(t) {
		if bytes.Contains(st, []byte(marker+"\n")) {
			left++
		}
	}
	return d, left
}

// TestReusedUID: popa3d and solid-pop3d derive a UID from a few header
// fields (popa3d: Date, Message-ID, Received; solid-pop3d: Subject, Date,
// Received), so a new message can arrive under the UID of one that
// popfetch delivered and deleted in the previous poll, while that UID is
// still in the journal. The new message must be delivered, never deleted
// unread. With the same header and the same size, LIST and TOP cannot tell
// the two apart at all: what tells them apart is that the old one was
// deleted (DELE answered +OK and QUIT completed) before the UID came back.
func TestReusedUID(t *testing.T) {
	t.Parallel()
	hdr := "From: a@example.net\nSubject: reused\nMessage-ID: <reused@example.net>\nX-Seq: reused\n\n"
	first := []byte(hdr + "marker-one\n")
	cases := []struct {
		name   string
		second []byte
		keep   bool // the first poll keeps the first message
	}{
		{"other size", []byte(hdr + "marker-two\nand a longer body\n"), false},
		{"same size", []byte(hdr + "marker-two\n"), false},
		{"kept, same size", []byte(hdr + "marker-two\n"), true},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				if tc.keep && !c.keep {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					s := c.start(t)
					s.Put(t, first)
					a := account(t, s)
					a.Keep = tc.keep
					if res := poll(t, s, a); res.Err != nil || res.Delivered != 1 {
						t.Fatalf("first poll = %+v; want 1 delivered", res)
					}
					s.Put(t, tc.second)
					a.Keep = false
					for i := 0; i < 2; i++ {
						if res := poll(t, s, a); res.Err != nil {
							t.Errorf("poll %d after the second message: %v", i+2, res.Err)
						}
					}
					// Kept, both share the UID in one listing: popfetch
					// may deliver the second or leave both on the server
					// with a warning. Otherwise only the second carries
					// the UID and must be delivered.
					d, left := place(t, s, a, first, "marker-one")
					if d != 1 || left != 0 && !tc.keep {
						t.Errorf("first message: %d delivered, %d left on the server; want 1 and 0", d, left)
					}
					switch d, left := place(t, s, a, tc.second, "marker-two"); {
					case d+left == 0:
						t.Errorf("second message: deleted from the server, never delivered: lost")
					case d+left != 1:
						t.Errorf("second message: %d delivered, %d left on the server; want 1 in all", d, left)
					case d == 0 && !tc.keep:
						t.Errorf("second message: left on the server, never delivered")
					case d == 0:
						t.Logf("second message: left on the server with the first (one UID listed twice)")
					}
				})
			}
		})
	}
}

// TestLoginRefused: a -ERR to PASS means "wrong password" only when the
// server says [AUTH] (RFC 3206). popa3d and solid-pop3d have no response
// codes and refuse PASS also when the mailbox is damaged (popa3d: a bare
// "-ERR", solid-pop3d: "-ERR mailbox is damaged"); holding the account as
// if the password were wrong would stop it for good over a mailbox problem
// that the admin may fix any time. Once the mailbox is repaired, the next
// poll delivers.
func TestLoginRefused(t *testing.T) {
	t.Parallel()
	onEachServer(t, func(t *testing.T, s *Server) {
		msg := message(1)
		s.Put(t, msg)
		a := account(t, s)
		a.Password = rcfile.Password{Inline: "wrong-" + s.Pass}
		res := poll(t, s, a)
		if s.Name == "mailutils" {
			// AUTH-RESP-CODE: "-ERR [AUTH] Bad login".
			if !errors.Is(res.Err, fetch.ErrAuth) {
				t.Errorf("wrong password: %v; want ErrAuth ([AUTH])", res.Err)
			}
			return
		}
		if res.Err == nil || errors.Is(res.Err, fetch.ErrAuth) {
			t.Errorf("wrong password without [AUTH]: %v; want an error that is not ErrAuth (the cause is unknown)", res.Err)
		}
		a.Password = rcfile.Password{Inline: s.Pass}
		box := s.box.(*mbox)
		good, err := os.ReadFile(box.path)
		if err != nil {
			t.Fatal(err)
		}
		// Not an mbox: the first line is no "From " separator.
		if err := os.WriteFile(box.path, append([]byte("garbage\n"), good...), 0o600); err != nil {
			t.Fatal(err)
		}
		res = poll(t, s, a)
		if res.Err == nil || errors.Is(res.Err, fetch.ErrAuth) {
			t.Errorf("damaged mailbox: %v; want an error that is not ErrAuth", res.Err)
		}
		if err := os.WriteFile(box.path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		if res := poll(t, s, a); res.Err != nil || res.Delivered != 1 {
			t.Errorf("poll after the repair = %+v; want 1 delivered", res)
		}
		checkDelivered(t, s, a, [][]byte{msg})
	})
}

// bigMessage returns message seq of about size bytes, stored with LF line
// ends: dot lines (byte-stuffed on the wire, a "." line among them), bare
// CRs within lines, lines far longer than popfetch's 32 KiB read buffer,
// and line ends that fall at its edges.
func bigMessage(seq, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender <sender@example.net>\nTo: rcpt@example.com\nSubject: big %d\nMessage-ID: <big-%d@example.net>\nX-Seq: %d\n\n", seq, seq, seq)
	for n := 0; b.Len() < size; n++ {
		switch n % 9 {
		case 0:
			b.WriteString(".\n..\n.leading dot\n...three\n. \n")
		case 1:
			b.WriteString("bare\rCR within\r\r a line\n")
		case 2:
			b.WriteString(strings.Repeat("0123456789", 10000+n%37) + "\n")
		case 3:
			b.WriteString(strings.Repeat("y", 32<<10-2-n%3) + "\n")
		case 4:
			b.WriteString(strings.Repeat("z", 32<<10-2) + "\n.\n")
		default:
			fmt.Fprintf(&b, "line %d of message %d with some text\n", n, seq)
		}
	}
	return b.Bytes()
}

// TestBigMessages: messages of 5 and 30 MB, which stream through spool
// files, arrive byte for byte (a bare CR ends a line in a Maildir copy),
// in delete and in keep mode, from GNU mailutils pop3d on a Maildir and
// on an mbox.
func TestBigMessages(t *testing.T) {
	t.Parallel()
	for _, c := range configs {
		if c.name != "mailutils/plain" && c.name != "mailutils/mbox" {
			continue
		}
		for _, keep := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/keep=%v", c.name, keep), func(t *testing.T) {
				s := c.start(t)
				msgs := [][]byte{bigMessage(1, 5<<20), message(2), bigMessage(3, 30<<20)}
				s.Put(t, msgs...)
				a := account(t, s)
				a.Keep = keep
				a.Timeout = 60 * time.Second
				res := poll(t, s, a)
				if res.Err != nil || res.Delivered != len(msgs) {
					t.Fatalf("poll = %+v", res)
				}
				got := delivered(t, s, a.Deliver.Maildir)
				for _, m := range msgs {
					w := bytes.ReplaceAll(want(s, m), []byte("\r"), []byte("\n"))
					if g := got[seqOf(m)]; len(g) != 1 || !bytes.Equal(g[0], w) {
						t.Fatalf("message %s: %d copies; the first differs from the %d bytes served", seqOf(m), len(g), len(w))
					}
				}
				if n, wantN := s.Count(t), map[bool]int{false: 0, true: len(msgs)}[keep]; n != wantN {
					t.Fatalf("server holds %d messages, want %d", n, wantN)
				}
				if ents, _ := os.ReadDir(filepath.Join(a.StateDir, "spool")); len(ents) != 0 {
					t.Fatalf("spool directory holds %v", ents)
				}
			})
		}
	}
}
