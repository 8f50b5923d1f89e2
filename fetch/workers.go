package fetch

import "sync"

// workers runs jobs on at most n goroutines, started as jobs arrive and
// kept for the next ones until Close. A goroutine per message would begin
// every delivery on a small stack and grow it, copying, to the depth of a
// delivery (Maildir, journal, hashing); a worker grows its stack once.
// Jobs start in the order given.
type workers struct {
	n      int
	mu     sync.Mutex
	cond   sync.Cond
	queue  []func()
	live   int // goroutines started and not returned
	idle   int // of them, waiting for a job and not yet woken for one
	closed bool
}

func newWorkers(n int) *workers {
	w := &workers{n: max(n, 1)}
	w.cond.L = &w.mu
	return w
}

// Go queues f; it never blocks.
func (w *workers) Go(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = append(w.queue, f)
	switch {
	case w.idle > 0:
		w.idle--
		w.cond.Signal()
	case w.live < w.n:
		w.live++
		go w.work()
	}
	// Otherwise every worker is busy; the first one free takes f.
}

func (w *workers) work() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for len(w.queue) == 0 {
			if w.closed {
				w.live--
				return
			}
			w.idle++
			w.cond.Wait()
		}
		f := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		if len(w.queue) == 0 {
			w.queue = w.queue[:0:0] // let the backing array go
		}
		w.mu.Unlock()
		f()
		w.mu.Lock()
	}
}

// Close lets the workers return once the queue is empty. Jobs queued
// before are still run.
func (w *workers) Close() {
	w.mu.Lock()
	w.closed = true
	w.idle = 0
	w.cond.Broadcast()
	w.mu.Unlock()
}
