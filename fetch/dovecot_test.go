package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/rcfile"
)

// Integration tests against a real dovecot-pop3d: the server users run,
// not only the fake one. dovecottest skips them when dovecot is missing,
// and fails them in CI.

func dovecotAccount(t *testing.T, srv *dovecottest.Server, mb *dovecottest.Mailbox, mode rcfile.TLSMode) *rcfile.Account {
	t.Helper()
	dir := t.TempDir()
	port := srv.PlainPort
	if mode == rcfile.TLSImplicit {
		port = srv.TLSPort
	}
	return &rcfile.Account{
		Name: "dovecot", Server: "localhost", Port: port, TLS: mode, CAFile: srv.CAFile,
		Username: mb.User, Password: rcfile.Password{Inline: mb.Pass},
		Timeout:  10 * time.Second,
		Deliver:  rcfile.Destination{Maildir: filepath.Join(dir, "Maildir")},
		StateDir: filepath.Join(dir, "state"),
	}
}

func sample(i int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <sender@example.net>\r\nFrom: Sender <sender@example.net>\r\nTo: rcpt@example.com\r\nSubject: sample %d\r\nMessage-ID: <sample-%d@example.net>\r\nX-Seq: %d\r\n\r\n", i, i, i)
	for j := 0; j < i%7+1; j++ {
		fmt.Fprintf(&b, "line %d of message %d\r\n.starts with a dot\r\nFrom the start of a line\r\n", j, i)
	}
	return b.Bytes()
}

// delivered returns the Maildir's messages without popfetch's Received
// field, keyed by X-Seq.
func delivered(t *testing.T, maildir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if _, err := os.Stat(filepath.Join(maildir, "new")); err != nil {
		t.Fatal(err)
	}
	for _, b := range delivertest.MaildirMessages(t, maildir, "new") {
		if !bytes.HasPrefix(b, []byte("Received: ")) {
			t.Fatalf("a delivered message does not start with popfetch's Received field:\n%.400s", b)
		}
		// The trace field is folded: skip its continuation lines.
		i := bytes.IndexByte(b, '\n') + 1
		for i < len(b) && (b[i] == '\t' || b[i] == ' ') {
			i += bytes.IndexByte(b[i:], '\n') + 1
		}
		body := b[i:]
		seq := headerValue(body, "X-Seq")
		if _, dup := out[seq]; dup {
			t.Fatalf("message %s delivered twice", seq)
		}
		out[seq] = body
	}
	return out
}

func TestDovecotFetch(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	for _, mode := range []rcfile.TLSMode{rcfile.TLSNone, rcfile.TLSStartTLS, rcfile.TLSImplicit} {
		t.Run(string(mode), func(t *testing.T) {
			mb := srv.AddUser(t, "u"+string(mode[:3]), "secret-"+string(mode))
			var want [][]byte
			for i := 1; i <= 20; i++ {
				want = append(want, sample(i))
			}
			mb.Put(t, want...)
			a := dovecotAccount(t, srv, mb, mode)
			res := poller(nil).Poll(context.Background(), a)
			if res.Err != nil || res.New != 20 || res.Delivered != 20 || res.Deleted != 20 {
				t.Fatalf("Poll = %+v\n%s", res, srv.Log(t))
			}
			got := delivered(t, a.Deliver.Maildir)
			for i, w := range want {
				seq := fmt.Sprint(i + 1)
				lf := bytes.ReplaceAll(w, []byte("\r\n"), []byte("\n"))
				if !bytes.Equal(got[seq], lf) {
					t.Fatalf("message %s:\ngot  %q\nwant %q", seq, got[seq], lf)
				}
			}
			if n := mb.Count(t); n != 0 {
				t.Fatalf("server still holds %d messages", n)
			}
			if res := poller(nil).Poll(context.Background(), a); res.Err != nil || res.Messages != 0 {
				t.Fatalf("second Poll = %+v", res)
			}
		})
	}
}

func TestDovecotKeepAndForget(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "keeper", "pw")
	mb.Put(t, sample(1), sample(2), sample(3))
	a := dovecotAccount(t, srv, mb, rcfile.TLSStartTLS)
	a.Keep = true
	for i, want := range []int{3, 0} {
		if res := poller(nil).Poll(context.Background(), a); res.Err != nil || res.New != want {
			t.Fatalf("Poll %d = %+v", i, res)
		}
	}
	mb.Put(t, sample(4))
	if res := poller(nil).Poll(context.Background(), a); res.Err != nil || res.New != 1 || res.Messages != 4 {
		t.Fatalf("Poll after new mail = %+v", res)
	}
	if got := delivered(t, a.Deliver.Maildir); len(got) != 4 || mb.Count(t) != 4 {
		t.Fatalf("maildir %d, server %d", len(got), mb.Count(t))
	}
	// Switching keep off deletes what was delivered, without fetching it again.
	a.Keep = false
	res := poller(nil).Poll(context.Background(), a)
	if res.Err != nil || res.New != 0 || res.Deleted != 4 || mb.Count(t) != 0 {
		t.Fatalf("Poll without keep = %+v, server %d", res, mb.Count(t))
	}
}

func TestDovecotCheckAndAuth(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "checker", "right")
	mb.Put(t, sample(1), sample(2))
	a := dovecotAccount(t, srv, mb, rcfile.TLSImplicit)
	if res := poller(nil).Check(context.Background(), a); res.Err != nil || res.New != 2 || mb.Count(t) != 2 {
		t.Fatalf("Check = %+v", res)
	}
	a.Password = rcfile.Password{Inline: "wrong"}
	if res := poller(nil).Poll(context.Background(), a); !errors.Is(res.Err, ErrAuth) {
		t.Fatalf("Poll with a wrong password: %v; want ErrAuth", res.Err)
	}
}

func TestDovecotLimit(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "limited", "pw")
	big := append(sample(9), []byte(strings.Repeat("0123456789abcdef", 4096)+"\r\n")...)
	mb.Put(t, sample(1), big)
	a := dovecotAccount(t, srv, mb, rcfile.TLSNone)
	a.Limit = 32 << 10
	res := poller(nil).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 1 || res.Skipped != 1 || mb.Count(t) != 1 {
		t.Fatalf("Poll = %+v, server %d", res, mb.Count(t))
	}
	got := delivered(t, a.Deliver.Maildir)
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "1" {
		t.Fatalf("delivered %v; want only message 1", keys)
	}
}

// bigSample returns message seq of about size bytes, with CRLF line ends,
// holding what a stream of RETR replies must carry through unchanged at
// every offset of the reader's buffer: dot lines (byte-stuffed on the
// wire, a "." line among them), bare CRs within lines and at the end of
// pieces of a line, lines far longer than the 32 KiB read buffer, and
// a CR that falls exactly at a buffer's edge.
func bigSample(seq, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender <sender@example.net>\r\nTo: rcpt@example.com\r\nSubject: big %d\r\nMessage-ID: <big-%d@example.net>\r\nX-Seq: %d\r\n\r\n", seq, seq, seq)
	for n := 0; b.Len() < size; n++ {
		switch n % 9 {
		case 0:
			b.WriteString(".\r\n..\r\n.leading dot\r\n...three\r\n. \r\n")
		case 1:
			b.WriteString("bare\rCR within\r\r a line\r\n")
		case 2:
			b.WriteString(strings.Repeat("0123456789", 10000+n%37) + "\r\n") // ~100 KB
		case 3:
			b.WriteString(strings.Repeat("y", 32<<10-1-n%3) + "\r\r\n")
		case 4:
			b.WriteString(strings.Repeat("z", 32<<10-2) + "\r\n.\r\n")
		default:
			fmt.Fprintf(&b, "line %d of message %d with some text\r\n", n, seq)
		}
	}
	return b.Bytes()
}

// TestDovecotBigMessages: messages of 5 and 30 MB that stream through
// spool files arrive byte for byte (with LF line ends, after the trace
// field), in delete and in keep mode, and are deleted only in delete mode.
func TestDovecotBigMessages(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			mb := srv.AddUser(t, fmt.Sprintf("big%v", keep), "secret")
			want := [][]byte{bigSample(1, 5<<20), sample(2), bigSample(3, 30<<20)}
			mb.Put(t, want...)
			a := dovecotAccount(t, srv, mb, rcfile.TLSNone)
			a.Keep = keep
			res := poller(nil).Poll(context.Background(), a)
			if res.Err != nil || res.Delivered != len(want) {
				t.Fatalf("Poll = %+v\n%s", res, srv.Log(t))
			}
			got := delivered(t, a.Deliver.Maildir)
			for i, w := range want {
				seq := fmt.Sprint(i + 1)
				// A Maildir copy ends its lines in LF, and a bare CR
				// ends one too (deliver/header.go eolReader).
				lf := lineEndsLF(w)
				if !bytes.Equal(got[seq], lf) {
					d := firstDiff(got[seq], lf)
					t.Fatalf("message %s: %d bytes delivered, %d stored; they differ at %d: got %q, want %q", seq, len(got[seq]), len(lf), d, got[seq][max(d-20, 0):min(d+40, len(got[seq]))], lf[max(d-20, 0):min(d+40, len(lf))])
				}
			}
			if n, wantN := mb.Count(t), map[bool]int{false: 0, true: len(want)}[keep]; n != wantN {
				t.Fatalf("server holds %d messages, want %d", n, wantN)
			}
			if ents, _ := os.ReadDir(spoolDir(a)); len(ents) != 0 {
				t.Fatalf("spool directory holds %v", ents)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
