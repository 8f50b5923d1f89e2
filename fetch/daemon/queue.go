package daemon

import (
	"container/heap"
	"time"
)

// The scheduler's queues. startDueLocked must start the accounts due
// in order (operator requests first, then by when they became due, then
// by name: dueBefore), skipping those a limit holds back, and wake
// at the earliest time an account becomes due or a running poll reaches
// its time limit. Scanning every account for that on each wake-up of the
// loop costs O(n) per finished poll, O(n²) per cycle of n accounts; the
// queues below keep the same answer at O(log n) per account whose state
// changed:
//
//   - future: every account that may be polled (not running, not
//     removed, not in auth-hold unless an operator asked for it), keyed
//     on when it becomes due (dueAt; for an operator request the end of
//     the LOGIN-DELAY, as dueAt gives it);
//   - hosts: the accounts that are due, one heap per server (hostKey) in
//     dueBefore order; an account moves there from future once its time
//     has come;
//   - free: the servers with an account due and a session slot free
//     (perHost below PerServer), keyed on their first account: its top
//     is the account to start next;
//   - boxHeld: due accounts held back because their mailbox is being
//     polled under another name (busyBoxes); they go back to future when
//     that poll ends;
//   - deadlines: the running polls not yet asked to stop, by deadline.
//
// Every change to what dueAt returns or to whether an account may be
// polled (next, notBefore, now, authHold, running, removed, its settings)
// is followed by placeLocked (or requeueLocked after a Reload), which puts
// the account back where its new state belongs.
type queues struct {
	future    acctHeap
	hosts     map[string]*hostQueue
	free      hostHeap
	boxHeld   map[string][]*account
	deadlines acctHeap
}

// queued says which queue holds an account.
type queued uint8

const (
	inNone   queued = iota
	inFuture        // queues.future
	inHost          // account.hq's heap
	inBox           // queues.boxHeld[account.box]
)

// hostQueue is the due accounts of one server.
type hostQueue struct {
	host string
	due  acctHeap // dueBefore order
	fidx int      // index in queues.free; -1 if not there
}

func newQueues() queues {
	return queues{
		future:    acctHeap{less: func(x, y *account) bool { return x.qkey.Before(y.qkey) }, idx: qidx},
		hosts:     map[string]*hostQueue{},
		boxHeld:   map[string][]*account{},
		deadlines: acctHeap{less: func(x, y *account) bool { return x.deadline.Before(y.deadline) }, idx: didx},
	}
}

func qidx(a *account) *int { return &a.qidx }
func didx(a *account) *int { return &a.didx }

// dueBefore orders due accounts: operator requests first, then by when
// they became due (dueAt), then by name. An operator request is due now
// (its LOGIN-DELAY has ended, or it would not be due), so two of them
// compare by when they were asked for (nowAt): by name, an account asked
// for again and again while the slots are full (max_parallel = 1, a
// script that runs `popfetch now` every minute) would keep going before
// one later in the alphabet, which would never be polled.
func dueBefore(x, y *account) bool {
	if x.qurgent != y.qurgent {
		return x.qurgent
	}
	k, l := x.qkey, y.qkey
	if x.qurgent {
		k, l = x.nowAt, y.nowAt
	}
	if c := k.Compare(l); c != 0 {
		return c < 0
	}
	return x.cfg.Name < y.cfg.Name
}

// acctHeap is a container/heap of accounts that keeps each account's
// index (idx) current, for heap.Fix and heap.Remove.
type acctHeap struct {
	s    []*account
	less func(x, y *account) bool
	idx  func(*account) *int
}

func (h *acctHeap) Len() int           { return len(h.s) }
func (h *acctHeap) Less(i, j int) bool { return h.less(h.s[i], h.s[j]) }
func (h *acctHeap) Swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	*h.idx(h.s[i]), *h.idx(h.s[j]) = i, j
}
func (h *acctHeap) Push(x any) {
	a := x.(*account)
	*h.idx(a) = len(h.s)
	h.s = append(h.s, a)
}
func (h *acctHeap) Pop() any {
	n := len(h.s) - 1
	a := h.s[n]
	h.s[n] = nil
	h.s = h.s[:n]
	*h.idx(a) = -1
	return a
}

// hostHeap orders the servers of queues.free by their first due account.
type hostHeap []*hostQueue

func (h hostHeap) Len() int           { return len(h) }
func (h hostHeap) Less(i, j int) bool { return dueBefore(h[i].due.s[0], h[j].due.s[0]) }
func (h hostHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].fidx, h[j].fidx = i, j
}
func (h *hostHeap) Push(x any) {
	q := x.(*hostQueue)
	q.fidx = len(*h)
	*h = append(*h, q)
}
func (h *hostHeap) Pop() any {
	old := *h
	n := len(old) - 1
	q := old[n]
	old[n] = nil
	*h = old[:n]
	q.fidx = -1
	return q
}

// unqueueLocked takes a out of the queue that holds it.
func (d *Daemon) unqueueLocked(a *account) {
	q := &d.q
	switch a.qwhere {
	case inFuture:
		heap.Remove(&q.future, a.qidx)
	case inHost:
		hq := a.hq
		heap.Remove(&hq.due, a.qidx)
		a.hq = nil
		d.fixHostLocked(hq)
	case inBox:
		held := q.boxHeld[a.box]
		for i, b := range held {
			if b == a {
				held = append(held[:i], held[i+1:]...)
				break
			}
		}
		if len(held) == 0 {
			delete(q.boxHeld, a.box)
		} else {
			q.boxHeld[a.box] = held
		}
	}
	a.qwhere = inNone
}

// placeLocked puts a where its state belongs: in future if it may be
// polled (keyed on when it becomes due), in no queue otherwise.
func (d *Daemon) placeLocked(a *account) {
	d.unqueueLocked(a)
	if a.running || a.removed {
		return
	}
	switch {
	case len(a.now) > 0:
		a.qurgent, a.qkey = true, a.notBefore
	case a.authHold:
		return
	default:
		a.qurgent, a.qkey = false, maxTime(a.next, a.notBefore)
	}
	heap.Push(&d.q.future, a)
	a.qwhere = inFuture
}

// requeueLocked rebuilds the waiting queues from every account (after a
// Reload, which may change any account, the servers and the limits).
// The deadlines of the running polls stay.
func (d *Daemon) requeueLocked() {
	clear(d.q.future.s) // hold no account a Reload dropped
	d.q.future.s = d.q.future.s[:0]
	clear(d.q.hosts)
	clear(d.q.free)
	d.q.free = d.q.free[:0]
	clear(d.q.boxHeld)
	for _, a := range d.accts {
		a.qwhere, a.hq = inNone, nil
		d.placeLocked(a)
	}
}

// fixHostLocked puts hq into queues.free, or takes it out, or moves it
// there, as its first account and its server's free slots say.
func (d *Daemon) fixHostLocked(hq *hostQueue) {
	q := &d.q
	want := len(hq.due.s) > 0 && d.perHost[hq.host] < d.perServerLimit()
	switch {
	case want && hq.fidx < 0:
		heap.Push(&q.free, hq)
	case want:
		heap.Fix(&q.free, hq.fidx)
	case hq.fidx >= 0:
		heap.Remove(&q.free, hq.fidx)
	}
	if len(hq.due.s) == 0 && q.hosts[hq.host] == hq {
		delete(q.hosts, hq.host)
	}
}

// hostFreedLocked re-examines the accounts of host and box after a poll
// on them ended.
func (d *Daemon) hostFreedLocked(host, box string) {
	if hq := d.q.hosts[host]; hq != nil {
		d.fixHostLocked(hq)
	}
	held := d.q.boxHeld[box]
	delete(d.q.boxHeld, box)
	for _, a := range held {
		a.qwhere = inNone
		d.placeLocked(a)
	}
}

// dueNowLocked moves the accounts of future that are due at now into
// their server's queue.
func (d *Daemon) dueNowLocked(now time.Time) {
	q := &d.q
	for len(q.future.s) > 0 && !q.future.s[0].qkey.After(now) {
		a := heap.Pop(&q.future).(*account)
		hq := q.hosts[a.host]
		if hq == nil {
			hq = &hostQueue{host: a.host, fidx: -1, due: acctHeap{less: dueBefore, idx: qidx}}
			q.hosts[a.host] = hq
		}
		heap.Push(&hq.due, a)
		a.qwhere, a.hq = inHost, hq
		d.fixHostLocked(hq)
	}
}

func (d *Daemon) maxParallelLimit() int {
	if d.cfg.MaxParallel <= 0 {
		return defaultMaxParallel
	}
	return d.cfg.MaxParallel
}

func (d *Daemon) perServerLimit() int {
	if d.cfg.PerServer <= 0 {
		return defaultPerServer
	}
	return d.cfg.PerServer
}
