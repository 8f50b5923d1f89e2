// Package fetch runs the POP3 session that polls one account (package
// fetch/daemon schedules the polls of every account). The wire is package
// fetch/pop3, popfetch's POP3 client (the TLS gate, CAPA and STLS, response
// codes, deadlines per command and per message, byte budgets on every read,
// validation of everything the server says, and the count of replies against
// commands); this package decides what to fetch, delivers, records and
// deletes, and groups the commands into rounds.
//
// One poll of an account:
//
//	connect (implicit TLS, or STLS after CAPA; certificate verified)
//	  → TLS gate: no credential byte before it → login (auth) → CAPA again
//	    (RFC 2449 §5: what counts after login; EXPIRE 0 from either)
//	  → STAT, UIDL (every UID checked: 1–70 chars in 0x21–0x7E, RFC 1939 §7)
//	  → LIST sizes → select new UIDs (not in the store, unless fetch_all;
//	    over the size limit or the 1 GiB hard maximum → left on the server,
//	    noted once; given up, durably, when its reply overruns its bound
//	    or its RETR fails 3 polls in a row, counted in the journal →
//	    skipped); a UID in the
//	    store is checked against the identity recorded with it (a digest
//	    of the header, less the fields mbox servers rewrite, and of the
//	    body, from the retrieved copy, once its round ended in step; the
//	    LIST size is a hint that only keep mode trusts, when unchanged): a
//	    mismatch is a new message; a new UID is new mail, never matched
//	    with another UID's identity, except after a keep mode mailbox was
//	    renumbered (reuse.go)
//	  → RETR in rounds of up to 256 commands, 4 MiB of spool memory and
//	    64 MiB of spool (sent at once with
//	    RFC 2449 PIPELINING, one at a time without it), each "RETR n"
//	    followed by "LIST n", into a bounded spool (deliver.Spool:
//	    memory, then an unnamed 0600 file in state_dir/spool; see
//	    doc/design.md §2.1), one deadline per message
//	  → once the round's every reply is read, each RETR reply followed
//	    by its own LIST's ("+OK n size"), the server is silent and the
//	    round's last reply names itself (that LIST; STAT after DELEs):
//	    Deliver (up to 32 at once to Maildirs, 4 through MDAs and
//	    SMTP/LMTP) → UIDL record → per batch: fsync of the
//	    UIDL journal, then DELE for the batch (unless keep), in the same
//	    rounds as RETR; in keep mode with delete_after, DELE of a kept
//	    message delivered long enough ago, once its copy matched its
//	    recorded identity (deleteafter.go) → QUIT.
//
// Replies are counted against commands (package pop3). When no reply is
// due the server must have sent nothing (checked in package pop3's read
// buffer, in crypto/tls and on the socket); a RETR reply must fit its message (an "+OK n octets" equal
// to the LIST size, no status line as the first line, a size within the
// reply's budget of LIST's); a -ERR to RETR of a listed message, a reply
// that does not fit, a surplus or a missing reply (its deadline) ends the
// session at once: nothing read in the broken round is delivered or
// recorded, and no further command (DELE, QUIT) is sent. Otherwise one
// stray line would shift every later reply onto the wrong message. The
// LIST behind every RETR catches one reply lost and another sent twice,
// which leave the count right, and pins a reply that runs into the next
// ones (a "." glued to its last line) to its own message, which alone is
// counted towards being given up. The count is the UIDL journal's ("f"
// records), not the Poller's, so that `popfetch fetch` from cron, a new
// process each poll, gives such a message up as the daemon does instead of
// ending every session on it; a dropped connection or a cancelled poll is
// not counted. After a round broke off, the account's next polls take one
// message per round without pipelining, so the messages around a broken
// one keep flowing, until a poll gets through: the daemon's Poller
// remembers the broken round, and any poll, one-shot runs too, does so
// while a message it is to fetch has a failure count.
//
// The delivery contract, the security rules and the RFC points behind
// this package are in doc/design.md.
//
// The invariant, which every change here must keep: a message's UID is
// recorded only after the message is durably delivered, and DELE is sent only
// after the UID is durably recorded. A UID alone is never enough for DELE:
// a message this session did not deliver is deleted only once its retrieved
// copy matched an identity recorded under that same UID (header digest and
// body digest; the size decides nothing), by a RETR answered before that
// DELE is sent. A crash between any two steps leaves the
// message on the server; the worst outcome is a duplicate of a message that
// was in flight, never a loss. If delivery fails, the session sends no DELE
// for that message and closes without QUIT when the server might expunge
// retrieved mail on its own (RFC 2449 EXPIRE 0, also spelt EXPIRE0; an
// EXPIRE value that cannot be read counts as 0); so does a session that
// retrieved a message it did not deliver for any other reason (a graceful
// stop).
//
// Closing the duplicate window: for a single-drop Maildir the copy is
// delivered in two phases (deliver.Maildir.Prepare, then Commit): the
// session records an intent (the new/ file name) after the copy is
// prepared in tmp/ and before it is committed into new/; the next poll
// checks unresolved intents and records as delivered any whose copy
// deliver finds committed (deliver.Committed) and that is the copy
// popfetch wrote (ourCopy: deliver.OpenCommitted checks the size its name
// carries, and its body has the digest of the intent's identity), so a
// kill between commit and record duplicates nothing, and another's file
// under the name of an intent is never taken for the delivery. When a
// commit finds its name taken, the copy's fresh name is recorded before
// it is committed; if that record fails the copy is aborted and the
// message fetched again, so no committed copy hides behind an intent
// that names another's file.
// Multidrop records each recipient's copy as it completes (as the target
// reports it through deliver.DeliverReporting: per Maildir copy, per MDA run,
// per LMTP reply that names its recipient as it arrives, else per SMTP/LMTP
// transaction), not when the whole group of users sharing
// a target returns, so a retry serves only the recipients not yet done and
// a kill duplicates only the copies in flight. With dedupe_message_id a
// second copy of the same message (same deliver.DuplicateKey) is settled
// for a user only once the first copy is durable there.
//
// A full or failing state disk: when a journal write or fsync fails, the
// session delivers nothing more, sends no further DELE and ends without
// QUIT, so no DELE of this session takes effect (RFC 1939 §6). The journal
// keeps every record written before the failure (see package uidl), and
// the next poll resolves the intents as after a crash; the copies
// delivered twice are at most the deliveries in flight at the failure.
//
// A refused DELE (-ERR) leaves the message on the server; it is recorded,
// so the next poll asks again. The refusals of each message are counted
// in the journal (a one-shot run from cron sees the count too): after
// deleRefusalPolls polls in a row the refusal is an Error, the message
// counts in Result.Undeletable (`popfetch fetch` exits 7, the status shows
// it) and popfetch stops asking until deleRetryAfter has passed, the
// daemon starts, an operator's SIGHUP or `popfetch now`, or a change of
// the account's config. That applies to the message recorded only: a UID
// listed twice or at another size is checked by its copy first, so new
// mail under it is delivered. The count is of polls: two messages under
// one UID count one refusal per poll, and an accepted DELE of one does
// not end the run of the other.
//
// Log keys (stable): account, server, user, uid, msgnum, size, rcpt, target,
// err, elapsed, messages, new, delivered, deleted, skipped, failed,
// undeletable, refusals, path, mechanism (how the session logged in);
// the poll summary adds postmaster, kept, given_up, bytes; each delivered
// message's audit line (audit.go; off with log_messages = false) adds
// message_id, from, on_server (deleted, kept, dele_refused, not_deleted)
// and per copy N the group copy.N with user, rcpt, postmaster, target
// (maildir, mda, smtp, lmtp), dest, reply, reason, note: in text logs
// copy.1.dest=..., in JSON logs the same path of objects; a message
// delivered by an earlier poll and deleted now gets "message deleted"
// with uid, msgnum, size, note and on_server;
// multidrop routing adds via, users, reason; the user directory adds url,
// loaded, grace_until, down_since, last_good_users; the scheduler (package
// fetch/daemon) adds failures, retry_in, previous_err, generation, polls,
// limit, panic, stack; a renumbered listing adds previous; a deletion by
// delete_after (deleteafter.go) adds age, the time since its delivery;
// a filing rule's decision (filing.go) adds rule, action, field, value
// and folder; a filtered message's audit line (filters.go) adds per
// filter N, in the order they ran, the group filter.N with name, action
// (accept, tempfail, reject, discard), unavailable (only when true) and
// reply (only when the filter said something), and its log lines add
// filter and reason. A message a filter rejected with on_reject =
// "delete" has one copy with the note "deleted by filter NAME".
package fetch
