package fetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

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

// volatile reports whether the lower-case field name is one of
// volatileFields: a switch, which needs no hash of the name as the map
// does (every field of every message is looked up).
func volatile(name []byte) bool {
	switch string(name) {
	case "status", "x-status", "x-keywords", "x-uid", "x-imapbase", "x-imap",
		"x-uidl", "content-length", "lines", "x-mozilla-status",
		"x-mozilla-status2", "x-mozilla-keys":
		return true
	}
	return false
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
// message and delivers one of another size again, once. Likewise the body
// digest read a bare CR as itself until it was made to read it as a line
// end (as a Maildir copy has it): a message with a bare CR in its body
// recorded before that, and still on the server, is fetched again once in
// delete mode.
func identityOf(size int64, raw []byte) uidl.Identity {
	d := newDigester()
	defer d.free()
	d.Write(raw)
	return d.identity(size)
}

// messageIdentity is identityOf for m, read as a stream (a spooled
// message is never held whole in memory); an error is a failure to read
// it back.
func messageIdentity(size int64, m *deliver.Message) (uidl.Identity, error) {
	if m.Spool == nil {
		return identityOf(size, m.Raw), nil
	}
	d := newDigester()
	defer d.free()
	if _, err := m.WriteTo(d); err != nil {
		return uidl.Identity{}, fmt.Errorf("identity of uid %s: read the message: %w", m.UID, err)
	}
	return d.identity(size), nil
}

// readFrom writes all of r to d, through a pooled buffer.
func (d *digester) readFrom(r io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	_, err := io.CopyBuffer(d, r, *bp)
	return err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

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
// its intent recorded) that popfetch wrote: deliver.OpenCommitted checks
// the size the copy's name carries, and the body of the file must have
// the body digest of id. The body of a Maildir copy is the retrieved
// body with LF line ends (deliver.Open), which bodyDigest reads as it
// reads CRLF, and a bare CR in the body, which Open turns into LF, is
// read as LF by bodyDigest too. What Open changes beyond that cannot be
// shown to be the copy: a missing final line end (Open adds one; a POP3
// reply always ends the message's last line), a bare CR in the header
// that Open's LF makes into the empty line ending it. Nor can an intent
// without a full identity (written by an older popfetch, or by one whose
// body digest read a bare CR as itself). Each is fetched again, a
// duplicate at worst. The file is read as a stream, never whole into
// memory.
func ourCopy(path string, id uidl.Identity) error {
	if len(id.Digest) != fullDigestLen {
		return errors.New("no message identity recorded with the intent")
	}
	f, err := deliver.OpenCommitted(path)
	if err != nil {
		return err
	}
	defer f.Close()
	d := newDigester()
	defer d.free()
	if err := d.readFrom(f); err != nil {
		return err
	}
	want := id.Digest[fullDigestLen/2:]
	if _, body := d.sums(); body != want {
		return errors.New("its body is not the message's")
	}
	return nil
}

// bodyDigest is a digest of the body of raw: everything after the empty
// line that ends the header section (RFC 5322 §2.1), found as headerDigest
// finds it, with every CRLF and every bare CR read as LF, so that a server
// that stores messages with LF line ends and one that stores CRLF agree,
// and a Maildir copy (deliver.Open) has the body digest of its message. A message
// without that empty line has no body, which digests differently from an
// empty one. It is the first 128 bits of SHA-256, in hex.
func bodyDigest(raw []byte) string {
	d := newDigester()
	defer d.free()
	d.Write(raw)
	_, body := d.sums()
	return body
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
// CRLF read as LF. It is the first 128 bits of SHA-256, in hex.
func headerDigest(raw []byte) string {
	d := newDigester()
	defer d.free()
	d.Write(raw)
	head, _ := d.sums()
	return head
}

// digester computes headerDigest and bodyDigest of a message written to
// it in pieces of any size, in one pass and bounded memory (a field name
// at most): the cost is linear in the message, which is bounded by
// pop3.MaxMessageSize, and no bound on the header is needed. Until the
// empty line that ends the header it feeds both the digest of the whole
// message (used if there is no such line) and that of the header's
// fields; after it, the body's.
//
// Digesters are pooled (newDigester, free): one runs for every message,
// and its hashes and buffers are what it allocates.
type digester struct {
	whole  lfHash // "whole\n", the message with CRLF as LF
	inBody bool   // the empty line was seen
	body   lfHash // 1, the body with CRLF and bare CR as LF

	// The header's fields, line by line; each line's final CR (before
	// its LF) is dropped, as headerDigest's line reader drops it.
	h    *gather
	cr   bool     // a CR ended the last piece: the next byte says whether it ends the line
	mode lineMode // what the current line is
	open bool     // a field is being written (its value continues on folded lines)
	skip bool     // the field being read is volatile: its folded lines are skipped
	v    value    // the value being written
	name []byte   // the current line's field name so far (lineName, lineSpace)
	alt  *gather  // lineSpace: h with the line written as not a field

	// What reset starts from.
	head              gather // h's own
	wholeH, bodyH     hash.Hash
	wholeBuf, bodyBuf []byte // whole.buf, then body.buf
	sum               [sha256.Size]byte
}

// lineMode says how the digester reads the rest of the current line.
type lineMode int

const (
	lineNew   lineMode = iota // nothing of the line read yet
	lineName                  // a field name so far
	lineSpace                 // a name, then white space: a field if ':' follows
	lineValue                 // a field's value (or its folded line)
	lineRaw                   // not a field: hashed as it is
	lineSkip                  // a volatile field's line
)

var digesters = sync.Pool{New: func() any {
	return &digester{
		head:     gather{h: sha256.New(), buf: make([]byte, 0, 4<<10)},
		wholeH:   sha256.New(),
		bodyH:    sha256.New(),
		wholeBuf: make([]byte, 0, 8<<10),
		bodyBuf:  make([]byte, 0, 8<<10),
	}
}}

// newDigester returns a digester with nothing written; free returns it.
func newDigester() *digester {
	d := digesters.Get().(*digester)
	d.reset()
	return d
}

// free returns d to the pool; d must not be used after.
func (d *digester) free() { digesters.Put(d) }

// reset makes d a digester with nothing written, keeping its hashes and
// buffers.
func (d *digester) reset() {
	d.head.h.Reset()
	d.head.buf = d.head.buf[:0]
	d.wholeH.Reset()
	d.bodyH.Reset()
	d.whole = lfHash{h: d.wholeH, buf: d.wholeBuf[:0]}
	d.body = lfHash{}
	d.inBody = false
	d.h, d.alt = &d.head, nil
	d.cr, d.mode, d.open, d.skip, d.v = false, lineNew, false, false, value{}
	d.name = d.name[:0]
	d.whole.h.Write(wholeTag)
	d.h.Write(headerTag)
}

// Write feeds the next piece of the message; it never fails.
func (d *digester) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !d.inBody {
		// Up to and including the next LF: one line, or its part.
		i := bytes.IndexByte(p, '\n')
		piece := p
		if i >= 0 {
			piece = p[:i+1]
		}
		p = p[len(piece):]
		d.whole.write(piece)
		d.headerPiece(piece, i >= 0)
	}
	if len(p) > 0 {
		d.body.write(p)
	}
	return n, nil
}

// headerPiece reads piece, a part of a header line; eol: it ends with the
// line's LF.
func (d *digester) headerPiece(piece []byte, eol bool) {
	if eol {
		piece = piece[:len(piece)-1]
	}
	if d.cr {
		d.cr = false
		if len(piece) > 0 || !eol {
			d.lineData(cr) // not the line's last byte
		}
	}
	if n := len(piece); n > 0 && piece[n-1] == '\r' {
		piece = piece[:n-1]
		d.cr = !eol // at eol the CR ends the line and is dropped
	}
	if len(piece) > 0 {
		d.lineData(piece)
	}
	if eol {
		d.lineEnd()
	}
}

// lineData reads bytes of the current line.
func (d *digester) lineData(p []byte) {
	for len(p) > 0 {
		switch d.mode {
		case lineNew:
			if p[0] == ' ' || p[0] == '\t' {
				switch {
				case d.skip:
					d.mode = lineSkip
				case d.open:
					d.mode = lineValue // starts with white space
				default:
					// A continuation before any field: not a field.
					d.h.Write(zero)
					d.mode = lineRaw
				}
				continue
			}
			d.end()
			d.name = d.name[:0]
			d.mode = lineName
		case lineName:
			i := nameEnd(p)
			seg := p
			if i >= 0 {
				seg = p[:i]
			}
			if len(d.name)+len(seg) > maxFieldName {
				d.notField()
				continue // p is written as it is
			}
			d.name = append(d.name, seg...)
			p = p[len(seg):]
			if i < 0 {
				return
			}
			if p[0] != ':' {
				// White space after the name: a field only if
				// nothing but white space comes before the colon.
				d.alt = d.h.clone()
				d.alt.Write(zero)
				d.alt.Write(d.name)
				d.mode = lineSpace
				continue
			}
			if len(d.name) == 0 {
				d.notField()
				continue
			}
			d.field()
			p = p[1:]
		case lineSpace:
			n := len(p) - len(bytes.TrimLeft(p, " \t"))
			d.alt.Write(p[:n])
			p = p[n:]
			if len(p) == 0 {
				return
			}
			if p[0] == ':' {
				d.alt = nil
				d.field()
				p = p[1:]
				continue
			}
			d.h, d.alt = d.alt, nil
			d.skip = false
			d.mode = lineRaw
		case lineValue:
			d.v.write(d.h, p)
			return
		case lineRaw:
			d.h.Write(p)
			return
		case lineSkip:
			return
		}
	}
}

// notField makes the line read so far (a name) one that is not a field
// (garbage, an mbox "From " line): hashed as it is, so two messages that
// differ there differ.
func (d *digester) notField() {
	d.skip = false
	d.h.Write(zero)
	d.h.Write(d.name)
	d.mode = lineRaw
}

// field starts the field named d.name; its value follows.
func (d *digester) field() {
	lower := asciiLower(d.name)
	if d.skip = volatile(lower); d.skip {
		d.mode = lineSkip
		return
	}
	d.h.Write(lower)
	d.h.Write(colon)
	d.open = true
	d.mode = lineValue
}

// lineEnd ends the current line; an empty one ends the header.
func (d *digester) lineEnd() {
	switch d.mode {
	case lineNew:
		d.end()
		d.inBody = true
		// The whole message's digest is not needed: its buffer serves
		// the body.
		d.body = lfHash{h: d.bodyH, buf: d.bodyBuf[:0], eol: true}
		d.whole.buf = nil
		d.body.h.Write(bodyTag)
		return
	case lineName:
		d.notField()
		d.h.Write(nl)
	case lineSpace:
		d.h, d.alt = d.alt, nil
		d.skip = false
		d.h.Write(nl)
	case lineRaw:
		d.h.Write(nl)
	}
	d.mode = lineNew
}

// end ends the field being written.
func (d *digester) end() {
	if d.open {
		d.h.Write(nl)
	}
	d.open, d.v = false, value{}
}

// noBody is the body digest of a message without a body: of the byte 0.
var noBody = sha256.Sum256([]byte{0})

// hexSums writes headerDigest and bodyDigest of what was written to dst,
// 32 hex digits each.
func (d *digester) hexSums(dst *[fullDigestLen]byte) {
	sum := d.sum[:] // a local array would escape to the heap through hash.Hash
	if !d.inBody {
		d.whole.flush()
		hex.Encode(dst[:32], d.whole.h.Sum(sum[:0])[:16])
		hex.Encode(dst[32:], noBody[:16])
		return
	}
	d.body.flush()
	d.h.flush()
	hex.Encode(dst[:32], d.h.h.Sum(sum[:0])[:16])
	hex.Encode(dst[32:], d.body.h.Sum(sum[:0])[:16])
}

// sums returns headerDigest and bodyDigest of what was written.
func (d *digester) sums() (head, body string) {
	var b [fullDigestLen]byte
	d.hexSums(&b)
	return string(b[:32]), string(b[32:])
}

// identity returns identityOf's identity of what was written.
func (d *digester) identity(size int64) uidl.Identity {
	var b [fullDigestLen]byte
	d.hexSums(&b)
	return uidl.Identity{Size: size, Digest: string(b[:])}
}

// gather writes what is written to it to h, gathered in buf: one hash
// write per few kilobytes rather than per word. Call flush before reading
// h.
type gather struct {
	h   hash.Hash
	buf []byte
}

func (g *gather) Write(b []byte) (int, error) {
	if len(g.buf)+len(b) > cap(g.buf) {
		g.flush()
		if len(b) > cap(g.buf) {
			g.h.Write(b)
			return len(b), nil
		}
	}
	g.buf = append(g.buf, b...)
	return len(b), nil
}

func (g *gather) flush() {
	g.h.Write(g.buf)
	g.buf = g.buf[:0]
}

// clone returns a gather that has had written what g has, on its own
// hash and buffer (an allocation: only for a field name followed by
// white space).
func (g *gather) clone() *gather {
	g.flush()
	h, _ := g.h.(hash.Cloner).Clone()
	return &gather{h: h, buf: make([]byte, 0, 1<<10)}
}

// nameEnd returns the index of the first ':', space or tab in p, or -1.
func nameEnd(p []byte) int {
	for i, c := range p {
		if c == ':' || c == ' ' || c == '\t' {
			return i
		}
	}
	return -1
}

// asciiLower lower-cases b in place when it is all ASCII and returns it;
// otherwise it returns bytes.ToLower(b), which maps what is not valid
// UTF-8 as the digests always have.
func asciiLower(b []byte) []byte {
	for _, c := range b {
		if c >= 0x80 {
			return bytes.ToLower(b)
		}
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}

// lfHash writes pieces of a text to h with every CRLF as LF, gathering
// them in buf: one hash write per few kilobytes rather than per line.
// With eol a bare CR is written as LF too, as deliver.Open writes a
// Maildir copy (the body's digest, so that ourCopy knows the copy of a
// body with a bare CR in it).
type lfHash struct {
	h   hash.Hash
	cr  bool // the last piece ended in a CR not yet written
	eol bool // a bare CR is a line end
	buf []byte
}

func (w *lfHash) write(p []byte) {
	if len(p) == 0 {
		return
	}
	if w.buf == nil {
		w.buf = make([]byte, 0, 8<<10)
	}
	if w.cr {
		w.cr = false
		if p[0] != '\n' {
			w.add(w.bareCR())
		}
	}
	if p[len(p)-1] == '\r' {
		w.cr = true
		p = p[:len(p)-1]
	}
	if w.eol {
		w.writeEOL(p)
		return
	}
	for len(p) > 0 {
		i := bytes.Index(p, crlf)
		if i < 0 {
			w.add(p)
			return
		}
		w.add(p[:i])
		w.add(nl)
		p = p[i+2:]
	}
}

// writeEOL is write for eol, for p without a final CR: every CR is a
// line end, the LF after it part of the same one.
func (w *lfHash) writeEOL(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			w.add(p)
			return
		}
		w.add(p[:i])
		w.add(nl)
		p = p[i+1:]
		if len(p) > 0 && p[0] == '\n' {
			p = p[1:]
		}
	}
}

// bareCR is what a CR not followed by LF is written as.
func (w *lfHash) bareCR() []byte {
	if w.eol {
		return nl
	}
	return cr
}

// add gathers b.
func (w *lfHash) add(b []byte) {
	if len(w.buf)+len(b) > cap(w.buf) {
		w.h.Write(w.buf)
		w.buf = w.buf[:0]
		if len(b) > cap(w.buf) {
			w.h.Write(b)
			return
		}
	}
	w.buf = append(w.buf, b...)
}

// flush writes what is gathered, and a final CR.
func (w *lfHash) flush() {
	if w.cr {
		w.add(w.bareCR())
		w.cr = false
	}
	w.h.Write(w.buf)
	w.buf = w.buf[:0]
}

var (
	// What each digest starts with (package variables: a conversion in
	// the call would allocate for every message).
	wholeTag  = []byte("whole\n")
	headerTag = []byte("header\n")
	bodyTag   = []byte{1}

	cr    = []byte{'\r'}
	nl    = []byte{'\n'}
	crlf  = []byte("\r\n")
	zero  = []byte{0}
	colon = []byte{':'}
	space = []byte{' '}
)

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
		// Words and the single spaces between them go in one write:
		// they are written as they are.
		i := 0
		for i < len(b) {
			if c := b[i]; c == '\t' || c == ' ' && (i == 0 || i+1 == len(b) || b[i+1] == ' ' || b[i+1] == '\t') {
				break
			}
			i++
		}
		if i > 0 {
			if v.space && v.started {
				w.Write(space)
			}
			w.Write(b[:i])
			v.started, v.space = true, false
		}
		b = b[i:]
		n := 0
		for n < len(b) && (b[n] == ' ' || b[n] == '\t') {
			n++
		}
		if n > 0 {
			v.space = true
			b = b[n:]
		}
	}
}
