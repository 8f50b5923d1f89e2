package durable

import (
	"sync"
	"time"
)

// SyncFile is a just-written file handed to FileSync, by the three ways
// it can be made durable.
type SyncFile interface {
	// Fsync makes this file alone durable (fsync(2)): the way of a
	// caller that found no other to share a sync with.
	Fsync() error
	// SyncFS makes every file written on this file's filesystem so far
	// durable, data and inode, before it returns (SyncFilesystem): the
	// way of a round's leader, on behalf of all the round's files.
	SyncFS() error
	// CheckWriteback reports a writeback error of this file's own data
	// since it was opened, once a SyncFS covered it: the filesystem-wide
	// sync may report another file's error, or an error of this file
	// another descriptor consumed, but not reliably this file's (see
	// CheckWriteback in filesync_linux.go).
	CheckWriteback() error
}

// FileSync lets concurrent callers that each need one just-written file
// made durable share one filesystem sync (group commit): N message files
// written at about the same time into one filesystem need one syncfs(2),
// not N fsync(2)s. On a disk where each fsync waits for the device, the N
// fsyncs queue behind each other; one syncfs writes the same data in one
// pass and waits for the device about as often as one fsync.
//
// The rule that keeps it correct is GroupSync's: Sync returns only after
// a sync that started after Sync was called (so after the caller's
// writes, which that sync therefore covers), with that sync's error. A
// caller that ends a round alone fsyncs its own file, exactly as without
// FileSync; with two or more, the round's leader runs SyncFS of its own
// file (the filesystem is the same for all), and every caller then checks
// its own file with CheckWriteback. Any error fails the caller.
//
// Keys name filesystems (the device number); only files on filesystems
// whose syncfs popfetch relies on may share a key (see SharedSyncKey).
// The zero value is ready to use; state is kept only while a key has
// callers.
type FileSync[K comparable] struct {
	// Gather is how long the caller that opens a round waits, when no
	// sync of its filesystem is running, for others to join it.
	Gather time.Duration

	mu  sync.Mutex
	fss map[K]*fileGroup

	// waiting, if set, is called when a caller starts waiting for a
	// round it joined, or for the running one before it leads the
	// next. For tests.
	waiting func()
}

// fileGroup is one filesystem's rounds: at most one sync running, and at
// most one round collecting callers for the next.
type fileGroup struct {
	running *fileRound
	next    *fileRound
}

// fileRound is one sync and the callers it serves.
type fileRound struct {
	done    chan struct{} // closed once err is set
	callers int           // fixed once the round runs
	err     error
}

// Sync makes f durable by a sync that started after Sync was called and
// returns that sync's error, or f's own writeback error after a shared
// sync. key names f's filesystem.
func (g *FileSync[K]) Sync(key K, f SyncFile) error {
	g.mu.Lock()
	if g.fss == nil {
		g.fss = make(map[K]*fileGroup)
	}
	fsg := g.fss[key]
	if fsg == nil {
		fsg = &fileGroup{}
		g.fss[key] = fsg
	}
	if r := fsg.next; r != nil {
		// A round is collecting: its sync has not started, so it starts
		// after this call, and it is a SyncFS (two callers at least).
		r.callers++
		g.mu.Unlock()
		if g.waiting != nil {
			g.waiting()
		}
		<-r.done
		if r.err != nil {
			return r.err
		}
		return f.CheckWriteback()
	}
	r := &fileRound{done: make(chan struct{}), callers: 1}
	fsg.next = r
	prev := fsg.running
	g.mu.Unlock()
	// This caller leads r. A sync still running may have begun before
	// r's callers wrote: wait for it rather than run two at once, which
	// would only compete for the same device.
	if prev != nil {
		if g.waiting != nil {
			g.waiting()
		}
		<-prev.done
	} else if g.Gather > 0 {
		time.Sleep(g.Gather)
	}
	g.mu.Lock()
	fsg.running, fsg.next = r, nil // from here on, callers join a new round
	shared := r.callers > 1
	g.mu.Unlock()
	r.err = errNoReturn
	defer func() {
		g.mu.Lock()
		fsg.running = nil
		if fsg.next == nil {
			delete(g.fss, key)
		}
		close(r.done)
		g.mu.Unlock()
	}()
	if !shared {
		r.err = f.Fsync()
		return r.err
	}
	if r.err = f.SyncFS(); r.err != nil {
		return r.err
	}
	return f.CheckWriteback()
}
