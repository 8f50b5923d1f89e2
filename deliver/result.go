package deliver

import (
	"context"
	"sync"
)

type resultHookKey struct{}

// WithResultHook returns a ctx under which a Target calls hook(i, err)
// with the result of rcpts[i] as soon as that result is final, before
// Deliver returns: a Maildir or MDA after each copy; LMTP as each 250
// arrives when it names, in angle brackets, exactly the recipient it is
// due for (as dovecot's do) and the session is in step so far; SMTP, and
// LMTP replies that name no recipient, once for the whole transaction,
// when its last reply is in and the session was in step (before QUIT): a
// stray reply among unnamed ones would shift each later reply onto the
// wrong recipient, which only the count at the end shows, while a shifted
// named reply names another recipient. Deliver's return value still
// holds every result. hook is
// called once per index, from one goroutine at a time, and must not block
// for long (it may fsync a record).
//
// A caller records each copy in hook, so that when popfetch is killed in
// the middle of a message to many users, the retry serves only the users
// whose copies were not yet recorded: the duplicates are the copies in
// flight, not the whole group. To stop a Deliver early (its record failed),
// cancel ctx: the targets check it before each copy.
func WithResultHook(ctx context.Context, hook func(i int, err error)) context.Context {
	return context.WithValue(ctx, resultHookKey{}, hook)
}

// results collects a Deliver's per-recipient results and passes each to
// the ctx's hook (WithResultHook) once.
type results struct {
	errs []error
	hook func(int, error)
	mu   sync.Mutex
	sent []bool
}

func newResults(ctx context.Context, n int) *results {
	r := &results{errs: make([]error, n)}
	if h, ok := ctx.Value(resultHookKey{}).(func(int, error)); ok && h != nil {
		r.hook = h
		r.sent = make([]bool, n)
	}
	return r
}

// set stores the final result of recipient i and reports it.
func (r *results) set(i int, err error) {
	r.errs[i] = err
	r.report(i, err)
}

// report passes the result of i to the hook, unless it has been already.
func (r *results) report(i int, err error) {
	if r.hook == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sent[i] {
		return
	}
	r.sent[i] = true
	r.hook(i, err)
}

// done reports every result not reported yet and returns them all.
func (r *results) done() []error {
	for i, err := range r.errs {
		r.report(i, err)
	}
	return r.errs
}
