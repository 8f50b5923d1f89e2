package fetch

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkers: every job runs once, in order of arrival when one worker
// serves, never more than n at once; Go does not block while all workers
// are busy; Close lets every worker return once the queue is empty.
func TestWorkers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n, jobs    int
		wantLive   int // goroutines the pool starts at most
		checkOrder bool
	}{
		{name: "one worker", n: 1, jobs: 50, wantLive: 1, checkOrder: true},
		{name: "fewer jobs than workers", n: 32, jobs: 3, wantLive: 3},
		{name: "many jobs", n: 4, jobs: 500, wantLive: 4},
		{name: "zero means one", n: 0, jobs: 10, wantLive: 1, checkOrder: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorkers(tc.n)
			release := make(chan struct{})
			var inFlight, peak atomic.Int32
			var mu sync.Mutex
			var order []int
			var done sync.WaitGroup
			done.Add(tc.jobs)
			queued := make(chan struct{})
			go func() {
				// Go never blocks: all jobs are queued while
				// every worker is held up by release.
				for i := range tc.jobs {
					w.Go(func() {
						defer done.Done()
						now := inFlight.Add(1)
						for {
							p := peak.Load()
							if now <= p || peak.CompareAndSwap(p, now) {
								break
							}
						}
						<-release
						mu.Lock()
						order = append(order, i)
						mu.Unlock()
						inFlight.Add(-1)
					})
				}
				close(queued)
			}()
			select {
			case <-queued:
			case <-time.After(10 * time.Second):
				t.Fatal("Go blocked while the workers were busy")
			}
			w.mu.Lock()
			live := w.live
			w.mu.Unlock()
			if live != tc.wantLive {
				t.Errorf("%d workers started, want %d", live, tc.wantLive)
			}
			close(release)
			done.Wait()
			if got, max := peak.Load(), int32(max(tc.n, 1)); got > max {
				t.Errorf("%d jobs ran at once, want at most %d", got, max)
			}
			if len(order) != tc.jobs {
				t.Fatalf("%d jobs ran, want %d", len(order), tc.jobs)
			}
			seen := map[int]bool{}
			for k, i := range order {
				if seen[i] {
					t.Fatalf("job %d ran twice", i)
				}
				seen[i] = true
				if tc.checkOrder && i != k {
					t.Fatalf("job %d ran as number %d with one worker", i, k)
				}
			}
			w.Close()
			deadline := time.Now().Add(10 * time.Second)
			for {
				w.mu.Lock()
				live := w.live
				w.mu.Unlock()
				if live == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d workers still running after Close", live)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// TestWorkersReuse: jobs given one at a time, each after the last has
// finished, are served by the worker already started.
func TestWorkersReuse(t *testing.T) {
	w := newWorkers(8)
	defer w.Close()
	for range 100 {
		ran := make(chan struct{})
		w.Go(func() { close(ran) })
		<-ran
		// Wait until the worker is back waiting, as a delivery's
		// worker is by the time the next round starts.
		for {
			w.mu.Lock()
			idle := w.idle
			w.mu.Unlock()
			if idle > 0 {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.live != 1 {
		t.Errorf("%d workers started for jobs one at a time, want 1", w.live)
	}
}
