package fetch

import (
	"errors"
	"time"
)

// Sentinels, tested with errors.Is. The package that detects a condition
// owns its sentinel; cmd maps them to exit codes.
var (
	// ErrAuth: the server rejected the credentials (or said [AUTH], RFC
	// 3206). Retrying would risk locking the account, so the daemon waits
	// for a config change or an explicit "popfetch now".
	ErrAuth = errors.New("authentication failed")
	// ErrLoginRefused: the server answered USER or PASS with -ERR and no
	// [AUTH] code (RFC 3206), so it did not say whether the credentials
	// are wrong: servers without response codes also refuse a login for a
	// damaged or locked mailbox. The daemon retries only after a long
	// backoff (a wrong password retried every poll is what locks an
	// account) and logs an error each time.
	ErrLoginRefused = errors.New("login refused")
	// ErrProtocol: the server said something RFC 1939 does not allow (bad
	// UID, message number out of range, oversized line, malformed reply).
	ErrProtocol = errors.New("pop3 protocol error")
	// ErrTLS: the TLS policy could not be met (no STLS offered or STLS
	// refused when required, certificate not verified, pin mismatch).
	ErrTLS = errors.New("tls policy not met")
	// ErrInUse: the maildrop is locked by another session ([IN-USE]); retry later.
	ErrInUse = errors.New("mailbox in use")
	// ErrLoginDelay: the server asked for a pause between logins ([LOGIN-DELAY]).
	ErrLoginDelay = errors.New("login delay")
	// ErrLocked: another popfetch process is polling this mailbox (state lock held).
	ErrLocked = errors.New("mailbox state locked by another popfetch process")
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
	// LoginDelay is the server's LOGIN-DELAY (RFC 2449), 0 if none: the
	// scheduler must not start the next session sooner.
	LoginDelay time.Duration
	Err        error // nil, or the reason the poll failed (wraps a sentinel above where one applies)
}
