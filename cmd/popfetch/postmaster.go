package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
	"golang.org/x/text/encoding/htmlindex"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/internal/logsafe"
	"github.com/popfetch/popfetch/rcfile"
)

// maxListHeader bounds what popfetch postmaster reads of each file: the
// header fields it shows are popfetch's own, at the top, and those of the
// message's author, which a header longer than this only hides.
const maxListHeader = 64 << 10

// waiting is one message in the postmaster's Maildir, as listed.
type waiting struct {
	Index        int       `json:"index"`
	Received     time.Time `json:"received"`
	From         string    `json:"from"`
	Subject      string    `json:"subject"`
	Reason       string    `json:"reason"`
	Unrouted     []string  `json:"unrouted"`
	UnroutedMore int       `json:"unrouted_more,omitempty"` // the "(N more)" of a cut X-Popfetch-Unrouted
	File         string    `json:"file"`
	Error        string    `json:"error,omitempty"`
}

// postmaster is `popfetch postmaster [--account NAME] [--json]`.
func (g *globals) postmaster(ctx context.Context, args []string) int {
	fs := g.flags("postmaster")
	account := fs.String("account", "", "")
	asJSON := fs.Bool("json", false, "")
	if !g.parseNoArgs(fs, args) {
		return exitUsage
	}
	cfg, _, ok := g.loadOneShot()
	if !ok {
		return exitConfig
	}
	a, err := pickPostmaster(cfg, *account)
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch postmaster: %v\n", err)
		return exitUsage
	}
	dir := a.Postmaster.Maildir
	list, err := listMaildir(dir)
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch postmaster: account %s: %v\n", a.Name, err)
		return exitFail
	}
	if *asJSON {
		enc := json.NewEncoder(g.stdout)
		for _, w := range list {
			w.Received = w.Received.UTC()
			enc.Encode(w)
		}
		return exitOK
	}
	if len(list) == 0 {
		fmt.Fprintf(g.stdout, "nothing waits in %s (the postmaster of account %s)\n", termSafe(dir, 0), a.Name)
		return exitOK
	}
	writeWaiting(g.stdout, list, time.Local)
	return exitOK
}

// pickPostmaster is the account whose postmaster is listed: the one named,
// else the one account with a postmaster block (or several sharing one
// Maildir). Listing needs a Maildir.
func pickPostmaster(cfg *rcfile.Config, name string) (*rcfile.Account, error) {
	has := func(a *rcfile.Account) bool { return a.Postmaster != nil }
	a, err := pickAccount(cfg, name, "an account with a postmaster block", has)
	if err != nil && name == "" {
		// Several accounts may share one postmaster Maildir.
		var dirs []string
		var first *rcfile.Account
		for _, b := range cfg.Accounts {
			if has(b) && b.Postmaster.Maildir != "" && !slices.Contains(dirs, b.Postmaster.Maildir) {
				dirs = append(dirs, b.Postmaster.Maildir)
				first = b
			}
		}
		if len(dirs) == 1 && !slices.ContainsFunc(cfg.Accounts, func(b *rcfile.Account) bool { return has(b) && b.Postmaster.Maildir == "" }) {
			return first, nil
		}
	}
	if err != nil {
		return nil, err
	}
	if a.Postmaster.Maildir == "" {
		return nil, fmt.Errorf("account %s: the postmaster is not a Maildir; listing needs a Maildir postmaster (the messages of an mda or smtp postmaster are wherever that program or server put them)", a.Name)
	}
	return a, nil
}

// listMaildir lists the messages in dir's new/ and cur/, oldest first.
// A missing Maildir, or one without new/ and cur/ yet, holds nothing; an
// unreadable file is listed with Error set.
func listMaildir(dir string) ([]waiting, error) {
	var list []waiting
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			list = append(list, readWaiting(filepath.Join(dir, sub, e.Name()), e))
		}
	}
	slices.SortStableFunc(list, func(a, b waiting) int {
		if c := a.Received.Compare(b.Received); c != 0 {
			return c
		}
		return strings.Compare(a.File, b.File)
	})
	for i := range list {
		list[i].Index = i + 1
	}
	return list, nil
}

// readWaiting reads the header of one Maildir file. The file is opened
// without following a symbolic link or blocking on a FIFO, and checked
// on the descriptor: what e said when the directory was read may no
// longer be true (anyone who can write the Maildir can swap the name).
func readWaiting(path string, e fs.DirEntry) waiting {
	w := waiting{File: path}
	if t, ok := maildirTime(e.Name()); ok {
		w.Received = t
	}
	w.Unrouted = []string{}
	fail := func(err error) waiting {
		w.Error = termSafe(strings.TrimSpace(err.Error()), 200)
		return w
	}
	if fi, err := e.Info(); err != nil {
		return fail(err)
	} else if !fi.Mode().IsRegular() {
		if w.Received.IsZero() {
			w.Received = fi.ModTime()
		}
		return fail(errors.New("not a regular file"))
	}
	f, err := openListed(path)
	if err != nil {
		return fail(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fail(err)
	}
	if w.Received.IsZero() {
		w.Received = fi.ModTime()
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return fail(errors.New("not a regular file"))
	}
	head := make([]byte, maxListHeader)
	n, err := io.ReadFull(f, head)
	f.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fail(err)
	}
	h, err := parseHeader(head[:n], n == maxListHeader)
	w.From = fromAddress(h.Get("From"))
	w.Subject = termSafe(decodeWords(h.Get("Subject")), 1000)
	// popfetch's own fields only: those above its Received field (a
	// sender can write an X-Popfetch-Reason or -Unrouted of its own
	// below it), as --learn reads them.
	reason, _ := deliver.OwnField(head[:n], "X-Popfetch-Reason")
	w.Reason = termSafe(reason, 1000)
	un, _ := deliver.OwnField(head[:n], unroutedField)
	w.Unrouted, w.UnroutedMore = unrouted(un)
	if err != nil {
		return fail(err)
	}
	return w
}

// maildirTime is the delivery time a Maildir file name starts with:
// "<seconds>." and, in the modern form, "M<microseconds>" after the dot.
func maildirTime(name string) (time.Time, bool) {
	secs, rest, ok := strings.Cut(name, ".")
	s, err := strconv.ParseInt(secs, 10, 64)
	if !ok || err != nil || s <= 0 {
		return time.Time{}, false
	}
	var us int64
	if r, ok := strings.CutPrefix(rest, "M"); ok {
		end := strings.IndexFunc(r, func(c rune) bool { return c < '0' || c > '9' })
		if end > 0 {
			if v, err := strconv.ParseInt(r[:end], 10, 64); err == nil && v < 1e6 {
				us = v
			}
		}
	}
	return time.Unix(s, us*1000), true
}

// parseHeader reads the header section at the start of b. cut says b is
// only the start of the file: its last field, perhaps incomplete, is
// dropped. An error says the header is malformed (or missing); the
// fields before the problem are returned all the same.
func parseHeader(b []byte, cut bool) (textproto.Header, error) {
	end := bytes.Index(b, []byte("\n\n"))
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 && (end < 0 || i < end) {
		end = i
	}
	switch {
	case end >= 0:
		b = b[:end+1]
	case cut:
		// Drop the last field, which may be incomplete: back to the
		// start of the last line that does not start with white space.
		b = b[:bytes.LastIndexByte(b, '\n')+1]
		for len(b) > 0 {
			j := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
			first := b[j]
			b = b[:j]
			if first != ' ' && first != '\t' {
				break
			}
		}
	}
	h, err := textproto.ReadHeader(bufio.NewReader(io.MultiReader(bytes.NewReader(b), strings.NewReader("\n"))))
	if err != nil {
		return h, fmt.Errorf("malformed header: %v", err)
	}
	if h.Len() == 0 {
		return h, errors.New("no header")
	}
	return h, nil
}

// wordDecoder decodes RFC 2047 encoded-words in any charset the WHATWG
// Encoding Standard names, without changing go-message's global charset
// reader (which the routing code's address parser shares).
var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, err
	}
	return enc.NewDecoder().Reader(r), nil
}}

// decodeWords decodes the encoded-words of an unstructured value such as
// Subject; a value it cannot decode is shown as it is.
func decodeWords(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// fromAddress is the address of the first mailbox in From; if the value
// does not parse, the <...> it ends with, else the raw value (made safe).
// A long value is not parsed: a From is never that long, and address
// parsers have had quadratic cases.
func fromAddress(v string) string {
	if len(v) <= 2000 {
		p := mail.AddressParser{WordDecoder: wordDecoder}
		if l, err := p.ParseList(v); err == nil && len(l) > 0 {
			return termSafe(l[0].Address, 320)
		}
	}
	v = strings.TrimSpace(v)
	if i := strings.LastIndexByte(v, '<'); i >= 0 && strings.HasSuffix(v, ">") && i < len(v)-2 {
		v = v[i+1 : len(v)-1]
	}
	return termSafe(v, 320)
}

// unrouted reads X-Popfetch-Unrouted: its addresses and the N of a final
// "(N more)".
func unrouted(v string) ([]string, int) {
	v = strings.TrimSpace(v)
	more := 0
	if i := strings.LastIndexByte(v, '('); i >= 0 && strings.HasSuffix(v, " more)") {
		if n, err := strconv.Atoi(strings.TrimSuffix(v[i+1:], " more)")); err == nil {
			more = n
			v = strings.TrimSpace(v[:i])
		}
	}
	var out []string
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, termSafe(a, 320))
		}
	}
	return out, more
}

// termSafe makes s safe to print on a terminal: invalid UTF-8 becomes
// U+FFFD, an ANSI escape sequence (CSI, OSC, or ESC and one character) and
// every other control character becomes '?', a tab or line separator a
// space, and the bidirectional controls that can make text read in
// another order than it is stored ("Trojan Source") '?'. With max > 0 it
// keeps at most max runes, the last of them "…" when it cut.
// The characters are logsafe.Unsafe's, as in a log line; the rendering
// differs on purpose: a table row of header values is read, not decoded,
// so one '?' per character (and per escape sequence) keeps its columns,
// where logsafe.Escape writes a reversible \x1b.
func termSafe(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0x1b:
			n += escapeLen(s[i+n:])
			b.WriteByte('?')
		case r == '\t' || r == '\u2028' || r == '\u2029':
			b.WriteByte(' ')
		case logsafe.Unsafe(r):
			b.WriteByte('?')
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	out := b.String()
	if max > 0 && utf8.RuneCountInString(out) > max {
		rs := []rune(out)
		out = string(rs[:max-1]) + "…"
	}
	return out
}

// escapeLen is the length of the rest of an escape sequence after ESC:
// CSI ("[" parameters, final byte 0x40-0x7e), OSC ("]" ... BEL or ESC \),
// or one character.
func escapeLen(s string) int {
	if s == "" {
		return 0
	}
	switch s[0] {
	case '[':
		for i := 1; i < len(s); i++ {
			if s[i] >= 0x40 && s[i] <= 0x7e {
				return i + 1
			}
		}
		return len(s)
	case ']':
		for i := 1; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
		return len(s)
	}
	_, n := utf8.DecodeRuneInString(s)
	return n
}

// Column widths of the listing, in runes.
const (
	widthFrom     = 32
	widthSubject  = 40
	widthReason   = 48
	widthUnrouted = 40
)

// writeWaiting prints the listing: one row per message, the file path
// last and whole (quoted if it would not print as itself), so that it can
// be given to popfetch reroute.
func writeWaiting(w io.Writer, list []waiting, loc *time.Location) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tRECEIVED\tFROM\tSUBJECT\tREASON\tUNROUTED\tFILE")
	cell := func(s string, width int) string {
		if s = termSafe(s, width); s == "" {
			return "-"
		}
		return s
	}
	for _, m := range list {
		subject := m.Subject
		if m.Error != "" {
			subject = "[error: " + m.Error + "]"
		}
		un := strings.Join(m.Unrouted, ", ")
		if m.UnroutedMore > 0 {
			un += fmt.Sprintf(" (+%d more)", m.UnroutedMore)
		}
		file := m.File
		if termSafe(file, 0) != file || strings.ContainsAny(file, " \t") {
			file = strconv.Quote(file)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Index, m.Received.In(loc).Format("2006-01-02 15:04"),
			cell(m.From, widthFrom), cell(subject, widthSubject), cell(m.Reason, widthReason), cell(un, widthUnrouted), file)
	}
	tw.Flush()
}
