package fetch

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
)

// The body digest reads a bare CR as a line end, as every delivery writes
// it (deliver.Open: LF for a Maildir copy and an MDA, CRLF for SMTP and
// LMTP). These tests hold the digester to that rule for messages full of
// CRs, fed in pieces of any size, and check that a Maildir copy written
// by each of deliver's paths is known for the message's by ourCopy.

// crBodyParts are pieces of a body heavy in CRs and line ends.
var crBodyParts = []string{
	"\r", "\n", "\r\n", "\r\r\n", "\n\r", "\r\r", "\r\n\r\n", "x", "line", ".", "..\r\n",
	" ", "\t", "\x00", "\xff", "From x\r\n", "Subject: not a field\r",
}

// crHeaderParts are header lines with no bare CR (every CR ends a line
// with its LF): the header Open writes has the same lines then.
var crHeaderParts = []string{
	"Subject: a\r\n", "From: b@x\n", " folded\r\n", "\tfold\n", "Status: RO\r\n",
	"garbage\r\n", "Name : v\n", "X: \r\n",
}

// crBareHeaderParts are header lines with a bare CR: Open writes it as a
// line end, which the first two make an empty line ending the copy's
// header early, the others not.
var crBareHeaderParts = []string{
	"X: a\r\r\n", "X: a\r\rB: c\r\n", "X: a\rB: c\r\n", "\rX: a\n", "X: a\r b\r\n",
}

// crMessage builds a message of random header lines without a bare CR
// (with one, with bareHeader), an empty line (or none, sometimes), and
// a body of crBodyParts; big
// ones cross eolReader's 64 KiB chunks and the digester's buffers with
// CRs around the chunk edges. It ends in a line end, as every POP3 reply
// does.
func crMessage(r *rand.Rand, big, bareHeader bool) []byte {
	var b bytes.Buffer
	for n := r.Intn(6); n > 0; n-- {
		b.WriteString(crHeaderParts[r.Intn(len(crHeaderParts))])
	}
	if bareHeader {
		b.WriteString(crBareHeaderParts[r.Intn(len(crBareHeaderParts))])
		for n := r.Intn(3); n > 0; n-- {
			b.WriteString(crHeaderParts[r.Intn(len(crHeaderParts))])
		}
	}
	switch r.Intn(8) {
	case 0: // no header/body separator
		if b.Len() == 0 {
			b.WriteString("Subject: only\r\n")
		}
		return b.Bytes()
	case 1:
		b.WriteString("\n")
	default:
		b.WriteString("\r\n")
	}
	size := r.Intn(200)
	if big {
		size = 256<<10 + r.Intn(200<<10)
	}
	for b.Len() < size {
		if big && r.Intn(4) == 0 {
			// Plain text up to near the next 64 KiB edge, then a
			// CR form across it.
			edge := (b.Len()/(64<<10) + 1) * (64 << 10)
			if gap := edge - b.Len() - 1 - r.Intn(3); gap > 0 {
				b.Write(bytes.Repeat([]byte("y"), gap))
			}
			b.WriteString([]string{"\r", "\r\n", "\r\r\n", "\r\r"}[r.Intn(4)])
			continue
		}
		if big && r.Intn(3) == 0 {
			b.Write(bytes.Repeat([]byte("z"), r.Intn(10000)))
		}
		b.WriteString(crBodyParts[r.Intn(len(crBodyParts))])
	}
	switch r.Intn(6) {
	case 0:
		b.WriteString("\r") // a final bare CR: Open adds no line end after it
	case 1:
		b.WriteString("\n")
	default:
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// writeRandomPieces writes raw to w in pieces of random sizes, from one
// byte to more than the digester's and eolReader's buffers.
func writeRandomPieces(r *rand.Rand, w io.Writer, raw []byte) {
	for len(raw) > 0 {
		var n int
		switch r.Intn(4) {
		case 0:
			n = 1 + r.Intn(3)
		case 1:
			n = 1 + r.Intn(64)
		case 2:
			n = 1 + r.Intn(9<<10)
		default:
			n = 1 + r.Intn(70<<10)
		}
		n = min(n, len(raw))
		w.Write(raw[:n])
		raw = raw[n:]
	}
}

// TestDigesterBareCR: over CR-heavy messages, small and larger than the
// digester's buffers, written in pieces of random sizes, the digests are
// those of the simple reference (oldHeaderDigest, oldBodyDigest: the body
// with CRLF, then every CR, as LF).
func TestDigesterBareCR(t *testing.T) {
	r := rand.New(rand.NewSource(23))
	for i := 0; i < 3000; i++ {
		raw := crMessage(r, i%100 == 0, i%3 == 0)
		d := newDigester()
		if i%2 == 0 {
			writeRandomPieces(r, d, raw)
		} else {
			writePieces(r, d, raw)
		}
		head, body := d.sums()
		d.free()
		if want := oldHeaderDigest(raw); head != want {
			t.Fatalf("message %d (%d bytes): header digest %s; reference %s", i, len(raw), head, want)
		}
		if want := oldBodyDigest(raw); body != want {
			t.Fatalf("message %d (%d bytes): body digest %s; reference %s", i, len(raw), body, want)
		}
	}
}

// headerBareCR reports whether the header of raw (up to the empty line
// that ends it, as the digester finds it, or all of raw without one)
// holds a CR that is not its line's last byte before LF. Open writes
// such a CR as a line end, which may end the copy's header earlier.
func headerBareCR(raw []byte) bool {
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		line := raw
		if i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if i < 0 {
			// A last line without LF: Open writes a CR at its end
			// as a line end too, which may be the empty line that
			// gives the copy a body the message has not.
			return bytes.IndexByte(line, '\r') >= 0
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return false
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			return true
		}
	}
	return false
}

// copyPath is a way deliver writes a single-drop Maildir copy.
type copyPath struct {
	name   string
	commit func(t *testing.T, dir string, raw []byte, r *rand.Rand) string
}

var copyPaths = []copyPath{
	{"from memory", func(t *testing.T, dir string, raw []byte, _ *rand.Rand) string {
		return commitCopy(t, dir, "u1", raw)
	}},
	{"from a spool", func(t *testing.T, dir string, raw []byte, r *rand.Rand) string {
		s := deliver.NewSpool(filepath.Join(filepath.Dir(dir), "spool"), 1+r.Intn(64<<10))
		defer s.Close()
		writeRandomPieces(r, s, raw)
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		return commitMessage(t, dir, &deliver.Message{Account: "test", Server: "pop.test", UID: "u1", Fetched: time.Now(), Spool: s}, nil)
	}},
	{"streamed as it arrives", func(t *testing.T, dir string, raw []byte, r *rand.Rand) string {
		s := deliver.NewSpool(filepath.Join(filepath.Dir(dir), "spool"), 1+r.Intn(64<<10))
		defer s.Close()
		m := &deliver.Message{Account: "test", Server: "pop.test", UID: "u1", Fetched: time.Now(), Spool: s}
		md := deliver.NewMaildir(dir, deliver.MaildirOptions{LocalHost: "h"})
		defer md.Close()
		w := md.Stream(context.Background(), m, deliver.Recipient{}, nil)
		if w == nil {
			t.Fatal("Stream began no copy")
		}
		writeRandomPieces(r, io.MultiWriter(s, w), raw)
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		return commitMessage(t, dir, m, md)
	}},
}

// commitMessage delivers m into the Maildir at dir (md, or a new one)
// with Prepare and Commit, and returns the copy's path.
func commitMessage(t *testing.T, dir string, m *deliver.Message, md *deliver.Maildir) string {
	t.Helper()
	if md == nil {
		md = deliver.NewMaildir(dir, deliver.MaildirOptions{LocalHost: "h"})
		defer md.Close()
	}
	p, err := md.Prepare(context.Background(), m, "", deliver.Recipient{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	return p.Path()
}

// TestOurCopyBareCRProperty: for random CR-heavy messages whose header
// holds no bare CR, the copy each of deliver's Maildir paths writes
// (from memory, from a spool file, streamed as the message arrives) is
// known by ourCopy for the message's identity, computed from memory and
// from a spool in pieces alike: a kill between the copy's rename and
// its journal record delivers none of them twice. With a bare CR in
// the header, the copy is known unless that CR makes the empty line that
// ends the copy's header (then it comes twice, never lost). And the copy of
// another message of the same size whose body differs is not taken for
// it.
func TestOurCopyBareCRProperty(t *testing.T) {
	r := rand.New(rand.NewSource(24))
	dir := filepath.Join(t.TempDir(), "Maildir")
	spoolDir := filepath.Join(t.TempDir(), "spool")
	n := 400
	if testing.Short() {
		n = 60
	}
	bareOurs := map[bool]int{} // messages with a bare CR in the header, by ours
	for i := 0; i < n; i++ {
		bare := i%4 == 3
		raw := crMessage(r, i%40 == 0, bare)
		if headerBareCR(raw) != bare {
			t.Fatalf("crMessage made a header with a bare CR %v, want %v: %q", !bare, bare, raw)
		}
		// The copy is known exactly when its body, after the first
		// empty line Open writes, is the message's: always without
		// a bare CR in the header; with one, when that CR does not
		// make the empty line.
		lf, err := io.ReadAll(deliver.Open(&deliver.Message{Raw: raw}, nil, true))
		if err != nil {
			t.Fatal(err)
		}
		ours := bodyDigest(lf) == bodyDigest(raw)
		if bare {
			bareOurs[ours]++
		}
		if !bare && !ours {
			t.Fatalf("message %d: Open's copy has another body: %.300q", i, raw)
		}
		id := identityOf(int64(len(raw)), raw)
		s := deliver.NewSpool(spoolDir, 1+r.Intn(64<<10))
		writeRandomPieces(r, s, raw)
		spooled, err := messageIdentity(int64(len(raw)), &deliver.Message{UID: "u1", Spool: s})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if spooled != id {
			t.Fatalf("message %d: identity %v from a spool, %v from memory", i, spooled, id)
		}
		cp := copyPaths[i%len(copyPaths)]
		path := cp.commit(t, dir, raw, r)
		if err := ourCopy(path, id); (err == nil) != ours {
			t.Fatalf("message %d (%d bytes), copy %s: ourCopy = %v; want ours %v\n%.300q", i, len(raw), cp.name, err, ours, raw)
		}
		if bare && !ours {
			continue
		}
		// A body that differs in one byte (not a line end) is
		// another message: its copy, of the same size, is not ours.
		other := bytes.Clone(raw)
		if j := bytes.LastIndexAny(other, "xyz."); j >= 0 {
			other[j] = 'Q'
			if bodyDigest(other) != bodyDigest(raw) {
				if err := ourCopy(cp.commit(t, dir, other, r), id); err == nil {
					t.Fatalf("message %d, copy %s: another body's copy taken for the message's", i, cp.name)
				}
			}
		}
	}
	if bareOurs[true] == 0 || bareOurs[false] == 0 {
		t.Errorf("messages with a bare CR in the header: %d known, %d not; want some of each", bareOurs[true], bareOurs[false])
	}
}

// FuzzBodyDigestOfCopy: for a message whose header holds no bare CR and
// that ends in a line end (as a POP3 reply does), what every delivery
// writes (deliver.Open: with LF line ends for a Maildir copy and an MDA,
// CRLF for SMTP and LMTP, after the fields popfetch adds) has the body
// digest of the message, so ourCopy knows a Maildir copy for it. And a
// message whose body spells its line ends otherwise (CRLF, LF or a bare
// CR for each) has the same body digest and is delivered byte for byte
// as the message is: two messages the body digest cannot tell apart are
// two that no delivery tells apart either (digest equal means the bodies
// with every line end as LF are equal, which is what Open writes), so
// taking one for the other delivers the same copy and loses nothing.
func FuzzBodyDigestOfCopy(f *testing.F) {
	for _, s := range []string{
		digestBase, "", "\r\n", "a: b\r\n\r\nx\ry\r\r\nz\r\n", "a: b\n\n\r\r\r", "a: b\r\n\r\n\n\r\n\r",
		"no separator\r\n", "a: b\r\n\r", "\r\n\r\r\n", "a\rb: c\r\n\r\nd\r\n",
	} {
		f.Add([]byte(s), int64(len(s)))
	}
	f.Fuzz(func(t *testing.T, raw []byte, seed int64) {
		if headerBareCR(raw) || len(raw) > 0 && raw[len(raw)-1] != '\n' && raw[len(raw)-1] != '\r' {
			return // not shown to be the copy (ourCopy): a duplicate at worst
		}
		fields := []deliver.Field{{Name: "Delivered-To", Value: "u@example.com"}}
		want := bodyDigest(raw)
		open := func(raw []byte, lf bool) []byte {
			b, err := io.ReadAll(deliver.Open(&deliver.Message{Raw: raw}, fields, lf))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		lfCopy, crlfCopy := open(raw, true), open(raw, false)
		if got := bodyDigest(lfCopy); got != want {
			t.Fatalf("%q: the LF copy %q has body digest %s; the message %s", raw, lfCopy, got, want)
		}
		if got := bodyDigest(crlfCopy); got != want {
			t.Fatalf("%q: the CRLF copy %q has body digest %s; the message %s", raw, crlfCopy, got, want)
		}
		// The message with its body's line ends spelt at random.
		body, ok := oldBodyOf(raw)
		if !ok {
			return
		}
		r := rand.New(rand.NewSource(seed))
		other := bytes.Clone(raw[:len(raw)-len(body)])
		lf := lineEndsLF(body)
		lastCR := false
		for _, c := range lf {
			if c != '\n' {
				other = append(other, c)
				lastCR = false
				continue
			}
			// After a bare CR an LF would join it into one CRLF.
			forms := []string{"\r\n", "\r", "\n"}
			if lastCR {
				forms = forms[:2]
			}
			e := forms[r.Intn(len(forms))]
			other = append(other, e...)
			lastCR = e == "\r"
		}
		if got := bodyDigest(other); got != want {
			t.Fatalf("%q and %q: body digests %s and %s", raw, other, want, got)
		}
		if o := open(other, true); !bytes.Equal(o, lfCopy) {
			t.Fatalf("%q and %q, one body digest: LF copies %q and %q", raw, other, lfCopy, o)
		}
		if o := open(other, false); !bytes.Equal(o, crlfCopy) {
			t.Fatalf("%q and %q, one body digest: CRLF copies %q and %q", raw, other, crlfCopy, o)
		}
	})
}
