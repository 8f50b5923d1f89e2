// Package pop3test provides a scriptable fake POP3 server for tests, in the
// spirit of net/http/httptest.
//
// It exists for the faults a real server will not produce on demand: a
// connection dropped in the middle of RETR or before DELE's answer, a server
// that goes silent or trickles one byte at a time, an endless line, a
// multi-line answer without its terminating ".", a truncated message, a
// forged UIDL or LIST listing, response injection after STLS, "-ERR [IN-USE]"
// on PASS, a reply sent twice (Append) or not at all (Skip). Ordinary behaviour of a real server is tested against dovecot
// elsewhere (fetch/dovecottest); this package only has to be right enough
// for the fault tests to mean something.
//
// The server speaks RFC 1939 (USER/PASS, APOP, STAT, LIST, UIDL, RETR, TOP,
// DELE, NOOP, RSET, QUIT with the UPDATE state), RFC 2449 (CAPA,
// PIPELINING, the 255-octet command limit), RFC 2595 (STLS) and RFC 5034
// (AUTH with PLAIN, SCRAM-SHA-1, SCRAM-SHA-256, XOAUTH2 and OAUTHBEARER,
// each offered when Options.Capa's SASL line names it; a rejected token
// gets the JSON error challenge of RFC 7628, and a SCRAM server that
// cannot prove it knows the password can be played), plus implicit TLS
// (POP3S).
// Deletions are applied only by a successful QUIT (RFC 1939 §6), so a test
// can check exactly which messages a client's session removed.
//
// A Fault selects the Nth occurrence of a command in the Mth session and
// replaces the server's answer with an Action. The normal side effect of the
// command (DELE marking, PASS logging in, STLS starting TLS, QUIT expunging)
// happens only when the client is told "+OK": with the normal answer, with a
// Reply that starts with "+OK", or with DropAfter, Trickle and Append. Drop,
// Hang, Truncate, Skip, the endless actions and Custom have no side effect.
//
// Tests import this package, and so does popfetch demo, which runs Start
// and NewCert in the shipped binary: so the package does not import
// testing (its helpers take the small TB interface that *testing.T
// satisfies), and cmd/popfetch's TestBinaryLinksNoTestCode keeps it so.
package pop3test
