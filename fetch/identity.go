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
	// same byte whether the header came from TOP or from RETR, so the
	// digest stays deterministic.
	maxDigestHeader = 1 << 20
	// maxDigestValue bounds one field's unfolded value.
	maxDigestValue = 8 << 10
)

// identityOf returns the identity of a message of LIST size size whose
// header section (the whole message, or a `TOP n 0` reply) is raw.
func identityOf(size int64, raw []byte) uidl.Identity {
	return uidl.Identity{Size: size, Digest: headerDigest(raw)}
}

// headerDigest is a digest of the first occurrence of each of digestFields
// in the header section of raw: up to the first empty line (RFC 5322
// §2.1), CRLF or bare LF alike, field names case-insensitive, folded lines
// unfolded (§2.2.3) and runs of white space collapsed to one space, so
// that the same header gives the same digest from `TOP n 0` as from the
// retrieved message. It is the first 128 bits of SHA-256, in hex.
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
