package deliver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/popfetch/popfetch/internal/crashpoint"
)

// A large message whose one copy goes into one Maildir is written twice
// otherwise: into its spool as it arrives, then from the spool into the
// Maildir's tmp/ file once the session may deliver it. Stream writes the
// tmp/ file while the message arrives, beside the spool, so that the copy
// left to make after the RETR is an fsync: Prepare takes the streamed file
// for the copy it would have written, if it is that very copy (same
// Maildir, recipient and added fields, every byte written), and writes one
// as usual otherwise. The spool stays the message: everything else reads
// it, and a streamed file nobody takes is removed when the message is
// closed. So a RETR that fails or is cut, a round out of step, a message
// delivered before or filtered, leave nothing in tmp/ or new/, and the
// order intent, commit, record is Prepare's caller's as before.

// streamBuf is the write buffer of a streamed copy: the message arrives
// in lines, and a write(2) per line would cost more than the copy.
const streamBuf = 64 << 10

// streamed is a copy of a message being written into a Maildir's tmp/ as
// the message arrives (see Stream).
type streamed struct {
	mu     sync.Mutex
	d      *Maildir
	rc     Recipient
	fields []Field
	p      *Prepared // holds md and the tmp name until taken or removed
	f      maildirFile
	cw     countWriter
	buf    []byte
	lastCR bool  // the last byte written was a CR: an LF next is its line end
	last   byte  // the message's last byte so far
	size   int64 // the message's bytes written
	err    error // a failed write: the copy is not taken
	done   bool  // taken or removed
}

// Stream begins the copy of m for rc with the fields extra in the Maildir's
// tmp/ (as Prepare would write it) and returns the writer that the caller
// gives the message to as it arrives: the same bytes, in the same order, as
// m's spool takes, up to the end of the message. Its writes never fail: a
// copy that could not be written is not used, and Prepare writes the copy
// from the spool. m's Fetched and identifying fields must be final, as the
// added fields are written first. It returns nil (nothing to write) when
// the copy cannot be begun; the reason shows again in Prepare.
//
// Prepare takes the copy once m's spool is complete, if its arguments give
// the same fields; Close of m removes a copy not taken.
func (d *Maildir) Stream(ctx context.Context, m *Message, rc Recipient, extra []Field) io.Writer {
	if m.streamed != nil || ctx.Err() != nil || d.folderErr != nil {
		return nil
	}
	dir, err := d.dir(rc)
	if err != nil {
		return nil
	}
	own, err := d.owner(rc)
	if err != nil {
		return nil
	}
	md, _, err := d.acquire(dir, own)
	if err != nil {
		return nil
	}
	fields := d.copyFields(m, rc, extra)
	base, f, err := d.createTmp(md)
	if err != nil {
		d.release(md)
		return nil
	}
	p := &Prepared{d: d, md: md, tmpDir: md.tmp.Name(), newDir: md.new.Name(), tmpName: base}
	if md.own != nil {
		if err := f.Chown(md.own.uid, md.own.gid); err != nil {
			f.Close()
			p.removeTmp()
			p.finish()
			return nil
		}
	}
	s := &streamed{d: d, rc: rc, fields: fields, p: p, f: f, buf: make([]byte, 0, streamBuf)}
	s.cw.w = f
	// The fields as Open writes them in front of a message.
	head, _ := io.ReadAll(Open(&Message{}, fields, true))
	s.buf = append(s.buf, head...)
	m.streamed = s
	return s
}

// copyFields returns the fields Prepare writes in front of m's copy for rc.
func (d *Maildir) copyFields(m *Message, rc Recipient, extra []Field) []Field {
	fields := make([]Field, 0, len(extra)+2)
	fields = append(fields, extra...)
	if !m.Local {
		fields = append(fields, Received(m, d.host, rc.Address))
	}
	if rc.Address != "" {
		fields = append(fields, Field{Name: "Delivered-To", Value: SafeValue(rc.Address, 320)})
	}
	return fields
}

// createTmp creates a new file in md's tmp/ under a unique name: O_EXCL,
// so that a clash never appends to someone else's file. An error with no
// name is uniqueName's.
func (d *Maildir) createTmp(md *openMaildir) (string, maildirFile, error) {
	var (
		base string
		f    maildirFile
		err  error
	)
	for range maxNameTries {
		if base, err = d.uniqueName(); err != nil {
			return "", nil, err
		}
		md.dirOps.Lock()
		f, err = d.fs.OpenExcl(md.tmp, base, 0o600)
		md.dirOps.Unlock()
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return base, f, err
}

// Write converts p, the next bytes of the message, as Open does for a
// Maildir copy (CRLF, bare CR and bare LF become LF) and writes them.
func (s *streamed) Write(p []byte) (int, error) {
	n := len(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || n == 0 {
		return n, nil
	}
	s.size += int64(n)
	s.last = p[n-1]
	if s.err != nil {
		return n, nil
	}
	if s.lastCR {
		s.lastCR = false
		if p[0] == '\n' {
			p = p[1:]
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			s.put(p)
			break
		}
		s.put(p[:i])
		s.put(nl)
		switch {
		case i+1 == len(p):
			s.lastCR = true
			p = nil
		case p[i+1] == '\n':
			p = p[i+2:]
		default:
			p = p[i+1:]
		}
	}
	return n, nil
}

var nl = []byte{'\n'}

// put appends b to the buffer, writing the buffer out when full.
func (s *streamed) put(b []byte) {
	for len(b) > 0 && s.err == nil {
		if len(s.buf) == cap(s.buf) {
			s.flush()
			continue
		}
		k := copy(s.buf[len(s.buf):cap(s.buf)], b)
		s.buf = s.buf[:len(s.buf)+k]
		b = b[k:]
	}
}

func (s *streamed) flush() {
	if s.err == nil && len(s.buf) > 0 {
		_, s.err = s.cw.Write(s.buf)
	}
	s.buf = s.buf[:0]
}

// take returns the streamed copy of m as the Prepared of Prepare's copy
// for rc with fields, in the Maildir d, once it is durable in tmp/ (the
// file fsynced and closed): ok is false when m has none that is that copy
// of the whole of m, or it was not written completely; the caller writes
// the copy then. An fsync or close that fails is Prepare's error.
func (m *Message) takeStreamed(d *Maildir, target string, rc Recipient, fields []Field) (*Prepared, bool, error) {
	s := m.streamed
	if s == nil {
		return nil, false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done && s.err != nil {
		// Not written whole (a full disk): of no use to anyone, and
		// the space it holds is what the copy written now needs.
		s.removeLocked()
	}
	if s.done || s.d != d || s.rc != rc || !sameFields(s.fields, fields) || s.size != m.Size() || s.size > 0 && s.last != m.lastByte() {
		return nil, false, nil
	}
	if s.size > 0 && s.last != '\n' && s.last != '\r' {
		s.put(nl) // Open's final line end
	}
	s.flush()
	s.buf = nil
	// Not written whole; or else what acquire checks before every other
	// copy: the path still leads to the directories the file was
	// created in.
	if s.err != nil || !d.current(s.p.md) {
		s.removeLocked()
		return nil, false, nil
	}
	// The file was open for the whole RETR: whoever can write tmp/ may
	// have renamed or removed it meanwhile and put another file under
	// its name, which Commit would rename into new/ in the copy's place.
	// Its name is left alone then: it is not ours to remove.
	if l, ok := s.f.(linkedFile); ok && !l.linkedAt(s.p.md.tmp, s.p.tmpName) {
		s.done = true
		s.buf = nil
		s.f.Close()
		s.p.finish()
		return nil, false, nil
	}
	s.done = true
	p := s.p
	p.target = target
	if err := d.syncFile(p.md, s.f); err != nil {
		s.f.Close()
		return nil, true, p.fail("fsync tmp file", err)
	}
	crashpoint.Hit("file-synced")
	if err := s.f.Close(); err != nil {
		return nil, true, p.fail("close tmp file", err)
	}
	p.size = s.cw.n
	p.setName(p.tmpName)
	return p, true, nil
}

// linkedFile is a maildirFile that can tell whether it is still the file
// under name in dir.
type linkedFile interface {
	linkedAt(dir *os.File, name string) bool
}

// sameFields reports whether a and b are the same fields in the same order.
func sameFields(a, b []Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// closeStreamed removes m's streamed copy unless Prepare took it.
func (m *Message) closeStreamed() {
	if s := m.streamed; s != nil {
		s.mu.Lock()
		s.removeLocked()
		s.mu.Unlock()
	}
}

func (s *streamed) removeLocked() {
	if s.done {
		return
	}
	s.done = true
	s.buf = nil
	s.f.Close()
	s.p.removeTmp()
	s.p.finish()
}

// tmpNameOf is the tmp/ path of m's streamed copy, "" without one; for
// tests.
func (m *Message) tmpNameOf() string {
	if m.streamed == nil {
		return ""
	}
	return filepath.Join(m.streamed.p.tmpDir, m.streamed.p.tmpName)
}
