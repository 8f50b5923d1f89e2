// Package pop3 is popfetch's POP3 client: one session with a server, from
// the TLS gate to QUIT, held to what RFC 1939, RFC 2449 and RFC 2595 allow
// a server to say. It is the one package that imports
// github.com/knadh/go-pop3, and it adds what that library lacks, through
// the net.Conn its Dialer hook returns (guardConn):
//
//   - the reading: the session has one read buffer, popfetch's (32 KiB),
//     from which go-pop3 gets one line per Read, so that it holds nothing
//     but the status line it is reading (TestGoPOP3PinsOneLine). The body
//     of a multi-line reply never passes through go-pop3, whose ReadAll
//     holds a whole reply in memory: readBody undoes the byte-stuffing
//     (RFC 1939 §3) as the lines arrive, byte for byte as ReadAll did
//     (FuzzReadRetrTo), and ReadRetrTo writes a message to the caller's
//     io.Writer in chunks of at most 32 KiB, never holding it whole;
//     under TLS the socket is read through a buffer of its own
//     (cipherConn), several records per read(2);
//   - the writing: commands are held back and sent in one write just
//     before the next reply is read, so a pipelined round (RFC 2449
//     §6.6) is one write(2) and Listing's STAT, UIDL and LIST one too
//     (with Options.TrustPipelining also the CAPA after login), each by
//     a write deadline, and a QUIT sent with SendQuit goes out with the
//     commands before it;
//   - the TLS gate (Dial): implicit TLS, or CAPA and STLS before anything
//     else (no data after the STLS reply: CVE-2020-14954), the certificate
//     verified or its key pinned, TLS 1.2 or later, a deadline on the
//     handshake; no credential byte is sent before it, and a session that
//     fails it never gets as far as Authenticate;
//   - CAPA (RFC 2449), read again after STLS (RFC 2595 §4) and after login
//     (RFC 2449 §5), and response codes (RFC 2449 §8, RFC 3206), which
//     classify a refused login (ErrAuth, ErrInUse, ErrLoginDelay,
//     ErrLoginRefused);
//   - bounded reads: every reply has a byte budget (an endless line or
//     listing fails, CVE-2003-0792) and a deadline, a RETR one by the
//     message's LIST size (retrBudget, retrDeadline), so a server that
//     trickles cannot hold a poll (slowloris, CVE-2011-1947);
//   - validation of everything the server says: STAT, UIDL and LIST
//     (message numbers within STAT's count, each once, CVE-2001-1009; UIDs
//     by uidl.ValidUID, RFC 1939 §7, CVE-2005-2335), and each RETR reply
//     against its LIST entry;
//   - reply bookkeeping: replies are counted against commands, pipelined
//     (RFC 2449 §6.6) or not. When no reply is due the server must have
//     sent nothing (checked in popfetch's read buffer, in crypto/tls and
//     on the socket); a surplus or a reply that does not fit its command ends
//     the session at once (ErrSurplus, ErrMismatch) and nothing more is
//     sent, not even QUIT. The caller then delivers nothing read in the
//     round that broke: one stray line would otherwise shift every later
//     reply onto the wrong message;
//   - the login (Authenticate, auth.go): USER/PASS (in one write with
//     PIPELINING before login), APOP, or SASL AUTH
//     (RFC 5034) with PLAIN, SCRAM-SHA-1, SCRAM-SHA-256 (the server's
//     signature verified), XOAUTH2 and OAUTHBEARER (RFC 7628, one retry
//     with a fresh token from a TokenFunc), picked from CAPA SASL (RFC
//     2449) by the caller's Mechanism; never a weaker mechanism after a
//     failure, never a secret in clear text to a remote host without the
//     caller's opt-in, initial responses only within RFC 2449's 255
//     octets, bounded challenges, "*" to cancel.
//
// What to fetch, when to delete and how commands are grouped into rounds
// are the caller's (package fetch), and so is what becomes of a message
// ReadRetrTo wrote when it returns an error: part of the message, or all
// of it, may have been written, and none of it may be delivered. Exchange,
// a line out and one reply in, which may be a continuation, is the
// primitive AUTH runs on. What this package assumes about go-pop3 (that
// ReadOne reads no further than a line's '\n', that Send writes a command
// in one Write, its error texts, how it reads an empty line and a
// multi-line reply) is pinned by the TestGoPOP3Pins tests.
//
// Server data put in an error is sanitized and truncated (quote,
// sanitize): logging raw server data crashed fetchmail (CVE-2008-2711).
// Errors name the command verb only, never its arguments (PASS), and a
// mechanism's name, never its responses.
package pop3
