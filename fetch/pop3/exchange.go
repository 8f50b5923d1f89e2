package pop3

import (
	"bytes"
	"strings"
)

// Reply is the one reply to a line sent with Exchange.
type Reply struct {
	// Continuation: the server sent "+ text" (or a bare "+"), a SASL
	// challenge (RFC 5034 §4), and waits for the client's next line of the
	// same exchange. Otherwise the reply was "+OK", and the exchange is over.
	Continuation bool
	// Text is what follows "+OK " or "+ ", unchecked: a challenge is
	// base64 (RFC 5034 §4) for the caller to decode and validate. The
	// line's length was bounded by Exchange's max.
	Text []byte
}

// Exchange sends line, a command whose verb is verb (such as "AUTH PLAIN
// =" for verb "AUTH"), or, after a Continuation, the client's next line
// of the same exchange (a base64 response, or "*" to cancel), and reads
// the one reply to it: a status line or a continuation whose text is at
// most max bytes, by the Conn's timeout. Only verb is ever
// put in an error, never the line, which may carry a credential. A -ERR
// is a *RespError and ends the exchange; the session goes on. The reply
// bookkeeping is that of any command: the command's reply is due until a
// status line ends the exchange, and when the server sends anything while
// it should be waiting for the client's line, the session ends with
// ErrSurplus.
//
// Exchange is the primitive a SASL AUTH (RFC 5034) runs on; the
// mechanisms, and the bounds on the number of challenges, belong to the
// caller.
func (c *Conn) Exchange(verb, line string, max int64) (Reply, error) {
	if err := c.write(verb, line); err != nil {
		return Reply{}, err
	}
	if !c.cont {
		c.due++ // a new command; a line within an exchange is not one
	}
	// The line is "+ " or "+OK " before the text, and CRLF after it.
	b, cont, err := c.readReply(verb, max+int64(len("+OK \r\n")), c.deadline(), true)
	if c.botched != nil {
		return Reply{}, c.botched
	}
	c.cont = cont
	if cont {
		return Reply{Continuation: true, Text: b}, nil
	}
	if err := c.replied(verb, err); err != nil {
		return Reply{}, err
	}
	return Reply{Text: b}, nil
}

// unknownResponse returns the line of go-pop3's error for a status line
// that is neither "+OK" nor "-ERR": its text is "unknown response: LINE.
// Neither -ERR, nor +OK" (pinned by TestGoPOP3PinsErrorTexts).
func unknownResponse(err error) (line []byte, ok bool) {
	s, ok := strings.CutPrefix(err.Error(), "unknown response: ")
	if !ok {
		return nil, false
	}
	s, ok = strings.CutSuffix(s, ". Neither -ERR, nor +OK")
	return []byte(s), ok
}

// continuation returns the text of a continuation line, "+ text" or a
// bare "+" (RFC 5034 §4 writes "+" and a space; servers send an empty
// challenge both ways).
func continuation(line []byte) ([]byte, bool) {
	if bytes.Equal(line, []byte("+")) {
		return []byte{}, true
	}
	text, ok := bytes.CutPrefix(line, []byte("+ "))
	return text, ok
}
