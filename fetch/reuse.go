package fetch

import (
	"fmt"
	"time"

	"github.com/popfetch/popfetch/uidl"
)

// A UID alone is never proof that a message was delivered: some servers
// derive UIDs from message numbers or reuse them after a deletion, and some
// (popa3d, solid-pop3d) give identical messages one UID. So the journal
// records with each UID the identity of the message delivered under it (its
// LIST size and a digest of its header, see identityOf), and a message
// listed under a UID seen before is checked against it:
//
//   - Delete mode: a size that matches no recorded identity means a new
//     message (no TOP needed). A matching size is confirmed with `TOP n 0`
//     (pipelined like RETR, and always answered before the DELE it
//     allows); without TOP, by retrieving the message and digesting the
//     copy, which is then not delivered again. Only a confirmed message is
//     deleted; one that does not match is fetched as new. A UID recorded
//     without identity (a journal of an older popfetch) confirms nothing:
//     the message is fetched and delivered again rather than deleted on
//     its UID alone (a duplicate, once, never a loss).
//   - Keep mode: a matching size is taken as the same message, with no
//     TOP, so a keep-mode mailbox costs nothing more per poll; a reused
//     UID whose new message has exactly the size of the old one is not
//     noticed there (nothing is deleted, but it is not fetched either),
//     unless the UID is listed more than once, which is always checked.
//     A size that differs is checked with TOP (or the retrieved copy): the
//     same digest means the server rewrote the message (an mbox server
//     that adds Status:) and the new size is recorded; another digest
//     means a new message, which is fetched. A UID recorded without
//     identity gets one from TOP the first time (no TOP: it stays as it
//     is).
//   - The same UID listed twice: each listed message is checked on its
//     own, so two different messages are each delivered once. Identical
//     copies (same UID, size and digest) present in one poll are each
//     delivered once and, in delete mode, each deleted; a copy identical
//     to one delivered earlier is taken as delivered.
//   - A listing that shares no UID with at least minRenumbered delivered
//     messages may come from a server that renumbered its UIDs: each listed
//     message whose size matches a delivered one is checked, and one whose
//     digest matches too is recorded under its new UID (and, in delete
//     mode, deleted) instead of being fetched again. In keep mode such a
//     listing is logged at ERROR at once (the messages were expected to
//     stay); in delete mode the journal still holds the UIDs the last poll
//     deleted, so an all-new listing is normal there, and the ERROR is
//     logged only when a message turns out to be one delivered before.
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
	checkNew  check = iota // fetch it as a new message
	checkNone              // it is the message delivered before; nothing to do
	checkTop               // confirm its identity (TOP, or the retrieved copy)
)

// verifyState is a session's bookkeeping of identity checks.
type verifyState struct {
	// noTop is set once the server refused TOP: later checks retrieve
	// the message instead.
	noTop bool
	// cand holds, by message number, what a check compares with.
	cand map[int]candidates
	// byCopy marks the messages (by number) whose check is a RETR: the
	// copy is digested and delivered only if it is not the message
	// delivered before.
	byCopy map[int]bool
	// listed counts the listing's messages by UID (more than one: a
	// server that gives one UID to several messages).
	listed map[string]int
	// renumbered is set when the listing shares no UID with the
	// journal (see survey); loud once it was logged at ERROR.
	renumbered, loud bool
}

// candidates is what the identity of one listed message is compared with.
type candidates struct {
	ids     []uidl.Identity
	anySize bool // keep mode: the digest alone decides (the size changed)
	adopt   bool // recorded without identity: record the one found
}

func (s *session) expect(e entry, c candidates) check {
	if s.v.cand == nil {
		s.v.cand = map[int]candidates{}
	}
	s.v.cand[e.Num] = c
	return checkTop
}

// survey counts the listing's UIDs and returns, when the listing shares no
// UID with a non-trivial set of delivered messages, their identities
// (non-nil, maybe empty); otherwise nil. It must run before retain forgets
// those UIDs.
func (s *session) survey(uids []entry) []uidl.Identity {
	s.v.listed = make(map[string]int, len(uids))
	for _, e := range uids {
		s.v.listed[e.UID]++
	}
	if s.a.FetchAll || s.store == nil || len(uids) == 0 {
		return nil
	}
	prev := s.store.Len()
	if prev < minRenumbered {
		return nil
	}
	for _, e := range uids {
		if s.has(e.UID) {
			return nil
		}
	}
	s.v.renumbered = true
	if s.a.Keep {
		s.renumberedError(len(uids), prev)
	}
	ids := s.store.DeliveredIdentities()
	if ids == nil {
		ids = []uidl.Identity{}
	}
	return ids
}

func (s *session) renumberedError(messages, prev int) {
	if s.v.loud {
		return
	}
	s.v.loud = true
	s.log.Error("the server's UIDL shares no UID with the messages delivered before: the server renumbered them, or another client removed them all; recognising them by size and header digest instead of fetching them again",
		"messages", messages, "previous", prev)
}

// classify decides what e, listed under a UID delivered before (or any UID
// of a renumbered listing), needs.
func (s *session) classify(e entry, renumbered []uidl.Identity) check {
	if renumbered != nil {
		var c []uidl.Identity
		for _, id := range renumbered {
			if id.Size == e.Size {
				c = append(c, id)
			}
		}
		if len(c) == 0 {
			return checkNew
		}
		if s.dryRun {
			return checkNone
		}
		return s.expect(e, candidates{ids: c, anySize: true})
	}
	if s.recovered[e.UID] {
		return checkNone // dry run only
	}
	var ids []uidl.Identity
	if s.store != nil {
		ids = s.store.Identities(e.UID)
	}
	if len(ids) == 0 {
		switch {
		case s.a.Keep && s.dryRun:
			return checkNone
		case s.a.Keep:
			return s.expect(e, candidates{adopt: true})
		}
		s.log.Info("message was delivered by an older popfetch that recorded no identity; fetching it again rather than deleting it on its UID alone",
			"uid", e.UID, "msgnum", e.Num, "size", e.Size)
		return checkNew
	}
	sameSize := false
	for _, id := range ids {
		sameSize = sameSize || id.Size == e.Size
	}
	switch {
	case s.a.Keep && sameSize && s.v.listed[e.UID] < 2, sameSize && s.dryRun:
		return checkNone
	case s.a.Keep && !s.dryRun:
		return s.expect(e, candidates{ids: ids, anySize: true})
	case sameSize:
		return s.expect(e, candidates{ids: ids})
	}
	s.reused(e)
	return checkNew
}

func (s *session) reused(e entry) {
	s.log.Warn("the server reuses a UID for a different message; fetching it as a new message", "uid", e.UID, "msgnum", e.Num, "size", e.Size)
}

// verified compares the identity of e, from TOP or from its retrieved
// copy, with what its check expects. It reports whether e is a message
// delivered before; if so, an identity the journal lacks (adopted, or the
// new size of a rewritten message) is recorded, without an fsync: the
// caller syncs before any DELE.
func (s *session) verified(e entry, id uidl.Identity) (bool, error) {
	c := s.v.cand[e.Num]
	match := c.adopt
	for _, r := range c.ids {
		match = match || r.Digest == id.Digest && (r.Size == id.Size || c.anySize)
	}
	if !match {
		if !s.v.renumbered {
			s.reused(e)
		}
		return false, nil
	}
	if s.v.renumbered {
		s.renumberedError(len(s.v.listed), s.store.Len())
	}
	if err := s.store.AddIdentity(e.UID, id, s.p.now(), false); err != nil {
		return false, fmt.Errorf("uidl store: record identity of %s: %w", e.UID, err)
	}
	return true, nil
}

// checkByCopy reports whether e's check is to retrieve it, when TOP is
// refused; false means e stays on the server unchecked (an adoption, or a
// message too large to retrieve).
func (s *session) checkByCopy(e entry) bool {
	c := s.v.cand[e.Num]
	if c.adopt {
		return false
	}
	if s.a.Limit > 0 && e.Size > s.a.Limit || e.Size > maxMessageSize {
		// Neither deleted nor fetched: without TOP its identity cannot
		// be confirmed, and it is too large to retrieve.
		s.res.Skipped++
		s.log.Debug("message seen before cannot be confirmed without TOP and is too large to retrieve; leaving it on the server", "uid", e.UID, "msgnum", e.Num, "size", e.Size)
		return false
	}
	if s.v.byCopy == nil {
		s.v.byCopy = map[int]bool{}
	}
	s.v.byCopy[e.Num] = true
	return true
}

// top reads the reply to `TOP n 0` for e: the header section. A refusal
// (TOP is optional, RFC 1939 §7) returns nil, nil; any other failure ends
// the session. The reply is bounded like RETR's, as a header is never
// larger than its message.
func (s *session) top(e entry) ([]byte, error) {
	c := s.c
	d := time.Now().Add(retrDeadline(c.timeout, e.Size))
	if _, err := c.status("TOP", lineBudget, d); err != nil {
		if isERR(err) {
			if !s.v.noTop {
				s.log.Info("TOP refused; checking messages seen before by retrieving them instead", "uid", e.UID, "msgnum", e.Num, "err", err)
			}
			return nil, nil
		}
		return nil, fmt.Errorf("top %d (uid %s): %w", e.Num, e.UID, err)
	}
	head, err := c.body("TOP", retrBudget(e.Size), d)
	if err != nil {
		return nil, fmt.Errorf("top %d (uid %s): %w", e.Num, e.UID, err)
	}
	return head, nil
}
