package uidl

import "time"

// compactNow compacts the journal now (tests only).
func (s *Store) compactNow() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.compact(s.st)
}

// testHooks are the production seams with a short fork grace, so tests
// that expect ErrLocked need not wait for it.
func testHooks() *hooks {
	h := defaultHooks()
	h.lockGrace = 50 * time.Millisecond
	return h
}
