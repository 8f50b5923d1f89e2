package fetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/uidl"
)

// volatileFields are the header fields the identity leaves out: a POP3
// server that stores mail in an mbox (or a mail reader sharing that mbox)
// adds or rewrites them as messages are read, so they differ between two
// retrievals of one message. mailutils pop3d adds X-IMAPbase, X-UID and
// Status at the QUIT after a RETR; dovecot's mbox storage keeps X-IMAPbase,
// X-IMAP, X-UID, X-Keywords, Status, X-Status and Content-Length; qpopper
// and others add X-UIDL; UW tools and Mozilla write Lines, X-Mozilla-Status,
// X-Mozilla-Status2 and X-Mozilla-Keys. Every other field counts,
// including those a provider adds per recipient (Delivered-To,
// X-Original-To, Envelope-To), which are all that tell apart the copies
// of a multidrop message stored once per recipient. Lower case.
var volatileFields = map[string]bool{
	"status": true, "x-status": true, "x-keywords": true, "x-uid": true,
	"x-imapbase": true, "x-imap": true, "x-uidl": true, "content-length": true,
	"lines": true, "x-mozilla-status": true, "x-mozilla-status2": true,
	"x-mozilla-keys": true,
}

// maxFieldName bounds a field name: a longer "name:" is hashed as a line
// that is not a field, so a hostile header costs no more than its length.
const maxFieldName = 256

// identityOf returns the identity of the retrieved message raw, listed
// with LIST size size: the digest of its header (headerDigest) followed
// by the digest of its body (bodyDigest), 64 hex digits. The whole header
// counts, less the fields mbox servers rewrite (volatileFields): a few
// fields do not tell messages apart, as popa3d's UID is a digest of Date,
// Message-ID and Received and solid-pop3d's of Subject, Date and
// Received, so a new message that repeats those fields (a monitoring
// script's mail, a resend, a provider's per-recipient copy that differs
// only in Delivered-To) gets the UID of an old one. The size is recorded
// as a hint only (keep mode takes an unchanged size as the same message);
// it never decides that a message is the same or a new one, because mbox
// servers rewrite a message's header as it is read (mailutils adds
// X-IMAPbase, X-UID and Status at QUIT), which changes its size but
// neither its digested fields nor its body.
//
// Until popfetch 0.x (journals written before this rule; the journal
// format did not change) the header digest covered Message-ID, Date,
// From, To, Subject and the top Received alone. Such a recorded digest
// matches no copy now: delete mode delivers the message again (once) and
// records its new identity; keep mode takes an unchanged size as the same
// message and delivers one of another size again, once.
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

// ourCopy checks that the Maildir file deliver finds committed for the
// intent path is the copy of the message of identity id (the identity
// its intent recorded) that popfetch wrote: deliver.ReadCommitted checks
// the size the copy's name carries, and the body of the file must have
// the body digest of id. The body of a Maildir copy is the retrieved
// body with LF line ends (deliver.Open), which bodyDigest reads as it
// reads CRLF. What Open changes beyond line ends cannot be shown to be
// the copy: a bare CR in the body (Open turns it into LF), a missing
// final line end (Open adds one; a POP3 reply always ends the message's
// last line). Nor can an intent without a full identity (written by an
// older popfetch). Each is fetched again, a duplicate at worst.
func ourCopy(path string, id uidl.Identity) error {
	if len(id.Digest) != fullDigestLen {
		return errors.New("no message identity recorded with the intent")
	}
	content, err := deliver.ReadCommitted(path)
	if err != nil {
		return err
	}
	want := id.Digest[fullDigestLen/2:]
	if bodyDigest(content) != want {
		return errors.New("its body is not the message's")
	}
	return nil
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
		writeLF(h, body)
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

// headerDigest is a digest of the header section of raw: everything up to
// the first empty line (RFC 5322 §2.1), CRLF or bare LF alike, except the
// volatileFields. Field names are read case-insensitively (and an
// obsolete space before the colon, §4.5.3, ignored), folded lines are
// unfolded (§2.2.3) and runs of white space collapsed to one space, so a
// server that stores the header with other line ends or folding gives the
// same digest; fields keep their order and repeats. A line that is not a
// field is hashed as it is. A message without the empty line has no
// header/body boundary: its digest is that of the whole message, every
// CRLF read as LF. It streams over raw (no copy, no bound on the header
// needed: the cost is linear in the message, which is bounded by
// pop3.MaxMessageSize) and is the first 128 bits of SHA-256, in hex.
func headerDigest(raw []byte) string {
	h := sha256.New()
	if _, ok := bodyOf(raw); !ok {
		h.Write([]byte("whole\n"))
		writeLF(h, raw)
		return hex.EncodeToString(h.Sum(nil)[:16])
	}
	h.Write([]byte("header\n"))
	open := false // a field is being written (its value continues on folded lines)
	skip := false // the field being read is volatile: its folded lines are skipped
	var v value   // the value being written
	end := func() {
		if open {
			h.Write([]byte{'\n'})
		}
		open, v = false, value{}
	}
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
			switch {
			case skip:
			case open:
				v.write(h, line) // starts with white space
			default:
				// A continuation before any field: not a field.
				h.Write([]byte{0})
				h.Write(line)
				h.Write([]byte{'\n'})
			}
			continue
		}
		end()
		name, value, ok := bytes.Cut(line, []byte(":"))
		name = bytes.TrimRight(name, " \t")
		if !ok || len(name) == 0 || len(name) > maxFieldName || bytes.ContainsAny(name, " \t") {
			// Not a field (garbage, an mbox "From " line): hashed
			// as it is, so two messages that differ there differ.
			skip = false
			h.Write([]byte{0})
			h.Write(line)
			h.Write([]byte{'\n'})
			continue
		}
		lower := bytes.ToLower(name)
		if skip = volatileFields[string(lower)]; skip {
			continue
		}
		h.Write(lower)
		h.Write([]byte{':'})
		open = true
		v.write(h, value)
	}
	end()
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// value writes a field's value, unfolded, with every run of white space
// as one space and none before or after it: a space is written only
// between two words, so a value folded after its colon, or with
// trailing blanks, digests as the same value written on one line.
type value struct {
	started bool // a word was written
	space   bool // white space is pending
}

// write writes the part b of the value (a line's, or a folded line's).
// A folded line starts with white space, so the line break is read as
// white space, as unfolding makes it (RFC 5322 §2.2.3).
func (v *value) write(w io.Writer, b []byte) {
	for len(b) > 0 {
		i := bytes.IndexAny(b, " \t")
		if i < 0 {
			i = len(b)
		}
		if i > 0 {
			if v.space && v.started {
				w.Write([]byte{' '})
			}
			w.Write(b[:i])
			v.started, v.space = true, false
		}
		b = b[i:]
		if n := len(b) - len(bytes.TrimLeft(b, " \t")); n > 0 {
			v.space = true
			b = b[n:]
		}
	}
}

// writeLF writes raw to w with every CRLF as LF.
func writeLF(w io.Writer, raw []byte) {
	for len(raw) > 0 {
		i := bytes.Index(raw, []byte("\r\n"))
		if i < 0 {
			w.Write(raw)
			return
		}
		w.Write(raw[:i])
		w.Write([]byte{'\n'})
		raw = raw[i+2:]
	}
}
