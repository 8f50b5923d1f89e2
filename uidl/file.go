package uidl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/popfetch/popfetch/internal/durable"
)

var (
	// ErrLocked means another process (or another Store in this process)
	// works on the same mailbox state.
	ErrLocked = errors.New("uidl: mailbox state locked by another popfetch process")
	// ErrBadUID means a UID is not 1–70 characters in 0x21–0x7E (RFC 1939 §7).
	ErrBadUID = errors.New("uidl: invalid UID (RFC 1939 §7: 1-70 characters in 0x21-0x7E)")
	// ErrBadRecipient means a recipient is empty, too long, or holds
	// whitespace or control characters.
	ErrBadRecipient = errors.New("uidl: invalid recipient")
	// ErrClosed is returned by mutations after Close.
	ErrClosed = errors.New("uidl: store closed")
	// ErrInsecure means a journal, lock file or directory is accessible by
	// group or others.
	ErrInsecure = errors.New("uidl: insecure permissions")
)

// minGarbage keeps tiny journals from compacting on every Retain: compaction
// runs only when dead records outnumber live ones and there are at least this
// many, so its cost is amortised over the appends that made the garbage.
const minGarbage = 1024

// hooks are the seams through which tests watch and break a Store's
// filesystem work. Each Store carries its own (Open uses defaultHooks), so
// tests that set them share no state and can run in parallel.
type hooks struct {
	// trace, if set, is called after each durability-relevant filesystem
	// operation ("write", "sync", "rename", "syncdir", ...) with the path
	// it concerns. fsync on tmpfs is a no-op, so tests check the order by
	// recording the operations instead.
	trace func(op, path string)
	// lockGrace is how long Open waits for a lock held by someone else
	// before it reports ErrLocked.
	lockGrace time.Duration
	// write and sync are the journal's write(2) and fsync(2); tests
	// inject ENOSPC or EIO after N operations (failpoints).
	write func(f *os.File, b []byte) (int, error)
	sync  func(f *os.File) error
	// now is the clock of a format upgrade (see open).
	now func() time.Time
}

// defaultHooks are the production seams: no trace, the fork grace of
// lockFile, and the plain system calls.
func defaultHooks() *hooks {
	return &hooks{lockGrace: 2 * time.Second, write: (*os.File).Write, sync: (*os.File).Sync, now: time.Now}
}

func (h *hooks) traceOp(op, path string) {
	if h.trace != nil {
		h.trace(op, path)
	}
}

// Store is the seen-UIDL state of one mailbox, backed by an append-only,
// fsynced journal. It is meant to be used by one goroutine at a time (one
// POP3 session per mailbox); its methods are nevertheless safe for
// concurrent use.
type Store struct {
	path string
	h    *hooks

	mu   sync.Mutex
	st   *state
	f    *os.File // journal, O_APPEND
	lock *os.File // holds the flock; closing it releases the lock
	size int64    // bytes of the journal known to be complete
	// synced is the part of size known durable; unsynced is set while
	// records written without an fsync await Sync.
	synced   int64
	unsynced bool
	broken   error // sticky: a failed write or sync left the file state unknown
	closed   bool

	// lines and syncedLines count the complete lines (header included)
	// in the first size and synced bytes.
	lines, syncedLines int64
	// markF is the length mark (path + ".len", see mark.go), nil if there
	// is none; claim is what it says. markStale: a failed update left a
	// mark that could not be removed, so compaction must not run.
	markF     *os.File
	claim     mark
	markStale bool

	// rec is the buffer a record is formatted in (under mu): one is
	// written for every message, and write(2) keeps nothing of it.
	rec []byte
}

// Open opens (creating if needed) the journal at path, takes the mailbox lock
// (path + ".lock", exclusive, non-blocking: ErrLocked if held), replays the
// journal, truncates a torn final write, and compacts when dead records
// outnumber live ones. Missing directories are created 0700 and the journal
// 0600; an existing journal, lock file or directory accessible by group or
// others is refused (ErrInsecure). A corrupt line other than a torn tail
// makes Open fail with ErrCorrupt naming file:line.
func Open(path string) (*Store, error) {
	return OpenMigrating(path, nil)
}

// ErrAmbiguous means several journals of an older version (one per port)
// could each be the mailbox's journal.
var ErrAmbiguous = errors.New("uidl: several old journals for one mailbox")

// OpenMigrating is Open for a journal that an older version may have kept
// under another name (LegacyPath: one per port). If path does not exist
// and legacy names one existing journal, that journal is moved to path
// first, under both locks (its own .lock, so no older popfetch is using
// it, and path's): its length mark (".len") and then the journal linked
// to path's names, the directory fsynced, the old names and the old lock
// file removed. Several legacy journals are refused with
// ErrAmbiguous rather than guessed between or merged: they may belong to
// different mailboxes (two tunnels on one host), which only the admin can
// tell. Once path exists, legacy is ignored.
func OpenMigrating(path string, legacy []string) (*Store, error) {
	return openHooks(path, legacy, defaultHooks())
}

// OpenMigratingAt is OpenMigrating whose clock is now: an older journal
// upgraded by this Open takes now as the delivery time of every message
// it recorded (see doc.go), so the caller's clock must be the one it
// compares DeliveredAt with.
func OpenMigratingAt(path string, legacy []string, now func() time.Time) (*Store, error) {
	h := defaultHooks()
	if now != nil {
		h.now = now
	}
	return openHooks(path, legacy, h)
}

// openHooks is OpenMigrating with the Store's seams given.
func openHooks(path string, legacy []string, h *hooks) (*Store, error) {
	dir := filepath.Dir(path)
	if err := h.mkdirAllSync(dir); err != nil {
		return nil, err
	}
	if err := checkPrivate(dir, 0o022); err != nil {
		return nil, err
	}
	lock, err := h.lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	if err := h.migrate(path, legacy); err != nil {
		lock.Close()
		return nil, err
	}
	s := &Store{path: path, h: h, lock: lock}
	if err := s.open(); err != nil {
		if s.f != nil {
			s.f.Close()
		}
		if s.markF != nil {
			s.markF.Close()
		}
		lock.Close()
		return nil, err
	}
	return s, nil
}

// migrate moves the one journal in legacy to path, which does not exist;
// the caller holds path's lock. The journal's length mark (".len") moves
// with it, first: a journal under the new name without its mark would lose
// the check that it was not shortened, and a mark whose journal is gone
// (deleted under the old name) must make Open refuse the new name too.
// Stale temporary files of the old name are removed with it.
func (h *hooks) migrate(path string, legacy []string) error {
	if len(legacy) == 0 {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("uidl: stat %s: %w", path, err)
	}
	if len(legacy) > 1 {
		return fmt.Errorf("%w: %s: keep the one of the port this account uses now, rename it (and its %s file) to %s and remove the others (or, if they are different mailboxes behind one host name, give each account its own mailbox_id)",
			ErrAmbiguous, strings.Join(legacy, ", "), markSuffix, path)
	}
	old := legacy[0]
	oldLock, err := h.lockFile(old + ".lock")
	if err != nil {
		return fmt.Errorf("uidl: migrate %s: %w", old, err)
	}
	defer oldLock.Close()
	journal := true
	f, err := os.OpenFile(old, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		journal = false // only its mark is left: moved, so Open refuses
	} else if err != nil {
		return fmt.Errorf("uidl: migrate %s: %w", old, err)
	} else {
		err = checkPrivateFile(f, old)
		f.Close()
		if err != nil {
			return err
		}
	}
	movedMark, err := h.migrateMark(old, path)
	if err != nil {
		return err
	}
	if !journal && !movedMark {
		return nil // nothing left to move (both gone meanwhile)
	}
	dir := filepath.Dir(path)
	if journal {
		// A link, not a rename: it cannot replace a journal that
		// appeared meanwhile, and a crash leaves the journal under one
		// name or both, never neither (with both, path wins from then
		// on). The mark is linked before it, so a crash in between
		// leaves the mark under both names, which the next migration
		// accepts (same file).
		if err := os.Link(old, path); err != nil {
			return fmt.Errorf("uidl: migrate %s to %s: %w", old, path, err)
		}
		h.traceOp("link", path)
	}
	if err := h.syncDir(dir); err != nil {
		return err
	}
	if journal {
		if err := os.Remove(old); err != nil {
			return fmt.Errorf("uidl: migrate %s: remove old name: %w", old, err)
		}
	}
	if movedMark {
		if err := os.Remove(old + markSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("uidl: migrate %s: remove old name: %w", old+markSuffix, err)
		}
	}
	os.Remove(old + ".tmp")
	os.Remove(old + markSuffix + ".tmp")
	// Removed while held: nobody can be waiting to use the journal it
	// guarded, which is gone from that name.
	os.Remove(old + ".lock")
	return h.syncDir(dir)
}

// migrateMark links old's length mark, if any, to path's name. A mark
// already under path's name is accepted only if it is the same file (a
// migration interrupted after this step); any other is a mark of a
// journal deleted under the new name, and which of the two records is
// right only the admin can tell.
func (h *hooks) migrateMark(old, path string) (bool, error) {
	oldInfo, err := os.Lstat(old + markSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("uidl: migrate %s: %w", old+markSuffix, err)
	}
	err = os.Link(old+markSuffix, path+markSuffix)
	if errors.Is(err, fs.ErrExist) {
		info, serr := os.Lstat(path + markSuffix)
		if serr == nil && os.SameFile(oldInfo, info) {
			return true, nil
		}
		return false, fmt.Errorf("%w: migrate %s to %s: both %s and %s exist, but %s does not: "+
			"remove the length mark of the journal you do not keep",
			ErrCorrupt, old, path, old+markSuffix, path+markSuffix, path)
	}
	if err != nil {
		return false, fmt.Errorf("uidl: migrate %s to %s: %w", old+markSuffix, path+markSuffix, err)
	}
	h.traceOp("link", path+markSuffix)
	return true, nil
}

// lockFile takes an exclusive non-blocking flock on a separate lock file. The
// journal itself is not locked because compaction replaces it by rename; a
// flock dies with its process, so a killed popfetch cannot leave it stuck.
// The lock file is never removed: removing it would let two processes lock
// two different inodes of the same name.
func (h *hooks) lockFile(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("uidl: open lock file %s: %w", name, err)
	}
	if err := checkPrivateFile(f, name); err != nil {
		f.Close()
		return nil, err
	}
	// A lock that looks held may belong to a child this process is forking
	// (an MDA, or another account's): between fork and exec the child
	// shares every open file description, the lock file of a Store closed
	// a moment ago included, so it holds that flock for a few moments.
	// Retrying for h.lockGrace tells that apart from a real second popfetch.
	deadline := time.Now().Add(h.lockGrace)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == syscall.EINTR {
			continue
		}
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, name)
		}
		return nil, fmt.Errorf("uidl: lock %s: %w", name, err)
	}
	return f, nil
}

// open runs under the lock: create or open the journal, replay, repair.
func (s *Store) open() error {
	// A stale .tmp is an interrupted compaction; the journal is still whole.
	if err := os.Remove(s.path + ".tmp"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("uidl: remove stale %s.tmp: %w", s.path, err)
	}
	claim, err := readMark(s.path)
	if err != nil {
		return err
	}
	if claim != nil {
		// A missing journal with a mark that claims records was
		// deleted; creating a new one would refetch what it recorded.
		if _, err := os.Lstat(s.path); errors.Is(err, fs.ErrNotExist) {
			if err := checkMark(s.path, claim, false, replayResult{}); err != nil {
				return err
			}
		}
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err == nil {
		// The new name must survive a crash like the records in it.
		if err := s.h.syncDir(filepath.Dir(s.path)); err != nil {
			f.Close()
			return err
		}
	} else if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("uidl: open journal %s: %w", s.path, err)
	}
	s.f = f
	if err := checkPrivateFile(f, s.path); err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("uidl: stat %s: %w", s.path, err)
	}
	st, res, err := replay(f, info.Size(), s.path)
	if err != nil {
		return err
	}
	// Before anything is written to it: a refused journal stays as found.
	if err := checkMark(s.path, claim, true, res); err != nil {
		return err
	}
	s.st = st
	s.size = res.good
	s.synced = res.good
	s.lines = res.lines
	s.syncedLines = res.lines
	if res.torn {
		// Cut the torn tail so the next append starts a fresh line. Its
		// write never returned success, so nothing promised is lost.
		if err := f.Truncate(res.good); err != nil {
			return fmt.Errorf("uidl: truncate torn tail of %s: %w", s.path, err)
		}
		s.h.traceOp("truncate", s.path)
		if err := f.Sync(); err != nil {
			return fmt.Errorf("uidl: fsync %s: %w", s.path, err)
		}
		s.h.traceOp("sync", s.path)
	} else if res.good > 0 {
		// A predecessor killed after a write without an fsync may have left records that
		// are only in the page cache; make them durable before anyone
		// sends DELE on their strength.
		if err := f.Sync(); err != nil {
			return fmt.Errorf("uidl: fsync %s: %w", s.path, err)
		}
		s.h.traceOp("sync", s.path)
	}
	if !res.hasHeader {
		// Empty file: a fresh journal, or a crash while writing the header.
		if err := s.append([]byte(header + "\n")); err != nil {
			return err
		}
	}
	if claim == nil {
		// A new journal, one from before popfetch kept a mark, or one
		// whose mark the admin removed.
		s.createMark()
	} else {
		s.openMark(*claim)
		s.raiseMark()
	}
	if res.hasHeader && res.version < 3 {
		// An older popfetch's journal: rewrite it as the current
		// version before any record of the new format is appended, so
		// that the older popfetch, if started again, refuses the file
		// (unknown version) instead of misreading it. Unlike garbage
		// compaction this must succeed. It runs after the length mark
		// is in place, so compaction lowers the mark around its rename
		// and raises it to the new file, as any compaction does.
		//
		// Its "+" records may carry the UID's first-seen time rather
		// than the delivery's (a reused UID, a multidrop message
		// finished polls later, one that failed or was noted first):
		// the delivery time of every identity is unknown, and the
		// upgrade time stands in for it, so delete_after counts from
		// the upgrade, never from earlier. The compaction writes it
		// into the records, so a restart does not move it.
		upgraded := s.h.now().Unix()
		for uid, e := range st.m {
			if len(e.idAt) == 0 {
				continue
			}
			e.idAt = slices.Repeat([]int64{upgraded}, len(e.idAt))
			st.m[uid] = e
		}
		if err := s.compact(st); err != nil {
			return fmt.Errorf("uidl: upgrade %s to %q: %w", s.path, header, err)
		}
		return nil
	}
	if dead := st.records - st.live(); dead > st.live() && dead >= minGarbage {
		// Best effort: if compaction fails before its rename, the journal
		// is intact and appending to it stays correct, so only a failure
		// that broke the store (after the rename) fails Open.
		if err := s.compact(st); err != nil && s.broken != nil {
			return err
		}
	}
	return nil
}

// append writes b at the end of the journal and fsyncs it. On failure it
// marks the store broken (see fail): after a failed fsync the page cache
// state is unknown, so no further record may follow (a later record behind
// a torn one would read as corruption).
func (s *Store) append(b []byte) error {
	return s.write(b, true)
}

// write appends b; with sync it also fsyncs everything written so far.
func (s *Store) write(b []byte, sync bool) error {
	if s.broken != nil {
		return s.broken
	}
	if n, err := s.h.write(s.f, b); err != nil {
		if n > 0 {
			// A short write (ENOSPC part-way) left the start of a line
			// that nobody was told about. Cut only those bytes, best
			// effort: if the cut fails too, replay drops them as a
			// torn tail.
			if s.f.Truncate(s.size) == nil {
				s.h.traceOp("truncate", s.path)
			}
		}
		return s.fail(fmt.Errorf("uidl: write %s: %w", s.path, err))
	}
	s.h.traceOp("write", s.path)
	s.size += int64(len(b))
	s.lines += int64(bytes.Count(b, []byte{'\n'}))
	if !sync {
		s.unsynced = true
		return nil
	}
	return s.syncLocked()
}

func (s *Store) syncLocked() error {
	if s.broken != nil {
		return s.broken
	}
	if err := s.h.sync(s.f); err != nil {
		return s.fail(fmt.Errorf("uidl: fsync %s: %w", s.path, err))
	}
	s.h.traceOp("sync", s.path)
	s.synced = s.size
	s.syncedLines = s.lines
	s.unsynced = false
	s.raiseMark()
	return nil
}

// Sync makes every record written without an fsync durable. Call it before
// sending DELE for any of those UIDs.
func (s *Store) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: %s", ErrClosed, s.path)
	}
	if !s.unsynced {
		return nil
	}
	return s.syncLocked()
}

// fail marks the store broken after a failed write or fsync. It keeps
// every whole record that write(2) accepted, synced or not: each record
// states something that was already true when it was written (a copy is
// durable, a recipient is done, a link is about to happen), so one that
// reaches the disk although its write or fsync failed is never a lie,
// while cutting it would throw away the record, or the intent, of a copy
// already in the Maildir and deliver it again on the next poll. The
// session stops without DELE; reopening replays what reached the disk and
// the next poll resolves the intents as it does after a crash.
func (s *Store) fail(err error) error {
	s.broken = fmt.Errorf("%w (store unusable until reopened)", err)
	return err
}

// Err returns the error that broke the store (a failed write or fsync), or
// nil. A caller checks it before starting work whose record it could not
// write.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

// compact writes the live state to path.tmp (0600, O_EXCL), fsyncs it,
// renames it over the journal and fsyncs the directory. A crash before the
// rename leaves the old journal; after it, the new one: never a mix.
func (s *Store) compact(st *state) error {
	if s.broken != nil {
		return s.broken
	}
	tmp := s.path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("uidl: remove stale %s: %w", tmp, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("uidl: compact %s: %w", s.path, err)
	}
	n, err := writeCompact(f, st)
	if err == nil {
		s.h.traceOp("write", tmp)
		err = f.Sync()
	}
	if err == nil {
		s.h.traceOp("sync", tmp)
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("uidl: compact %s: %w", s.path, err)
	}
	// The rename may reach the disk at any moment after it is issued, and
	// the mark must hold for the old journal and the new one alike: lower
	// its claim to what both satisfy, durably, before the rename.
	low := mark{min(s.claim.size, size), min(s.claim.lines, int64(n)+1)}
	if s.markF != nil && low != s.claim || s.markStale {
		if err := s.writeMark(low, true); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("uidl: compact %s: %w", s.path, err)
		}
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("uidl: compact %s: rename: %w", s.path, err)
	}
	s.h.traceOp("rename", s.path)
	// From here s.f is the old, unlinked inode: appending to it would lose
	// records, so any failure leaves the store broken.
	nf, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		s.broken = fmt.Errorf("uidl: reopen %s after compaction: %w", s.path, err)
		return s.broken
	}
	s.f.Close()
	s.f = nf
	if err := s.h.syncDir(filepath.Dir(s.path)); err != nil {
		s.broken = err
		return err
	}
	st.records = n
	s.st = st
	s.size = size
	s.synced = size
	s.lines = int64(n) + 1
	s.syncedLines = s.lines
	s.unsynced = false
	s.raiseMark()
	return nil
}

// mkdirAllSync creates dir and missing parents with mode 0700 (not affected
// by any umask, which can only remove bits) and fsyncs each parent after a
// child is created: otherwise a crash soon after the first poll could lose
// the new directory, and with it the journal (a full refetch).
func (h *hooks) mkdirAllSync(dir string) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("uidl: %s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := h.mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // created concurrently
		}
		return fmt.Errorf("uidl: create state directory %s: %w", dir, err)
	}
	return h.syncDir(parent)
}

func (h *hooks) syncDir(dir string) error {
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("uidl: directory: %w", err) // err names dir
	}
	h.traceOp("syncdir", dir)
	return nil
}

// checkPrivate refuses a directory whose mode has any bit of mask set.
func checkPrivate(dir string, mask fs.FileMode) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("uidl: stat %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("uidl: %s is not a directory", dir)
	}
	if fi.Mode().Perm()&mask != 0 {
		return fmt.Errorf("%w: directory %s is %v, writable by group or others (hint: chmod go-w %s)", ErrInsecure, dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// checkPrivateFile refuses anything but a regular file that only its owner
// can access. A file this package creates is 0600 minus the umask, so this
// catches only files made by someone else (fetchmail lesson: check the mode
// that results, Debian #831611).
func checkPrivateFile(f *os.File, name string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("uidl: stat %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("uidl: %s is not a regular file", name)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s is %v (hint: chmod 600 %s)", ErrInsecure, name, fi.Mode().Perm(), name)
	}
	return nil
}

// Has reports whether uid was delivered to every recipient.
func (s *Store) Has(uid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.m[uid].delivered
}

// FirstSeen returns when uid was first recorded (by Add, AddRecipient or Note)
// since it was last forgotten (after a compaction, for a delivered UID
// neither noted nor given up, when it was first delivered). It is not the
// clock of delete_after, which is DeliveredAt: a message may be seen long
// before it is delivered.
func (s *Store) FirstSeen(uid string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.st.m[uid]
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(e.first, 0), true
}

// DeliveredAt returns when the message of identity digest was delivered
// under uid: the time of the "+" record that recorded it (the latest, if
// the UID holds that message more than once). ok is false when uid holds
// no such identity. For a message recorded in a journal written before
// "+" records carried their own time (format 2 and older), it is when
// Open upgraded that journal: its recorded time may be the UID's
// first-seen time, long before the delivery.
func (s *Store) DeliveredAt(uid, digest string) (at time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.m[uid]
	if !e.delivered {
		return time.Time{}, false
	}
	var t int64
	for i, id := range e.ids {
		if id.Digest == digest {
			t, ok = e.idAt[i], true
		}
	}
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(t, 0), true
}

// RecipientsOf returns the recipients already done for uid while it is not
// yet fully delivered (multidrop partial progress), in the order recorded,
// for the message of identity id; nil once uid is delivered. Recipients
// recorded for another message under the same UID (a server that reuses
// UIDs) are not done for this one. Those recorded without identity (format
// 1) count for the message only while its UID names one message (shared is
// false): when the server lists the UID more than once, they could be of
// any of its messages, and taking them as done for all of them would leave
// a recipient without a message that is then deleted. Not counting them
// costs a duplicate at most.
func (s *Store) RecipientsOf(uid string, id Identity, shared bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.m[uid]
	if e.rcptsID.Known() && e.rcptsID != id || !e.rcptsID.Known() && shared {
		return nil
	}
	return slices.Clone(e.rcpts)
}

// Noted reports whether uid was noted as too large (see Note).
func (s *Store) Noted(uid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.m[uid].noted
}

// Len returns the number of delivered UIDs (those for which Has is true).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.delivered
}

// Add records uid as delivered to every recipient. The record is written and
// fsynced before Add returns nil; only then may the caller send DELE. t is the
// first-seen time if uid has no record yet. Adding a delivered UID again
// writes nothing.
func (s *Store) Add(uid string, t time.Time) error {
	return s.record('+', uid, t, "", Identity{}, true)
}

// AddIdentity records uid as delivered like Add, together with the identity
// of the message delivered (see Identity). A UID may hold several
// identities: a server that reuses UIDs gives one UID to several messages
// over time, or at once to identical ones. Recording an identity the UID
// already holds writes nothing.
//
// sync=false only writes the record (write(2)) without an fsync: it
// survives a crash of popfetch, which is what matters for duplicates, but
// not yet a power loss. The caller must call Sync before sending DELE for
// uid. This lets a session pay one fsync per batch of messages instead of
// one per message; a power loss before Sync can then cause duplicates of
// the batch, never a loss, because no DELE was sent for it.
func (s *Store) AddIdentity(uid string, id Identity, t time.Time, sync bool) error {
	if !validIdentity(id) {
		return fmt.Errorf("uidl: invalid identity %+v for uid %q", id, uid)
	}
	return s.record('+', uid, t, "", id, sync)
}

// AddCopies records that uid, delivered with identity id, holds n
// identical copies of that message at once (popa3d and solid-pop3d give
// identical messages one UID): id is then held n times (up to
// MaxIdentities), so that package fetch can tell, by their sizes alone,
// that every copy the server lists was delivered. It writes one "+" per
// missing copy, without an fsync (as AddIdentity with sync=false), and nothing when uid is
// not delivered with id.
func (s *Store) AddCopies(uid string, id Identity, n int, t time.Time) error {
	if !validIdentity(id) {
		return fmt.Errorf("uidl: invalid identity %+v for uid %q", id, uid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: %s", ErrClosed, s.path)
	}
	e := s.st.m[uid]
	have := 0
	for _, x := range e.ids {
		if x == id {
			have++
		}
	}
	if !e.delivered || have == 0 {
		return nil
	}
	// The copies carry the time of the identity's latest delivery.
	at := e.deliveredAt
	for i, x := range e.ids {
		if x == id {
			at = e.idAt[i]
		}
	}
	var buf []byte
	add := min(n, MaxIdentities) - have
	for range add {
		buf = appendRecord(buf, '+', uid, at, "", id)
	}
	if add <= 0 {
		return nil
	}
	if err := s.write(buf, false); err != nil {
		return fmt.Errorf("record copies of uid %q: %w", uid, err)
	}
	for range add {
		s.st.apply('+', uid, at, "", id)
		s.st.records++
	}
	return nil
}

// Identities returns the identities recorded for uid, oldest first; nil if
// uid is not delivered or was recorded without one (format version 1,
// or Add).
func (s *Store) Identities(uid string) []Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.st.m[uid].ids)
}

// IntendIdentity records that a delivery of uid, the message with identity
// id (zero if unknown), is about to create the file at path (a Maildir's
// new/NAME), just before the file appears there. It is written without an
// fsync: it only serves to recognise, after popfetch was killed between
// creating the file and recording the delivery, that the message is
// already delivered (see Intents; recovering the intent then records the
// UID with id, see IntentIdentity), so that the next poll does not deliver
// it again. Losing it to a power failure costs at most that duplicate.
func (s *Store) IntendIdentity(uid, path string, id Identity) error {
	esc := escapeIntent(path)
	if !validIntent(esc) {
		return fmt.Errorf("uidl: intent path too long for uid %q", uid)
	}
	if id.Known() && !validIdentity(id) {
		return fmt.Errorf("uidl: invalid identity %+v for uid %q", id, uid)
	}
	return s.record('i', uid, time.Now(), esc, id, false)
}

// IntentIdentity returns the identity recorded with uid's intent, if any.
func (s *Store) IntentIdentity(uid string) Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.m[uid].intentID
}

// Intents returns, for every UID not delivered that has an intent, the path
// its last delivery was about to create.
func (s *Store) Intents() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out map[string]string
	for uid, e := range s.st.m {
		if !e.delivered && e.intent != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[uid] = unescapeIntent(e.intent)
		}
	}
	return out
}

// AddRecipient records that rcpt is done for uid (multidrop: the message goes
// to several local recipients, and a crash half-way must not re-deliver to
// those already done). Durable before it returns; a no-op if already known or
// uid is delivered. At most MaxRecipients are kept per UID.
func (s *Store) AddRecipient(uid, rcpt string, t time.Time) error {
	if !ValidRecipient(rcpt) {
		return fmt.Errorf("%w: %q (uid %q)", ErrBadRecipient, rcpt, uid)
	}
	return s.AddRecipientIdentity(uid, rcpt, Identity{}, t)
}

// AddRecipientIdentity is AddRecipient for the message of identity id (zero
// if unknown). A recipient of another identity than those already recorded
// for uid starts the list again (see RecipientsOf).
func (s *Store) AddRecipientIdentity(uid, rcpt string, id Identity, t time.Time) error {
	if !ValidRecipient(rcpt) {
		return fmt.Errorf("%w: %q (uid %q)", ErrBadRecipient, rcpt, uid)
	}
	if id.Known() && !validIdentity(id) {
		return fmt.Errorf("uidl: invalid identity %+v for uid %q", id, uid)
	}
	return s.record('r', uid, t, rcpt, id, true)
}

// Note records that uid was too large, left on the server and logged once,
// so later polls stay quiet about it. Durable before it returns.
func (s *Store) Note(uid string, t time.Time) error {
	return s.record('n', uid, t, "", Identity{}, true)
}

// GiveUpSize records that uid, the message of LIST size size, cannot be
// retrieved (its reply overruns any sane bound, or it keeps missing its
// deadline): it stays on the server, was logged once, and later polls skip
// it. Unlike Note it does not depend on a setting, so raising `limit` does
// not bring it back; only its disappearance from the server (Retain) or an
// admin's edit of the journal does. A message listed later under the same
// UID with another size is not the one given up (a server that reuses
// UIDs), see GivenUpAt. Durable before it returns.
func (s *Store) GiveUpSize(uid string, size int64, t time.Time) error {
	if size < 0 || size > maxSize {
		return fmt.Errorf("uidl: invalid size %d for uid %q", size, uid)
	}
	return s.record('p', uid, t, "", Identity{Size: size}, true)
}

// RefuseDele records that the server refused DELE of uid (answered -ERR)
// at t, and returns how many polls in a row have now been refused; uid
// must have a record (DELE is sent only for delivered UIDs). The
// count lives in the journal so that one-shot runs (cron) see it too. It
// is written without an fsync: losing it to a power failure only delays
// the escalation.
func (s *Store) RefuseDele(uid string, t time.Time) (int, error) {
	return s.count('d', "DELE refusal", uid, t, func(e entry, _ bool) (int, bool) {
		return min(e.refused+1, maxRefusals), true
	})
}

// DeleAccepted records that the server answered DELE of uid with +OK: it
// ends the run of refusals, so a later refusal counts from one again, and
// marks the message as no longer known to be on the server (see
// OnServer). It writes a "d" record with count 0, without an fsync, and
// nothing when that is already the UID's state.
func (s *Store) DeleAccepted(uid string, t time.Time) error {
	_, err := s.count('d', "DELE refusal", uid, t, func(e entry, ok bool) (int, bool) {
		return 0, ok && !(e.refused == 0 && e.deleted)
	})
	return err
}

// count appends a counting record (kind 'd' or 'f', what says what it
// counts in errors) of uid at t, without an fsync: a lost count only
// delays an escalation. next returns the new count from uid's entry (ok:
// uid has one) and whether to write it; count returns it.
func (s *Store) count(kind byte, what, uid string, t time.Time, next func(e entry, ok bool) (int, bool)) (int, error) {
	if !ValidUID(uid) {
		return 0, fmt.Errorf("%w: %q", ErrBadUID, uid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.st.m[uid]
	n, write := next(e, ok)
	if !write {
		return n, nil
	}
	if s.closed {
		return n, fmt.Errorf("%w: %s", ErrClosed, s.path)
	}
	c := strconv.Itoa(n)
	s.rec = appendRecord(s.rec[:0], kind, uid, t.Unix(), c, Identity{})
	if err := s.write(s.rec, false); err != nil {
		return n, fmt.Errorf("record %s of uid %q: %w", what, uid, err)
	}
	s.st.apply(kind, uid, t.Unix(), c, Identity{})
	s.st.records++
	return n, nil
}

// RetrFailed records that RETR of uid failed in a way that may be the
// message's own fault (a -ERR, a missed deadline, a reply that broke its
// round) at t, and returns how many polls in a row it has now failed.
// uid need not have a record: a message that cannot be retrieved was
// never delivered. The count lives in the journal so that one-shot runs
// (cron) see it too. It is written without an fsync: losing it to a power
// failure only delays giving the message up.
func (s *Store) RetrFailed(uid string, t time.Time) (int, error) {
	return s.count('f', "RETR failures", uid, t, func(e entry, _ bool) (int, bool) {
		return min(e.retrFails+1, maxRefusals), true
	})
}

// RetrOK records that uid was retrieved in step, ending its run of failed
// polls (see RetrFailed). It writes an "f" record with count 0, without an
// fsync, and nothing when the count is already 0.
func (s *Store) RetrOK(uid string, t time.Time) error {
	_, err := s.count('f', "RETR failures", uid, t, func(e entry, _ bool) (int, bool) {
		return 0, e.retrFails != 0
	})
	return err
}

// RetrFailures returns how many polls in a row RETR of uid failed (see
// RetrFailed).
func (s *Store) RetrFailures(uid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.m[uid].retrFails
}

// DeleRefusals returns how many polls in a row the server refused DELE of
// uid, and when it last did (see RefuseDele).
func (s *Store) DeleRefusals(uid string) (int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.m[uid]
	if e.refused == 0 {
		return 0, time.Time{}
	}
	return e.refused, time.Unix(e.refusedAt, 0)
}

// GivenUp reports whether uid was given up, whatever the size of the
// message given up (see GiveUpSize; GivenUpAt asks for one message).
func (s *Store) GivenUp(uid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.m[uid].givenUp
}

// GivenUpAt reports whether the message listed as uid with LIST size size
// is the one given up: uid was given up, with that size or with none
// recorded.
func (s *Store) GivenUpAt(uid string, size int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.m[uid]
	return e.givenUp && (e.givenUpSize < 0 || e.givenUpSize == size)
}

func (s *Store) record(kind byte, uid string, t time.Time, rcpt string, id Identity, sync bool) error {
	if !ValidUID(uid) {
		return fmt.Errorf("%w: %q", ErrBadUID, uid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: %s", ErrClosed, s.path)
	}
	e, ok := s.st.m[uid]
	switch {
	case kind == '+' && e.delivered && id.Known() && !slices.Contains(e.ids, id):
		// A new identity for a delivered UID: recorded below.
	case e.delivered && kind != 'n' && kind != 'p', kind == 'n' && e.noted, kind == 'p' && e.givenUp && e.givenUpSize == id.Size,
		kind == 'r' && slices.Contains(e.rcpts, rcpt) && (!id.Known() || id == e.rcptsID):
		return nil // already durable; writing again would only make garbage
	case kind == 'r' && len(e.rcpts) >= MaxRecipients && (!id.Known() || id == e.rcptsID):
		return fmt.Errorf("%w: more than %d recipients for uid %q", ErrBadRecipient, MaxRecipients, uid)
	}
	first := t.Unix()
	if ok && kind != '+' {
		// A "+" carries the time of its delivery, the clock of
		// delete_after (see DeliveredAt); the other records the UID's
		// first-seen time.
		first = e.first
	}
	s.rec = appendRecord(s.rec[:0], kind, uid, first, rcpt, id)
	if err := s.write(s.rec, sync); err != nil {
		return fmt.Errorf("record uid %q: %w", uid, err)
	}
	s.st.apply(kind, uid, first, rcpt, id)
	s.st.records++
	return nil
}

// Retain forgets every UID not in onServer, with its partial and noted
// records. Call it only with the complete listing of a successful UIDL
// command: a UID is forgotten only once the server stops listing it, never
// because QUIT said +OK (RFC 1939 §6: "some or none" may be removed).
//
// The forgetting is durable before Retain returns: "-" records are appended
// in one write and fsynced, or, when dead records would outnumber live ones
// (or the batch is large), the journal is compacted instead. The cost is
// O(len(onServer) + Len()) in memory, plus I/O proportional to what vanished,
// with compaction amortised over the records that made it necessary.
func (s *Store) Retain(onServer []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: %s", ErrClosed, s.path)
	}
	keep := make(map[string]struct{}, len(onServer))
	for _, u := range onServer {
		keep[u] = struct{}{}
	}
	var gone []string
	for uid := range s.st.m {
		if _, ok := keep[uid]; !ok {
			gone = append(gone, uid)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	slices.Sort(gone) // deterministic journal content
	var buf []byte
	for _, uid := range gone {
		buf = appendRecord(buf, '-', uid, 0, "", Identity{})
	}
	// Decide on the state after forgetting without touching s.st until the
	// change is durable.
	live := s.st.live()
	for _, uid := range gone {
		e := s.st.m[uid]
		live -= e.liveRecords()
	}
	if dead := s.st.records + len(gone) - live; (dead > live && dead >= minGarbage) || len(buf) > maxWrite {
		next := &state{m: make(map[string]entry, len(s.st.m)-len(gone)), delivered: s.st.delivered}
		for uid, e := range s.st.m {
			next.m[uid] = e
		}
		for _, uid := range gone {
			next.apply('-', uid, 0, "", Identity{})
		}
		if err := s.compact(next); err != nil {
			return fmt.Errorf("retain: %w", err)
		}
		return nil
	}
	if err := s.append(buf); err != nil {
		return fmt.Errorf("retain: forget %d uids: %w", len(gone), err)
	}
	for _, uid := range gone {
		s.st.apply('-', uid, 0, "", Identity{})
	}
	s.st.records += len(gone)
	return nil
}

// Close releases the lock and the journal. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.unsynced {
		err = s.syncLocked()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if s.markF != nil {
		s.markF.Close()
	}
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("uidl: close %s: %w", s.path, err)
	}
	return nil
}
