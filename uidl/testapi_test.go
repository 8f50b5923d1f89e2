package uidl

import (
	"slices"
	"time"
)

// Shorthands the tests of this package use; production code records and
// reads with an Identity (AddIdentity, IntendIdentity, GiveUpSize,
// RecipientsOf).

// Recipients returns the recipients recorded for uid, whatever their
// identity; nil once uid is delivered.
func (s *Store) Recipients(uid string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.st.m[uid].rcpts)
}

// AddLater is Add without an fsync (AddIdentity with sync=false, no
// identity).
func (s *Store) AddLater(uid string, t time.Time) error {
	return s.record('+', uid, t, "", Identity{}, false)
}

// Intend is IntendIdentity without an identity.
func (s *Store) Intend(uid, path string) error {
	return s.IntendIdentity(uid, path, Identity{})
}

// GiveUp is GiveUpSize without a size: every message listed as uid is the
// one given up.
func (s *Store) GiveUp(uid string, t time.Time) error {
	return s.record('p', uid, t, "", Identity{Size: -1}, true)
}
