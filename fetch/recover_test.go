package fetch

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/uidl"
)

// commitCopy delivers raw into the Maildir at dir as a single-drop
// delivery does (deliver.Maildir, Prepare then Commit) and returns the
// copy's path in new/: the path its intent records.
func commitCopy(t *testing.T, dir, uid string, raw []byte) string {
	t.Helper()
	return commitMessage(t, dir, &deliver.Message{Account: "test", Server: "pop.test", UID: uid, Fetched: time.Now(), Raw: raw}, nil)
}

// TestRecoverOnlyOurCopy: recovery takes the file at an intent's path for
// the delivery only if it is the copy popfetch wrote. A Commit that found
// its name taken (deliver.ErrNameTaken), killed before it recorded the
// fresh name, leaves the intent naming another's file: taking that for
// the delivery would DELE a message never delivered. Such a message is
// fetched and delivered again, and its message stays on the server until
// then; a file that is the copy (in new/, or moved to cur/ by a reader;
// also of a message without a final line end) is recovered as before.
func TestRecoverOnlyOurCopy(t *testing.T) {
	type fixture struct {
		path string         // the intent's path
		id   *uidl.Identity // nil: the message's own identity
	}
	for _, tc := range []struct {
		name      string
		msg       pop3test.Message
		setup     func(t *testing.T, maildir string, m pop3test.Message) fixture
		recovered bool
	}{
		{"our copy", msg(1), func(t *testing.T, md string, m pop3test.Message) fixture {
			return fixture{path: commitCopy(t, md, m.UID, m.Data)}
		}, true},
		{"our copy moved to cur", msg(1), func(t *testing.T, md string, m pop3test.Message) fixture {
			p := commitCopy(t, md, m.UID, m.Data)
			if err := os.Rename(p, filepath.Join(md, "cur", filepath.Base(p)+":2,S")); err != nil {
				t.Fatal(err)
			}
			return fixture{path: p}
		}, true},
		{"foreign file of another size", msg(1), func(t *testing.T, md string, m pop3test.Message) fixture {
			p := filepath.Join(md, "new", "1.M1P1Q1Rab.h,S=300")
			if err := os.WriteFile(p, []byte("Subject: someone else's\n\nnot this message\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return fixture{path: p}
		}, false},
		{"foreign file of the size the name says", msg(1), func(t *testing.T, md string, m pop3test.Message) fixture {
			other := msg(2).Data // same length, other body
			p := commitCopy(t, md, m.UID, other)
			return fixture{path: p}
		}, false},
		{"foreign file in cur", msg(1), func(t *testing.T, md string, m pop3test.Message) fixture {
			p := commitCopy(t, md, m.UID, msg(2).Data)
			if err := os.Rename(p, filepath.Join(md, "cur", filepath.Base(p)+":2,S")); err != nil {
				t.Fatal(err)
			}
			return fixture{path: p}
		}, false},
		{"symlink to our copy", msg(1), func(t *testing.T, md string, m pop3test.Message) fixture {
			real := commitCopy(t, md, m.UID, m.Data)
			p := filepath.Join(md, "new", "2.M2P2Q2Rcd.h"+real[strings.LastIndex(real, ",S="):])
			if err := os.Symlink(real, p); err != nil {
				t.Fatal(err)
			}
			return fixture{path: p}
		}, false},
		{"FIFO", msg(1), func(t *testing.T, md string, m pop3test.Message) fixture {
			p := filepath.Join(md, "new", "3.M3P3Q3Ref.h,S=0")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return fixture{path: p}
		}, false},
		{"no name size", msg(1), func(t *testing.T, md string, m pop3test.Message) fixture {
			p := filepath.Join(md, "new", "4.M4P4Q4R01.h")
			if err := os.WriteFile(p, m.Data, 0o600); err != nil {
				t.Fatal(err)
			}
			return fixture{path: p}
		}, false},
		{"intent without identity", msg(1), func(t *testing.T, md string, m pop3test.Message) fixture {
			return fixture{path: commitCopy(t, md, m.UID, m.Data), id: &uidl.Identity{}}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{tc.msg}})
			a := testAccount(t, srv)
			for _, sub := range []string{"new", "cur", "tmp"} {
				os.MkdirAll(filepath.Join(a.Deliver.Maildir, sub), 0o700)
			}
			fx := tc.setup(t, a.Deliver.Maildir, tc.msg)
			id := identityOf(int64(len(tc.msg.Data)), tc.msg.Data)
			if fx.id != nil {
				id = *fx.id
			}
			s := openStore(t, a)
			if err := s.IntendIdentity(tc.msg.UID, fx.path, id); err != nil {
				t.Fatal(err)
			}
			s.Close()

			// A check (dry run) counts the message as new unless it is
			// recovered, and changes nothing.
			if res := poller(nil).Check(context.Background(), a); res.Err != nil || (res.New == 0) != tc.recovered {
				t.Fatalf("Check = %+v; want New %v", res, map[bool]int{true: 0, false: 1}[tc.recovered])
			}
			// The poll must not DELE what it took for delivered unless it
			// is: either the copy was recovered, or the message is
			// fetched and delivered again before its DELE.
			rec := &recorder{}
			res := poller(rec).Poll(context.Background(), a)
			if res.Err != nil {
				t.Fatalf("Poll = %+v", res)
			}
			delivered := slices.Contains(rec.got, tc.msg.UID)
			// A recovered copy was delivered by the run that was
			// interrupted: not counted as delivered (nor kept) now.
			if want := map[bool]int{false: 1}[tc.recovered]; res.Delivered != want || res.Kept != 0 || res.Postmaster != 0 {
				t.Errorf("Poll = %+v; want Delivered %d, Kept 0, Postmaster 0", res, want)
			}
			if tc.recovered && delivered {
				t.Fatalf("%s delivered again; want it recovered from the Maildir", tc.msg.UID)
			}
			if !tc.recovered && !delivered {
				t.Fatalf("%s deleted without being delivered: the file at its intent was taken for its copy (server now %v)", tc.msg.UID, uidsOn(srv))
			}
			if len(srv.Messages()) != 0 {
				t.Fatalf("server still holds %v", uidsOn(srv))
			}
		})
	}
}

// ourCopy recognises the copy a Maildir delivery wrote of a message,
// whatever its line ends, and nothing else.
func TestOurCopy(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	for _, tc := range []struct {
		name     string
		raw, got string // the message, and what was delivered
		ours     bool
	}{
		{"CRLF", "Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbody\r\n", true},
		{"LF", "Subject: a\n\nbody\n", "Subject: a\n\nbody\n", true},
		// Open adds a final line end, which a POP3 reply always has:
		// not shown to be the copy, fetched again (a duplicate at worst).
		{"no final line end", "Subject: a\r\n\r\nlast line", "Subject: a\r\n\r\nlast line", false},
		// Open writes a bare CR as LF, and "\r\r\n" as two line ends.
		{"bare CR", "Subject: a\r\n\r\nx\ry\r\r\nz\r\n", "Subject: a\n\nx\ny\n\nz\n", true},
		{"bare CR, another body", "Subject: a\r\n\r\nx\ry\r\n", "Subject: a\n\nx\n\ny\n", false},
		{"bare CR, final", "Subject: a\r\n\r\nx\r\r\n", "Subject: a\n\nx\n\n", true},
		{"no body", "Subject: a\r\n", "Subject: a\r\n", true},
		{"empty body", "Subject: a\r\n\r\n", "Subject: a\r\n\r\n", true},
		{"another body", "Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbodY\r\n", false},
		{"a body where there was none", "Subject: a\r\n", "Subject: a\r\n\r\n", false},
		{"one more line", "Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbody\r\n\r\n", false},
	} {
		path := commitCopy(t, dir, "u1", []byte(tc.got))
		err := ourCopy(path, identityOf(int64(len(tc.raw)), []byte(tc.raw)))
		if (err == nil) != tc.ours {
			t.Errorf("%s: ourCopy = %v; want ours %v", tc.name, err, tc.ours)
		}
	}
}
