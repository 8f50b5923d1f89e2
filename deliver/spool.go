package deliver

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/internal/trust"
)

// DefaultSpoolMem is how much of a message a Spool keeps in memory: most
// messages are smaller and never touch the disk.
const DefaultSpoolMem = 256 << 10

// spoolWriteBuf is the write buffer of a spool file.
const spoolWriteBuf = 64 << 10

// Spool holds one message while it is retrieved and delivered, so that
// popfetch's memory does not grow with the size of a message: up to its
// memory limit in memory, beyond that all of it in a file that has no name
// in any directory (O_TMPFILE, or created O_EXCL and unlinked at once),
// mode 0600, in the directory the caller gives. The kernel frees the file
// when the Spool is closed or popfetch dies, so nothing is left behind.
//
// A Spool is written first (Write, by one goroutine) and only then read:
// any number of readers at once (ReadAt, Reader, Head). Close releases it
// once every delivery of the message is over.
type Spool struct {
	dir    string
	sd     *SpoolDir // dir opened once for many spools; nil: opened per file
	memMax int
	mem    []byte   // the content while it fits in memory; nil once in f
	f      *os.File // the file holding the whole content, nil until needed
	n      int64
	last   byte  // the last byte written (Open's final line end)
	err    error // a failed Write: every later one fails the same way
	closed bool

	// Writes to the file go through wbuf; the first read flushes it and
	// seals the Spool (no more writes). mu guards them.
	mu     sync.Mutex
	wbuf   []byte
	sealed bool

	// The header (Head): hs scans the content as it arrives; once the
	// content is in f, head keeps the bytes hs still needs, so that Head
	// need not read the file back. If the SpoolMem it shares has no room
	// for them (headOff), Head reads them back once (fileHead).
	hs       headScan
	head     []byte
	headOff  bool
	headOnce sync.Once
	fileHead []byte

	// share is the memory this spool shares with others (Share); charged
	// is what it has taken of it: the capacity of mem and head.
	share   *SpoolMem
	charged int64
}

// SpoolMem is memory that a number of spools share: what they hold in
// memory together (their content while it fits, the header kept once it
// is in a file) never exceeds it. A spool that finds no room puts its
// content in its file instead, and reads the header back from the file
// when it is asked for. It bounds a session's spools however wrong the
// sizes the server announced were, by which it schedules its messages.
// It is safe for concurrent use.
type SpoolMem struct{ left atomic.Int64 }

// NewSpoolMem returns n bytes of memory to share.
func NewSpoolMem(n int64) *SpoolMem {
	m := &SpoolMem{}
	m.left.Store(n)
	return m
}

// Left returns the bytes not taken.
func (m *SpoolMem) Left() int64 { return m.left.Load() }

func (m *SpoolMem) take(n int64) bool {
	for {
		l := m.left.Load()
		if l < n {
			return false
		}
		if m.left.CompareAndSwap(l, l-n) {
			return true
		}
	}
}

// Share makes the spool hold in memory only what m has room for. It is
// called before the first Write or Expect.
func (s *Spool) Share(m *SpoolMem) { s.share = m }

// charge takes n more bytes of the shared memory, if the spool shares
// any; it reports whether they were there.
func (s *Spool) charge(n int64) bool {
	if s.share == nil || n <= 0 {
		return true
	}
	if !s.share.take(n) {
		return false
	}
	s.charged += n
	return true
}

// uncharge gives n bytes back.
func (s *Spool) uncharge(n int64) {
	if s.share == nil || n <= 0 {
		return
	}
	n = min(n, s.charged)
	s.charged -= n
	s.share.left.Add(n)
}

// NewSpool returns an empty Spool that keeps up to memMax bytes in memory
// (DefaultSpoolMem if memMax <= 0) and puts a larger message in a file in
// dir. dir is created (0700) when first needed; a symlink, or a directory
// that another user or the group can write (through which the file could
// be reached or swapped), is refused, as for the other state files.
func NewSpool(dir string, memMax int) *Spool {
	if memMax <= 0 {
		memMax = DefaultSpoolMem
	}
	return &Spool{dir: dir, memMax: memMax}
}

// NewSpoolIn is NewSpool for a spool whose file, if it needs one, is made
// in sd: the directory opened and checked once for all the spools of a
// poll rather than once per file.
func NewSpoolIn(sd *SpoolDir, memMax int) *Spool {
	s := NewSpool(sd.path, memMax)
	s.sd = sd
	return s
}

// SpoolDir is a spool directory that many spools share (NewSpoolIn),
// opened once, when the first of them needs a file, with every check
// NewSpool makes of it (see openSpoolDir); the spool files are then made
// through that descriptor, never through the path again. A directory
// renamed away, or swapped for a symlink, afterwards cannot redirect them:
// they go on being made in the directory that was checked, without a name
// (see createSpoolFile), until Close; the next SpoolDir, a new poll's,
// looks the path up and checks it afresh (refusing a symlink). A
// directory removed afterwards is opened again, with all its checks (and
// so created again), as NewSpool's spools do: a file cannot be made in a
// removed directory. Safe for concurrent use.
type SpoolDir struct {
	path   string
	mu     sync.Mutex
	d      *os.File // nil until first needed
	closed bool
}

// NewSpoolDir returns the spool directory at path, not opened yet (nor
// created: a poll whose messages all fit in memory never touches it).
func NewSpoolDir(path string) *SpoolDir { return &SpoolDir{path: path} }

// Close releases the directory. Spools made in it keep their files; a
// spool that needs a file after Close opens the directory for itself,
// as NewSpool's do.
func (sd *SpoolDir) Close() error {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	sd.closed = true
	if sd.d == nil {
		return nil
	}
	err := sd.d.Close()
	sd.d = nil
	return err
}

// create returns a new spool file in sd (see createSpoolFile).
func (sd *SpoolDir) create() (*os.File, error) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.closed {
		return createSpoolFile(sd.path)
	}
	for try := 0; ; try++ {
		if sd.d == nil {
			d, err := spoolDirOpen(sd.path)
			if err != nil {
				return nil, err
			}
			sd.d = d
		}
		f, err := spoolCreateIn(sd.d, sd.path)
		if err == nil || try > 0 || !goneDir(sd.d, err) {
			return f, err
		}
		// Removed since it was opened (Linux refuses a file in a
		// removed directory), or its handle went stale (NFS: removed
		// by another client): once more, from the path.
		sd.d.Close()
		sd.d = nil
	}
}

// goneDir reports whether the directory open on d, in which making a file
// failed with err, is gone: removed (no links left), or a handle the
// server no longer knows (ESTALE, from the create or from fstat: an NFS
// directory removed by another client). A directory reopened from its
// path gets every check again, so a wrong guess costs one open.
func goneDir(d *os.File, err error) bool {
	if errors.Is(err, syscall.ESTALE) {
		return true
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return errors.Is(err, syscall.ESTALE)
	}
	return st.Nlink == 0
}

// spoolCreateIn is createSpoolFileIn; tests make it fail.
var spoolCreateIn = createSpoolFileIn

// errSpoolClosed is returned by reads of a closed Spool.
var errSpoolClosed = errors.New("spool: closed")

// Write appends p. A failure (a full disk: ENOSPC, EDQUOT) is an *Error
// classed temporary: the message stays on the server for the next poll.
// After a failure the Spool keeps failing.
func (s *Spool) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.closed {
		return 0, errSpoolClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if s.f == nil && len(s.mem)+len(p) <= s.memMax && s.grow(len(p)) {
		s.mem = append(s.mem, p...)
		s.wrote(p, len(p))
		s.hs.scan(s.mem)
		return len(p), nil
	}
	if s.f == nil {
		if err := s.toFile(); err != nil {
			s.err = s.fail("create spool file", err)
			return 0, s.err
		}
	}
	s.mu.Lock()
	n, err := s.fileWrite(p)
	s.mu.Unlock()
	s.wrote(p, n)
	if !s.hs.done && !s.headOff {
		s.keepHead(p[:min(n, maxHead-len(s.head))])
	}
	if err != nil {
		s.err = s.fail("write spool file", err)
		return n, s.err
	}
	return n, nil
}

// fileWrite writes p to the file through wbuf: a message arrives in
// lines, and a write(2) per line would cost more than the copy.
func (s *Spool) fileWrite(p []byte) (int, error) {
	if s.sealed {
		return 0, errors.New("spool: written after it was read")
	}
	if len(s.wbuf)+len(p) <= cap(s.wbuf) {
		s.wbuf = append(s.wbuf, p...)
		return len(p), nil
	}
	if err := s.flushLocked(); err != nil {
		return 0, err
	}
	if len(p) >= cap(s.wbuf) {
		return s.f.Write(p)
	}
	s.wbuf = append(s.wbuf, p...)
	return len(p), nil
}

// keepHead adds b, the next bytes of the content, to head, as far as the
// header may reach, if the shared memory has room for them; otherwise
// Head will read the header back from the file.
func (s *Spool) keepHead(b []byte) {
	if need := len(s.head) + len(b); need > cap(s.head) {
		c := min(max(2*cap(s.head), need, 4096), maxHead)
		if !s.charge(int64(c - cap(s.head))) {
			s.dropHead()
			return
		}
		nh := make([]byte, len(s.head), c)
		copy(nh, s.head)
		s.head = nh
	}
	s.head = append(s.head, b...)
	s.hs.scan(s.head)
	if s.hs.done && cap(s.head)-s.hs.n > 4096 {
		// Keep only the header, not the room grown for it.
		nh := exactCopy(s.head[:s.hs.n])
		s.uncharge(int64(cap(s.head) - cap(nh)))
		s.head = nh
	}
}

// exactCopy returns a copy of b with no spare capacity (bytes.Clone
// rounds it up): what it holds is what is charged for it.
func exactCopy(b []byte) []byte {
	c := make([]byte, len(b))
	copy(c, b)
	return c
}

// dropHead gives up keeping the header in memory (see keepHead).
func (s *Spool) dropHead() {
	s.uncharge(int64(cap(s.head)))
	s.head, s.headOff = nil, true
}

// flushLocked writes wbuf to the file; s.mu is held.
func (s *Spool) flushLocked() error {
	if len(s.wbuf) == 0 {
		return nil
	}
	_, err := s.f.Write(s.wbuf)
	s.wbuf = s.wbuf[:0]
	return err
}

// Flush writes what is buffered to the spool file and returns the first
// write error (see Write). A spool that is read is flushed first anyway;
// Flush tells the writer of a failure (a full disk) when the message has
// been spooled rather than when it is delivered.
func (s *Spool) Flush() error {
	if s.err != nil || s.f == nil {
		return s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil && s.err == nil {
		s.err = s.fail("write spool file", err)
	}
	// The writer is done: a spool waiting for its delivery holds no
	// write buffer (a later write, if any, goes to the file directly).
	s.wbuf = nil
	return s.err
}

// seal ends writing: the first read of the file flushes it, and every
// read fails if the content never reached the file whole.
func (s *Spool) seal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.sealed {
		s.sealed = true
		if err := s.flushLocked(); err != nil && s.err == nil {
			s.err = s.fail("write spool file", err)
		}
		s.wbuf = nil
	}
	return s.err
}

// wrote counts the first n bytes of p as written.
func (s *Spool) wrote(p []byte, n int) {
	if n > 0 {
		s.n += int64(n)
		s.last = p[n-1]
	}
}

// Expect tells a new spool how many bytes are coming (a LIST size), so
// that a message held in memory is allocated once rather than grown by
// doubling. It is a hint only: more or fewer bytes may come.
func (s *Spool) Expect(n int64) {
	if len(s.mem) == 0 && s.f == nil && n > 0 && n <= int64(s.memMax) && int64(cap(s.mem)) < n {
		if s.charge(n - int64(cap(s.mem))) {
			s.mem = make([]byte, 0, n)
		}
	}
}

// grow makes room for n more bytes in mem without ever reserving more
// than memMax, or more than the shared memory has room for (see Share):
// it reports whether there is room.
func (s *Spool) grow(n int) bool {
	need := len(s.mem) + n
	if need <= cap(s.mem) {
		return true
	}
	c := max(2*cap(s.mem), need, 4096)
	c = min(c, s.memMax)
	if !s.charge(int64(c - cap(s.mem))) {
		if c = need; !s.charge(int64(c - cap(s.mem))) {
			return false
		}
	}
	b := make([]byte, len(s.mem), c)
	copy(b, s.mem)
	s.mem = b
	return true
}

// fail wraps a spool error as a temporary delivery failure.
func (s *Spool) fail(step string, err error) error {
	return &Error{Target: "spool " + s.dir, Reason: step, Err: fmt.Errorf("%s: %w", step, err)}
}

// toFile moves the content from memory into a new spool file.
func (s *Spool) toFile() error {
	var f *os.File
	var err error
	if s.sd != nil {
		f, err = s.sd.create()
	} else {
		f, err = createSpoolFile(s.dir)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(s.mem); err != nil {
		f.Close()
		return err
	}
	mem := s.mem
	s.f, s.mem = f, nil
	s.uncharge(int64(cap(mem)))
	if !s.hs.done {
		s.keepHead(mem)
	} else if s.charge(int64(s.hs.n)) {
		s.head = exactCopy(mem[:s.hs.n])
	} else {
		s.headOff = true
	}
	s.wbuf = make([]byte, 0, spoolWriteBuf)
	return nil
}

// Len returns the number of bytes written.
func (s *Spool) Len() int64 { return s.n }

// Head returns the message's header as the header reader sees it
// (readHeader): the bytes up to and including the empty line that ends
// it, or, without one, the first MaxHeaderBytes+2 bytes (all of a
// shorter message). It is never read back from the file. The caller must
// not change it.
func (s *Spool) Head() []byte {
	if s.closed {
		return nil
	}
	if s.f == nil {
		return s.mem[:s.hs.final(len(s.mem))]
	}
	if s.headOff {
		s.headOnce.Do(func() {
			b := make([]byte, min(s.n, maxHead))
			n, err := s.ReadAt(b, 0)
			if err != nil && err != io.EOF {
				// A header cut short would route the message by
				// what is left of it: fail every later read of the
				// spool instead, so that no delivery of it succeeds.
				s.mu.Lock()
				if s.err == nil {
					s.err = fmt.Errorf("read spool file: %w", err)
				}
				s.mu.Unlock()
			}
			s.fileHead = headOf(b[:n])
		})
		return s.fileHead
	}
	return s.head[:s.hs.final(len(s.head))]
}

// ReadAt reads the content at off (io.ReaderAt: pread(2) on the file, so
// readers at once do not disturb each other).
func (s *Spool) ReadAt(p []byte, off int64) (int, error) {
	if s.closed {
		return 0, errSpoolClosed
	}
	if off < 0 {
		return 0, errors.New("spool: negative offset")
	}
	if off >= s.n {
		return 0, io.EOF
	}
	want := len(p)
	if rest := s.n - off; int64(want) > rest {
		p = p[:rest]
	}
	var n int
	var err error
	if s.f == nil {
		n = copy(p, s.mem[off:])
	} else {
		if err := s.seal(); err != nil {
			return 0, err
		}
		n, err = s.f.ReadAt(p, off)
		if err != nil && !(err == io.EOF && n == len(p)) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the file is shorter than written
			}
			return n, fmt.Errorf("read spool file: %w", err)
		}
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// Reader returns a reader of the whole content, independent of any other.
func (s *Spool) Reader() *io.SectionReader { return io.NewSectionReader(s, 0, s.n) }

// lastByte returns the last byte of the content (0 if empty).
func (s *Spool) lastByte() byte { return s.last }

// Close releases the memory and the file. It may be called more than once.
func (s *Spool) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.uncharge(s.charged)
	s.mem, s.head, s.wbuf, s.fileHead = nil, nil, nil, nil
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// maxHead is the most of a message the header reader looks at to find
// the end of the header (see headerEnd).
const maxHead = MaxHeaderBytes + 2

// headScan finds the length of Head in a growing prefix of a message, as
// headerEnd finds the end of the header in the whole message, without
// scanning any byte twice.
type headScan struct {
	line int  // start of the line being looked at
	from int  // where to go on looking for its '\n'
	n    int  // the length of the head, once done
	done bool // the head's length is known whatever follows
}

// scan looks at b, a longer prefix of the message than at the last call.
func (h *headScan) scan(b []byte) {
	if len(b) > maxHead {
		b = b[:maxHead]
	}
	capped := len(b) == maxHead
	for !h.done {
		line := b[h.line:]
		if len(line) == 0 {
			if capped {
				h.n, h.done = maxHead, true
			}
			return
		}
		if line[0] == '\n' {
			h.n, h.done = h.line+1, true
			return
		}
		if line[0] == '\r' && len(line) > 1 && line[1] == '\n' {
			h.n, h.done = h.line+2, true
			return
		}
		if line[0] == '\r' && len(line) == 1 && !capped {
			return // CRLF or not: the next byte tells
		}
		j := bytes.IndexByte(b[h.from:], '\n')
		if j < 0 {
			h.from = len(b)
			if capped {
				h.n, h.done = maxHead, true
			}
			return
		}
		h.line = h.from + j + 1
		h.from = h.line
	}
}

// final returns the head's length for a message of total bytes (capped
// at maxHead) that has ended.
func (h *headScan) final(total int) int {
	if h.done {
		return h.n
	}
	return min(total, maxHead)
}

// headOf returns Head for the whole message raw.
func headOf(raw []byte) []byte {
	var h headScan
	h.scan(raw)
	return raw[:h.final(len(raw))]
}

// createSpoolFile returns a new, unnamed, 0600 file in dir.
func createSpoolFile(dir string) (*os.File, error) {
	d, err := spoolDirOpen(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return createSpoolFileIn(d, dir)
}

// createSpoolFileIn returns a new, unnamed, 0600 file in the spool
// directory d, opened by openSpoolDir from dir.
func createSpoolFileIn(d *os.File, dir string) (*os.File, error) {
	dfd := int(d.Fd())
	fd, err := spoolTmpfile(dfd)
	if err != nil {
		// No O_TMPFILE here (another system, an old kernel, a file
		// system without it): a fresh name, created exclusively and
		// removed at once. A popfetch killed in between left its
		// name behind (an empty file: nothing is written before the
		// name is gone); such names are removed here.
		removeStaleSpoolNames(d)
		var b [12]byte
		rand.Read(b[:])
		name := spoolNamePrefix + hex.EncodeToString(b[:])
		fd, err = unix.Openat(dfd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create spool file in %s: %w", dir, err)
		}
		if err := unix.Unlinkat(dfd, name, 0); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("remove spool file name %s: %w", filepath.Join(dir, name), err)
		}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, "(spool)")), nil
}

// spoolNamePrefix begins the name a spool file has for a moment without
// O_TMPFILE (see createSpoolFile).
const spoolNamePrefix = "popfetch-spool-"

// staleSpoolName is how old such a name must be to be taken for one left
// by a popfetch that died: a live one is removed within microseconds, and
// another popfetch may be creating one right now.
const staleSpoolName = time.Minute

// removeStaleSpoolNames removes the spool file names in the spool
// directory d that a popfetch killed between creating and removing one
// left behind. Nothing else is touched.
func removeStaleSpoolNames(d *os.File) {
	names, err := d.ReadDir(-1)
	d.Seek(0, io.SeekStart)
	if err != nil {
		return
	}
	dfd := int(d.Fd())
	for _, e := range names {
		if !strings.HasPrefix(e.Name(), spoolNamePrefix) || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleSpoolName {
			unix.Unlinkat(dfd, e.Name(), 0)
		}
	}
}

// spoolTmpfile is openTmpfile; tests take O_TMPFILE away.
var spoolTmpfile = openTmpfile

// spoolDirOpen is openSpoolDir; tests count its calls.
var spoolDirOpen = openSpoolDir

// spoolDirMu serialises the creation of spool directories.
var spoolDirMu sync.Mutex

// openSpoolDir creates dir (0700, parents too) if it is missing and opens
// it, refusing a symlink, anything but a directory, a directory writable by
// its group or others, one owned by another user than popfetch's or root,
// and one that trust.CheckDir refuses (a directory above it that others
// can change). The checks are made on the open directory where they can.
func openSpoolDir(dir string) (*os.File, error) {
	spoolDirMu.Lock()
	err := os.MkdirAll(dir, 0o700)
	spoolDirMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("create spool directory: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("spool directory %s is a symlink or not a directory: %w", dir, trust.ErrUntrustedFile)
		}
		return nil, fmt.Errorf("open spool directory: %w", err)
	}
	d := os.NewFile(uintptr(fd), dir)
	fi, err := d.Stat()
	if err == nil {
		err = checkSpoolDir(dir, fi)
	}
	if err == nil {
		err = trust.CheckDir(dir)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// checkSpoolDir refuses a spool directory others could use.
func checkSpoolDir(dir string, fi fs.FileInfo) error {
	if !fi.IsDir() {
		return fmt.Errorf("spool directory %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("spool directory %s is %v, writable by group or others (hint: chmod go-w %s): %w", dir, perm, dir, trust.ErrUntrustedFile)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("spool directory %s belongs to uid %d, not popfetch's (hint: remove it, popfetch creates it): %w", dir, st.Uid, trust.ErrUntrustedFile)
	}
	return nil
}
