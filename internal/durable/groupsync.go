package durable

import (
	"errors"
	"sync"
	"time"
)

// GroupSync lets concurrent callers that each need one directory fsynced
// share the fsyncs (group commit): N copies renamed into one Maildir's
// new/ at about the same time need one fsync of new/, not N, and on a
// disk where an fsync takes milliseconds the others would queue behind
// each other's anyway.
//
// The rule that keeps it correct: Sync returns only after an fsync of
// the directory that started after Sync was called (so after the caller's
// rename, link or create, which happened before the call, and which that
// fsync therefore covers), and it returns that fsync's error. An fsync
// already running when a caller arrives may have begun before its change
// and does not count: the caller waits for it to end and joins the next
// one, which then serves every caller that arrived meanwhile.
//
// Keys name directories (for instance device and inode, so that two
// descriptors of one directory share); the zero value is ready to use.
// State is kept only while a key has callers, so the number of keys seen
// over time does not matter.
type GroupSync[K comparable] struct {
	// Gather, if set, is how long the caller that opens a round waits
	// before it starts the fsync when none is running, so that callers
	// arriving just behind it (deliverers whose file fsyncs end at about
	// the same time) share it: fewer fsyncs for at most Gather more
	// latency per copy.
	Gather time.Duration

	mu   sync.Mutex
	dirs map[K]*groupDir
	// waiting, if set, is called when a caller starts waiting for a
	// round it does not lead, with the number of rounds it waits for
	// (1: the one it joined; 2: the running one, then its own). For
	// tests.
	waiting func(rounds int)
}

// errNoReturn is the error of a round whose fsync panicked: its callers
// must not take the round for a success.
var errNoReturn = errors.New("durable: directory fsync did not return")

// groupDir is one directory's rounds: at most one fsync running, and at
// most one round collecting callers for the next.
type groupDir struct {
	running *syncRound // the fsync in progress, or nil
	next    *syncRound // the round new callers join, or nil
}

// syncRound is one fsync and the callers it serves.
type syncRound struct {
	done chan struct{} // closed once err is set
	err  error
}

// Sync makes sure the directory named by key was fsynced by a call of
// fsync that started after Sync was called, and returns that call's
// error. fsync is the caller's way to fsync the directory; when callers
// share a round, the one that opened the round runs its own, and the
// others' are not called (they must fsync the same directory).
func (g *GroupSync[K]) Sync(key K, fsync func() error) error {
	g.mu.Lock()
	if g.dirs == nil {
		g.dirs = make(map[K]*groupDir)
	}
	dir := g.dirs[key]
	if dir == nil {
		dir = &groupDir{}
		g.dirs[key] = dir
	}
	if r := dir.next; r != nil {
		// A round is collecting: its fsync has not started yet, so it
		// will start after this call. Wait for it.
		g.mu.Unlock()
		if g.waiting != nil {
			g.waiting(1)
		}
		<-r.done
		return r.err
	}
	r := &syncRound{done: make(chan struct{})}
	dir.next = r
	prev := dir.running
	g.mu.Unlock()

	// This caller leads round r. An fsync still running began before
	// (some of) r's callers arrived: wait for it rather than run two at
	// once, which would only compete for the same journal commit.
	if prev != nil {
		if g.waiting != nil {
			g.waiting(2)
		}
		<-prev.done
	} else if g.Gather > 0 {
		time.Sleep(g.Gather)
	}
	g.mu.Lock()
	dir.running, dir.next = r, nil // from here on, callers join a new round
	g.mu.Unlock()

	r.err = errNoReturn
	defer func() {
		g.mu.Lock()
		dir.running = nil
		if dir.next == nil {
			delete(g.dirs, key)
		}
		close(r.done)
		g.mu.Unlock()
	}()
	r.err = fsync()
	return r.err
}
