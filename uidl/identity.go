package uidl

// OnServer returns the identities of the delivered UIDs whose message is
// known to be still on the server, by UID (an empty slice for a UID
// recorded without identity): those whose DELE the server has not
// accepted since the message was delivered (keep mode, a refused DELE, a
// session that ended before its DELE). Package fetch uses them to tell a
// server that renumbered its UIDs from one that lists new mail.
func (s *Store) OnServer() map[string][]Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]Identity{}
	for uid, e := range s.st.m {
		if e.delivered && !e.deleted {
			out[uid] = append([]Identity{}, e.ids...)
		}
	}
	return out
}
