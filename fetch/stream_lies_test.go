package fetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestPollStreamedListLies: a server whose LIST size is not the message's
// (much smaller or larger, or either side of the stream threshold): a
// message streamed on a listed size it does not have is still delivered
// once, intact, and nothing is left in tmp/; where the poll fails (a
// reply beyond its budget, or one that does not fit its LIST size),
// nothing is in new/ or tmp/ and the message is not recorded.
func TestPollStreamedListLies(t *testing.T) {
	for _, tc := range []struct {
		name         string
		size, listed int
	}{
		{"tiny listed at the threshold", 300, streamMin},
		{"tiny listed large", 300, 3 * streamMin},
		{"over the threshold listed at it", streamMin + 1<<20, streamMin},
		{"over the threshold listed under it", streamMin + 1<<20, streamMin - 1},
		{"at the threshold", streamMin, streamMin},
		{"just under listed at the threshold", streamMin - 1, streamMin},
		{"large listed half", 3 * streamMin, 3 * streamMin / 2},
		{"large listed tiny", 3 * streamMin, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			big := bigMsg(1, tc.size)
			srv := pop3test.NewServer(t, pop3test.Options{
				Messages: []pop3test.Message{big},
				ListSize: func(pop3test.Message) int { return tc.listed },
			})
			a := testAccount(t, srv)
			res := poller(nil).Poll(context.Background(), a)
			if res.Err != nil {
				if res.Delivered != 0 || storeHas(t, a, big.UID) {
					t.Fatalf("failed poll %+v recorded the message", res)
				}
				for _, sub := range []string{"tmp", "new"} {
					// Absent if no copy was begun.
					if ents, _ := os.ReadDir(filepath.Join(a.Deliver.Maildir, sub)); len(ents) != 0 {
						t.Fatalf("%s/ after a failed poll (%v): %v", sub, res.Err, ents)
					}
				}
				return
			}
			if res.Delivered != 1 {
				t.Fatalf("poll = %+v", res)
			}
			intactOnce(t, a.Deliver.Maildir, big)
			got := fmt.Sprint(len(dirNames(t, filepath.Join(a.Deliver.Maildir, "new"))))
			if got != "1" {
				t.Fatalf("new/ holds %s", got)
			}
		})
	}
}
