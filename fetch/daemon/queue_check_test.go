package daemon

import (
	"fmt"
	"maps"
	"os"
	"strconv"
	"time"
)

// schedSeeds is how many seeds the scheduler's randomized tests run: n,
// or POPFETCH_SCHED_SEEDS for a longer hunt.
func schedSeeds(n uint64) uint64 {
	if v, err := strconv.ParseUint(os.Getenv("POPFETCH_SCHED_SEEDS"), 10, 32); err == nil && v > 0 {
		return v
	}
	return n
}

// checkQueues checks the scheduler's queues against the accounts' state:
// every account that may be polled is in exactly one queue, at the index
// it records, under the key its state gives; no running, removed or
// dropped account is queued; the heaps are heaps; a server is among the
// free ones exactly when it has a due account and a free slot; the
// running counts match the running accounts. It returns the first
// difference, "" if none. Called with d.mu held.
func checkQueues(d *Daemon) string {
	q := &d.q
	known := map[*account]bool{}
	for _, a := range d.accts {
		known[a] = true
	}
	where := map[*account]string{}
	put := func(a *account, in string) string {
		if !known[a] {
			return fmt.Sprintf("%s (dropped from the config) is in %s", a.cfg.Name, in)
		}
		if w, ok := where[a]; ok {
			return fmt.Sprintf("%s is in %s and %s", a.cfg.Name, w, in)
		}
		where[a] = in
		return ""
	}
	heapOK := func(h *acctHeap, name string) string {
		for i, a := range h.s {
			if *h.idx(a) != i {
				return fmt.Sprintf("%s: %s at %d records index %d", name, a.cfg.Name, i, *h.idx(a))
			}
			if i > 0 && h.less(a, h.s[(i-1)/2]) {
				return fmt.Sprintf("%s: not a heap at %d", name, i)
			}
		}
		return ""
	}
	if s := heapOK(&q.future, "future"); s != "" {
		return s
	}
	for _, a := range q.future.s {
		if s := put(a, "future"); s != "" {
			return s
		}
		if a.qwhere != inFuture {
			return fmt.Sprintf("%s in future records %d", a.cfg.Name, a.qwhere)
		}
	}
	for host, hq := range q.hosts {
		if hq.host != host || len(hq.due.s) == 0 {
			return fmt.Sprintf("host queue %q under %q with %d accounts", hq.host, host, len(hq.due.s))
		}
		if s := heapOK(&hq.due, "host "+host); s != "" {
			return s
		}
		for _, a := range hq.due.s {
			if s := put(a, "host "+host); s != "" {
				return s
			}
			if a.qwhere != inHost || a.hq != hq || a.host != host {
				return fmt.Sprintf("%s in host %s records %d, host %q", a.cfg.Name, host, a.qwhere, a.host)
			}
		}
		want := d.perHost[host] < d.perServerLimit()
		if want != (hq.fidx >= 0) {
			return fmt.Sprintf("host %s: free %v, want %v", host, hq.fidx >= 0, want)
		}
		if hq.fidx >= 0 && (hq.fidx >= len(q.free) || q.free[hq.fidx] != hq) {
			return fmt.Sprintf("host %s: stale free index %d", host, hq.fidx)
		}
	}
	for i, hq := range q.free {
		if q.hosts[hq.host] != hq || hq.fidx != i {
			return fmt.Sprintf("free host %s at %d is not its server's queue (fidx %d)", hq.host, i, hq.fidx)
		}
		if i > 0 && q.free.Less(i, (i-1)/2) {
			return fmt.Sprintf("free: not a heap at %d", i)
		}
	}
	for box, held := range q.boxHeld {
		if len(held) == 0 {
			return fmt.Sprintf("box %s: empty list kept", box)
		}
		if !d.busyBoxes[box] {
			return fmt.Sprintf("box %s: accounts held back but no poll of it runs", box)
		}
		for _, a := range held {
			if s := put(a, "box "+box); s != "" {
				return s
			}
			if a.qwhere != inBox || a.box != box {
				return fmt.Sprintf("%s held for box %s records %d, box %q", a.cfg.Name, box, a.qwhere, a.box)
			}
		}
	}
	if s := heapOK(&q.deadlines, "deadlines"); s != "" {
		return s
	}
	inDeadlines := map[*account]bool{}
	for _, a := range q.deadlines.s {
		if !known[a] || !a.running {
			return fmt.Sprintf("%s in deadlines: known %v, running %v", a.cfg.Name, known[a], a.running)
		}
		inDeadlines[a] = true
	}
	nrun, perHost, boxes := 0, map[string]int{}, map[string]bool{}
	for name, a := range d.accts {
		if a.cfg.Name != name {
			return fmt.Sprintf("account %s under %s", a.cfg.Name, name)
		}
		w, queuedAnywhere := where[a]
		if a.qwhere == inNone && queuedAnywhere || a.qwhere != inNone && !queuedAnywhere {
			return fmt.Sprintf("%s records %d, found in %q", name, a.qwhere, w)
		}
		if a.running {
			nrun++
			perHost[a.runHost]++
			if boxes[a.runBox] {
				return fmt.Sprintf("two polls of box %s", a.runBox)
			}
			boxes[a.runBox] = true
			if queuedAnywhere {
				return fmt.Sprintf("%s runs and is queued in %s", name, w)
			}
			if !a.stopped && !inDeadlines[a] {
				return fmt.Sprintf("%s runs without a deadline queued", name)
			}
			continue
		}
		if a.didx >= 0 || inDeadlines[a] {
			return fmt.Sprintf("%s is not running but in deadlines (didx %d)", name, a.didx)
		}
		if a.removed {
			return fmt.Sprintf("%s removed but kept while not running", name)
		}
		_, ok := a.dueAt(time.Time{})
		if ok != queuedAnywhere {
			return fmt.Sprintf("%s may be polled: %v, queued in %q", name, ok, w)
		}
		if ok && (a.qurgent != (len(a.now) > 0)) {
			return fmt.Sprintf("%s queued urgent %v with %d requests", name, a.qurgent, len(a.now))
		}
		if ok && !a.qurgent && !a.qkey.Equal(maxTime(a.next, a.notBefore)) {
			return fmt.Sprintf("%s queued at %v, due at %v", name, a.qkey, maxTime(a.next, a.notBefore))
		}
	}
	if nrun != d.nrun || !maps.Equal(perHost, d.perHost) || !maps.Equal(boxes, d.busyBoxes) {
		return fmt.Sprintf("running %d %v %v, counted %d %v %v", nrun, perHost, boxes, d.nrun, d.perHost, d.busyBoxes)
	}
	return ""
}
