package fetch

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestPollStreamedTmpSwapped: while a large message streams into the
// Maildir's tmp/, another process renames tmp/ away and puts a new
// directory, or a symlink to the old one, in its place, or replaces the
// streamed file itself: the message is still delivered once, intact
// (written afresh when the streamed copy is not where it was begun; the
// tmp/ a symlink replaced is the directory the copy was begun in, opened
// and checked before, and serves the rest of the poll), and nothing else
// reaches new/: never the file another process put under the streamed
// copy's name. The next poll refuses the symlink.
func TestPollStreamedTmpSwapped(t *testing.T) {
	for _, tc := range []struct {
		name    string
		swap    func(t *testing.T, maildir string)
		refused bool // the next poll finds tmp/ a symlink
	}{
		{"tmp renamed, new tmp", func(t *testing.T, md string) {
			must(t, os.Rename(filepath.Join(md, "tmp"), filepath.Join(md, "tmp.old")))
			must(t, os.Mkdir(filepath.Join(md, "tmp"), 0o700))
		}, false},
		{"tmp renamed, symlink to it", func(t *testing.T, md string) {
			must(t, os.Rename(filepath.Join(md, "tmp"), filepath.Join(md, "tmp.old")))
			must(t, os.Symlink("tmp.old", filepath.Join(md, "tmp")))
		}, true},
		{"file removed", func(t *testing.T, md string) {
			ents, _ := os.ReadDir(filepath.Join(md, "tmp"))
			for _, e := range ents {
				must(t, os.Remove(filepath.Join(md, "tmp", e.Name())))
			}
		}, false},
		{"file replaced", func(t *testing.T, md string) {
			ents, _ := os.ReadDir(filepath.Join(md, "tmp"))
			for _, e := range ents {
				p := filepath.Join(md, "tmp", e.Name())
				must(t, os.Rename(p, p+".moved"))
				must(t, os.WriteFile(p, []byte("From: someone else\n\nnot the message\n"), 0o600))
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			big := bigMsg(1, streamMin+1<<20)
			maildir := make(chan string, 1)
			midway := make(chan string, 1) // the Maildir, once the body is half sent
			done := make(chan struct{})
			srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{big}, Faults: []pop3test.Fault{{
				Cmd: "RETR", N: 1, Session: 1, Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
					md := <-maildir
					ans := c.Answer()
					c.Write(ans[:len(ans)/2])
					for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
						if ents, _ := os.ReadDir(filepath.Join(md, "tmp")); len(ents) > 0 {
							break
						}
					}
					midway <- md
					<-done
					c.Write(ans[len(ans)/2:])
				},
			}}})
			a := testAccount(t, srv)
			maildir <- a.Deliver.Maildir
			go func() {
				md := <-midway
				defer close(done)
				tc.swap(t, md)
			}()
			res := poller(nil).Poll(context.Background(), a)
			<-done
			if res.Err != nil {
				if len(dirNames(t, filepath.Join(a.Deliver.Maildir, "new"))) != 0 || storeHas(t, a, big.UID) {
					t.Fatalf("failed poll (%v) left a copy in new/ or a record", res.Err)
				}
				res = poller(nil).Poll(context.Background(), a)
			}
			if res.Err == nil && res.Delivered == 0 {
				res = poller(nil).Poll(context.Background(), a)
			}
			if res.Err != nil || res.Delivered != 1 {
				t.Fatalf("poll = %+v", res)
			}
			got := delivertest.MaildirMessages(t, a.Deliver.Maildir, "new")
			lf := bytes.ReplaceAll(big.Data, []byte("\r\n"), []byte("\n"))
			i := bytes.Index(got0(got), []byte("\nFrom: a@example.com\n"))
			if len(got) != 1 || i < 0 || !bytes.Equal(got[0][i+1:], lf) || !bytes.HasPrefix(got[0], []byte("Received: ")) {
				t.Fatalf("new/ holds %d copies; want one, exactly the message", len(got))
			}
			if tc.refused {
				srv.SetMessages([]pop3test.Message{msg(2)})
				if res := poller(nil).Poll(context.Background(), a); res.Delivered != 0 || len(srv.Messages()) != 1 {
					t.Fatalf("the next poll, into a Maildir whose tmp/ is a symlink = %+v; want the message left on the server", res)
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}

func got0(b [][]byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b[0]
}
