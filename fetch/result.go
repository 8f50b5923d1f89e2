package fetch

import (
	"errors"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3"
)

// Sentinels, tested with errors.Is. The package that detects a condition
// owns its sentinel; cmd maps them to exit codes. The POP3 client's are
// package pop3's own values under the same names, so errors.Is matches
// either spelling (see pop3.ErrAuth and the others for their meaning).
var (
	ErrAuth         = pop3.ErrAuth         // the server rejected the credentials ([AUTH]): hold until the operator acts
	ErrLoginRefused = pop3.ErrLoginRefused // USER or PASS refused with no [AUTH] code: retry after a long backoff
	ErrProtocol     = pop3.ErrProtocol     // the server said something RFC 1939 does not allow
	ErrTLS          = pop3.ErrTLS          // the TLS policy could not be met
	ErrInUse        = pop3.ErrInUse        // the maildrop is locked by another session ([IN-USE]); retry later
	ErrLoginDelay   = pop3.ErrLoginDelay   // the server asked for a pause between logins ([LOGIN-DELAY])
	// ErrLocked: another popfetch process is polling this mailbox (state lock held).
	ErrLocked = errors.New("mailbox state locked by another popfetch process")
	// ErrDirectory: the account's user directory (multidrop ldap) could
	// not be loaded and no good copy within its grace period exists; a
	// temporary failure, and nothing was fetched.
	ErrDirectory = errors.New("user directory unavailable")
)

// Result is the outcome of one poll of one account.
type Result struct {
	Account   string
	Start     time.Time
	Elapsed   time.Duration
	Messages  int // on the server at login (STAT)
	New       int // selected for retrieval
	Delivered int // delivered durably (including to the postmaster)
	Deleted   int // DELE answered +OK
	Skipped   int // left on the server: over the size limit or fetch_limit
	Failed    int // delivery failed; left on the server for the next poll
	// Undeletable counts delivered messages whose DELE the server refused
	// in deleRefusalPolls polls in a row (refused again in this poll, or
	// not asked again yet): they stay on the server, and `popfetch fetch`
	// exits non-zero.
	Undeletable int
	// Postmaster counts delivered messages of which at least one copy
	// went to the postmaster (unroutable, or refused permanently by a
	// target) instead of, or besides, the recipients.
	Postmaster int
	// Kept counts delivered messages left on the server on purpose
	// (keep mode, or not yet due under delete_after).
	Kept int
	// GivenUp counts messages popfetch stopped trying to retrieve in this
	// poll (they stay on the server and are skipped from now on).
	GivenUp int
	// Bytes is the size of the messages retrieved in this poll, as read
	// from the wire after dot-unstuffing.
	Bytes int64
	// MailboxBytes is the size of the whole maildrop at login (the sum of
	// the LIST sizes): with Messages, what a keep-mode mailbox occupies
	// on the server.
	MailboxBytes int64
	// LoginDelay is the server's LOGIN-DELAY (RFC 2449), 0 if none: the
	// scheduler must not start the next session sooner.
	LoginDelay time.Duration
	// NotStarted: PollOptions.Stop was closed before the session
	// connected, so the poll did nothing (no login, no journal change):
	// the account was not polled. Err is nil.
	NotStarted bool
	// Mechanism is how the session logged in (pop3.Mechanism's String:
	// "SCRAM-SHA-256", "OAUTHBEARER", "USER", ...), "" before a login.
	Mechanism string
	// Directory is the state of the account's user directory (multidrop
	// ldap) in this poll; nil without one.
	Directory *DirectoryState
	Err       error // nil, or the reason the poll failed (wraps a sentinel above where one applies)
}
