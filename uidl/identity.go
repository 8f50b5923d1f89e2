package uidl

// DeliveredIdentities returns the identities of every delivered UID, in no
// particular order. A server that renumbers all its UIDs at once still
// lists the same messages; their identities let package fetch recognise
// them instead of fetching the whole mailbox again.
func (s *Store) DeliveredIdentities() []Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Identity
	for _, e := range s.st.m {
		if e.delivered {
			out = append(out, e.ids...)
		}
	}
	return out
}
