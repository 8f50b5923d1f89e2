package uidl

// compactNow compacts the journal now (tests only).
func (s *Store) compactNow() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.compact(s.st)
}
