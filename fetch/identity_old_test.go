package fetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/internal/testutil"
)

// The digests as they were computed over a whole message in memory: the
// streaming digester must give the same identities, which journals hold.

// lineEndsLF returns b with CRLF, bare CR and bare LF as LF, as
// deliver.Open writes a Maildir copy.
func lineEndsLF(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n"))
}

// oldBodyDigest is the former bodyDigest, with the body's line ends
// read as deliver.Open writes them in a Maildir copy (CRLF, bare CR and
// bare LF as LF), where the former read only CRLF as LF.
func oldBodyDigest(raw []byte) string {
	h := sha256.New()
	body, ok := oldBodyOf(raw)
	if !ok {
		h.Write([]byte{0})
	} else {
		h.Write([]byte{1})
		body = lineEndsLF(body)
		h.Write(body)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func oldBodyOf(raw []byte) ([]byte, bool) {
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			return nil, false
		}
		line := bytes.TrimSuffix(raw[:i], []byte("\r"))
		raw = raw[i+1:]
		if len(line) == 0 {
			return raw, true
		}
	}
	return nil, false
}

// oldValue is the former value: the digester's value writes in other
// pieces, which must hash the same.
type oldValue struct {
	started bool // a word was written
	space   bool // white space is pending
}

func (v *oldValue) write(w io.Writer, b []byte) {
	for len(b) > 0 {
		i := bytes.IndexAny(b, " \t")
		if i < 0 {
			i = len(b)
		}
		if i > 0 {
			if v.space && v.started {
				w.Write([]byte{' '})
			}
			w.Write(b[:i])
			v.started, v.space = true, false
		}
		b = b[i:]
		if n := len(b) - len(bytes.TrimLeft(b, " \t")); n > 0 {
			v.space = true
			b = b[n:]
		}
	}
}

func oldHeaderDigest(raw []byte) string {
	h := sha256.New()
	if _, ok := oldBodyOf(raw); !ok {
		h.Write([]byte("whole\n"))
		oldWriteLF(h, raw)
		return hex.EncodeToString(h.Sum(nil)[:16])
	}
	h.Write([]byte("header\n"))
	open := false  // a field is being written (its value continues on folded lines)
	skip := false  // the field being read is volatile: its folded lines are skipped
	var v oldValue // the value being written
	end := func() {
		if open {
			h.Write([]byte{'\n'})
		}
		open, v = false, oldValue{}
	}
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			switch {
			case skip:
			case open:
				v.write(h, line) // starts with white space
			default:
				// A continuation before any field: not a field.
				h.Write([]byte{0})
				h.Write(line)
				h.Write([]byte{'\n'})
			}
			continue
		}
		end()
		name, value, ok := bytes.Cut(line, []byte(":"))
		name = bytes.TrimRight(name, " \t")
		if !ok || len(name) == 0 || len(name) > maxFieldName || bytes.ContainsAny(name, " \t") {
			// Not a field (garbage, an mbox "From " line): hashed
			// as it is, so two messages that differ there differ.
			skip = false
			h.Write([]byte{0})
			h.Write(line)
			h.Write([]byte{'\n'})
			continue
		}
		lower := bytes.ToLower(name)
		if skip = volatileFields[string(lower)]; skip {
			continue
		}
		h.Write(lower)
		h.Write([]byte{':'})
		open = true
		v.write(h, value)
	}
	end()
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func oldWriteLF(w io.Writer, raw []byte) {
	for len(raw) > 0 {
		i := bytes.Index(raw, []byte("\r\n"))
		if i < 0 {
			w.Write(raw)
			return
		}
		w.Write(raw[:i])
		w.Write([]byte{'\n'})
		raw = raw[i+2:]
	}
}

// randomMessage builds a message from pieces that exercise the digester:
// fields, folds, volatile fields, garbage lines, bare CR and LF, long
// names and white space before colons.
func randomMessage(r *rand.Rand) []byte {
	parts := []string{
		"Subject: hello  world\r\n", "From: a@x\r\n", " folded\r\n", "\tfold \t more \r\n",
		"Status: RO\r\n", "X-UID: 7\r\n", "garbage\r\n", "From x Fri\n", "Name  : v\r\n",
		"Na me: v\r\n", ": v\r\n", "\r\n", "\n", "\r", "\r\r\n", "x", " ", ":", "\t",
		"body line\r\n", "TO:b\n", string(bytes.Repeat([]byte("n"), 255)) + ": v\r\n",
		string(bytes.Repeat([]byte("n"), 257)) + ": v\r\n", "Subject:" + string(bytes.Repeat([]byte(" "), 300)) + "w\r\n",
		"\u00c9T\u00c9: x\r\n", "\xff\xfe: y\r\n",
	}
	var b bytes.Buffer
	for n := r.Intn(30); n > 0; n-- {
		b.WriteString(parts[r.Intn(len(parts))])
	}
	return b.Bytes()
}

// writePieces writes raw to w in pieces of random sizes.
func writePieces(r *rand.Rand, w io.Writer, raw []byte) {
	for len(raw) > 0 {
		n := min(1+r.Intn(1+r.Intn(64)), len(raw))
		w.Write(raw[:n])
		raw = raw[n:]
	}
}

// TestDigesterMatchesOld: over random messages written in random pieces,
// the digests equal the former ones, whether the digester is new or
// reused (reset after another message, as the pool hands it out).
func TestDigesterMatchesOld(t *testing.T) {
	r := rand.New(rand.NewSource(10))
	reused := newDigester()
	for i := 0; i < 20000; i++ {
		raw := randomMessage(r)
		if i%50 == 0 {
			// Longer than the digester's buffers, which it then
			// flushes: in the header, or in the body.
			cut := r.Intn(len(raw) + 1)
			long := "X-Long: " + strings.Repeat("w ", 2500) + "\r\n" + strings.Repeat("b\r\n", 3000)
			raw = append(raw[:cut:cut], append([]byte(long), raw[cut:]...)...)
		}
		d := digesters.New().(*digester)
		d.reset()
		if i%2 == 1 {
			d = reused
			d.reset()
		}
		writePieces(r, d, raw)
		head, body := d.sums()
		if want := oldHeaderDigest(raw); head != want {
			t.Fatalf("%q: header digest %s; was %s", raw, head, want)
		}
		if want := oldBodyDigest(raw); body != want {
			t.Fatalf("%q: body digest %s; was %s", raw, body, want)
		}
	}
}

// FuzzDigesterMatchesOld: the same for any input and any split.
func FuzzDigesterMatchesOld(f *testing.F) {
	f.Add([]byte(digestBase), int64(1))
	f.Add([]byte("A  : b\r\n \r\n\r\nx\r"), int64(2))
	f.Add([]byte("\r\r\n\r\n"), int64(3))
	// Bare CRs in the body, where they are line ends, at the ends of
	// pieces and of the message.
	f.Add([]byte("A: b\r\n\r\n\r\r\r\n\n\rx\r\r"), int64(4))
	f.Add([]byte("A: b\n\n\r"), int64(5))
	f.Add([]byte("A\rB: c\r\n\r\r\n\r\nd\re\r\n"), int64(6))
	f.Fuzz(func(t *testing.T, raw []byte, seed int64) {
		d := newDigester()
		writePieces(rand.New(rand.NewSource(seed)), d, raw)
		head, body := d.sums()
		if head != oldHeaderDigest(raw) || body != oldBodyDigest(raw) {
			t.Fatalf("%q: digests %s %s; were %s %s", raw, head, body, oldHeaderDigest(raw), oldBodyDigest(raw))
		}
	})
}

// TestMessageIdentitySpooled: a message in a spool file has the identity
// the same message in memory had.
func TestMessageIdentitySpooled(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	dir := filepath.Join(t.TempDir(), "spool")
	for i := 0; i < 200; i++ {
		raw := randomMessage(r)
		s := deliver.NewSpool(dir, 1+r.Intn(64))
		writePieces(r, s, raw)
		got, err := messageIdentity(int64(len(raw)), &deliver.Message{Spool: s})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := oldHeaderDigest(raw) + oldBodyDigest(raw)
		if got.Digest != want || got.Size != int64(len(raw)) {
			t.Fatalf("%q: identity %+v; want digest %s", raw, got, want)
		}
	}
}

// rawOf returns the whole of m, for fakes that record what they got.
func rawOf(m *deliver.Message) []byte {
	b, err := io.ReadAll(m.Reader())
	if err != nil {
		panic(err)
	}
	return b
}

// TestIdentityAllocs: the digester allocates nothing per message beyond
// the identity's string (a pooled digester is reset, not made anew), nor
// per field; one runs for every message. The bound leaves room for a
// pool emptied by a garbage collection during the run.
func TestIdentityAllocs(t *testing.T) {
	if testutil.Race {
		t.Skip("the race detector makes sync.Pool drop what it is given")
	}
	raw := []byte(digestBase)
	identityOf(int64(len(raw)), raw)
	allocs := testing.AllocsPerRun(200, func() { identityOf(int64(len(raw)), raw) })
	if allocs > 1.5 {
		t.Errorf("identityOf: %v allocations per message; want 1", allocs)
	}
}
