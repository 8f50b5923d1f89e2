package fetch

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// A Maildir whose new/ is a symlink is refused as a temporary failure: the
// message stays on the server and nothing lands where the link points.
// Once an admin replaces the link with a directory, the next poll
// delivers it.
func TestMaildirSymlinkKeepsMessage(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		{UID: "m1", Data: []byte("Subject: x\r\n\r\nbody\r\n")},
	}})
	a := testAccount(t, srv)
	md := a.Deliver.Maildir
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	for _, d := range []string{filepath.Join(md, "tmp"), filepath.Join(md, "cur"), elsewhere} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(elsewhere, filepath.Join(md, "new")); err != nil {
		t.Fatal(err)
	}
	logs := &logCapture{}
	res := (&Poller{Log: logs.logger()}).Poll(context.Background(), a)
	if res.Failed != 1 || res.Delivered != 0 || res.Deleted != 0 || len(srv.Messages()) != 1 {
		t.Fatalf("Poll = %+v, %d left on the server; want the message kept", res, len(srv.Messages()))
	}
	if n := delivertest.Names(t, elsewhere); len(n) != 0 {
		t.Fatalf("the symlink's target holds %q", n)
	}
	if l := logs.lines("level=ERROR", "symbolic link", filepath.Join(md, "new")); len(l) != 1 {
		t.Errorf("want one error naming the symlink; log:\n%s", logs.String())
	}
	if err := os.Remove(filepath.Join(md, "new")); err != nil {
		t.Fatal(err)
	}
	if res := (&Poller{}).Poll(context.Background(), a); res.Delivered != 1 || len(srv.Messages()) != 0 {
		t.Fatalf("after the fix Poll = %+v", res)
	}
}
