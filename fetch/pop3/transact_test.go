package pop3

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRetrOctets(t *testing.T) {
	for _, tt := range []struct {
		st string
		n  int64
		ok bool
	}{
		{"120 octets", 120, true},
		{"120 Octets follow.", 120, true},
		{"120", 120, true},
		{"0 octets", 0, true},
		{"", 0, false},
		{"message follows", 0, false},
		{"2 messages follow", 0, false},
		{"-5 octets", 0, false},
		{"99999999999999999999 octets", 0, false},
		{"\u00a0120\u2003OCTETS", 120, true},
		{"120\toctet", 120, true},
		{"120 octe", 0, false},
		{"120 \u212actets", 0, false},
	} {
		n, ok := retrOctets([]byte(tt.st))
		if n != tt.n || ok != tt.ok {
			t.Errorf("retrOctets(%q) = %d, %v; want %d, %v", tt.st, n, ok, tt.n, tt.ok)
		}
	}
}

func TestCheckRetr(t *testing.T) {
	e := Entry{Num: 1, UID: "u", Size: 1000}
	body := bytes.Repeat([]byte("x"), 998)
	for _, tt := range []struct {
		name string
		raw  []byte
		size int64
		ok   bool
	}{
		{"exact", append([]byte("Subject: x\r\n\r\n"), body[:986]...), 1000, true},
		{"LIST approximate", []byte("Subject: x\r\n\r\nshort\r\n"), 1000, true},
		{"status line first", append([]byte("+OK 1000 octets\r\n"), body[:983]...), 1000, false},
		{"bare +OK first", []byte("+OK\r\nSubject: x\r\n\r\n"), 20, false},
		{"-ERR first", []byte("-ERR stray\r\nSubject: x\r\n\r\n"), 20, false},
		{"+OK: a header", []byte("+OK: x\r\n\r\n"), 10, true},
		{"+OKAY", []byte("+OKAY\r\n\r\n"), 9, true},
		{"far larger than LIST", bytes.Repeat([]byte("x"), 3<<20), 1000, false},
		{"far smaller than LIST", []byte("x\r\n"), 3 << 20, false},
	} {
		e.Size = tt.size
		if err := checkRetr(e, tt.raw, quote); (err == nil) != tt.ok {
			t.Errorf("%s: checkRetr = %v; want ok %v", tt.name, err, tt.ok)
		}
	}
}

// oldRetrOctets is retrOctets as it was before it stopped allocating,
// for FuzzRetrOctets to compare with.
func oldRetrOctets(st []byte) (n int64, ok bool) {
	f := bytes.Fields(st)
	if len(f) == 0 || len(f[0]) > 18 || len(bytes.TrimLeft(f[0], "0123456789")) != 0 {
		return 0, false
	}
	if len(f) > 1 && !bytes.HasPrefix(bytes.ToLower(f[1]), []byte("octet")) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(f[0]), 10, 64)
	return n, err == nil
}

func FuzzRetrOctets(f *testing.F) {
	f.Add([]byte("120 octets"))
	f.Add([]byte("0120 Octets follow"))
	f.Add([]byte("2 messages"))
	f.Add([]byte("99999999999999999999 octets"))
	f.Add([]byte("\u00a012\u2003OCTETS"))
	f.Add([]byte("12 \xffoctets"))
	f.Add([]byte("12 O\u0307ctets"))
	f.Fuzz(func(t *testing.T, st []byte) {
		n, ok := retrOctets(st)
		if on, ook := oldRetrOctets(st); n != on || ok != ook {
			t.Fatalf("retrOctets(%q) = %d, %v; before = %d, %v", st, n, ok, on, ook)
		}
		if !ok {
			return
		}
		first := bytes.Fields(st)[0]
		if n < 0 || strings.TrimLeft(string(first), "0") != strings.TrimLeft(strconv.FormatInt(n, 10), "0") {
			t.Fatalf("retrOctets(%q) = %d from %q", st, n, first)
		}
	})
}

func FuzzCheckRetr(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"), int64(20))
	f.Add([]byte("+OK 20 octets\r\nSubject: x\r\n"), int64(20))
	f.Add([]byte("-ERR"), int64(4))
	f.Fuzz(func(t *testing.T, raw []byte, size int64) {
		if size < 0 {
			return // LIST sizes are never negative (parseListing)
		}
		err := checkRetr(Entry{Num: 1, UID: "u", Size: size}, raw, quote)
		first, _, _ := bytes.Cut(raw, []byte("\r\n"))
		if isStatusLine(first) && err == nil {
			t.Fatalf("checkRetr accepted a message that begins with the status line %q", first)
		}
		if err != nil && !errors.Is(err, ErrMismatch) {
			t.Fatalf("checkRetr error %v does not wrap ErrMismatch", err)
		}
	})
}

func TestRetrBounds(t *testing.T) {
	const timeout = time.Minute
	for _, size := range []int64{-1, 0, 1, 1000, 4 << 20, MaxMessageSize - 1, MaxMessageSize, MaxMessageSize + 1, 10 << 30, 1<<63 - 1} {
		b, d := retrBudget(size), retrDeadline(timeout, size)
		if b < 2*max(size, 0)+1<<20 && b != maxReplyBytes {
			t.Errorf("retrBudget(%d) = %d; want 2×size + 1 MiB, at most %d", size, b, int64(maxReplyBytes))
		}
		if b <= 0 || b > maxReplyBytes {
			t.Errorf("retrBudget(%d) = %d; want 1..%d", size, b, int64(maxReplyBytes))
		}
		if maxD := timeout + MaxMessageSize/minRate*time.Second; d < timeout || d > maxD {
			t.Errorf("retrDeadline(%v, %d) = %v; want %v..%v", timeout, size, d, timeout, maxD)
		}
	}
	if d := retrDeadline(timeout, 32<<20); d != timeout+1024*time.Second {
		t.Errorf("retrDeadline(%v, 32 MiB) = %v; want timeout + 1 s per 32 KiB", timeout, d)
	}
}
