package fetch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// gaugeDispatcher records the value of Poller.Deliveries while each
// delivery runs, and fails the deliveries of the messages in fail.
type gaugeDispatcher struct {
	g    *atomic.Int64
	fail map[int]bool // by delivery order, from 1

	mu   sync.Mutex
	n    int
	seen []int64
}

func (d *gaugeDispatcher) Dispatch(context.Context, *deliver.Message, Progress, *slog.Logger) error {
	d.mu.Lock()
	d.n++
	n := d.n
	d.seen = append(d.seen, d.g.Load())
	d.mu.Unlock()
	if d.fail[n] {
		return errors.New("target down")
	}
	return nil
}

// TestDeliveriesInFlight: Poller.Deliveries counts a delivery while it
// runs (at least 1 inside Dispatch, never more than the deliveries a
// session runs at once) and is back to 0 when the poll ends, also when
// deliveries failed.
func TestDeliveriesInFlight(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail map[int]bool
	}{
		{"all delivered", nil},
		{"some fail", map[int]bool{1: true, 3: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(4)})
			a := testAccount(t, srv)
			g := &atomic.Int64{}
			d := &gaugeDispatcher{g: g, fail: tc.fail}
			p := &Poller{Deliveries: g, Dispatcher: func(*rcfile.Account) (Dispatcher, error) { return d, nil }}
			res := p.PollWith(context.Background(), a, PollOptions{})
			if res.Err != nil || res.Delivered+res.Failed != 4 {
				t.Fatalf("poll: %d delivered, %d failed, %v", res.Delivered, res.Failed, res.Err)
			}
			if len(d.seen) != 4 {
				t.Fatalf("%d deliveries, want 4", len(d.seen))
			}
			for i, v := range d.seen {
				if v < 1 || v > deliverers {
					t.Errorf("delivery %d ran with %d in flight, want 1..%d", i+1, v, deliverers)
				}
			}
			if v := g.Load(); v != 0 {
				t.Errorf("after the poll %d deliveries in flight, want 0", v)
			}
		})
	}
}
