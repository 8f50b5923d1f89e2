package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
	"golang.org/x/text/width"
)

// The progress display of a one-shot `popfetch fetch` on a terminal: one
// line at the bottom of stderr, redrawn in place. It is one line for all
// the accounts being polled, not one per account: a single line needs no
// cursor movement, so it cannot be left scattered over the screen by a
// resized terminal or a line that wraps. While one account is polled it
// names that account; while several are, it shows their totals.
//
// The poll's callbacks (fetch.PollProgress) only update counters; a
// goroutine of the display draws at most every progressEvery. Everything
// else written to the terminal (the log, the summary lines) goes through
// progressLine.writer, which clears the line first and draws it again
// after, so the progress never lands inside a log line.

const (
	progressEvery = 100 * time.Millisecond
	// clearLine returns to the line's start and erases it (ECMA-48 EL 0).
	clearLine = "\r\x1b[K"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminalWidth is w's width in columns, 80 if unknown.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}

type acctProgress struct {
	msgs, done      int
	bytes, doneSize int64
	start           time.Time
}

// progressLine is the display; it implements fetch.PollProgress.
type progressLine struct {
	now   func() time.Time
	width func() int

	mu    sync.Mutex // guards accts and order
	accts map[string]*acctProgress
	order []string // accounts in the order they started
	kick  chan struct{}

	term sync.Mutex // owns the terminal: guards w, line and every write
	w    io.Writer
	line string // the text on the screen now, "" when none
	// partial: the last write through writer did not end its line; the
	// progress waits for the rest, as "\r" would overwrite it.
	partial bool

	stop, stopped chan struct{}
}

func newProgressLine(w io.Writer, now func() time.Time, width func() int) *progressLine {
	return &progressLine{now: now, width: width, w: w, accts: map[string]*acctProgress{}, kick: make(chan struct{}, 1)}
}

// run draws until close; at most every progressEvery, and at once when an
// account starts or ends.
func (p *progressLine) run() {
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			case <-p.kick:
			}
			p.draw()
		}
	}()
}

// close stops the drawing and clears the line: the terminal is left as if
// there had been no display.
func (p *progressLine) close() {
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
	}
	p.term.Lock()
	defer p.term.Unlock()
	if p.line != "" {
		io.WriteString(p.w, clearLine)
		p.line = ""
	}
}

func (p *progressLine) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *progressLine) Start(account string, msgs int, bytes int64) {
	p.mu.Lock()
	if _, ok := p.accts[account]; !ok {
		p.order = append(p.order, account)
	}
	p.accts[account] = &acctProgress{msgs: msgs, bytes: bytes, start: p.now()}
	p.mu.Unlock()
	p.poke()
}

func (p *progressLine) Done(account string, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a := p.accts[account]; a != nil {
		a.done++
		a.doneSize += bytes
	}
}

func (p *progressLine) End(account string) {
	p.mu.Lock()
	delete(p.accts, account)
	for i, n := range p.order {
		if n == account {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	p.poke()
}

// text is the line for the accounts being polled now, "" for none.
func (p *progressLine) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.order) == 0 {
		return ""
	}
	var sum acctProgress
	for i, n := range p.order {
		a := p.accts[n]
		sum.msgs += a.msgs
		sum.done += a.done
		sum.bytes += a.bytes
		sum.doneSize += a.doneSize
		if i == 0 || a.start.Before(sum.start) {
			sum.start = a.start
		}
	}
	// Account names are the rc file's, still not trusted to the terminal.
	name := termSafe(p.order[0], 0)
	if len(p.order) > 1 {
		name = strconv.Itoa(len(p.order)) + " accounts"
	}
	var b strings.Builder
	fmt.Fprintf(&b, ": %d/%d messages, %s/%s", sum.done, sum.msgs, humanBytes(sum.doneSize), humanBytes(sum.bytes))
	// The rate is the average since the start: steady enough to read,
	// and the ETA follows from it. Until a message is done there is no
	// rate to tell.
	if el := p.now().Sub(sum.start); sum.doneSize > 0 && el > 0 {
		rate := float64(sum.doneSize) / el.Seconds()
		fmt.Fprintf(&b, ", %s/s", humanBytes(int64(rate)))
		if left := sum.bytes - sum.doneSize; left > 0 {
			eta := time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second)
			fmt.Fprintf(&b, ", ETA %s", eta)
		}
	}
	return fitWidth(name, b.String(), p.width())
}

// draw puts the current text on the terminal if it changed.
func (p *progressLine) draw() {
	s := p.text()
	p.term.Lock()
	defer p.term.Unlock()
	if s == p.line || p.partial {
		return
	}
	if s == "" {
		io.WriteString(p.w, clearLine)
	} else {
		io.WriteString(p.w, "\r"+s+"\x1b[K")
	}
	p.line = s
}

// writer returns w such that each write clears the progress line first and,
// when it ends a line, draws the progress again below it. w and the
// display's own writer may be the same terminal.
func (p *progressLine) writer(w io.Writer) io.Writer {
	return &progressWriter{p: p, w: w}
}

type progressWriter struct {
	p *progressLine
	w io.Writer
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	p := pw.p
	p.term.Lock()
	defer p.term.Unlock()
	line := p.line
	if line != "" {
		io.WriteString(p.w, clearLine)
	}
	n, err := pw.w.Write(b)
	if len(b) > 0 {
		p.partial = b[len(b)-1] != '\n'
	}
	if line != "" && !p.partial {
		io.WriteString(p.w, line+"\x1b[K")
	} else {
		// Not drawn in the middle of a line: the next draw after the
		// line's end does.
		p.line = ""
	}
	return n, err
}

// fitWidth is name followed by rest, in fewer display columns than width:
// a line that reached the last column would wrap on some terminals, and
// "\r" would then redraw only its second half. The name is cut first, so
// the counts stay visible; rest only when even it does not fit.
func fitWidth(name, rest string, width int) string {
	width = max(width, 2) - 1 // the columns the line may take
	if displayCols(name)+displayCols(rest) <= width {
		return name + rest
	}
	if room := width - displayCols(rest); room >= 2 {
		return cutCols(name, room-1) + "…" + rest
	}
	return cutCols(name+rest, width)
}

// displayCols is the number of terminal columns s takes: two for an East Asian
// wide or fullwidth character (UAX #11), one for any other. A combining
// mark counts one too: a terminal that draws it on its base character
// leaves the line shorter, never longer.
func displayCols(s string) int {
	n := 0
	for _, r := range s {
		n += runeCols(r)
	}
	return n
}

func runeCols(r rune) int {
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return 2
	}
	return 1
}

// cutCols is the longest prefix of s that takes at most n columns.
func cutCols(s string, n int) string {
	c := 0
	for i, r := range s {
		if c += runeCols(r); c > n {
			return s[:i]
		}
	}
	return s
}

// humanBytes is n in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	const k = 1024
	switch {
	case n < k:
		return fmt.Sprintf("%d B", n)
	case n < k*k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	case n < k*k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
}
