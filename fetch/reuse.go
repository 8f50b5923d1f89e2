package fetch

import (
	"fmt"
	"sync"

	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/uidl"
)

// A UID alone is never proof that a message was delivered: some servers
// derive UIDs from message numbers or reuse them after a deletion, and some
// (popa3d, solid-pop3d) derive them from a few header fields, so identical
// messages, and new ones that repeat those fields, get the UID of an old
// one. So the journal records with each UID the identity of the message
// delivered under it: a digest of its header (less the fields mbox servers
// rewrite) and a digest of its body, both from the retrieved copy, plus
// its LIST size as a hint (see identityOf). A message listed under a UID
// seen before is checked against the identities recorded under that UID,
// never against another UID's (except in keep mode after renumbering,
// below):
//
//   - Delete mode: a seen UID still on the server is rare (a DELE lost to
//     a crash or a failed QUIT, a refused DELE, a reused UID, or the switch
//     from keep to delete mode), so before any DELE of a message this
//     session did not deliver, the message is retrieved and its identity
//     compared with the recorded ones, header digest and body digest
//     alike: equal means the message delivered before, deleted without
//     delivering it again; different means a new message, delivered. The
//     size decides nothing: a new message may have the old one's size and
//     header fields (only its body differs), and an mbox server that
//     rewrites a message's header at QUIT changes its size, not its
//     identity. A UID recorded without a full identity (a journal of an
//     older popfetch, format 1 or a header digest alone) confirms nothing:
//     the message is delivered again rather than deleted on its UID alone
//     (a duplicate, once, never a loss).
//   - Keep mode: an unchanged size is taken as the same message, with no
//     command, so a keep mode mailbox costs nothing more per poll; a reused
//     UID whose new message has exactly the size of the old one is not
//     noticed there (nothing is deleted, but it is not fetched either;
//     switching to delete mode later retrieves and compares it, so it is
//     delivered then, or when delete_after makes it due: see
//     deleteafter.go). A UID listed more than once is checked until each
//     listed copy has a recorded identity of its size (identical copies
//     are recorded once per copy, see recordCopy); then it costs no
//     command either. A size that differs is checked by retrieving the
//     message: the same identity means the server rewrote the message (an
//     mbox server that adds Status:), and the new size is recorded;
//     another identity, or none recorded, means a new message, delivered.
//     A UID recorded without identity (format 1) at an unknown size stays
//     as it is.
//   - The same UID listed twice: each listed message is checked on its
//     own, so two different messages are each delivered once. Identical
//     copies (same UID and identity) present in one poll are each
//     delivered once and, in delete mode, each deleted; a copy identical
//     to one delivered earlier is taken as delivered.
//   - A keep mode listing that shares no UID with at least minRenumbered
//     delivered messages that were on the server at the previous poll
//     (not those whose DELE the server accepted, when delete mode came
//     before) comes from a server that renumbered its
//     UIDs, or from another client that removed them all: it is logged at
//     ERROR, each listed message is retrieved (it would be as new mail
//     anyway, within fetch_limit; one whose size matches a delivered
//     message's is checked at once) and one whose identity matches a
//     delivered one is recorded under its new UID instead of being
//     delivered again.
//   - Delete mode never matches a message against another UID's
//     identities, as an all-new listing is normal there (the journal holds
//     the UIDs the last poll deleted) and a provider's per-recipient
//     copies of one message may differ in nothing the identity sees: a
//     message under a new UID is new mail, delivered, and a UID is DELEd
//     only when this session delivered its message or its own recorded
//     identity matched. A renumbered delete mode mailbox holds only
//     messages whose DELE failed; they are delivered again (a duplicate,
//     once), with a warning when the listing shows none of the UIDs
//     known to be still on the server (DELE refused or never sent).
//   - A DELE suspended after repeated refusals (deleSuspended) skips only
//     the message recorded: a UID listed once at a recorded size. One
//     listed twice, or at another size, is checked by its copy first; a
//     new message under it is delivered and its DELE asked.
//   - The other records of a UID follow its message too: a given-up
//     message is skipped only at the size it had, and the recipients a
//     multidrop delivery already served count only for the message of the
//     same identity.

// minRenumbered is the smallest set of delivered messages whose complete
// disappearance from the listing counts as renumbering rather than an
// emptied mailbox with new mail.
const minRenumbered = 2

// check is what a message listed under a known UID needs.
type check int

const (
	checkNew       check = iota // fetch it as a new message
	checkNone                   // it is the message delivered before; nothing to do
	checkCopy                   // retrieve it and compare its identity (see verified)
	checkCopyAsNew              // checkCopy, selected and counted like new mail
)

// verifyState is a session's bookkeeping of identity checks.
type verifyState struct {
	// cand holds, by message number, the identities a check compares
	// with.
	cand map[int][]uidl.Identity
	// byCopy marks the messages (by number) whose RETR is a check: the
	// copy is delivered only if it is not the message delivered before.
	byCopy map[int]bool
	// counted marks the checks (by number) that were selected and
	// counted as new mail (a renumbered listing's), rather than queued
	// after it: one that turns out to be delivered before is uncounted.
	counted map[int]bool
	// listed counts the listing's messages by UID (more than one: a
	// server that gives one UID to several messages).
	listed map[string]int
	// fresh marks the messages (by number) listed under a known UID
	// whose check found a new message: a DELE suspension of the UID
	// (see deleSuspended) is not theirs.
	fresh map[int]bool
	// sizes holds the listing's LIST sizes by UID, for UIDs listed more
	// than once (see allRecorded).
	sizes map[string][]int64
	// mu guards copies, which deliveries update concurrently.
	mu sync.Mutex
	// copies counts, by UID and digest, the copies of one message this
	// session delivered or confirmed under a UID listed more than once
	// (see recordCopy).
	copies map[string]int
	// refused marks the UIDs whose DELE the server refused in this
	// poll: another message listed under the same UID neither counts a
	// second refusal nor, if its DELE is accepted, ends the run.
	refused map[string]bool
	// renumbered is set when the listing shares no UID with the
	// journal (see survey); loud once it was logged at ERROR.
	renumbered, loud bool
}

// expect makes e's check compare its retrieved copy with ids.
func (s *session) expect(e entry, ids []uidl.Identity) check {
	if s.v.cand == nil {
		s.v.cand = map[int][]uidl.Identity{}
	}
	s.v.cand[e.Num] = ids
	return checkCopy
}

// survey counts the listing's UIDs and returns, in keep mode, when the
// listing shares no UID with a non-trivial set of delivered messages, their
// identities (non-nil, maybe empty); otherwise nil. It must run before
// retain forgets those UIDs.
//
// Only keep mode matches a message against the identities of other UIDs:
// there every delivered message was on the server at the previous poll
// and was expected to stay. In delete mode the journal mostly holds UIDs
// the last poll deleted, so an all-new listing is the normal case, and a
// message under a new UID is new mail even if it looks like one delivered
// before (a provider stores one copy per recipient of a multidrop message,
// and the copies may differ only in fields it adds): it is delivered,
// never deleted on another message's identity. A renumbered delete mode
// mailbox holds only messages whose DELE failed, so delivering them again
// costs a bounded duplicate. There renumbering is only a warning.
//
// Either way the previous set is the UIDs known to be still on the
// server (Store.OnServer: delivered, and DELE not accepted since), so a
// keep mode poll after delete mode polls does not take the messages those
// deleted for ones expected to stay.
func (s *session) survey(uids []entry) []uidl.Identity {
	s.v.listed = make(map[string]int, len(uids))
	for _, e := range uids {
		s.v.listed[e.UID]++
	}
	if s.a.FetchAll || s.store == nil || len(uids) == 0 {
		return nil
	}
	prev := s.store.OnServer()
	if len(prev) < minRenumbered {
		return nil
	}
	for _, e := range uids {
		if s.has(e.UID) {
			return nil
		}
	}
	if !s.a.Keep {
		s.log.Warn("the server's UIDL lists none of the delivered messages it had not deleted: it renumbered its UIDs, or another client removed them; any still there are delivered again under their new UIDs (duplicates, once)",
			"messages", len(uids), "previous", len(prev))
		return nil
	}
	s.v.renumbered = true
	s.renumberedError(len(uids), len(prev))
	ids := []uidl.Identity{}
	for _, v := range prev {
		ids = append(ids, fullIdentities(v)...)
	}
	return ids
}

func (s *session) renumberedError(messages, prev int) {
	if s.v.loud {
		return
	}
	s.v.loud = true
	s.log.Error("the server's UIDL shares no UID with the messages delivered before: the server renumbered them, or another client removed them all; recognising them by their identity (header and body digests) instead of delivering them again",
		"messages", messages, "previous", prev)
}

// classify decides what e, listed under a UID delivered before (or any UID
// of a renumbered listing), needs.
func (s *session) classify(e entry, renumbered []uidl.Identity) check {
	if renumbered != nil {
		// Keep mode only (see survey). Every message of such a listing
		// is retrieved, as it would be as new mail, and goes through
		// selection like new mail (fetch_limit). The size is a hint:
		// one that matches a delivered message's is likely that
		// message, and is checked outside fetch_limit, as a limited
		// poll would leave it to a next poll, whose listing shares the
		// UIDs recorded now and so is no longer taken as renumbered.
		sameSize := false
		for _, id := range renumbered {
			sameSize = sameSize || id.Size == e.Size
		}
		switch {
		case s.dryRun && sameSize:
			return checkNone // probably one delivered before
		case s.dryRun:
			return checkNew
		case sameSize:
			return s.expect(e, renumbered)
		}
		s.expect(e, renumbered)
		return checkCopyAsNew
	}
	if s.recovered[e.UID] {
		return checkNone // dry run only
	}
	var ids []uidl.Identity
	if s.store != nil {
		ids = s.store.Identities(e.UID)
	}
	full := fullIdentities(ids)
	sameSize := false
	for _, id := range ids {
		sameSize = sameSize || id.Size == e.Size
	}
	once := s.v.listed[e.UID] < 2
	if s.a.Keep {
		switch {
		case len(ids) == 0 && once, sameSize && once, !once && s.allRecorded(e.UID, ids):
			// No command per poll for a kept message (see above).
			return checkNone
		case s.dryRun:
			return checkNew
		}
		return s.expect(e, full)
	}
	if len(full) == 0 {
		if !s.dryRun {
			s.log.Info("message was delivered by an older popfetch that recorded no full identity; fetching it again rather than deleting it on its UID alone",
				"uid", e.UID, "msgnum", e.Num, "size", e.Size)
		}
		return checkNew
	}
	if s.dryRun {
		return checkNone
	}
	return s.expect(e, full)
}

func (s *session) reused(e entry) {
	s.log.Warn("the server reuses a UID for a different message; delivering it as a new message", "uid", e.UID, "msgnum", e.Num, "size", e.Size)
}

// verified compares id, the identity of e's retrieved copy, with what its
// check expects: header digest and body digest, never the size. It
// reports whether e is a message delivered before; if so, its identity is
// recorded when the journal lacks it (the new size of a rewritten
// message, or a new UID after renumbering), without an fsync: the caller
// syncs before any DELE.
func (s *session) verified(e entry, id uidl.Identity) (bool, error) {
	match := false
	for _, r := range s.v.cand[e.Num] {
		match = match || r.Digest == id.Digest
	}
	if !match {
		if !s.v.renumbered {
			s.reused(e)
		}
		if s.v.fresh == nil {
			s.v.fresh = map[int]bool{}
		}
		s.v.fresh[e.Num] = true
		return false, nil
	}
	// A new size of a message delivered before (a server that rewrote
	// it) keeps the time of its delivery, the clock of delete_after.
	at := s.p.now()
	if t, ok := s.store.DeliveredAt(e.UID, id.Digest); ok {
		at = t
	}
	if err := s.store.AddIdentity(e.UID, id, at, false); err != nil {
		return false, fmt.Errorf("uidl store: record identity of %s: %w", e.UID, err)
	}
	if err := s.recordCopy(e, id); err != nil {
		return false, err
	}
	return true, nil
}

// listSizes notes the LIST sizes (size, by message number) of the UIDs
// listed more than once, for allRecorded. It runs after survey.
func (s *session) listSizes(uids []entry, size map[int]int64) {
	for _, e := range uids {
		if s.v.listed[e.UID] > 1 {
			if s.v.sizes == nil {
				s.v.sizes = map[string][]int64{}
			}
			s.v.sizes[e.UID] = append(s.v.sizes[e.UID], size[e.Num])
		}
	}
}

// allRecorded reports whether every copy listed under uid (listed more
// than once) has a recorded identity of its size, each its own: in keep
// mode the sizes then say that every copy was delivered (see recordCopy),
// as an unchanged size does for a UID listed once, so a UID listed twice
// costs no RETR per poll. A new copy of a recorded size is the same gap as
// for a UID listed once (see above).
func (s *session) allRecorded(uid string, ids []uidl.Identity) bool {
	used := make([]bool, len(ids))
next:
	for _, size := range s.v.sizes[uid] {
		for i, id := range ids {
			if !used[i] && id.Size == size {
				used[i] = true
				continue next
			}
		}
		return false
	}
	return true
}

// recordCopy counts e, a message of identity id delivered or confirmed
// under a UID listed more than once, and records in the journal as many
// copies of id as this session has seen (Store.AddCopies): identical
// copies share one identity, and allRecorded needs one per copy. Safe for
// concurrent use (deliveries call it).
func (s *session) recordCopy(e entry, id uidl.Identity) error {
	if s.v.listed[e.UID] < 2 {
		return nil
	}
	s.v.mu.Lock()
	if s.v.copies == nil {
		s.v.copies = map[string]int{}
	}
	k := e.UID + " " + id.Digest
	s.v.copies[k]++
	n := s.v.copies[k]
	s.v.mu.Unlock()
	if n < 2 {
		return nil
	}
	if err := s.store.AddCopies(e.UID, id, n, s.p.now()); err != nil {
		return fmt.Errorf("uidl store: record copies of %s: %w", e.UID, err)
	}
	return nil
}

// asNew marks e, a message of a renumbered listing that goes through
// selection like new mail, to be checked by its copy when it is retrieved.
func (v *verifyState) asNew(e entry) {
	if v.byCopy == nil {
		v.byCopy = map[int]bool{}
	}
	if v.counted == nil {
		v.counted = map[int]bool{}
	}
	v.byCopy[e.Num], v.counted[e.Num] = true, true
}

// checkByCopy reports whether e's check is to retrieve it; false means e
// stays on the server unchecked (too large to retrieve).
func (s *session) checkByCopy(e entry) bool {
	if s.a.Limit > 0 && e.Size > s.a.Limit || e.Size > pop3.MaxMessageSize {
		// Neither deleted nor fetched: its identity cannot be
		// confirmed without retrieving it.
		s.res.Skipped++
		s.log.Debug("message seen before is too large to retrieve for its identity check; leaving it on the server", "uid", e.UID, "msgnum", e.Num, "size", e.Size)
		return false
	}
	if s.v.byCopy == nil {
		s.v.byCopy = map[int]bool{}
	}
	s.v.byCopy[e.Num] = true
	return true
}

// asRecorded reports whether e may be the message recorded under its UID
// without looking at it: the UID is listed once, at a size one of its
// recorded identities has (or none is recorded with a size). A suspended
// DELE (see deleSuspended) skips only such a message; one listed twice or
// at another size is checked by its copy first, as it may be new mail
// under a reused UID.
func (s *session) asRecorded(e entry) bool {
	if s.v.listed[e.UID] > 1 {
		return false
	}
	ids := fullIdentities(s.store.Identities(e.UID))
	if len(ids) == 0 {
		return true
	}
	for _, id := range ids {
		if id.Size == e.Size {
			return true
		}
	}
	return false
}

// deleAccepted ends the run of DELE refusals of e's UID, unless another
// message is listed under that UID: its DELE may be the one refused.
func (s *session) deleAccepted(e entry) error {
	if s.v.refused[e.UID] || s.v.listed[e.UID] > 1 {
		return nil
	}
	return s.store.DeleAccepted(e.UID, s.p.now())
}
