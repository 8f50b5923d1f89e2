// Package uidl is popfetch's durable memory of which POP3 messages were
// already delivered: one journal of seen UIDLs (RFC 1939 §7) per mailbox.
//
// # Files
//
// Path(stateDir, mailbox) names the journal stateDir/uidl/MAILBOX.uidl
// (escaped, see Path), where mailbox is rcfile.Account.Mailbox: the
// username at the lower-cased server, whatever the port, or the account's
// mailbox_id. It is keyed by the mailbox, not by the config's account name
// or port, so renaming an account block or moving it from STLS on 110 to
// implicit TLS on 995 does not refetch everything. Beside it live
// MAILBOX.uidl.lock (the flock, never removed) and, only during
// compaction, MAILBOX.uidl.tmp. Directories are created 0700 and files
// 0600 at creation time (never chmod afterwards, fetchmail CVE-2005-3088);
// files or directories found open to group or others are refused with
// ErrInsecure.
//
// Versions before format 2 named the journal USER@SERVER:PORT
// (LegacyPath). OpenMigrating moves such a journal to the new name on
// first open, under its own lock and the new one (link, fsync the
// directory, remove the old name and its lock file); several of them (one
// per port) are refused with ErrAmbiguous, as they may be different
// mailboxes that only the admin can tell apart (mailbox_id).
//
// # Format
//
// Text, one record per line, so admins can grep it:
//
//	popfetch-uidl 2
//	+ <uid> <unix-seconds> [<size> <digest>]         delivered to every recipient
//	r <uid> <unix-seconds> <rcpt> [<size> <digest>]  multidrop: this recipient is done
//	n <uid> <unix-seconds>                           too large, left on server, logged once
//	p <uid> <unix-seconds> [<size>]                  cannot be retrieved, left on server, logged once
//	i <uid> <unix-seconds> <name> [<size> <digest>]  Maildir: a delivery is about to link new/<name>
//	- <uid>                                          forgotten: the server no longer lists it
//
// Fields are separated by one space. A UID is 1–70 bytes in 0x21–0x7E
// (RFC 1939 §7), a recipient 1–320 bytes of UTF-8 without whitespace or
// control characters, so no value can contain a separator or newline. The
// time is when the UID was first recorded since it was last forgotten (the
// clock for a later "delete after N days"). Records are replayed in order;
// "+" subsumes earlier "r" records of the same UID; duplicates are harmless.
//
// <size> <digest> is the message's identity (Identity: its LIST size and a
// hex digest of its header, computed by package fetch), because a UID
// alone does not identify a message: servers reuse UIDs, and some give
// identical messages one UID. A UID keeps the set of identities delivered
// under it (at most MaxIdentities, oldest dropped); a "+" without identity
// (format 1, or a UID recorded without one) means "delivered, identity
// unknown". An "i" record's identity is recorded with the UID when its
// intent is recovered. An "r" record's identity is the message the
// recipient was served for: an "r" of another identity under the same UID
// starts its recipients again, so new mail under a reused UID is not
// withheld from the recipients of an earlier message. A "p" record's size is the LIST size of the message
// given up: a message of another size under that UID is not skipped.
//
// Format 1 (before identities) is read as before; Open rewrites such a
// journal as format 2 (by compaction) before appending anything, so an
// older popfetch refuses the upgraded file instead of misreading it. A
// header with a version this package does not know is refused (ErrCorrupt).
//
// # Crash safety
//
// Every mutation appends whole lines with a single Write to a file opened with
// O_APPEND and fsyncs it before returning nil. The caller (package fetch)
// sends DELE only after Add returned nil, so a UID the server may have removed
// is always on disk. Writes are strictly sequential and each is fsynced
// before the next begins, hence after a crash only the last write can be
// incomplete, and it is at the end of the file:
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
//     still on the server. The admin fixes or removes the line (removing the
//     whole file costs one refetch of the mailbox, never a loss).
//   - A failed write or fsync makes the Store refuse further mutations: after
//     a failed fsync the file's content is unknown (and a record written
//     behind a torn one would look like corruption). Reopening replays what
//     actually reached the disk.
//
// Compaction never edits the journal in place: it writes the live records to
// the .tmp file (O_EXCL, 0600), fsyncs it, renames it over the journal and
// fsyncs the directory. Before the rename the old journal is intact, after it
// the new one is complete. It runs when dead records (duplicates, forgotten
// UIDs, "r" records of delivered UIDs) outnumber live ones, so its O(n) cost
// is amortised over at least as many appends; no message ever rewrites the
// whole file.
//
// The crash window that remains is between delivery and Add: the message is
// delivered but its UID not recorded, so the next poll fetches it again. That
// is one duplicate, never a loss (RELIABILITY.md §1 step 3).
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
