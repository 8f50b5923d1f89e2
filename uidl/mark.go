package uidl

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// ErrShortened is wrapped, together with ErrCorrupt, by Open's error when
// the journal holds fewer bytes or lines than its length mark says it held
// (see doc.go, "Length mark").
var ErrShortened = errors.New("journal shorter than recorded")

// markSuffix names the length mark beside the journal: path + ".len".
// Like ".lock" and ".tmp" it ends in a non-digit, so it is never another
// mailbox's journal.
const markSuffix = ".len"

// markPrefix starts the one line of a length mark:
//
//	popfetch-uidl-len 1 <bytes> <lines> <crc32>
//
// with bytes and lines as 20 zero-padded decimal digits and the CRC-32
// (IEEE) of everything before it as 8 hex digits, so the file has one
// fixed size and is rewritten in place by a single pwrite.
const markPrefix = "popfetch-uidl-len 1 "

// mark is what a length mark claims: the journal held at least size bytes
// in at least lines complete lines (header included), all of them fsynced.
type mark struct{ size, lines int64 }

const markLen = len(markPrefix) + 20 + 1 + 20 + 1 + 8 + 1

func encodeMark(m mark) []byte {
	b := make([]byte, 0, markLen)
	b = append(b, markPrefix...)
	b = appendPadded(b, m.size)
	b = append(b, ' ')
	b = appendPadded(b, m.lines)
	b = append(b, ' ')
	return fmt.Appendf(b, "%08x\n", crc32.ChecksumIEEE(b))
}

func appendPadded(b []byte, v int64) []byte {
	s := strconv.FormatInt(v, 10)
	for range 20 - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// parseMark parses a length mark; any deviation from the fixed layout, a
// bad checksum included, is an error.
func parseMark(b []byte) (mark, error) {
	bad := func(why string) (mark, error) { return mark{}, fmt.Errorf("malformed length mark (%s)", why) }
	if len(b) != markLen || !bytes.HasPrefix(b, []byte(markPrefix)) || b[markLen-1] != '\n' {
		return bad("layout")
	}
	body := b[:markLen-9]
	sum, err := strconv.ParseUint(string(b[markLen-9:markLen-1]), 16, 32)
	if err != nil || uint32(sum) != crc32.ChecksumIEEE(body) {
		return bad("checksum")
	}
	f := bytes.Split(body[len(markPrefix):len(body)-1], []byte{' '})
	if len(f) != 2 || len(f[0]) != 20 || len(f[1]) != 20 {
		return bad("fields")
	}
	var m mark
	for i, p := range []*int64{&m.size, &m.lines} {
		v, err := strconv.ParseInt(string(f[i]), 10, 64)
		if err != nil || v < 0 {
			return bad("number")
		}
		*p = v
	}
	if !bytes.Equal(encodeMark(m), b) {
		return bad("not canonical") // one spelling: e.g. upper-case hex
	}
	return m, nil
}

// readMark reads the length mark of the journal at path; nil if there is
// none.
func readMark(path string) (*mark, error) {
	name := path + markSuffix
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("uidl: open %s: %w", name, err)
	}
	defer f.Close()
	if err := checkPrivateFile(f, name); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(markLen)+1))
	if err != nil {
		return nil, fmt.Errorf("uidl: read %s: %w", name, err)
	}
	m, err := parseMark(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v; it records how long %s was, to detect a journal that lost records. "+
			"If the journal is intact (nothing restored, cut or edited), remove %s and popfetch writes a new one",
			ErrCorrupt, name, err, path, name)
	}
	return &m, nil
}

// checkMark refuses a journal that is shorter than its mark says it was:
// one restored from an older backup, cut to a valid prefix, emptied, or
// edited. Trusting it would take the messages its lost records described
// as new and deliver them again (a keep mode mailbox in full). A mark that
// claims no record (a journal holding only its header) loses nothing.
func checkMark(path string, m *mark, exists bool, res replayResult) error {
	if m == nil || m.lines <= 1 {
		return nil
	}
	const fix = "restore the journal from a recent backup; or, to accept the loss, remove %s " +
		"(popfetch then delivers again every message still on the server whose record was lost)"
	if !exists {
		return fmt.Errorf("%w: %w: %s is missing, but %s%s recorded that it held %d lines: "+fix,
			ErrCorrupt, ErrShortened, path, path, markSuffix, m.lines, path+markSuffix)
	}
	if res.good < m.size || res.lines < m.lines {
		return fmt.Errorf("%w: %w: %s holds %d bytes in %d lines, but %s%s recorded at least %d bytes in %d lines: "+
			"records were lost (an older backup restored, the file cut, emptied or edited); "+fix,
			ErrCorrupt, ErrShortened, path, res.good, res.lines, path, markSuffix, m.size, m.lines, path+markSuffix)
	}
	return nil
}

// createMark writes a new length mark claiming what is synced now, through
// a temporary file and a rename, so that a crash leaves either no mark or
// a complete one. Best effort: without a mark the journal works as before,
// only unguarded against being shortened, and the next Open tries again.
func (s *Store) createMark() {
	name := s.path + markSuffix
	tmp := name + ".tmp"
	m := mark{s.synced, s.syncedLines}
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return
	}
	_, err = f.Write(encodeMark(m))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return
	}
	s.h.traceOp("rename", name)
	if s.h.syncDir(filepath.Dir(s.path)) != nil {
		// The mark may or may not survive a crash; it claims only what
		// is synced, so either is safe, but it cannot be lowered
		// without markF.
		s.markStale = true
		return
	}
	s.openMark(m)
}

// openMark opens the existing mark for in-place updates; it claims m. If
// it cannot be opened, the mark on disk cannot be lowered before a
// compaction, so compaction is refused (markStale).
func (s *Store) openMark(m mark) {
	f, err := os.OpenFile(s.path+markSuffix, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		s.markStale = true
		return
	}
	s.markF, s.claim = f, m
}

// writeMark rewrites the mark in place with one pwrite of its fixed size,
// and fsyncs it if sync is set. If that fails the mark's content is
// unknown, so it is removed rather than left claiming what a later
// compaction might make untrue; if even that fails, compaction is refused
// from then on (markStale).
func (s *Store) writeMark(m mark, sync bool) error {
	if s.markF == nil {
		if s.markStale {
			return fmt.Errorf("uidl: %s%s could not be opened, updated or removed; reopening the journal retries", s.path, markSuffix)
		}
		return nil
	}
	_, err := s.markF.WriteAt(encodeMark(m), 0)
	if err == nil {
		s.h.traceOp("write", s.path+markSuffix)
		if sync {
			if err = s.markF.Sync(); err == nil {
				s.h.traceOp("sync", s.path+markSuffix)
			}
		}
	}
	if err != nil {
		s.markF.Close()
		s.markF = nil
		if rerr := os.Remove(s.path + markSuffix); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			s.markStale = true
		}
		return fmt.Errorf("uidl: update %s%s: %w", s.path, markSuffix, err)
	}
	s.claim = m
	return nil
}

// raiseMark makes the mark claim what is synced now. It runs right after
// an fsync of the journal, so the claim is never ahead of the disk, and it
// does not fsync the mark: a crash can only leave an older, smaller claim
// (safe), while the cost stays one pwrite per journal fsync.
func (s *Store) raiseMark() {
	m := mark{s.synced, s.syncedLines}
	if s.markF == nil || m == s.claim {
		return
	}
	_ = s.writeMark(m, false) // best effort, see writeMark
}
