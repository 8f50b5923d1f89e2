package fetch

import (
	"context"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// A poll whose PollOptions.Stop is closed before it begins makes no
// connection at all (no login only to list and QUIT) and says so in its
// Result: NotStarted, no error, nothing counted, the mail left on the
// server. An open Stop polls as usual.
func TestPollStoppedBeforeStart(t *testing.T) {
	for _, tt := range []struct {
		name    string
		stopped bool
	}{
		{"stopped", true},
		{"not stopped", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2)})
			a := testAccount(t, srv)
			stop := make(chan struct{})
			if tt.stopped {
				close(stop)
			}
			res := poller(nil).PollWith(context.Background(), a, PollOptions{Stop: stop})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if !tt.stopped {
				if res.NotStarted || srv.Sessions() != 1 || res.Delivered != 2 {
					t.Fatalf("NotStarted %v, %d sessions, %d delivered; want a plain poll", res.NotStarted, srv.Sessions(), res.Delivered)
				}
				return
			}
			if !res.NotStarted || !Summarize(res).NotStarted {
				t.Errorf("NotStarted = %v (summary %v); want true", res.NotStarted, Summarize(res).NotStarted)
			}
			if n := srv.Sessions(); n != 0 {
				t.Errorf("%d connections; want none:\n%s", n, srv.Transcript())
			}
			if res.Messages != 0 || res.Delivered != 0 || len(srv.Messages()) != 2 || maildirCount(t, a) != 0 {
				t.Errorf("result %+v, %d messages on the server, %d in the Maildir; want nothing done", res, len(srv.Messages()), maildirCount(t, a))
			}
		})
	}
}
