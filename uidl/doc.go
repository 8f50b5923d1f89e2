// Package uidl is popfetch's durable memory of which POP3 messages were
// already delivered: one journal of seen UIDLs (RFC 1939 §7) per mailbox.
// The delivery contract it serves is doc/design.md §2.
//
// # Files
//
// Path(stateDir, mailbox) names the journal stateDir/uidl/MAILBOX.uidl
// (escaped, see Path), where mailbox is rcfile.Account.Mailbox: the
// username at the lower-cased server, whatever the port, or the account's
// mailbox_id. It is keyed by the mailbox, not by the config's account name
// or port, so renaming an account block or moving it from STLS on 110 to
// implicit TLS on 995 does not refetch everything. Beside it live
// MAILBOX.uidl.lock (the flock, never removed), MAILBOX.uidl.len (the
// length mark, see below) and, only during compaction or the mark's
// creation, MAILBOX.uidl.tmp and MAILBOX.uidl.len.tmp; after a poll that
// broke off in a round of RETRs, MAILBOX.uidl.careful (see SetCareful).
// Every journal name ends in ".uidl" and every sibling in ".lock", ".tmp",
// ".len" or ".careful", so no file of one mailbox can be named like a file
// of another (see Path).
// Directories are created 0700 and files 0600 at creation time (never
// chmod afterwards, fetchmail CVE-2005-3088); files or directories found
// open to group or others are refused with ErrInsecure.
//
// Versions before format 2 named the journal USER@SERVER:PORT
// (LegacyPath), its length mark USER@SERVER:PORT.len. OpenMigrating moves
// such a journal to the new name on first open, under its own lock and the
// new one: it links the length mark to MAILBOX.uidl.len and then the
// journal to MAILBOX.uidl, fsyncs the directory, and removes the old names,
// their stale temporary files and the old lock file. A length mark left
// without its journal moves too, so Open refuses the deleted journal under
// the new name as it did under the old one. Several old journals (one per
// port) are refused with ErrAmbiguous, as they may be different mailboxes
// that only the admin can tell apart (mailbox_id).
//
// # Format
//
// Text, one record per line, so admins can grep it:
//
//	popfetch-uidl 3
//	+ <uid> <unix-seconds> [<size> <digest>]         delivered to every recipient
//	r <uid> <unix-seconds> <rcpt> [<size> <digest>]  multidrop: this recipient is done
//	n <uid> <unix-seconds>                           too large, left on server, logged once
//	p <uid> <unix-seconds> [<size>]                  cannot be retrieved, left on server, logged once
//	i <uid> <unix-seconds> <name> [<size> <digest>]  Maildir: a delivery is about to link new/<name>
//	d <uid> <unix-seconds> <count>                   the server refused DELE in <count> polls in a row (0: it accepted)
//	f <uid> <unix-seconds> <count>                   RETR of this message failed in <count> polls in a row (0: it succeeded)
//	- <uid>                                          forgotten: the server no longer lists it
//
// Fields are separated by one space. A UID is 1–70 bytes in 0x21–0x7E
// (RFC 1939 §7), a recipient 1–320 bytes of UTF-8 without whitespace or
// control characters, so no value can contain a separator or newline. The
// time is when the UID was first recorded since it was last forgotten,
// except in a "+" record, where it is when that message was delivered to
// every recipient (Store.DeliveredAt, the clock of delete_after: a message
// may be seen, noted as too large or served to some recipients long before
// it is delivered; compaction keeps each identity's time, and a "+" without
// identity ahead of them when the UID was first seen earlier), in a "d" record, where
// it is the time of the last refusal (the clock for asking again), and
// an "f" record, where it is the time of the last failure. A "d"
// record applies only to a UID already recorded; its count, 0 to 999999
// without leading zeros, replaces the previous one. Count 0 is written
// for every accepted DELE (without an fsync): the message delivered under
// the UID is then no longer known to be on the server (Store.OnServer),
// until a "+" records another message under it. Older journals lack those
// records; their UIDs count as still on the server, which costs at most
// one warning about renumbering in delete mode. An "f" record (format 2
// and later) counts the polls in a row whose RETR of the UID failed in a way
// that may be the message's own fault, so that one-shot runs can give it
// up ("p") as the daemon does; its count is spelled like a "d" record's
// and replaces the previous one. It may be a UID's only record (a message
// never retrieved); count 0, written after a retrieval only when the count
// was not already 0, ends the run, and a UID that had nothing else
// recorded is then unknown again. A "p" record ends the run too. Records are replayed
// in order; "+" subsumes earlier "r" records of the same UID; duplicates
// are harmless.
//
// <size> <digest> is the message's identity (Identity), because a UID
// alone does not identify a message: servers reuse UIDs, and some derive
// them from a few header fields, so identical messages and new ones that
// repeat those fields share one. The digest, computed by package fetch
// from the retrieved copy, is 64 hex digits: 32 of a digest of the header
// (all of it but the fields mbox servers rewrite, such as Status and
// X-UID; the whole message when it has no empty line ending the header),
// then 32 of a digest of the body. Until the header digest covered the
// whole header (it covered Message-ID, Date, From, To, Subject and the top
// Received only) the same format 2 records held digests computed the old
// way. The format is unchanged, as a mismatch is safe either way: package
// fetch takes a recorded digest that matches no copy as another message,
// so in delete mode a message recorded the old way and still on the
// server is delivered again once (a bounded duplicate, never a deletion
// without delivery) and recorded with its new digest; in keep mode an
// unchanged size is still taken as the same message, and a changed one
// delivers it again once, after which its new identity matches. The size is the LIST size, a
// hint only: package fetch never decides on it that a message is new in
// delete mode (mbox servers rewrite a message's header as it is read,
// which changes its size) nor that one is the same, except in keep mode
// when it is unchanged. This package stores the digest as given (1–64
// lower-case hex digits); a shorter one, written by a development version
// of format 2 from the header alone, is kept and read, and package fetch
// treats it as unknown, like a "+" without identity. A UID keeps the identities delivered
// under it (at most MaxIdentities, oldest dropped), each once, except
// that AddCopies repeats one for each identical copy listed under the UID
// at once (an older popfetch reads the repeats as one); a "+" without identity
// (format 1, or a UID recorded without one) means "delivered, identity
// unknown". An "i" record's identity is recorded with the UID when its
// intent is recovered. An "r" record's identity is the message the
// recipient was served for: an "r" of another identity under the same UID
// starts its recipients again, so new mail under a reused UID is not
// withheld from the recipients of an earlier message. A "p" record's size
// is the LIST size of the message given up: a message of another size
// under that UID is not skipped.
//
// Format 2 has the records above, but its "+" records may carry the UID's
// first-seen time instead of the delivery's (a reused UID, a multidrop
// message finished polls later, a message that failed or was noted
// first). Format 1 (before identities; its records are those above
// without the bracketed fields, "d" included, and without "f") is read
// too. Open rewrites either as format 3 (by compaction) before appending
// anything, and since their delivery times are unknown it gives every
// identity they recorded the time of the upgrade (the caller's clock,
// OpenMigratingAt), written into the rewritten "+" records so that a
// restart does not move it: delete_after counts from the upgrade, never
// from earlier. An older popfetch refuses the upgraded file (unknown
// version, ErrCorrupt) instead of misreading it; every popfetch since
// format 1 refuses a version it does not know. The
// upgrade is an ordinary compaction, so it keeps the length mark right (a
// format 1 journal without a mark gets one first, and the mark is lowered
// before the rename and raised after it). A header with a version this
// package does not know is refused (ErrCorrupt).
//
// # Crash safety
//
// Every mutation appends whole lines with a single Write to a file opened with
// O_APPEND and fsyncs it before returning nil; the exceptions are written
// without an fsync and made durable by the next one (Sync, Close, any
// fsynced mutation): AddIdentity with sync=false (the caller calls Sync
// before DELE), IntendIdentity,
// and the "d" and "f" records, whose loss to a power failure costs at most
// a duplicate, a delayed escalation or a message given up a poll later.
// The caller (package fetch) sends DELE
// only after Add or Sync returned nil, so a UID the server may have removed
// is always on disk. Writes are strictly sequential, and the ones not yet
// fsynced are the last few (a batch of records and the intents written
// since the last fsync, normally far less than 64 KiB), hence after a
// crash only the end of the file can be incomplete:
//
//   - A final line without '\n' is a torn write. Open ignores it and
//     truncates the file to the last complete line. Its caller never saw
//     success, so nothing it relied on is lost.
//   - Some filesystems extend the size before the data reaches the disk, so
//     the unsynced tail can read as NUL bytes. A bad line that holds a NUL and
//     starts within the last 64 KiB (the largest single write) is treated the
//     same way, with everything after it.
//   - Any other bad line (unknown kind, invalid UID, bad time, missing
//     header) is not something a crash produces. Open refuses the journal
//     with ErrCorrupt naming file:line instead of silently dropping state:
//     dropped state means refetching, i.e. duplicates for every message
//     still on the server. The admin fixes the line, or removes it and the
//     length mark (see below; removing the journal and its mark costs one
//     refetch of the mailbox, never a loss).
//   - A failed write or fsync (a full or failing disk) makes the Store
//     refuse further mutations: after a failed fsync the file's content is
//     unknown (and a record written behind a torn one would look like
//     corruption). Nothing that write(2) accepted is cut off, synced or
//     not: every record states something already true when it was written
//     (a durable copy, a recipient done, a link about to happen), so a
//     record that reached the disk despite the error is never wrong, while
//     cutting it would lose the record or intent of a copy already
//     delivered. Only the bytes of a short write are removed (best effort;
//     otherwise they are a torn tail). The session stops without DELE;
//     reopening replays what actually reached the disk, and the next poll
//     resolves intents as after a crash. The duplicates this can cause are
//     the deliveries in flight whose intent could not be written.
//
// Compaction never edits the journal in place: it writes the live records to
// the .tmp file (O_EXCL, 0600), fsyncs it, renames it over the journal and
// fsyncs the directory. Before the rename the old journal is intact, after it
// the new one is complete. It runs when dead records (duplicates, forgotten
// UIDs, "r" records of delivered UIDs) outnumber live ones, so its O(n) cost
// is amortised over at least as many appends; no message ever rewrites the
// whole file.
//
// # Length mark
//
// A journal cut to a valid prefix, emptied, deleted, edited or replaced by
// an older backup replays without error, yet it lost records: trusted, it
// would make popfetch fetch again every message those records described
// (a keep mode mailbox in full). So the journal's length is recorded
// beside it, in JOURNAL.len, one line of fixed size:
//
//	popfetch-uidl-len 1 <bytes> <lines> <crc32>
//
// bytes and lines (header included) are 20 zero-padded decimal digits, the
// CRC-32 (IEEE) of what precedes it 8 lower-case hex digits. It claims
// that the journal held at least that many bytes in that many complete
// lines. Open refuses a journal shorter in either (ErrCorrupt and
// ErrShortened, naming both files and the fix: restore the journal from a
// backup, or remove the .len file to accept the loss and refetch what the
// lost records described), and a missing journal whose mark claims
// records. A mark that does not parse is refused the same way (remove it
// if the journal is intact).
//
// Crash safety of the mark: it is raised only right after an fsync of the
// journal, to what that fsync made durable, so it is never ahead of the
// disk; a crash can only lose unsynced records, which the mark never
// claimed, or leave the mark behind (an older, smaller claim: safe). It
// is rewritten in place by one pwrite of its fixed size and not fsynced,
// so its cost is one pwrite per journal fsync (per batch of records, not
// per message) and, at Open, one small read. It is created once, through
// a temporary file and a rename, so it is either absent or complete.
// Compaction shortens the journal: before its rename the mark is lowered,
// durably (one more fsync per compaction), to what the old and the new
// journal both hold, and raised after it.
//
// What it cannot tell: a journal without a mark is accepted and gets one
// (journals written before the mark existed; an admin who removed it), so
// removing the mark and cutting the journal goes unnoticed, and removing
// both is indistinguishable from a new mailbox, whose first poll fetches
// everything on the server. An admin who removes a corrupt line (see
// above) also shortens the journal and must remove the mark too.
//
// The crash window that remains is between delivery and Add: the message is
// delivered but its UID not recorded, so the next poll fetches it again. That
// is one duplicate, never a loss (doc/design.md §2.7).
//
// # Locking
//
// Open takes an exclusive, non-blocking flock(2) on the .lock file and
// returns ErrLocked if another process holds it. The journal itself is not
// locked because compaction replaces its inode. The kernel drops a flock when
// its holder dies, so a killed process never leaves the mailbox stuck.
//
// A Store is meant for one goroutine at a time (one session per mailbox);
// its methods are still safe for concurrent use.
package uidl
