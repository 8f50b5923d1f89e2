// Package fault is a scripted deliver.Target for tests: it fails chosen
// recipients, temporarily or permanently, counts its calls and records the
// copies it accepted. It is apart from deliver/delivertest because it needs
// deliver's types, and deliver's own tests use delivertest.
package fault

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/popfetch/popfetch/deliver"
)

// Target is a deliver.Target whose answer per recipient is scripted by
// user name (Recipient.User). A recipient without a fault gets the copy:
// it is recorded, and passed to Next when set (a real target, a Maildir
// for example), whose answer then counts.
type Target struct {
	Next deliver.Target

	mu      sync.Mutex
	fail    map[string]error
	once    map[string]bool
	delay   time.Duration
	calls   int
	copies  map[string][]string // user → UIDs
	reasons map[string]string   // UID → the X-Popfetch-Reason field given
}

// New returns a Target that accepts everything.
func New() *Target {
	return &Target{fail: map[string]error{}, once: map[string]bool{}, copies: map[string][]string{}, reasons: map[string]string{}}
}

// Temporary makes the deliveries to user fail with a temporary
// deliver.Error carrying reason.
func (f *Target) Temporary(user, reason string) *Target {
	return f.Fail(user, &deliver.Error{Target: "fake", Err: errors.New(reason)})
}

// Permanent makes the deliveries to user fail with a permanent
// deliver.Error whose Reason is reason.
func (f *Target) Permanent(user, reason string) *Target {
	return f.Fail(user, &deliver.Error{Target: "fake", Permanent: true, Reason: reason})
}

// Fail makes the deliveries to user answer err (nil: accept).
func (f *Target) Fail(user string, err error) *Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[user] = err
	delete(f.once, user)
	return f
}

// FailOnce makes only the next delivery to user, when it is the call's
// only recipient, answer err, after delay: long enough for a concurrent
// copy of the message to look at what the first one claimed.
func (f *Target) FailOnce(user string, err error, delay time.Duration) *Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[user] = err
	f.once[user] = true
	f.delay = delay
	return f
}

// Clear removes every fault.
func (f *Target) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.fail)
	clear(f.once)
}

// Calls counts the calls of Deliver.
func (f *Target) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Copies returns the UIDs of the copies user got, in order.
func (f *Target) Copies(user string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.copies[user])
}

// Users counts the users who got a copy.
func (f *Target) Users() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.copies)
}

// All returns the UIDs of the copies each user got.
func (f *Target) All() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]string, len(f.copies))
	for u, c := range f.copies {
		out[u] = slices.Clone(c)
	}
	return out
}

// Reason returns the X-Popfetch-Reason field given with the accepted copy
// of uid, "" if none.
func (f *Target) Reason(uid string) string {
	r, _ := f.LookupReason(uid)
	return r
}

// LookupReason returns the X-Popfetch-Reason field given with the accepted
// copy of uid, and whether there was one.
func (f *Target) LookupReason(uid string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.reasons[uid]
	return r, ok
}

// Deliver implements deliver.Target.
func (f *Target) Deliver(ctx context.Context, m *deliver.Message, sender string, rcpts []deliver.Recipient, extra []deliver.Field) []error {
	f.mu.Lock()
	f.calls++
	errs := make([]error, len(rcpts))
	var pass []int
	var delay time.Duration
	for i, r := range rcpts {
		err := f.fail[r.User]
		if err != nil && f.once[r.User] {
			if len(rcpts) != 1 {
				err = nil
			} else {
				delete(f.fail, r.User)
				delete(f.once, r.User)
				delay = f.delay
			}
		}
		if err != nil {
			errs[i] = err
			continue
		}
		pass = append(pass, i)
	}
	f.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if len(pass) == 0 {
		return errs
	}
	if f.Next != nil {
		sub := make([]deliver.Recipient, len(pass))
		for j, i := range pass {
			sub[j] = rcpts[i]
		}
		for j, err := range f.Next.Deliver(ctx, m, sender, sub, extra) {
			errs[pass[j]] = err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range pass {
		if errs[i] != nil {
			continue
		}
		f.copies[rcpts[i].User] = append(f.copies[rcpts[i].User], m.UID)
		for _, x := range extra {
			if x.Name == "X-Popfetch-Reason" {
				f.reasons[m.UID] = x.Value
			}
		}
	}
	return errs
}
