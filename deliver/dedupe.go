package deliver

import (
	"crypto/sha256"
	"encoding/hex"
)

// duplicateFields are the header fields two copies must share, besides
// Message-ID and the body, to count as one message (DuplicateKey). They
// are the author's, set once when the message was written; what a
// provider adds per recipient copy (Received, Delivered-To, X-Original-To,
// spam scores) is left out.
var duplicateFields = []string{"From", "Date", "Subject", "To", "Cc"}

// DuplicateKey returns the key under which dedupe_message_id takes two
// copies for one message, or "" when raw has no usable Message-ID (it is
// then never deduplicated). The key is the Message-ID plus a SHA-256 over
// the first From, Date, Subject, To and Cc fields and the body byte for
// byte: a provider that stores one copy per recipient of a message keeps
// those identical, while a message that merely reuses (or forges) a
// Message-ID differs in them and is delivered, never suppressed. A copy
// that was altered on the way (a footer, a tagged Subject) is not
// deduplicated either: a duplicate, never a loss.
func DuplicateKey(raw []byte) string {
	mid := MessageID(raw)
	if mid == "" {
		return ""
	}
	h := sha256.New()
	hdr, _ := readHeader(raw)
	for _, name := range duplicateFields {
		h.Write([]byte(name + ":"))
		v, _ := hdr.first(name)
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	body := raw
	if end := headerEnd(raw); end >= 0 {
		body = raw[end:]
	}
	h.Write(body)
	return mid + "\x00" + hex.EncodeToString(h.Sum(nil))
}
