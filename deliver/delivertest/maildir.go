package delivertest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Duplicates checks copies, the number of delivered copies of each
// message by its number, for messages 1..n: each one without a copy is
// reported as lost. It returns the number of copies beyond the first of
// each message, all messages together.
func Duplicates(t testing.TB, copies map[int]int, n int) int {
	t.Helper()
	dups := 0
	for i := 1; i <= n; i++ {
		switch c := copies[i]; {
		case c == 0:
			t.Errorf("message %d lost", i)
		case c > 1:
			dups += c - 1
		}
	}
	return dups
}

// Names lists every entry of dir, dotfiles too, in name order; nil if dir
// does not exist. For a Maildir's tmp/ or a place nothing may be written
// to, where any stray file must show.
func Names(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// MaildirFiles returns the paths of the messages in the Maildir dir:
// the files of new/ and cur/, or of subs when given (MaildirFiles(t, dir,
// "new") reads new/ only), in that order and by name within each. Names
// that start with "." are not messages, as for any Maildir reader. A
// missing Maildir or subdirectory holds nothing.
func MaildirFiles(t testing.TB, dir string, subs ...string) []string {
	t.Helper()
	if len(subs) == 0 {
		subs = []string{"new", "cur"}
	}
	var out []string
	for _, sub := range subs {
		for _, n := range Names(t, filepath.Join(dir, sub)) {
			if !strings.HasPrefix(n, ".") {
				out = append(out, filepath.Join(dir, sub, n))
			}
		}
	}
	return out
}

// MaildirMessages returns the contents of MaildirFiles(t, dir, subs...),
// in the same order.
func MaildirMessages(t testing.TB, dir string, subs ...string) [][]byte {
	t.Helper()
	return readAll(t, "", MaildirFiles(t, dir, subs...))
}

// MaildirCount counts MaildirFiles(t, dir, subs...).
func MaildirCount(t testing.TB, dir string, subs ...string) int {
	t.Helper()
	return len(MaildirFiles(t, dir, subs...))
}

// WaitMaildir waits until the Maildir dir holds at least n messages (new/
// and cur/) and returns their paths; it fails the test after timeout.
func WaitMaildir(t testing.TB, dir string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		files := MaildirFiles(t, dir)
		if len(files) >= n {
			return files
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages after %v; want at least %d", dir, len(files), timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readAll reads the files dir/name of names.
func readAll(t testing.TB, dir string, names []string) [][]byte {
	t.Helper()
	out := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(fmt.Errorf("reading a delivered message: %w", err))
		}
		out = append(out, b)
	}
	return out
}
