package durable

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeFsync is an fsync whose calls block until released, each with the
// error it is released with; it records how many ran and never lets two
// of one directory overlap unnoticed.
type fakeFsync struct {
	mu       sync.Mutex
	started  chan int   // the number of each fsync as it starts
	release  chan error // one value ends one fsync
	calls    int
	inflight int
	overlap  bool
}

func newFakeFsync() *fakeFsync {
	return &fakeFsync{started: make(chan int, 100), release: make(chan error)}
}

func (f *fakeFsync) fsync() error {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.inflight++
	f.overlap = f.overlap || f.inflight > 1
	f.mu.Unlock()
	f.started <- n
	err := <-f.release
	f.mu.Lock()
	f.inflight--
	f.mu.Unlock()
	return err
}

// waitFor waits until n callers wait in g (see GroupSync.waiting).
func waitFor(t *testing.T, waits chan int, n int) {
	t.Helper()
	for range n {
		select {
		case <-waits:
		case <-time.After(10 * time.Second):
			t.Fatal("callers did not reach Sync")
		}
	}
}

func wantStart(t *testing.T, f *fakeFsync, n int) {
	t.Helper()
	select {
	case got := <-f.started:
		if got != n {
			t.Fatalf("fsync %d started; want %d", got, n)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("fsync %d did not start", n)
	}
}

func wantNoStart(t *testing.T, f *fakeFsync) {
	t.Helper()
	select {
	case got := <-f.started:
		t.Fatalf("fsync %d started; want none", got)
	case <-time.After(20 * time.Millisecond):
	}
}

// result is one caller's outcome.
type result struct {
	who string
	err error
}

// TestGroupSyncRounds: callers that arrive while an fsync runs are not
// served by it (it may have begun before their change): they share the
// next one, which starts only after the running one ended, and each
// caller gets the error of exactly the fsync that covered it.
func TestGroupSyncRounds(t *testing.T) {
	var g GroupSync[string]
	waits := make(chan int, 10)
	g.waiting = func(int) { waits <- 1 }
	f := newFakeFsync()
	results := make(chan result, 10)
	call := func(who string) {
		go func() { results <- result{who, g.Sync("new", f.fsync)} }()
	}
	errOne, errTwo := errors.New("one"), errors.New("two")

	call("a")
	wantStart(t, f, 1) // a leads round 1 and its fsync runs
	call("b")
	call("c")
	call("d")
	// b leads round 2 and waits for round 1; c and d join round 2.
	waitFor(t, waits, 3)
	wantNoStart(t, f) // never two fsyncs of one directory at once
	select {
	case r := <-results:
		t.Fatalf("%s returned (%v) before any fsync after its call ended", r.who, r.err)
	default:
	}

	f.release <- errOne
	if r := <-results; r.who != "a" || r.err != errOne {
		t.Fatalf("first result %s %v; want a with round 1's error", r.who, r.err)
	}
	wantStart(t, f, 2)
	select {
	case r := <-results:
		t.Fatalf("%s returned (%v) while the fsync covering it ran", r.who, r.err)
	default:
	}
	call("e") // arrives while round 2's fsync runs: round 3
	waitFor(t, waits, 1)
	f.release <- errTwo
	got := map[string]error{}
	for range 3 {
		r := <-results
		got[r.who] = r.err
	}
	for _, who := range []string{"b", "c", "d"} {
		if got[who] != errTwo {
			t.Errorf("%s got %v; want round 2's error %v", who, got[who], errTwo)
		}
	}
	wantStart(t, f, 3)
	f.release <- nil
	if r := <-results; r.who != "e" || r.err != nil {
		t.Fatalf("result %s %v; want e served by round 3 without error", r.who, r.err)
	}
	if f.calls != 3 || f.overlap {
		t.Errorf("%d fsyncs (overlapping: %v); want 3, one at a time", f.calls, f.overlap)
	}
	if len(g.dirs) != 0 {
		t.Errorf("%d directories still tracked after all callers returned", len(g.dirs))
	}
}

// TestGroupSyncKeys: different directories do not share fsyncs, nor wait
// for each other's.
func TestGroupSyncKeys(t *testing.T) {
	var g GroupSync[int]
	f1, f2 := newFakeFsync(), newFakeFsync()
	done1, done2 := make(chan error, 1), make(chan error, 1)
	go func() { done1 <- g.Sync(1, f1.fsync) }()
	wantStart(t, f1, 1)
	go func() { done2 <- g.Sync(2, f2.fsync) }()
	wantStart(t, f2, 1) // while directory 1's fsync still runs
	f2.release <- nil
	if err := <-done2; err != nil {
		t.Errorf("directory 2: %v", err)
	}
	f1.release <- errors.New("eio")
	if err := <-done1; err == nil || err.Error() != "eio" {
		t.Errorf("directory 1: %v; want eio", err)
	}
}

// TestGroupSyncPanic: an fsync that panics fails the callers of its round
// instead of passing for a success or leaving them waiting, and the
// directory's next round still runs.
func TestGroupSyncPanic(t *testing.T) {
	var g GroupSync[string]
	waits := make(chan int, 2)
	g.waiting = func(int) { waits <- 1 }
	f := newFakeFsync()
	first := make(chan error, 1)
	go func() { first <- g.Sync("d", f.fsync) }()
	wantStart(t, f, 1)
	go func() {
		defer func() { recover() }()
		g.Sync("d", func() error { panic("boom") })
	}()
	waitFor(t, waits, 1) // the panicking caller leads round 2
	joined := make(chan error, 1)
	go func() { joined <- g.Sync("d", f.fsync) }()
	waitFor(t, waits, 1) // and this one joins it
	f.release <- nil
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-joined; !errors.Is(err, errNoReturn) {
		t.Errorf("caller of a round whose fsync panicked got %v; want errNoReturn", err)
	}
	go func() { f.release <- nil }()
	if err := g.Sync("d", f.fsync); err != nil {
		t.Errorf("round after the panic = %v", err)
	}
}

// TestGroupSyncConcurrent: many callers at once, each stamped with the
// time it called; every caller must be served by an fsync that started
// after that stamp, and the fsyncs must be shared.
func TestGroupSyncConcurrent(t *testing.T) {
	var (
		g      GroupSync[string]
		clock  atomic.Int64 // a logical clock: calls and fsync starts tick it
		mu     sync.Mutex
		starts = map[int]int64{} // fsync number → clock at its start
		n      int
		active atomic.Int32
	)
	fsync := func() error {
		if active.Add(1) > 1 {
			t.Error("two fsyncs of one directory at once")
		}
		defer active.Add(-1)
		mu.Lock()
		n++
		id := n
		starts[id] = clock.Add(1)
		mu.Unlock()
		time.Sleep(time.Millisecond)
		return fmt.Errorf("fsync %d", id)
	}
	const callers = 200
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			called := clock.Add(1)
			err := g.Sync("new", fsync)
			var id int
			if _, serr := fmt.Sscanf(err.Error(), "fsync %d", &id); serr != nil {
				t.Errorf("error %v names no fsync", err)
				return
			}
			mu.Lock()
			start := starts[id]
			mu.Unlock()
			if start <= called {
				t.Errorf("caller at %d served by fsync %d begun at %d", called, id, start)
			}
		})
	}
	wg.Wait()
	if n >= callers {
		t.Errorf("%d fsyncs for %d concurrent callers; want them shared", n, callers)
	}
	t.Logf("%d callers, %d fsyncs", callers, n)
}

// TestGroupSyncGather: with Gather, callers arriving within it of the
// one that opened a round share that round's fsync, which starts only
// after Gather; without it, the first caller's fsync starts at once.
func TestGroupSyncGather(t *testing.T) {
	for _, gather := range []time.Duration{0, 200 * time.Millisecond} {
		g := GroupSync[string]{Gather: gather}
		var mu sync.Mutex
		calls := 0
		var started time.Time
		fsync := func() error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if started.IsZero() {
				started = time.Now()
			}
			time.Sleep(20 * time.Millisecond)
			return nil
		}
		begin := time.Now()
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 10 * time.Millisecond)
				if err := g.Sync("new", fsync); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		switch {
		case gather > 0 && calls != 1:
			t.Errorf("Gather %v: %d fsyncs for 4 callers within it; want 1", gather, calls)
		case gather > 0 && started.Sub(begin) < gather:
			t.Errorf("Gather %v: the fsync started after %v", gather, started.Sub(begin))
		case gather == 0 && calls < 2:
			t.Errorf("no Gather: %d fsyncs for callers 10 ms apart with 20 ms fsyncs; want the first at once and another after", calls)
		}
	}
}
