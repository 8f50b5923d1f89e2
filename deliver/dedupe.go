package deliver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// duplicateFields are the header fields two copies must share, besides
// Message-ID and the body, to count as one message (DuplicateKey). They
// are the author's, set once when the message was written; what a
// provider adds per recipient copy (Received, Delivered-To, X-Original-To,
// spam scores) is left out.
var duplicateFields = []string{"From", "Date", "Subject", "To", "Cc"}

// DuplicateKey returns the key under which dedupe_message_id takes two
// copies for one message, or "" when m has no usable Message-ID (it is
// then never deduplicated). The key is the Message-ID plus a SHA-256 over
// the first From, Date, Subject, To and Cc fields and the body byte for
// byte: a provider that stores one copy per recipient of a message keeps
// those identical, while a message that merely reuses (or forges) a
// Message-ID differs in them and is delivered, never suppressed. A copy
// that was altered on the way (a footer, a tagged Subject) is not
// deduplicated either: a duplicate, never a loss. The body is read from
// the message (Message.Reader), not held in memory; an error is a failure
// to read it back.
func DuplicateKey(m *Message) (string, error) {
	head := m.Head()
	mid := MessageID(head)
	if mid == "" {
		return "", nil
	}
	h := sha256.New()
	hdr, _ := readHeader(head)
	for _, name := range duplicateFields {
		h.Write([]byte(name + ":"))
		v, _ := hdr.first(name)
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	// The body starts at the empty line that ends the header, or is the
	// whole message without one.
	body := m.Reader()
	if end := headerEnd(head); end >= 0 {
		body.Seek(int64(end), io.SeekStart)
	}
	if _, err := io.Copy(h, body); err != nil {
		return "", fmt.Errorf("read the message: %w", err)
	}
	return mid + "\x00" + hex.EncodeToString(h.Sum(nil)), nil
}
