// Package deliver hands fetched messages to their local destinations: it
// routes multidrop mail to local users and writes each copy durably into
// a Maildir, pipes it to an MDA or sends it over SMTP or LMTP. The rules
// it keeps (durability, routing, no shell) are in doc/design.md §2-§4.
//
// # Pipeline
//
// The fetch package spools a whole message into a [Message] (never a
// stream: a target that saw EOF would deliver a truncated message), then:
// a [Spool] keeps up to 256 KiB in memory and a larger message in an
// unnamed 0600 file (O_TMPFILE, or created O_EXCL and unlinked at once)
// in the state directory's "spool" directory, so memory does not grow
// with a message's size. Everything that reads the message streams it
// from there: [Open] in bounded chunks, the header readers through
// [Message.Head] (the header as far as [MaxHeaderBytes], kept in
// memory), [DuplicateKey] and fetch's identity digest through
// [Message.Reader]. Then:
//
//  1. Routing (multidrop accounts only). [RouteHeader] picks the local
//     recipients from the configured envelope header at its configured
//     position, mapped through a whitelist ([Directory], aliases). It never
//     relays to non-local addresses, and it falls back to the postmaster
//     when nothing matches (doc/design.md §4). A single-drop account has one
//     [Recipient] whose fields are empty.
//  2. Delivery. A [Target] ([Maildir], [MDA], [SMTP]) writes one copy per
//     recipient, with [Received] and Delivered-To fields in front of the
//     unmodified message ([Open]), and returns one result per recipient.
//  3. Only after every result is nil does fetch record the UID and send
//     DELE.
//
// # Formats and standards
//
//   - Maildir: cr.yp.to/proto/maildir.html. Unique names
//     <sec>.M<usec>P<pid>Q<n>R<random>.<host>, with '/' and ':' in the host
//     escaped as \057 and \072, plus dovecot's ",S=<size>". A copy is
//     written in tmp/ and moved into new/ without ever overwriting a file
//     there: renameat2 with RENAME_NOREPLACE, or a link and then the removal
//     of the tmp name where that flag is not supported (a plain rename
//     would overwrite). The spec leaves the fsyncs implicit; this package
//     does them explicitly, in the order listed under Durability.
//   - SMTP (RFC 5321) and LMTP (RFC 2033): every line ends in CRLF. Bare CR
//     and LF are normalised before dot-stuffing (§2.3.8, SMTP smuggling).
//     The final reply gets its full 10 minutes (§4.5.3.2), and LMTP gives one
//     reply per recipient after DATA.
//   - Addresses: RFC 5322 §3.4 (quoted local parts, CFWS, groups,
//     obs-route), parsed in linear time. Following RFC 2047 §5,
//     encoded-words in an addr-spec are not decoded, so they match no user.
//   - Local copies (Maildir, MDA) use LF line endings, the Unix
//     convention; SMTP and LMTP copies use CRLF.
//
// # Durability
//
// A nil result from Deliver means the copy survives a crash from that
// moment on:
//
//   - Maildir: the file was created O_EXCL with mode 0600 in tmp/, written,
//     fsynced and closed (each step checked), then moved into new/
//     (renameat2 RENAME_NOREPLACE; where unsupported, remembered per
//     Maildir, a link, and the tmp name removed after the fsync of new/),
//     and new/ was fsynced by an fsync that started after the move.
//     Copies moved into one new/ at the same time share that fsync (group
//     commit): each waits for an fsync begun after its own move and gets
//     its result, never one already running when it arrived. Files
//     written at the same time into one filesystem known to honour
//     syncfs(2) (ext2/3/4, xfs, btrfs, f2fs, tmpfs) likewise share one
//     syncfs begun after their writes, followed by a device flush and a
//     check of each file's own writeback errors, before any of them is
//     moved (internal/durable FileSync; doc/design.md §2.2); a file
//     written alone, or elsewhere, is fsynced. Directories the delivery created are
//     fsynced in their parents. A failure at any step removes the copy
//     (from tmp/, and from new/ when the fsync of new/ failed), so new/
//     only ever holds complete files. [Maildir.Prepare] splits this in
//     two for a caller that records the copy's final name first (an
//     intent): everything up to the move, then [Prepared.Commit] (move,
//     fsync of new/) or [Prepared.Abort]; after a crash, [Committed]
//     tells whether a file holds that name, and [OpenCommitted] whether
//     it can be the copy (its size is the one the name carries). Targets that cannot do two
//     phases (MDA, SMTP/LMTP) deliver in one step only.
//
// A [Maildir] opens each Maildir's directories once, checking them as
// described below, and reuses the descriptors for the following copies
// (at most 64 Maildirs per target; [Maildir.Close] closes them). Before
// each copy it looks new/ up by path again (fstatat, not following a
// final symlink): if it is no longer the directory it opened (the
// Maildir renamed away or re-created, new/ replaced, removed or swapped
// for a symlink), the Maildir is opened afresh with every check, so the
// copy appears where a fresh open would put it, or is refused. tmp/,
// which a copy only passes through its opened descriptor, is not looked
// up again: one renamed away or swapped for a symlink is still the
// directory that was checked, and nothing is made through the symlink;
// one removed cannot take a file, and the Maildir is opened afresh.
//   - MDA: the process exited 0, read its copy and, unless allowed, wrote
//     nothing to stderr. The copy is its stdin as a complete file (a
//     sealed memfd, or an unlinked 0600 temporary file), never a pipe, so
//     an MDA that outlives a killed popfetch cannot read a truncated
//     message. "Read its copy" is the shared file offset at the end, or,
//     for an MDA that uses pread(2) or mmap(2) and leaves the offset at 0,
//     a changed access time: that shows only that something was read, so
//     such an MDA that reads part of its input and exits 0 counts as
//     delivered (a known limit).
//   - SMTP/LMTP: a 250 reply after the final dot, for that recipient,
//     with every reply of the session counted against its command: a
//     reply that was not due, a missing one or an LMTP reply naming
//     another recipient than its own make the transaction temporary for
//     every recipient not yet reported. An LMTP 250 naming exactly its own
//     recipient in angle brackets (as dovecot's do), read in step, is
//     final as it arrives; one naming no recipient only once the last
//     reply is in, in step. The checks look at what was read and at the
//     socket without waiting, so a stray that arrives later than the
//     check is found only as one reply too many for the next command.
//
// # Temporary and permanent failures
//
// A failed copy is reported as an [*Error]. A temporary failure leaves the
// message on the server, and the next poll retries it. A permanent one goes
// to the account's permanent-failure policy (keep and alert by default, or
// the postmaster). For the Maildir target only an invalid {user} or
// {domain} expansion is permanent. A full disk (ENOSPC, EDQUOT), EIO, a
// read-only filesystem or a permission problem is temporary, because each
// clears once an operator acts. An error whose class is unknown counts as
// temporary ([IsPermanent]): no code path may DELE on an unclassified
// error.
//
// A Maildir path may hold {user} and {domain}. They are replaced only by
// values that are one plain path component: non-empty, at most 64 bytes,
// no '/', control character or NUL, and not starting with '.' or '-'. A
// hostile header can therefore never choose a path. Nor can a local user:
// from the first placeholder on, and for tmp/, new/ and cur/, no symlink
// is followed (O_NOFOLLOW), and each copy is written, linked and removed
// through directory descriptors (openat, renameat2, linkat, unlinkat), so a directory
// swapped for a symlink meanwhile does not redirect it. The path before
// the first placeholder is the admin's, and may hold symlinks.
//
// Ownership: when popfetch runs as root (euid 0) and a Maildir path holds
// {user}, every directory and file it creates from the {user} component
// on (the Maildir, tmp/, new/, cur/, each message) is given to the system
// user of that name (os/user.Lookup: uid and primary gid), through the new
// descriptor (fchown) before it is used; a message file before it is
// moved into new/. Directories it creates above that component are
// root's with mode 0711, for users to pass through. A name that is no
// system user leaves root's files and one warning per user; a failing
// lookup is a temporary failure. Existing directories are not changed.
package deliver
