package deliver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// bigSize is the size of the large message: far more than any buffer.
const bigSize = 20 << 20

// maxDeliverAlloc is what delivering the large message may allocate in
// all: a few buffers, never the message.
const maxDeliverAlloc = 4 << 20

// bigFirstLine opens the large message; the fields a target adds come
// before it.
const bigFirstLine = "From: big@example.com"

// writeBig writes the large message to w, with line ends eol. Lines vary
// in length, and some start with a dot (stuffed on the SMTP wire).
func writeBig(w io.Writer, eol string) {
	bw := bufio.NewWriterSize(w, 64<<10)
	fmt.Fprintf(bw, "%s%sTo: b@example.com%sSubject: big%sMessage-ID: <big@example.com>%s%s", bigFirstLine, eol, eol, eol, eol, eol)
	n := len(bigFirstLine) + 90
	for i := 0; n < bigSize; i++ {
		line := fmt.Sprintf("%d %x", i, i*7919)
		switch i % 5 {
		case 0:
			line = "." + line
		case 3:
			line += string(bytes.Repeat([]byte("abcdefghij"), i%90))
		}
		bw.WriteString(line)
		bw.WriteString(eol)
		n += len(line) + 2 // as many lines whatever eol is
	}
	bw.Flush()
}

// bigSum is the SHA-256 of the large message with line ends eol.
func bigSum(eol string) [32]byte {
	h := sha256.New()
	writeBig(h, eol)
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// bigMessage spools the large message (CRLF, as a POP3 server sends it).
func bigMessage(t *testing.T) *Message {
	t.Helper()
	s := NewSpool(filepath.Join(t.TempDir(), "spool"), 0)
	writeBig(s, "\r\n")
	t.Cleanup(func() { s.Close() })
	if s.Len() < bigSize {
		t.Fatalf("spooled %d bytes", s.Len())
	}
	return &Message{Account: "a", Server: "pop.example.com", User: "u", UID: "big", Fetched: time.Now(), Spool: s}
}

// messageSum reads a delivered copy from r and returns the SHA-256 of the
// message in it: from bigFirstLine on, past the fields the target added.
func messageSum(t *testing.T, r io.Reader) [32]byte {
	t.Helper()
	br := bufio.NewReaderSize(r, 64<<10)
	h := sha256.New()
	found := false
	for {
		line, err := br.ReadSlice('\n')
		if found {
			h.Write(line)
		} else if bytes.HasPrefix(line, []byte(bigFirstLine)) {
			found = true
			h.Write(line)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !found {
		t.Fatal("the message's first line is not in the copy")
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// allocDuring returns the bytes allocated on the heap while f ran.
func allocDuring(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestBigMessageMaildir: a 20 MB message is written into a Maildir in
// bounded memory, byte for byte (LF line ends).
func TestBigMessageMaildir(t *testing.T) {
	m := bigMessage(t)
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
	var errs []error
	alloc := allocDuring(func() { errs = d.Deliver(context.Background(), m, "", []Recipient{{}}, nil) })
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	files := delivertest.MaildirFiles(t, dir, "new")
	if len(files) != 1 {
		t.Fatalf("%d files in new/", len(files))
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if messageSum(t, f) != bigSum("\n") {
		t.Fatal("the Maildir copy differs from the message")
	}
	t.Logf("allocated %d KiB delivering %d MiB", alloc>>10, m.Size()>>20)
	if alloc > maxDeliverAlloc {
		t.Fatalf("allocated %d bytes delivering the message; want at most %d", alloc, maxDeliverAlloc)
	}
}

// TestBigMessageMDA: the same through an MDA ("cat > file", the stub).
func TestBigMessageMDA(t *testing.T) {
	m := bigMessage(t)
	stub := delivertest.NewMDA(t)
	d, err := NewMDA(stub.Argv("{user}"), MDAOptions{LocalHost: "h", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	alloc := allocDuring(func() { errs = d.Deliver(context.Background(), m, "", []Recipient{{User: "joe"}}, nil) })
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	got := stub.Messages(t, "joe")
	if len(got) != 1 || messageSum(t, bytes.NewReader(got[0])) != bigSum("\n") {
		t.Fatal("the MDA's copy differs from the message")
	}
	t.Logf("allocated %d KiB delivering %d MiB", alloc>>10, m.Size()>>20)
	if alloc > maxDeliverAlloc {
		t.Fatalf("allocated %d bytes delivering the message; want at most %d", alloc, maxDeliverAlloc)
	}
}

// hashSink is an LMTP/SMTP server that keeps only the SHA-256 of each
// message it accepts, so that it allocates little itself.
type hashSink struct{ sums chan [32]byte }

func (s *hashSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &hashSession{s: s}, nil }

type hashSession struct {
	s     *hashSink
	rcpts int
}

func (h *hashSession) Reset()                               { h.rcpts = 0 }
func (h *hashSession) Logout() error                        { return nil }
func (h *hashSession) Mail(string, *smtp.MailOptions) error { return nil }
func (h *hashSession) Rcpt(string, *smtp.RcptOptions) error { h.rcpts++; return nil }
func (h *hashSession) Data(r io.Reader) error               { return h.data(r) }
func (h *hashSession) data(r io.Reader) error {
	pr, pw := io.Pipe()
	done := make(chan [32]byte, 1)
	go func() {
		var s [32]byte
		sh := sha256.New()
		br := bufio.NewReaderSize(pr, 64<<10)
		found := false
		for {
			line, err := br.ReadSlice('\n')
			if !found && bytes.HasPrefix(line, []byte(bigFirstLine)) {
				found = true
			}
			if found {
				sh.Write(line)
			}
			if err != nil && err != bufio.ErrBufferFull {
				break
			}
		}
		sh.Sum(s[:0])
		done <- s
	}()
	_, err := io.Copy(pw, r)
	pw.CloseWithError(err)
	h.s.sums <- <-done
	return err
}
func (h *hashSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	err := h.data(r)
	return err
}

// TestBigMessageLMTPAndSMTP: the same over LMTP and SMTP (CRLF, dot-
// stuffed on the wire).
func TestBigMessageLMTPAndSMTP(t *testing.T) {
	m := bigMessage(t)
	want := bigSum("\r\n")
	for _, lmtp := range []bool{true, false} {
		sink := &hashSink{sums: make(chan [32]byte, 4)}
		srv := smtp.NewServer(sink)
		srv.Domain = "sink.test"
		srv.LMTP = lmtp
		srv.MaxMessageBytes = 64 << 20
		srv.ErrorLog = log.New(io.Discard, "", 0)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		d := NewSMTP(SMTPOptions{Addr: l.Addr().String(), LMTP: lmtp, LocalHost: "h", Timeout: time.Minute})
		var errs []error
		alloc := allocDuring(func() {
			errs = d.Deliver(context.Background(), m, "", []Recipient{{User: "joe", Address: "joe@example.com"}}, nil)
		})
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
		if got := <-sink.sums; got != want {
			t.Fatalf("lmtp %v: the copy received differs from the message", lmtp)
		}
		t.Logf("lmtp %v: allocated %d KiB delivering %d MiB (the server's own included)", lmtp, alloc>>10, m.Size()>>20)
		if alloc > maxDeliverAlloc {
			t.Fatalf("lmtp %v: allocated %d bytes delivering the message; want at most %d", lmtp, alloc, maxDeliverAlloc)
		}
	}
}
