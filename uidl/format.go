package uidl

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// header is the first line of every journal. The number is the format
// version: a reader refuses versions it does not know rather than guess.
// Version 2 added the message identity to "+" and "i" records; a version 1
// journal is still read, and Open rewrites it as the current version (by
// compaction) before anything is appended, so an older popfetch refuses
// the upgraded file instead of misreading it. Version 3 is version 2 whose
// "+" records carry the time of their delivery; in a version 2 journal
// they may carry the UID's first-seen time (see doc.go).
const header = "popfetch-uidl 3"

// headerV1 is the header of journals written before identities existed.
const headerV1 = "popfetch-uidl 1"

// headerV2 is the header of journals whose "+" records may carry the
// UID's first-seen time instead of the delivery's.
const headerV2 = "popfetch-uidl 2"

const (
	maxUID  = 70  // RFC 1939 §7: "1 to 70 characters"
	maxRcpt = 320 // 64 local part + '@' + 255 domain, rounded up

	// MaxRecipients bounds the "r" records of one UID, so the duplicate
	// check stays cheap and a hostile journal cannot make replay quadratic
	// (the multidrop router caps recipients far lower: CVE-2002-1365).
	MaxRecipients = 1000

	// maxLine bounds a journal line: kind, uid, time, rcpt or intent,
	// identity and separators (1+1+70+1+20+1+400+1+13+1+64 = 573). Longer
	// lines are corrupt by construction.
	maxLine = 640

	// MaxIdentities bounds the identities kept for one UID (a server that
	// reuses a UID for many messages in a row): the oldest is dropped, so
	// at worst a message still on the server under that UID is fetched
	// again (a duplicate, never a loss).
	MaxIdentities = 32

	// maxWrite bounds one write(2) to the journal (Retain's batch of "-"
	// records; a bigger batch compacts instead). Only the last write can be
	// unsynced after a crash, so a zero-filled region (XFS, ext4
	// data=writeback: size extended, data blocks not yet written) can only
	// lie in the last maxWrite bytes. Replay uses that to tell a crash tail
	// from real corruption.
	maxWrite = 64 << 10
)

// ValidUID reports whether uid is a UID a POP3 server may send: 1 to 70
// characters in the range 0x21 to 0x7E (RFC 1939 §7, "UIDL"). Anything else
// is refused everywhere, so it can never split a journal line.
func ValidUID(uid string) bool { return printable(uid, maxUID) }

// printable reports whether s is 1 to max bytes in the range 0x21 to 0x7E:
// one record field, without spaces, safe to print.
func printable(s string, max int) bool {
	if len(s) < 1 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// ValidRecipient reports whether rcpt can be stored in an "r" record: 1 to
// 320 bytes of valid UTF-8 (RFC 6532 addresses are allowed) without
// whitespace or control characters, so the line stays one space-separated
// field per value and safe to print.
func ValidRecipient(rcpt string) bool {
	if len(rcpt) < 1 || len(rcpt) > maxRcpt {
		return false
	}
	for i := 0; i < len(rcpt); {
		c := rcpt[i]
		if c < utf8.RuneSelf {
			if c < 0x21 || c > 0x7E {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(rcpt[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) || !unicode.IsPrint(r) {
			return false
		}
		i += n
	}
	return true
}

// Identity is what tells a message apart beyond its UID, which some servers
// reuse (for a new message after a deletion, or for identical messages at
// once): the size the server lists for it (a hint), and a digest that
// package fetch computes from the retrieved copy (its header fields and its
// body, see doc.go). The zero Identity means "unknown": a record written
// before identities existed (format version 1).
type Identity struct {
	Size   int64  // the server's LIST size, in octets
	Digest string // lower-case hex, 1–64 digits
}

// Known reports whether id holds an identity.
func (id Identity) Known() bool { return id.Digest != "" }

// maxSize bounds a recorded size (13 decimal digits, about 9 TB).
const maxSize = 1e13 - 1

// validIdentity reports whether id can be stored in a record.
func validIdentity(id Identity) bool {
	if id.Size < 0 || id.Size > maxSize || len(id.Digest) < 1 || len(id.Digest) > 64 {
		return false
	}
	for i := 0; i < len(id.Digest); i++ {
		if c := id.Digest[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// entry is what the store knows about one UID.
type entry struct {
	first     int64      // unix seconds of the first record since the UID was last forgotten
	delivered bool       // "+": delivered to every recipient
	ids       []Identity // "+" with identity: the messages delivered under this UID, oldest first
	noted     bool       // "n": too large, left on the server, already logged
	givenUp   bool       // "p": cannot be retrieved, left on the server, already logged
	// givenUpSize is the LIST size of the message given up (format 2),
	// or -1: a reused UID with another size is another message.
	givenUpSize int64
	rcpts       []string // "r": recipients done while not yet delivered
	// rcptsID is the identity of the message rcpts were done for (zero:
	// unknown, format 1). An "r" record of another identity starts the
	// list again: a server that reuses the UID lists another message,
	// whose recipients are all still to be served.
	rcptsID   Identity
	intent    string   // "i": the file a delivery in progress is about to create (escaped)
	intentID  Identity // "i" with identity: the message that delivery is of
	refused   int      // "d": consecutive polls whose DELE the server refused
	refusedAt int64    // "d": unix seconds of the last refusal (or acceptance)
	// retrFails counts the polls in a row whose RETR of the UID failed
	// ("f"); retrFailAt is when the last one did (or succeeded).
	retrFails  int
	retrFailAt int64
	// deleted is set by a "d" record with count 0: the server accepted
	// DELE of the message last delivered under the UID (it may still be
	// there if the QUIT failed); a "+" of a new identity clears it.
	deleted bool
	// idAt holds, for each of ids, the time of the "+" record that
	// added it: when that message was delivered (see DeliveredAt).
	idAt []int64
	// deliveredAt is the time of the first "+" record since the UID
	// was last forgotten.
	deliveredAt int64
}

// keepsFirst reports whether compaction writes a "+" without identity at
// the UID's first-seen time ahead of its identities: their records carry
// the times of their deliveries, and the UID was seen at another time
// before (partial multidrop progress, an intent), which no other record
// it keeps (a note, a give-up) carries.
func (e *entry) keepsFirst() bool {
	return e.delivered && len(e.ids) > 0 && !e.noted && !e.givenUp && e.first != e.idAt[0]
}

// liveRecords is how many lines compaction writes for e.
func (e *entry) liveRecords() int {
	n := 0
	if e.noted {
		n++
	}
	if e.givenUp {
		n++
	}
	if e.refused > 0 || e.deleted {
		n++
	}
	if e.retrFails > 0 {
		n++
	}
	if e.delivered {
		n += max(1, len(e.ids))
		if e.keepsFirst() {
			n++
		}
	} else {
		n += len(e.rcpts)
		if e.intent != "" {
			n++
		}
	}
	return n
}

// state is the replayed content of a journal.
type state struct {
	m         map[string]entry
	delivered int // number of entries with delivered set
	records   int // record lines in the journal (header excluded)
}

// live is the number of records a compaction would write.
func (st *state) live() int {
	n := 0
	for _, e := range st.m {
		n += e.liveRecords()
	}
	return n
}

// apply changes st by one record. It is the single definition of the record
// semantics, shared by replay and by the Store's mutations. id is the
// identity a "+" or "i" record carries (zero if none).
func (st *state) apply(kind byte, uid string, t int64, rcpt string, id Identity) {
	e, ok := st.m[uid]
	if kind == '-' {
		if ok {
			if e.delivered {
				st.delivered--
			}
			delete(st.m, uid)
		}
		return
	}
	if kind == 'd' && !ok {
		// DELE is sent only for a recorded UID; a refusal of anything
		// else is meaningless, and would make an entry whose
		// first-seen time compaction cannot keep.
		return
	}
	if kind == 'f' && !ok && rcpt == "0" {
		return // nothing to reset
	}
	if !ok {
		e.first = t
	}
	switch kind {
	case '+':
		if !e.delivered {
			st.delivered++
			e.deliveredAt = t
		}
		e.delivered = true
		e.rcpts = nil // partial progress is subsumed by full delivery
		e.rcptsID = Identity{}
		e.intent = ""
		e.intentID = Identity{}
		// An identity already held is added again only by AddCopies
		// (record writes no other duplicate): identical copies listed
		// under the UID at once.
		if id.Known() {
			if !slices.Contains(e.ids, id) {
				e.deleted = false // a new message under the UID
			}
			if len(e.ids) >= MaxIdentities {
				e.ids = slices.Delete(slices.Clone(e.ids), 0, 1)
				e.idAt = slices.Delete(slices.Clone(e.idAt), 0, 1)
			}
			e.ids = append(slices.Clip(e.ids), id)
			e.idAt = append(slices.Clip(e.idAt), t)
		}
	case 'n':
		e.noted = true
	case 'p':
		// id.Size is the size of the message given up, -1 if unknown.
		e.givenUp = true
		e.givenUpSize = id.Size
		// Its failures led here; a message of another size listed
		// under the UID later counts from zero.
		e.retrFails, e.retrFailAt = 0, 0
	case 'r':
		if !e.delivered && id.Known() && id != e.rcptsID {
			e.rcpts, e.rcptsID = nil, id
		}
		if !e.delivered && !slices.Contains(e.rcpts, rcpt) {
			e.rcpts = append(slices.Clip(e.rcpts), rcpt)
		}
	case 'i':
		if !e.delivered {
			e.intent = rcpt
			e.intentID = id
		}
	case 'd':
		// rcpt holds the count, validated by parseRecord; t is the
		// time of the refusal, not a first-seen time.
		e.refused, _ = strconv.Atoi(rcpt)
		e.refusedAt = t
		e.deleted = e.refused == 0
	case 'f':
		// rcpt holds the count, validated by parseRecord; t is the
		// time of the last failure (or success).
		if e.retrFails > 0 && e.liveRecords() == 1 {
			// Only failures keep the UID, so compaction writes it back
			// as one "f" record with the last failure's time: the
			// UID's first-seen time must follow that time, or a
			// compaction would change it.
			e.first = t
		}
		e.retrFails, _ = strconv.Atoi(rcpt)
		e.retrFailAt = t
		if e.retrFails == 0 && e.liveRecords() == 0 {
			// Only the failures kept the UID: it is unknown again.
			delete(st.m, uid)
			return
		}
	}
	st.m[uid] = e
}

// ErrCorrupt is wrapped by Open's error when a journal line other than a
// torn tail cannot be parsed.
var ErrCorrupt = errors.New("uidl: corrupt journal")

// replayResult is what replay found besides the state.
type replayResult struct {
	good      int64 // length of the valid prefix; the file is truncated to it
	torn      bool  // a torn tail (after good) must be cut off
	hasHeader bool  // false only for an empty (or fully torn) file
	lines     int64 // complete lines in the valid prefix, header included
	version   int   // the header's format version (1 to 3) when hasHeader
}

// replay parses a journal of size bytes read from r. name is used in errors.
//
// Policy (see doc.go): a final line without '\n' is a torn write and is
// dropped; so is a bad line holding a NUL byte that starts in the last
// maxWrite bytes (a zero-filled, never-synced tail) together with everything
// after it. Any other bad line makes replay fail with an error naming
// file:line, because silently dropping state would refetch mail.
func replay(r io.Reader, size int64, name string) (*state, replayResult, error) {
	// Size the map from the file (a compact record is ~20-30 bytes) so a
	// 100k-UID replay does not rehash its way up; capped, as the hint is
	// only an optimisation.
	st := &state{m: make(map[string]entry, min(size/32, 1<<20))}
	var res replayResult
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	for lineNo := 1; ; lineNo++ {
		line, n, complete, hasNUL, err := readLine(br)
		if err != nil {
			return nil, res, fmt.Errorf("uidl: read %s: %w", name, err)
		}
		if n == 0 {
			break // EOF
		}
		if !complete {
			// Torn write: the crash came before the final '\n'.
			res.torn = true
			break
		}
		var perr error
		if lineNo == 1 {
			res.version, perr = checkHeader(line)
			res.hasHeader = perr == nil
		} else {
			perr = parseRecord(st, line, res.version)
		}
		if perr != nil {
			if hasNUL && off >= size-maxWrite {
				res.torn = true
				break
			}
			return nil, res, fmt.Errorf("%w: %s:%d: %w", ErrCorrupt, name, lineNo, perr)
		}
		off += n
		res.lines++
	}
	res.good = off
	return st, res, nil
}

var errTooLong = errors.New("line too long")

// readLine returns the next line without its '\n', the bytes consumed, whether
// the line was terminated, and whether it held a NUL byte. A line that spans
// several buffers is kept only up to maxLine+1 bytes: enough to be refused as
// too long, without letting a hostile file grow memory.
func readLine(br *bufio.Reader) (line []byte, n int64, complete, hasNUL bool, err error) {
	var long []byte
	spanned := false
	for {
		chunk, err := br.ReadSlice('\n')
		n += int64(len(chunk))
		hasNUL = hasNUL || bytes.IndexByte(chunk, 0) >= 0
		switch {
		case err == nil:
			chunk = chunk[:len(chunk)-1]
			if !spanned {
				return chunk, n, true, hasNUL, nil // the common case: no copy
			}
			return appendCapped(long, chunk), n, true, hasNUL, nil
		case errors.Is(err, bufio.ErrBufferFull):
			spanned = true
			long = appendCapped(long, chunk)
		case errors.Is(err, io.EOF):
			return appendCapped(long, chunk), n, false, hasNUL, nil
		default:
			return nil, n, false, hasNUL, err
		}
	}
}

func appendCapped(dst, src []byte) []byte {
	return append(dst, src[:min(len(src), max(0, maxLine+1-len(dst)))]...)
}

// checkHeader returns the format version of a header line. A version it
// does not know is refused: a newer popfetch may have written records this
// one would misread.
func checkHeader(line []byte) (int, error) {
	switch string(line) {
	case header:
		return 3, nil
	case headerV2:
		return 2, nil
	case headerV1:
		return 1, nil
	}
	if bytes.HasPrefix(line, []byte("popfetch-uidl ")) {
		return 0, fmt.Errorf("unsupported format %q (want %q, %q or %q; written by a newer popfetch?)", line, header, headerV2, headerV1)
	}
	return 0, fmt.Errorf("missing header %q", header)
}

// parseRecord parses one record line of a journal of the given format
// version and applies it to st.
func parseRecord(st *state, line []byte, version int) error {
	if len(line) > maxLine {
		return errTooLong
	}
	if len(line) < 3 || line[1] != ' ' {
		return fmt.Errorf("malformed record %q", line)
	}
	kind := line[0]
	// want lists the field counts (after the kind) a record may have;
	// version 2 adds "size digest" to "+" and "i".
	var want []int
	switch kind {
	case '-':
		want = []int{1}
	case 'n':
		want = []int{2}
	case 'p':
		want = []int{2, 3}
	case '+':
		want = []int{2, 4}
	case 'r':
		want = []int{3, 5}
	case 'i':
		want = []int{3, 5}
	case 'd':
		want = []int{3}
	case 'f':
		if version < 2 {
			// Added in format 2: a format 1 journal is upgraded
			// before anything is appended to it.
			return fmt.Errorf("unknown record kind %q in format %d", kind, version)
		}
		want = []int{3}
	default:
		return fmt.Errorf("unknown record kind %q", kind)
	}
	if version < 2 {
		want = want[:1]
	}
	f := bytes.Split(line[2:], []byte{' '})
	if !slices.Contains(want, len(f)) {
		return fmt.Errorf("record %q: want %d fields", line, want[0]+1)
	}
	uid := f[0]
	if !ValidUID(string(uid)) {
		return fmt.Errorf("record %q: %w", line, ErrBadUID)
	}
	var t int64
	if len(f) >= 2 {
		var err error
		if t, err = parseUnix(f[1]); err != nil {
			return fmt.Errorf("record %q: %w", line, err)
		}
	}
	var rcpt string
	if kind == 'd' || kind == 'f' {
		if !validCount(f[2]) {
			return fmt.Errorf("record %q: bad count", line)
		}
		rcpt = string(f[2])
	} else if kind == 'i' {
		if !validIntent(string(f[2])) {
			return fmt.Errorf("record %q: bad intent path", line)
		}
		rcpt = string(f[2])
	} else if kind == 'r' {
		if !ValidRecipient(string(f[2])) {
			return fmt.Errorf("record %q: %w", line, ErrBadRecipient)
		}
		rcpt = string(f[2])
	}
	var id Identity
	if kind == 'p' {
		id.Size = -1
		if len(f) == 3 {
			size, err := parseUnix(f[2])
			if err != nil || f[2][0] == '-' || size > maxSize {
				return fmt.Errorf("record %q: bad size", line)
			}
			id.Size = size
		}
	} else if n := len(f); n == want[len(want)-1] && len(want) > 1 {
		size, err := parseUnix(f[n-2])
		id = Identity{Size: size, Digest: string(f[n-1])}
		if err != nil || !validIdentity(id) || f[n-2][0] == '-' {
			return fmt.Errorf("record %q: bad identity", line)
		}
	}
	if kind == 'r' {
		if e := st.m[string(uid)]; !e.delivered && len(e.rcpts) >= MaxRecipients && !slices.Contains(e.rcpts, rcpt) && (!id.Known() || id == e.rcptsID) {
			return fmt.Errorf("record %q: more than %d recipients for one uid", line, MaxRecipients)
		}
	}
	st.apply(kind, string(uid), t, rcpt, id)
	st.records++
	return nil
}

// maxRefusals caps the count of a "d" or "f" record.
const maxRefusals = 999999

// validCount reports whether b is a refusal count: 1 to 6 decimal digits
// without a leading zero (or "0" itself), so a record has one spelling.
func validCount(b []byte) bool {
	if len(b) < 1 || len(b) > 6 || len(b) > 1 && b[0] == '0' {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseUnix parses a decimal unix time: an optional '-' and 1 to 19 digits,
// nothing else (no '+', no spaces), so a record has one spelling.
func parseUnix(b []byte) (int64, error) {
	s := b
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if len(s) < 1 || len(s) > 19 {
		return 0, fmt.Errorf("bad time %q", b)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad time %q", b)
		}
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad time %q", b)
	}
	return v, nil
}

// appendRecord appends one record line (with '\n') to buf. id is written
// for "+" and "i" records when it is known.
func appendRecord(buf []byte, kind byte, uid string, t int64, rcpt string, id Identity) []byte {
	buf = append(buf, kind, ' ')
	buf = append(buf, uid...)
	if kind == '-' {
		return append(buf, '\n')
	}
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, t, 10)
	if kind == 'r' || kind == 'i' || kind == 'd' || kind == 'f' {
		buf = append(buf, ' ')
		buf = append(buf, rcpt...)
	}
	if kind == 'p' && id.Size >= 0 {
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, id.Size, 10)
	}
	if (kind == '+' || kind == 'i' || kind == 'r') && id.Known() {
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, id.Size, 10)
		buf = append(buf, ' ')
		buf = append(buf, id.Digest...)
	}
	return append(buf, '\n')
}

// maxIntent bounds an escaped intent path so its record fits in maxLine.
const maxIntent = 400

// validIntent reports whether s is an escaped intent path: printable ASCII
// without spaces, within maxIntent.
func validIntent(s string) bool { return printable(s, maxIntent) }

// escapeIntent percent-encodes the bytes of a path that cannot stand in a
// record field (space, controls, non-ASCII) and '%' itself.
func escapeIntent(p string) string {
	const hex = "0123456789ABCDEF"
	i := 0
	for i < len(p) && p[i] >= 0x21 && p[i] <= 0x7e && p[i] != '%' {
		i++
	}
	if i == len(p) {
		return p // the usual path, without a copy
	}
	b := make([]byte, i, len(p)+16)
	copy(b, p)
	for ; i < len(p); i++ {
		c := p[i]
		if c < 0x21 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func unescapeIntent(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b = append(b, byte(v))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

// writeCompact writes the header and the live records of st to w, ordered by
// first-seen time then UID, so a compacted journal reads like a history.
// Every record of a UID carries its first-seen time, which is what replay
// keeps, except a "+", which carries the time of its delivery: for a
// UID delivered after it was first seen (a multidrop delivery that took
// several polls) and not noted or given up, the first-seen time after a
// compaction is that of its first delivery. It returns the number of records written.
func writeCompact(w io.Writer, st *state) (int, error) {
	uids := make([]string, 0, len(st.m))
	for uid := range st.m {
		uids = append(uids, uid)
	}
	slices.SortFunc(uids, func(a, b string) int {
		if c := cmp.Compare(st.m[a].first, st.m[b].first); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(header + "\n")
	var buf []byte
	n := 0
	for _, uid := range uids {
		e := st.m[uid]
		buf = buf[:0]
		if e.noted {
			buf = appendRecord(buf, 'n', uid, e.first, "", Identity{})
			n++
		}
		if e.givenUp {
			buf = appendRecord(buf, 'p', uid, e.first, "", Identity{Size: e.givenUpSize})
			n++
		}
		if e.delivered && len(e.ids) == 0 {
			// Its first-seen time: without an identity its
			// delivery time serves nothing (DeliveredAt).
			buf = appendRecord(buf, '+', uid, e.first, "", Identity{})
			n++
		} else if e.delivered {
			if e.keepsFirst() {
				buf = appendRecord(buf, '+', uid, e.first, "", Identity{})
				n++
			}
			// Oldest first, so that replay keeps the same ones when
			// MaxIdentities drops the oldest; each with the time
			// of its delivery.
			for i, id := range e.ids {
				buf = appendRecord(buf, '+', uid, e.idAt[i], "", id)
				n++
			}
		} else {
			for _, r := range e.rcpts {
				buf = appendRecord(buf, 'r', uid, e.first, r, e.rcptsID)
				n++
			}
			if e.intent != "" {
				buf = appendRecord(buf, 'i', uid, e.first, e.intent, e.intentID)
				n++
			}
		}
		if e.retrFails > 0 {
			// After the records above, so the UID's first-seen time
			// comes from them; before a "d", which needs the UID
			// recorded.
			buf = appendRecord(buf, 'f', uid, e.retrFailAt, strconv.Itoa(e.retrFails), Identity{})
			n++
		}
		if e.refused > 0 || e.deleted {
			// Last, so the UID's first-seen time comes from the
			// records above.
			buf = appendRecord(buf, 'd', uid, e.refusedAt, strconv.Itoa(e.refused), Identity{})
			n++
		}
		bw.Write(buf)
	}
	return n, bw.Flush() // bufio.Writer keeps the first error
}
