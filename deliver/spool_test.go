package deliver

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/popfetch/popfetch/internal/trust"
)

// fillSpool writes raw into a new spool in pieces of the given sizes
// (cycled), memMax bytes in memory.
func fillSpool(t testing.TB, dir string, memMax int, raw []byte, pieces []int) *Spool {
	t.Helper()
	s := NewSpool(dir, memMax)
	for i, rest := 0, raw; len(rest) > 0; i++ {
		n := len(rest)
		if len(pieces) > 0 {
			n = min(max(pieces[i%len(pieces)], 1), len(rest))
		}
		if k, err := s.Write(rest[:n]); err != nil || k != n {
			t.Fatalf("Write: %d, %v", k, err)
		}
		rest = rest[n:]
	}
	return s
}

// checkSpool checks every reader of s against raw.
func checkSpool(t *testing.T, s *Spool, raw []byte) {
	t.Helper()
	if s.Len() != int64(len(raw)) {
		t.Fatalf("Len = %d, want %d", s.Len(), len(raw))
	}
	got, err := io.ReadAll(s.Reader())
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("read back %d bytes (%v); differ from the %d written", len(got), err, len(raw))
	}
	if len(raw) < 64<<10 {
		if err := iotest.TestReader(s.Reader(), raw); err != nil {
			t.Fatal(err)
		}
	}
	if h, want := s.Head(), headOf(raw); !bytes.Equal(h, want) {
		t.Fatalf("Head = %q, want %q", h, want)
	}
}

func TestSpoolRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	long := bytes.Repeat([]byte("x-line: 0123456789abcdef\r\n"), 100)
	for _, tc := range []struct {
		name   string
		raw    []byte
		memMax int
	}{
		{"empty", nil, 16},
		{"memory", []byte("A: b\r\n\r\nbody\r\n"), 64},
		{"exactly the limit", []byte("A: b\r\n\r\nbody\r\n")[:14], 14},
		{"one over", []byte("A: b\r\n\r\nbody\r\n"), 13},
		{"header in file", append(append([]byte(nil), long...), "\r\nbody\r\n"...), 100},
		{"no header end", long, 10},
		{"bare CR at the limit", []byte("A: b\r\r\nbody"), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, pieces := range [][]int{nil, {1}, {3, 7}, {13}} {
				s := fillSpool(t, dir, tc.memMax, tc.raw, pieces)
				checkSpool(t, s, tc.raw)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// FuzzSpool: what is read back is what was written, whatever the pieces
// and wherever the memory limit falls.
func FuzzSpool(f *testing.F) {
	f.Add([]byte("A: b\r\n\r\nbody\r\n"), uint8(3), uint8(5))
	f.Add([]byte("A: b\r\nC: d\r"), uint8(1), uint8(11))
	f.Add([]byte("\r\n"), uint8(0), uint8(1))
	dir := filepath.Join(f.TempDir(), "spool")
	f.Fuzz(func(t *testing.T, raw []byte, piece, memMax uint8) {
		s := fillSpool(t, dir, int(memMax)+1, raw, []int{int(piece), int(piece) / 2})
		defer s.Close()
		checkSpool(t, s, raw)
		m := &Message{Spool: s}
		if got, want := readAll(t, Open(m, nil, false)), readAll(t, Open(&Message{Raw: raw}, nil, false)); got != want {
			t.Fatalf("Open of the spool = %q, of Raw %q", got, want)
		}
	})
}

// TestSpoolHeadLarge: a header larger than the memory limit, and one
// over the header budget, give the Head the in-memory message gives.
func TestSpoolHeadLarge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	field := "X-Pad: " + strings.Repeat("y", 998) + "\r\n"
	for _, n := range []int{300, MaxHeaderBytes / len(field), MaxHeaderBytes/len(field) + 1, 2000} {
		raw := []byte(strings.Repeat(field, n) + "\r\nbody\r\n")
		s := fillSpool(t, dir, 4096, raw, []int{5000, 3})
		checkSpool(t, s, raw)
		if n >= 2000 && len(s.Head()) != MaxHeaderBytes+2 {
			t.Fatalf("%d fields: Head is %d bytes", n, len(s.Head()))
		}
		s.Close()
	}
}

// TestSpoolFile: past the limit the content is in a 0600 file that no
// directory names, released on Close; the directory is made 0700.
func TestSpoolFile(t *testing.T) {
	t.Run("O_TMPFILE", testSpoolFile)
	t.Run("without O_TMPFILE", func(t *testing.T) {
		spoolTmpfile = func(int) (int, error) { return -1, syscall.EOPNOTSUPP }
		defer func() { spoolTmpfile = openTmpfile }()
		testSpoolFile(t)
	})
}

func testSpoolFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "spool")
	s := fillSpool(t, dir, 8, []byte("A: b\r\n\r\nbody\r\n"), nil)
	if s.f == nil {
		t.Fatal("no spool file past the limit")
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(s.f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 0 {
		t.Errorf("spool file has %d links", st.Nlink)
	}
	if perm := st.Mode & 0o777; perm != 0o600 {
		t.Errorf("spool file mode %o", perm)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("spool directory holds %v", ents)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool directory: %v %v", fi.Mode(), err)
	}
	fd := s.f.Fd()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fstat(int(fd), &st); err == nil {
		// The number may be reused only by another open file.
		if fi, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd))); err == nil && strings.Contains(fi, "(spool)") {
			t.Errorf("fd %d still open after Close: %s", fd, fi)
		}
	}
	if _, err := s.ReadAt(make([]byte, 1), 0); err == nil {
		t.Error("ReadAt after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestSpoolNoFDLeak: many spools that went to a file leave no descriptor
// open once closed.
func TestSpoolNoFDLeak(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	before := openFDs(t)
	for range 200 {
		s := fillSpool(t, dir, 4, []byte("A: b\r\n\r\nbody\r\n"), []int{3})
		if _, err := io.ReadAll(s.Reader()); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if after := openFDs(t); after > before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestSpoolConcurrentReads: readers at once each get the whole content.
func TestSpoolConcurrentReads(t *testing.T) {
	raw := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(raw)
	s := fillSpool(t, filepath.Join(t.TempDir(), "spool"), 1<<10, raw, []int{70000})
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			got, err := io.ReadAll(s.Reader())
			if err == nil && !bytes.Equal(got, raw) {
				err = errors.New("content differs")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSpoolDirRefused: a symlink, or a directory its group or others can
// write, is not used, and nothing is written through it.
func TestSpoolDirRefused(t *testing.T) {
	base := t.TempDir()
	other := filepath.Join(base, "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	group := filepath.Join(base, "group")
	os.Mkdir(group, 0o700)
	os.Chmod(group, 0o770)
	for _, dir := range []string{link, open, group} {
		s := NewSpool(dir, 4)
		_, err := s.Write([]byte("A: b\r\n\r\nbody\r\n"))
		if !errors.Is(err, trust.ErrUntrustedFile) {
			t.Errorf("%s: Write = %v; want ErrUntrustedFile", dir, err)
		}
		if IsPermanent(err) {
			t.Errorf("%s: %v is permanent", dir, err)
		}
		if _, err2 := s.Write([]byte("x")); err2 == nil {
			t.Errorf("%s: a Write after a failure succeeded", dir)
		}
		s.Close()
	}
}

// TestSpoolWriteError: a full disk is a temporary failure that names the
// step, and the Spool keeps failing.
func TestSpoolWriteError(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	s := NewSpool(filepath.Join(dir, "spool"), 1024)
	defer s.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = s.Write(make([]byte, 4096))
	}
	if !errors.Is(err, syscall.ENOSPC) || IsPermanent(err) || !strings.Contains(err.Error(), "write spool file") {
		t.Fatalf("Write on a full disk = %v; want a temporary ENOSPC", err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write after the failure = %v", err)
	}
	if err := s.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush after the failure = %v", err)
	}
	if _, err := s.ReadAt(make([]byte, 1), 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("ReadAt after the failure = %v", err)
	}
}

// TestSpoolSealed: writes to the file are buffered; Flush reports a full
// disk once the buffer reaches it, and the first read ends writing.
func TestSpoolSealed(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	s := NewSpool(filepath.Join(dir, "spool"), 1024)
	defer s.Close()
	// Less than the write buffer: accepted, the disk not yet touched.
	for range 15 {
		if _, err := s.Write(make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	fill, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	fill.Write(make([]byte, 128<<10)) // fills the file system
	fill.Close()
	if err := s.Flush(); !errors.Is(err, syscall.ENOSPC) || IsPermanent(err) {
		t.Fatalf("Flush on a full disk = %v; want a temporary ENOSPC", err)
	}

	s2 := NewSpool(t.TempDir(), 4)
	defer s2.Close()
	s2.Write([]byte("A: b\r\n"))
	if _, err := s2.ReadAt(make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Write([]byte("\r\nbody\r\n")); err == nil {
		t.Fatal("Write after a read succeeded")
	}
}

// TestSpoolExpect: a size hint, right, too small, too large or beyond the
// memory limit, changes nothing of what is read back, and a right one
// allocates the memory once.
func TestSpoolExpect(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	raw := bytes.Repeat([]byte("line of a message\r\n"), 1000)
	for _, hint := range []int64{0, 1, int64(len(raw)) / 2, int64(len(raw)), int64(len(raw)) * 3, 1 << 40} {
		for _, memMax := range []int{64, len(raw), 4 * len(raw)} {
			s := NewSpool(dir, memMax)
			s.Expect(hint)
			for rest := raw; len(rest) > 0; rest = rest[min(7, len(rest)):] {
				if _, err := s.Write(rest[:min(7, len(rest))]); err != nil {
					t.Fatal(err)
				}
			}
			checkSpool(t, s, raw)
			s.Close()
		}
	}
	allocs := testing.AllocsPerRun(20, func() {
		s := NewSpool(dir, 4*len(raw))
		s.Expect(int64(len(raw)))
		for rest := raw; len(rest) > 0; rest = rest[min(7, len(rest)):] {
			s.Write(rest[:min(7, len(rest))])
		}
		s.Close()
	})
	if allocs > 3 {
		t.Errorf("a spool with a right hint allocates %.0f times, want the buffer once (and the spool)", allocs)
	}
}

// FuzzSpoolShared: spools that share a SpoolMem read back what was
// written, with the Head of the message, whatever room the share leaves
// them, hold in memory no more than it, and give it all back on Close.
func FuzzSpoolShared(f *testing.F) {
	f.Add([]byte("A: b\r\n\r\nbody\r\n"), uint8(3), uint8(5), uint16(0))
	f.Add([]byte("A: b\r\nC: d\r\nE: f\r\n\r\nbody\r\n"), uint8(1), uint8(4), uint16(12))
	f.Add(bytes.Repeat([]byte("X: y\r\n"), 2000), uint8(200), uint8(100), uint16(5000))
	dir := filepath.Join(f.TempDir(), "spool")
	f.Fuzz(func(t *testing.T, raw []byte, piece, memMax uint8, share uint16) {
		m := NewSpoolMem(int64(share))
		var spools []*Spool
		for range 2 {
			s := NewSpool(dir, int(memMax)+1)
			s.Share(m)
			s.Expect(int64(len(raw)))
			spools = append(spools, s)
		}
		// Written in turns, as a session's spools fill one after the
		// other while the earlier ones wait for their delivery.
		for _, s := range spools {
			for i, rest := 0, raw; len(rest) > 0; i++ {
				n := min(max(int(piece)>>(i%2), 1), len(rest))
				if k, err := s.Write(rest[:n]); err != nil || k != n {
					t.Fatalf("Write: %d, %v", k, err)
				}
				rest = rest[n:]
				if m.Left() < 0 {
					t.Fatalf("share overdrawn: %d", m.Left())
				}
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range spools {
			if s.charged > int64(share) || int64(cap(s.mem)+cap(s.head)) > s.charged {
				t.Fatalf("holds %d+%d bytes in memory, charged %d of %d", cap(s.mem), cap(s.head), s.charged, share)
			}
			checkSpool(t, s, raw)
			s.Close()
		}
		if m.Left() != int64(share) {
			t.Fatalf("after Close %d of %d bytes are back", m.Left(), share)
		}
	})
}

// TestSpoolSharedHeadFromFile: a header that does not fit the share is
// read back from the file, once, and is the header kept otherwise.
func TestSpoolSharedHeadFromFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	raw := []byte(strings.Repeat("X-Pad: "+strings.Repeat("y", 90)+"\r\n", 3000) + "\r\nbody\r\n")
	m := NewSpoolMem(64 << 10)
	s := NewSpool(dir, 32<<10)
	s.Share(m)
	for rest := raw; len(rest) > 0; {
		n := min(1000, len(rest))
		s.Write(rest[:n])
		rest = rest[n:]
	}
	if !s.headOff || s.f == nil {
		t.Fatalf("header kept in memory (%d bytes) beyond a share of 64 KiB", len(s.head))
	}
	checkSpool(t, s, raw)
	if h := s.Head(); &h[0] != &s.Head()[0] {
		t.Fatal("Head read the file twice")
	}
	s.Close()
	if m.Left() != 64<<10 {
		t.Fatalf("after Close %d bytes are back", m.Left())
	}
}

// TestSpoolHeadFromFileFails: a header that cannot be read back from the
// file whole fails every later read of the spool, so that no delivery
// routes the message by a header cut short and then succeeds.
func TestSpoolHeadFromFileFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	raw := []byte(strings.Repeat("X-Pad: "+strings.Repeat("y", 90)+"\r\n", 300) + "\r\nbody\r\n")
	s := NewSpool(dir, 1024)
	s.Share(NewSpoolMem(0))
	defer s.Close()
	if _, err := s.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if !s.headOff {
		t.Fatal("header kept in memory with no share")
	}
	s.f.Truncate(500) // an i/o error part-way
	if h := s.Head(); len(h) > 500 {
		t.Fatalf("Head = %d bytes from a file of 500", len(h))
	}
	if n, err := s.ReadAt(make([]byte, 100), 0); err == nil {
		t.Fatalf("ReadAt after a failed Head read %d bytes, no error", n)
	}
}

// TestSpoolStaleNames: without O_TMPFILE, a spool file name that a
// popfetch killed between creating and removing it left behind is
// removed when the next spool file is made; a fresh one, perhaps another
// popfetch's right now, and other files are not.
func TestSpoolStaleNames(t *testing.T) {
	spoolTmpfile = func(int) (int, error) { return -1, syscall.EOPNOTSUPP }
	defer func() { spoolTmpfile = openTmpfile }()
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, name := range []string{"popfetch-spool-0123456789abcdef01234567", "popfetch-spool-fresh", "other"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if name != "popfetch-spool-fresh" {
			os.Chtimes(p, old, old)
		}
	}
	s := fillSpool(t, dir, 4, []byte("A: b\r\n\r\nbody\r\n"), nil)
	s.Close()
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "other popfetch-spool-fresh" {
		t.Fatalf("spool directory holds %q; want the stale name gone, the rest kept", left)
	}
}

// TestMessageWriteTo checks that WriteTo writes exactly the message,
// from Raw, from a spool in memory and from a spool file (more than one
// chunk), in one Write when it is in memory, and fails on a closed spool.
func TestMessageWriteTo(t *testing.T) {
	big := bytes.Repeat([]byte("line of text\r\n"), 10000) // > one 64 KiB chunk
	small := []byte("Subject: x\r\n\r\nbody\r\n")
	for _, tc := range []struct {
		name   string
		raw    []byte
		spool  bool
		memMax int
		writes int // Writes wanted; 0: any number
	}{
		{"raw", small, false, 0, 1},
		{"empty raw", nil, false, 0, 0},
		{"spool in memory", small, true, 0, 1},
		{"big spool in memory", big, true, len(big), 1},
		{"spool file", small, true, 1, 0},
		{"big spool file", big, true, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Message{Raw: tc.raw}
			if tc.spool {
				m = &Message{Spool: fillSpool(t, t.TempDir(), tc.memMax, tc.raw, []int{7, 4096})}
				if err := m.Spool.Flush(); err != nil {
					t.Fatal(err)
				}
				defer m.Close()
			}
			var w countingWriter
			n, err := m.WriteTo(&w)
			if err != nil || n != int64(len(tc.raw)) || !bytes.Equal(w.b, tc.raw) {
				t.Fatalf("WriteTo = %d, %v; wrote %d bytes, equal %v; want %d", n, err, len(w.b), bytes.Equal(w.b, tc.raw), len(tc.raw))
			}
			if tc.writes > 0 && w.n != tc.writes {
				t.Errorf("%d Writes, want %d", w.n, tc.writes)
			}
		})
	}
	m := &Message{Spool: fillSpool(t, t.TempDir(), 0, small, nil)}
	m.Close()
	if n, err := m.WriteTo(io.Discard); n != 0 || !errors.Is(err, errSpoolClosed) {
		t.Errorf("WriteTo of a closed spool = %d, %v; want 0, %v", n, err, errSpoolClosed)
	}
}

// countingWriter keeps what is written and counts the Writes.
type countingWriter struct {
	b []byte
	n int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	w.n++
	return len(p), nil
}

// TestMessageWriteToShort: a Writer that takes less than it is given
// without saying why (breaking io.Writer's contract) must not let
// WriteTo report the message written, in memory or from a spool file
// alike (io.Copy reports io.ErrShortWrite for it).
func TestMessageWriteToShort(t *testing.T) {
	raw := []byte("Subject: x\r\n\r\nbody\r\n")
	for _, tc := range []struct {
		name   string
		spool  bool
		memMax int
	}{
		{"raw", false, 0},
		{"spool in memory", true, len(raw)},
		{"spool file", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Message{Raw: raw}
			if tc.spool {
				m = &Message{Spool: fillSpool(t, t.TempDir(), tc.memMax, raw, nil)}
				if err := m.Spool.Flush(); err != nil {
					t.Fatal(err)
				}
				defer m.Close()
			}
			n, err := m.WriteTo(shortWriter{})
			if !errors.Is(err, io.ErrShortWrite) || n >= int64(len(raw)) {
				t.Fatalf("WriteTo to a short writer = %d, %v; want fewer than %d bytes and %v", n, err, len(raw), io.ErrShortWrite)
			}
		})
	}
}

// shortWriter takes one byte fewer than it is given, and no error.
type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return max(len(p)-1, 0), nil }
