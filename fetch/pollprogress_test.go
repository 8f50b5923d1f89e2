package fetch

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// recordProgress records the calls of PollOptions.Progress.
type recordProgress struct {
	mu    sync.Mutex
	calls []string
}

func (r *recordProgress) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recordProgress) Start(a string, n int, b int64) {
	r.add(fmt.Sprintf("start %s %d %d", a, n, b))
}
func (r *recordProgress) Done(a string, b int64) { r.add(fmt.Sprintf("done %s %d", a, b)) }
func (r *recordProgress) End(a string)           { r.add("end " + a) }

// TestPollProgress: PollOptions.Progress hears the messages one poll will
// retrieve and their LIST sizes once the listing is known, each message
// as it is finished, and the end; a poll with nothing new starts nothing;
// a second poll, with everything delivered, reports no retrieval.
func TestPollProgress(t *testing.T) {
	m := msgs(3)
	srv := pop3test.NewServer(t, pop3test.Options{Messages: m})
	a := testAccount(t, srv)
	a.Keep = true
	var total int64
	var want []string
	for _, x := range m {
		total += int64(len(x.Data))
	}
	want = append(want, fmt.Sprintf("start %s 3 %d", a.Name, total))
	for _, x := range m {
		want = append(want, fmt.Sprintf("done %s %d", a.Name, len(x.Data)))
	}
	want = append(want, "end "+a.Name)

	rec := &recordProgress{}
	res := poller(nil).PollWith(context.Background(), a, PollOptions{Progress: rec})
	if res.Err != nil || res.Delivered != 3 {
		t.Fatalf("poll: %d delivered, %v", res.Delivered, res.Err)
	}
	// Deliveries run in parallel: the Done calls may come in any order.
	if d := cmp.Diff(sortedMid(want), sortedMid(rec.calls)); d != "" {
		t.Errorf("progress calls (-want +got):\n%s", d)
	}

	rec = &recordProgress{}
	if res := poller(nil).PollWith(context.Background(), a, PollOptions{Progress: rec}); res.Err != nil || res.New != 0 {
		t.Fatalf("second poll: %d new, %v", res.New, res.Err)
	}
	if len(rec.calls) != 0 {
		t.Errorf("second poll, nothing new: progress calls %q; want none", rec.calls)
	}
}

// sortedMid sorts all but the first and last calls (Start and End).
func sortedMid(c []string) []string {
	out := slices.Clone(c)
	if len(out) > 2 {
		slices.Sort(out[1 : len(out)-1])
	}
	return out
}
