package pop3

import (
	"errors"
	"fmt"
)

// Sentinels, tested with errors.Is. Package fetch re-exports the first six
// under the same names (fetch.ErrAuth is pop3.ErrAuth), and cmd maps them
// to exit codes; their texts appear in logs and tests.
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
)

// Replies out of step with their commands. ErrSurplus: the server sent
// something when no reply was due. ErrMismatch: a reply does not fit the
// command it answers (a RETR reply announcing another size than LIST, a
// message that begins with a status line). Either ends the session at
// once: the Conn sends no further command (no DELE, no QUIT), and the
// caller must deliver nothing read after the point where the replies may
// have gone out of step. Both wrap ErrProtocol.
var (
	ErrSurplus  = fmt.Errorf("%w: replies out of step with commands: the server sent data when no reply was due", ErrProtocol)
	ErrMismatch = fmt.Errorf("%w: replies out of step with commands: a reply does not fit its command", ErrProtocol)
)

// ErrBudget: a reply ran past its byte budget (an endless line, a
// never-ending multi-line reply, a RETR reply far larger than LIST
// said). It wraps ErrProtocol and ends the session.
var ErrBudget = fmt.Errorf("%w: reply exceeds its size limit", ErrProtocol)

// ErrSink: the writer a message was being read into (ReadRetrTo) failed.
// It is no fault of the server's or of the message's, but it ends the
// session all the same: the rest of the reply is left unread.
var ErrSink = errors.New("writing the message read failed")

// RespError is a server's -ERR reply to a command. It does not end the
// session: the reply was read whole and the next one is in step.
type RespError struct {
	Cmd  string // the command verb only: never its arguments (PASS!)
	Code string // RFC 2449 response code, e.g. "IN-USE", "AUTH", "SYS/TEMP"
	Text string // sanitized, the session's credentials masked (see Conn.remember)
}

func (e *RespError) Error() string { return fmt.Sprintf("%s: server said -ERR %s", e.Cmd, e.Text) }

// IsERR reports whether err is, or wraps, a server's -ERR reply.
func IsERR(err error) bool {
	var re *RespError
	return errors.As(err, &re)
}
