package fetch

import (
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/uidl"
)

// delete_after (rcfile.Account.DeleteAfter) deletes a kept message once it
// was delivered that long ago. Which messages:
//
//   - Only one the journal records as delivered to every recipient (a "+"
//     record: for multidrop, written once every user has the message; the
//     recipients of a message still partly delivered are "r" records, and
//     its UID is not delivered). A message given up, noted as too large
//     or never delivered has no "+" and is never deleted.
//   - The clock is the time of the "+" record of the message's own
//     identity (uidl.Store.DeliveredAt), not when its UID was first seen:
//     a message left on the server for a month as too large and delivered
//     today is kept for the full time from today.
//   - A UID alone is never enough for DELE (see doc.go): a kept message
//     whose recorded identity is old enough is retrieved and its header
//     and body digests compared with the identities recorded under its
//     UID, as a delete mode poll does before deleting a message it did
//     not deliver; DELE follows only when the copy is a message delivered
//     before the cutoff. New mail under a reused UID is delivered, and a
//     copy of a message delivered again more recently under the same UID
//     is kept until that delivery is old enough. A message recorded
//     without an identity (an older journal) is never deleted.
//   - A DELE refused by the server follows the refusal handling of delete
//     mode (deleRefused, deleSuspended), and a suspended one is not
//     retrieved for its check either.
//
// The check costs one RETR per message due, once: the DELE follows in the
// same session, after the journal's fsync. A message too large to retrieve
// (limit, pop3.MaxMessageSize) is not checked and stays. With fetch_limit,
// at most that many messages are checked per poll, so that a mailbox kept
// for years does not download in full on the first poll with
// delete_after; they come on top of the new mail fetch_limit allows. A
// UID whose newest recorded message is not due yet and has the size
// listed is not checked, even when an older message under it is due:
// otherwise a server that reused the UID would have its new message
// retrieved on every poll, using up the checks.

// expiry is a session's bookkeeping of delete_after.
type expiry struct {
	// checks counts the messages selected for a check in this poll.
	checks int
	// age holds, by message number, how long ago the message whose
	// copy was confirmed was delivered: its DELE is the audit line.
	age map[int]time.Duration
}

// cutoff is the delivery time at or before which a kept message is
// deleted; ok is false without delete_after.
func (s *session) cutoff() (time.Time, bool) {
	if !s.a.Keep || s.a.DeleteAfter <= 0 || s.store == nil || s.dryRun {
		return time.Time{}, false
	}
	return s.p.now().Add(-s.a.DeleteAfter), true
}

// dueCheck reports whether e, a kept message taken as delivered before
// (checkNone), has an identity recorded under its UID that was delivered
// before the cutoff, and so is to be retrieved and compared (see above);
// if so, its check expects the UID's identities.
func (s *session) dueCheck(e entry) bool {
	cut, ok := s.cutoff()
	if !ok || s.givenUp(e) || s.a.Limit > 0 && e.Size > s.a.Limit || e.Size > pop3.MaxMessageSize {
		return false
	}
	full := fullIdentities(s.store.Identities(e.UID))
	due := false
	for _, id := range full {
		if at, ok := s.store.DeliveredAt(e.UID, id.Digest); ok && !at.After(cut) {
			due = true
		}
	}
	if !due {
		return false
	}
	if n := len(full); n > 0 && full[n-1].Size == e.Size {
		// The newest message delivered under the UID has the size
		// listed and is not due yet: the copy listed is most likely
		// that message, and retrieving it now would only keep it, on
		// every poll until it is due. An older one really listed waits
		// until then (later, never lost).
		if at, ok := s.store.DeliveredAt(e.UID, full[n-1].Digest); ok && at.After(cut) {
			return false
		}
	}
	if s.asRecorded(e) && s.deleSuspended(e) {
		// Checking it would only lead to a DELE the server keeps
		// refusing.
		return false
	}
	if n := s.a.FetchLimit; n > 0 && s.exp.checks >= n {
		return false
	}
	s.exp.checks++
	s.expect(e, full)
	return true
}

// expired reports whether e, whose retrieved copy of identity id matched
// a message delivered before under its UID, was delivered before the
// cutoff; if so its age is noted for the audit line of its DELE.
func (s *session) expired(e entry, id uidl.Identity) bool {
	cut, ok := s.cutoff()
	if !ok {
		return false
	}
	at, ok := s.store.DeliveredAt(e.UID, id.Digest)
	if !ok || at.After(cut) {
		return false
	}
	if s.exp.age == nil {
		s.exp.age = map[int]time.Duration{}
	}
	s.exp.age[e.Num] = s.p.now().Sub(at)
	return true
}
