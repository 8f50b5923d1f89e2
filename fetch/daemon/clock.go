package daemon

import "time"

// Clock is the daemon's source of time. Tests inject a fake one so that
// schedules, backoff and login delays are checked without sleeping.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has passed;
	// d <= 0 fires at once. The scheduler asks for a fresh channel every
	// time it re-plans, so an implementation must not require the old
	// ones to be drained.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After. Since Go 1.23 an unreferenced, unfired timer is
// garbage collected, so re-planning does not leak timers.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
