package uidl

// Delivered returns the identities of the delivered UIDs, by UID (an
// empty slice for a UID recorded without identity). With refusedOnly, only
// the UIDs whose last DELE the server refused: in delete mode the only
// ones known to be still on the server. Package fetch uses them to tell a
// server that renumbered its UIDs from one that lists new mail.
func (s *Store) Delivered(refusedOnly bool) map[string][]Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]Identity{}
	for uid, e := range s.st.m {
		if e.delivered && (!refusedOnly || e.refused > 0) {
			out[uid] = append([]Identity{}, e.ids...)
		}
	}
	return out
}
