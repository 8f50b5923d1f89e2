package durable

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeFS is a filesystem whose syncs (a file's fsync or a shared
// SyncFS) block until released, each with the error it is released
// with; it never lets two overlap unnoticed.
type fakeFS struct {
	mu       sync.Mutex
	started  chan string // "fsync <file>" or "syncfs <file>" as each starts
	release  chan error
	inflight int
	overlap  bool
}

func newFakeFS() *fakeFS {
	return &fakeFS{started: make(chan string, 100), release: make(chan error)}
}

func (s *fakeFS) sync(what string) error {
	s.mu.Lock()
	s.inflight++
	s.overlap = s.overlap || s.inflight > 1
	s.mu.Unlock()
	s.started <- what
	err := <-s.release
	s.mu.Lock()
	s.inflight--
	s.mu.Unlock()
	return err
}

// fakeFile is one caller's file on a fakeFS.
type fakeFile struct {
	fs      *fakeFS
	name    string
	wbErr   error // what CheckWriteback reports
	checked atomic.Int32
}

func (f *fakeFile) Fsync() error  { return f.fs.sync("fsync " + f.name) }
func (f *fakeFile) SyncFS() error { return f.fs.sync("syncfs " + f.name) }
func (f *fakeFile) CheckWriteback() error {
	f.checked.Add(1)
	return f.wbErr
}

func wantSync(t *testing.T, s *fakeFS, what string) {
	t.Helper()
	select {
	case got := <-s.started:
		if got != what {
			t.Fatalf("%s started; want %s", got, what)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not start", what)
	}
}

func wantNoSync(t *testing.T, s *fakeFS) {
	t.Helper()
	select {
	case got := <-s.started:
		t.Fatalf("%s started; want none", got)
	case <-time.After(20 * time.Millisecond):
	}
}

// TestFileSyncRounds: a caller alone fsyncs its own file; callers that
// arrive while a sync runs are not served by it (it may have begun
// before their writes) but share the next, one SyncFS run by the round's
// leader; every caller gets the error of exactly the sync that covered
// it, and only a successful shared sync is followed by each caller's
// check of its own file.
func TestFileSyncRounds(t *testing.T) {
	var g FileSync[string]
	waits := make(chan int, 10)
	g.waiting = func() { waits <- 1 }
	s := newFakeFS()
	results := make(chan result, 10)
	files := map[string]*fakeFile{}
	call := func(who string) {
		f := &fakeFile{fs: s, name: who}
		files[who] = f
		go func() { results <- result{who, g.Sync("fs", f)} }()
	}
	errOne, errTwo := errors.New("one"), errors.New("two")

	call("a")
	wantSync(t, s, "fsync a") // alone: its own file's fsync
	call("b")
	waitFor(t, waits, 1) // b leads round 2, behind a's fsync
	call("c")
	call("d")
	waitFor(t, waits, 2) // c and d join it
	wantNoSync(t, s)
	select {
	case r := <-results:
		t.Fatalf("%s returned (%v) before any sync after its call ended", r.who, r.err)
	default:
	}
	s.release <- errOne
	if r := <-results; r.who != "a" || r.err != errOne {
		t.Fatalf("first result %s %v; want a with its fsync's error", r.who, r.err)
	}
	wantSync(t, s, "syncfs b") // three callers: one syncfs, by the leader
	call("e")                  // arrives while it runs: round 3
	waitFor(t, waits, 1)
	s.release <- errTwo
	got := map[string]error{}
	for range 3 {
		r := <-results
		got[r.who] = r.err
	}
	for _, who := range []string{"b", "c", "d"} {
		if got[who] != errTwo {
			t.Errorf("%s got %v; want round 2's error %v", who, got[who], errTwo)
		}
		if n := files[who].checked.Load(); n != 0 {
			t.Errorf("%s checked its file %d times after a failed sync", who, n)
		}
	}
	wantSync(t, s, "fsync e") // alone again
	s.release <- nil
	if r := <-results; r.who != "e" || r.err != nil {
		t.Fatalf("result %s %v; want e with nil", r.who, r.err)
	}
	if n := files["e"].checked.Load(); n != 0 {
		t.Errorf("a lone fsync was followed by %d checks; want none", n)
	}
	if s.overlap {
		t.Error("two syncs of one filesystem at once")
	}
}

// TestFileSyncCheck: after a successful shared sync each caller checks
// its own file, and a writeback error of one file fails exactly its
// caller.
func TestFileSyncCheck(t *testing.T) {
	var g FileSync[string]
	waits := make(chan int, 10)
	g.waiting = func() { waits <- 1 }
	s := newFakeFS()
	eio := errors.New("eio")
	a := &fakeFile{fs: s, name: "a"}
	b := &fakeFile{fs: s, name: "b", wbErr: eio}
	c := &fakeFile{fs: s, name: "c"}
	d := &fakeFile{fs: s, name: "d"}
	results := make(chan result, 4)
	go func() { results <- result{"a", g.Sync("fs", a)} }()
	wantSync(t, s, "fsync a")
	go func() { results <- result{"b", g.Sync("fs", b)} }()
	waitFor(t, waits, 1)
	go func() { results <- result{"c", g.Sync("fs", c)} }()
	go func() { results <- result{"d", g.Sync("fs", d)} }()
	waitFor(t, waits, 2)
	s.release <- nil
	wantSync(t, s, "syncfs b")
	s.release <- nil
	got := map[string]error{}
	for range 4 {
		r := <-results
		got[r.who] = r.err
	}
	want := map[string]error{"a": nil, "b": eio, "c": nil, "d": nil}
	for who, err := range want {
		if got[who] != err {
			t.Errorf("%s got %v; want %v", who, got[who], err)
		}
	}
	for _, f := range []*fakeFile{b, c, d} {
		if n := f.checked.Load(); n != 1 {
			t.Errorf("%s checked %d times after the shared sync; want 1", f.name, n)
		}
	}
}

// TestFileSyncKeys: filesystems do not share rounds, and one's error
// does not reach the other's callers.
func TestFileSyncKeys(t *testing.T) {
	var g FileSync[string]
	s1, s2 := newFakeFS(), newFakeFS()
	done1 := make(chan error, 1)
	go func() { done1 <- g.Sync("fs1", &fakeFile{fs: s1, name: "a"}) }()
	wantSync(t, s1, "fsync a")
	done2 := make(chan error, 1)
	go func() { done2 <- g.Sync("fs2", &fakeFile{fs: s2, name: "b"}) }()
	wantSync(t, s2, "fsync b") // not held back by fs1's running sync
	s2.release <- nil
	if err := <-done2; err != nil {
		t.Errorf("fs2: %v", err)
	}
	s1.release <- errors.New("eio")
	if err := <-done1; err == nil || err.Error() != "eio" {
		t.Errorf("fs1: %v; want eio", err)
	}
}

// TestFileSyncPanic: a sync that panics fails the callers of its round
// instead of passing for a success or leaving them waiting.
func TestFileSyncPanic(t *testing.T) {
	g := FileSync[string]{Gather: 200 * time.Millisecond}
	joined := make(chan error, 1)
	go func() {
		defer func() { recover() }()
		g.Sync("fs", panicFile{})
	}()
	time.Sleep(20 * time.Millisecond)
	go func() { joined <- g.Sync("fs", &fakeFile{name: "b"}) }()
	if err := <-joined; !errors.Is(err, errNoReturn) {
		t.Errorf("caller of a round whose sync panicked got %v; want errNoReturn", err)
	}
}

type panicFile struct{}

func (panicFile) Fsync() error          { panic("boom") }
func (panicFile) SyncFS() error         { panic("boom") }
func (panicFile) CheckWriteback() error { return nil }

// stampFile records, for TestFileSyncConcurrent, the logical time of
// each sync start; its error names the sync.
type stampFile struct {
	clock  *atomic.Int64
	mu     *sync.Mutex
	starts map[int]int64
	n      *int
	active *atomic.Int32
	t      *testing.T
}

func (f stampFile) sync() error {
	if f.active.Add(1) > 1 {
		f.t.Error("two syncs of one filesystem at once")
	}
	defer f.active.Add(-1)
	f.mu.Lock()
	*f.n++
	id := *f.n
	f.starts[id] = f.clock.Add(1)
	f.mu.Unlock()
	time.Sleep(time.Millisecond)
	return fmt.Errorf("sync %d", id)
}

func (f stampFile) Fsync() error          { return f.sync() }
func (f stampFile) SyncFS() error         { return f.sync() }
func (f stampFile) CheckWriteback() error { return nil }

// TestFileSyncConcurrent: many callers at once, each stamped with the
// time it called; every caller must be served by a sync that started
// after that stamp, and the syncs must be shared.
func TestFileSyncConcurrent(t *testing.T) {
	var (
		g      = FileSync[string]{Gather: time.Millisecond}
		clock  atomic.Int64
		mu     sync.Mutex
		starts = map[int]int64{}
		n      int
		active atomic.Int32
	)
	f := stampFile{&clock, &mu, starts, &n, &active, t}
	const callers = 200
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			called := clock.Add(1)
			err := g.Sync("fs", f)
			var id int
			if _, serr := fmt.Sscanf(err.Error(), "sync %d", &id); serr != nil {
				t.Errorf("error %v names no sync", err)
				return
			}
			mu.Lock()
			start := starts[id]
			mu.Unlock()
			if start <= called {
				t.Errorf("caller at %d served by sync %d begun at %d", called, id, start)
			}
		})
	}
	wg.Wait()
	if n >= callers {
		t.Errorf("%d syncs for %d concurrent callers; want them shared", n, callers)
	}
	t.Logf("%d callers, %d syncs", callers, n)
}
