package uidl

import "time"

// compactNow compacts the journal now (tests only).
func (s *Store) compactNow() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.compact(s.st)
}

func init() {
	// Tests that expect ErrLocked need not wait for the fork grace.
	lockGrace = 50 * time.Millisecond
}
