package pop3

import (
	"bufio"
	"fmt"
	"io"
	"time"
)

// firstMax is how much of a multi-line reply's first line readBody keeps
// (Conn.first): enough to tell a status line (isStatusLine) and to quote
// it in an error (quote keeps 120 bytes).
const firstMax = 512

// readBody reads the rest of a multi-line reply, after its status line,
// from the guard's reader, within budget bytes (the LF-terminated lines
// and the terminating "." line as they come off the wire) and by the
// deadline, and writes the lines to w with the byte-stuffing undone, as
// it goes, in writes of at most about readBuf bytes. It returns the
// bytes written to w.
//
// The bytes written are exactly those go-pop3's ReadAll returns for the
// same reply (FuzzReadBody, TestGoPOP3PinsMultiLine): a line is what comes
// up to and including a '\n'; its "\r\n", or its '\n' if no '\r' comes
// before, is removed; a line that is then "." ends the reply; one leading
// dot is removed from any other; and each line is written with "\r\n". So
// a bare LF ends a line and becomes CRLF, a bare CR stays, and "\r\r\n"
// keeps one CR. Nothing is held per line: a line longer than the reader's
// buffer goes out in pieces.
//
// A reply that ends before its "." line (EOF, the deadline, the budget)
// ends the session: it is never handed on whole, as a partial message
// would be delivered truncated; the caller discards what w received. So
// does an error from w, wrapped with ErrSink: the rest of the reply is
// unread, so the replies are no longer in step. The first firstMax bytes
// of the first line written are left in c.first.
func (c *Conn) readBody(verb string, budget int64, deadline time.Time, w io.Writer) (int64, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	g := c.g
	g.expect(budget, deadline)
	if c.unstuffed == nil {
		c.unstuffed = make([]byte, 0, readBuf+len(crlf))
		c.first = make([]byte, 0, firstMax)
	}
	u := unstuffer{w: w, out: c.unstuffed[:0], first: c.first[:0]}
	var lines uint64
	// start: the next chunk begins a line; cr: the chunk before, a piece
	// of a long line, ended in '\r', held back until it is known whether
	// the '\n' of "\r\n" follows.
	start, cr := true, false
	var err error
	for {
		var chunk []byte
		chunk, err = g.br.ReadSlice('\n')
		g.budget -= int64(len(chunk))
		if g.budget < 0 {
			err = ErrBudget
		}
		if err != nil && err != bufio.ErrBufferFull {
			// EOF before the terminating "." means a truncated
			// reply.
			err = fmt.Errorf("%s: incomplete multi-line reply: %w", verb, err)
			break
		}
		whole := err == nil // the chunk ends a line
		line := chunk
		if cr {
			cr = false
			if whole && len(chunk) == 1 {
				// The '\n' of the "\r\n" held back.
				line = line[:0]
			} else {
				u.add(crOnly)
			}
		}
		if whole {
			lines++
			line = line[:max(len(line)-1, 0)]
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			if start && len(line) == 1 && line[0] == '.' {
				break
			}
		} else if len(line) > 0 && line[len(line)-1] == '\r' {
			// Perhaps the '\r' of "\r\n": the next chunk tells.
			line, cr = line[:len(line)-1], true
		}
		if start && len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		u.add(line)
		if whole {
			u.firstDone = true
			u.add(crlf)
		}
		if u.err != nil {
			break
		}
		start = whole
	}
	g.lines += lines
	c.lines += lines
	c.first = u.first
	if err == nil && u.err == nil {
		u.flush()
	}
	switch {
	case u.err != nil:
		// The rest of the reply is unread: nothing more can be read
		// or sent in step.
		c.botched = fmt.Errorf("%s: %w: %w", verb, ErrSink, u.err)
	case err != nil:
		c.botched = err
	}
	if c.botched != nil {
		return u.written, c.botched
	}
	return u.written, nil
}

var (
	crlf   = []byte("\r\n")
	crOnly = []byte("\r")
)

// unstuffer collects readBody's output in out and writes it to w whenever
// out is full. After an error from w it writes nothing more.
type unstuffer struct {
	w         io.Writer
	out       []byte
	written   int64
	err       error
	first     []byte // the start of the first line (see readBody)
	firstDone bool
}

func (u *unstuffer) add(b []byte) {
	if !u.firstDone {
		u.first = append(u.first, b[:min(len(b), cap(u.first)-len(u.first))]...)
	}
	if len(u.out)+len(b) > cap(u.out) {
		u.flush()
	}
	u.out = append(u.out, b...)
}

func (u *unstuffer) flush() {
	if u.err != nil || len(u.out) == 0 {
		u.out = u.out[:0]
		return
	}
	n, err := u.w.Write(u.out)
	u.written += int64(n)
	if err == nil && n < len(u.out) {
		err = io.ErrShortWrite
	}
	u.err = err
	u.out = u.out[:0]
}
