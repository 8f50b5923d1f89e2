package fetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"

	"github.com/popfetch/popfetch/uidl"
)

// digestFields are the header fields whose first occurrence identifies a
// message beyond its UID. They are set once by the sender or the first
// hop and never rewritten by a POP3 server, unlike Status, X-Status or
// X-UIDL, which mbox-based servers rewrite as messages are read. The top
// Received field tells apart two deliveries of one message (a resend with
// the same Message-ID).
var digestFields = []string{"message-id", "date", "from", "to", "subject", "received"}

const (
	// maxDigestHeader bounds the header bytes the digest reads: a
	// hostile header cannot cost more (CVE-2002-1174). The cut is at the
	// same byte for every copy of a message, so the digest stays
	// deterministic.
	maxDigestHeader = 1 << 20
	// maxDigestValue bounds one field's unfolded value.
	maxDigestValue = 8 << 10
)

// identityOf returns the identity of the retrieved message raw, listed
// with LIST size size: the digest of its header fields (headerDigest)
// followed by the digest of its body (bodyDigest), 64 hex digits. The
// header fields alone do not tell messages apart: popa3d's UID is a digest
// of Date, Message-ID and Received, solid-pop3d's of Subject, Date and
// Received, so a new message that repeats those fields (a monitoring
// script's mail, a resend) gets the UID of an old one, and only its body
// differs. The size is recorded as a hint only (keep mode takes an
// unchanged size as the same message); it never decides that a message is
// the same or a new one, because mbox servers rewrite a message's header
// as it is read (mailutils adds X-IMAPbase, X-UID and Status at QUIT),
// which changes its size but neither its digested fields nor its body.
func identityOf(size int64, raw []byte) uidl.Identity {
	return uidl.Identity{Size: size, Digest: headerDigest(raw) + bodyDigest(raw)}
}

// fullDigestLen is the length of identityOf's digest. Identities recorded
// with a shorter one (the header digest alone, by a development version of
// format 2) cannot tell messages with equal header fields apart and are
// treated as unknown.
const fullDigestLen = 64

// fullIdentities returns those of ids that identityOf could have made.
func fullIdentities(ids []uidl.Identity) []uidl.Identity {
	var out []uidl.Identity
	for _, id := range ids {
		if len(id.Digest) == fullDigestLen {
			out = append(out, id)
		}
	}
	return out
}

// bodyDigest is a digest of the body of raw: everything after the empty
// line that ends the header section (RFC 5322 §2.1), found as headerDigest
// finds it, with every CRLF read as LF, so that a server that stores
// messages with LF line ends and one that stores CRLF agree. A message
// without that empty line has no body, which digests differently from an
// empty one. It is the first 128 bits of SHA-256, in hex.
func bodyDigest(raw []byte) string {
	h := sha256.New()
	body, ok := bodyOf(raw)
	if !ok {
		h.Write([]byte{0})
	} else {
		h.Write([]byte{1})
		for len(body) > 0 {
			i := bytes.Index(body, []byte("\r\n"))
			if i < 0 {
				h.Write(body)
				break
			}
			h.Write(body[:i])
			h.Write([]byte{'\n'})
			body = body[i+2:]
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// bodyOf returns what follows the first empty line of raw (CRLF or bare
// LF), and whether there is one.
func bodyOf(raw []byte) ([]byte, bool) {
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			return nil, false
		}
		line := bytes.TrimSuffix(raw[:i], []byte("\r"))
		raw = raw[i+1:]
		if len(line) == 0 {
			return raw, true
		}
	}
	return nil, false
}

// headerDigest is a digest of the first occurrence of each of digestFields
// in the header section of raw: up to the first empty line (RFC 5322
// §2.1), CRLF or bare LF alike, field names case-insensitive, folded lines
// unfolded (§2.2.3) and runs of white space collapsed to one space, so
// that a server that stores the header with other line ends or folding
// gives the same digest. It is the first 128 bits of SHA-256, in hex.
func headerDigest(raw []byte) string {
	raw = raw[:min(len(raw), maxDigestHeader)]
	var vals [8][]byte // by index in digestFields
	var have [8]bool
	cur := -1 // field being continued, or -1
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur >= 0 {
				vals[cur] = appendFolded(vals[cur], line)
			}
			continue
		}
		cur = -1
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue // not a field (an mbox "From " line, garbage): ignored alike
		}
		name = bytes.TrimRight(name, " \t") // obsolete "Subject :" (RFC 5322 §4.5)
		for i, f := range digestFields {
			if !have[i] && len(name) == len(f) && bytes.EqualFold(name, []byte(f)) {
				have[i], cur = true, i
				vals[i] = appendFolded(nil, value)
				break
			}
		}
	}
	h := sha256.New()
	for i, f := range digestFields {
		h.Write([]byte(f))
		if have[i] {
			h.Write([]byte{1})
			h.Write(bytes.TrimSpace(vals[i]))
		} else {
			h.Write([]byte{0})
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// appendFolded appends b to v with every run of white space as one space,
// up to maxDigestValue bytes.
func appendFolded(v, b []byte) []byte {
	for _, c := range b {
		if len(v) >= maxDigestValue {
			break
		}
		if c == ' ' || c == '\t' {
			if len(v) > 0 && v[len(v)-1] == ' ' {
				continue
			}
			c = ' '
		}
		v = append(v, c)
	}
	return v
}
