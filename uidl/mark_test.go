package uidl

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// markedJournal returns a journal with a few records made through a Store,
// so its length mark exists and claims them, and the journal's content.
func markedJournal(t *testing.T) (path, content string) {
	t.Helper()
	path = journalPath(t)
	s := mustOpen(t, path)
	for i := range 5 {
		if err := s.Add(fmt.Sprintf("uid-%d", i), t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, readFile(t, path)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestShortenedJournalRefused: a journal that lost records (cut to a valid
// prefix, emptied, deleted, edited, an older copy restored) is refused
// with ErrCorrupt and ErrShortened, left as found, and the error says how
// to fix it; what a crash can leave (a torn tail, unsynced records) and
// what cannot be told from a new mailbox (no journal and no mark) are
// accepted.
func TestShortenedJournalRefused(t *testing.T) {
	t.Parallel()
	lastLine := func(c string) string { // drops the last line
		c = strings.TrimSuffix(c, "\n")
		return c[:strings.LastIndexByte(c, '\n')+1]
	}
	tests := []struct {
		name    string
		change  func(t *testing.T, path, content string)
		refuse  bool
		wantLen int // Len after an accepted Open
	}{
		{"unchanged", func(*testing.T, string, string) {}, false, 5},
		{"cut to a valid prefix", func(t *testing.T, p, c string) { writeFile(t, p, lastLine(c)) }, true, 0},
		{"cut to the header", func(t *testing.T, p, c string) { writeFile(t, p, header+"\n") }, true, 0},
		{"emptied", func(t *testing.T, p, c string) { writeFile(t, p, "") }, true, 0},
		{"deleted, mark left", func(t *testing.T, p, c string) { os.Remove(p) }, true, 0},
		{"line removed in the middle", func(t *testing.T, p, c string) {
			writeFile(t, p, strings.Replace(c, "+ uid-2 1700000000\n", "", 1))
		}, true, 0},
		{"line replaced by a shorter one", func(t *testing.T, p, c string) {
			writeFile(t, p, strings.Replace(c, "+ uid-2 1700000000\n", "+ u 1\n", 1))
		}, true, 0},
		{"torn tail (crash in a write)", func(t *testing.T, p, c string) { writeFile(t, p, c+"+ uid-9 17") }, false, 5},
		{"zero-filled tail (crash)", func(t *testing.T, p, c string) { writeFile(t, p, c+"\x00\x00\x00\n") }, false, 5},
		{"grown", func(t *testing.T, p, c string) { writeFile(t, p, c+"+ uid-9 1\n") }, false, 6},
		{"both removed: a new mailbox", func(t *testing.T, p, c string) { os.Remove(p); os.Remove(p + ".len") }, false, 0},
		{"mark removed, journal cut: undetectable", func(t *testing.T, p, c string) {
			os.Remove(p + ".len")
			writeFile(t, p, lastLine(c))
		}, false, 4},
		{"mark removed: a journal from before the mark", func(t *testing.T, p, c string) { os.Remove(p + ".len") }, false, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, content := markedJournal(t)
			tt.change(t, path, content)
			before, _ := os.ReadFile(path)
			s, err := Open(path)
			if !tt.refuse {
				if err != nil {
					t.Fatalf("Open = %v; want success", err)
				}
				defer s.Close()
				if s.Len() != tt.wantLen {
					t.Errorf("Len = %d; want %d", s.Len(), tt.wantLen)
				}
				m, err := readMark(path)
				if err != nil || m == nil || m.size != s.size || m.lines != s.lines {
					t.Errorf("mark after Open = %+v, %v; want size %d lines %d", m, err, s.size, s.lines)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a journal that lost records")
			}
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrShortened) {
				t.Errorf("Open = %v; want ErrCorrupt and ErrShortened", err)
			}
			for _, want := range []string{path, "restore the journal", "remove " + path + ".len"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			after, aerr := os.ReadFile(path)
			if string(after) != string(before) || (before == nil) != os.IsNotExist(aerr) {
				t.Errorf("refused journal was changed: %q -> %q (%v)", before, after, aerr)
			}
		})
	}
}

// After a power loss only the records written since the last fsync can be
// gone, and the mark never claims those: a journal cut back to its synced
// length, with the mark as it was, opens.
func TestMarkTrailsFsync(t *testing.T) {
	t.Parallel()
	path := journalPath(t)
	s := mustOpen(t, path)
	if err := s.Add("synced", t0); err != nil {
		t.Fatal(err)
	}
	synced := readFile(t, path)
	for _, u := range []string{"later-1", "later-2"} {
		if err := s.AddLater(u, t0); err != nil {
			t.Fatal(err)
		}
		if err := s.Intend(u+"x", "/m/new/x"); err != nil {
			t.Fatal(err)
		}
	}
	markNow := readFile(t, path+".len")
	s.Close()
	// The disk after a power loss before Sync: the unsynced records gone,
	// the mark as last written.
	writeFile(t, path, synced)
	writeFile(t, path+".len", markNow)
	s2 := mustOpen(t, path)
	if !s2.Has("synced") || s2.Has("later-1") {
		t.Errorf("after the power loss: Has(synced) = %v, Has(later-1) = %v", s2.Has("synced"), s2.Has("later-1"))
	}
}

// Compaction replaces the journal by a shorter one: the mark it leaves
// must hold for the old journal until the rename and for the new one
// after it, and a cut of the compacted journal is still caught.
func TestMarkAcrossCompaction(t *testing.T) {
	t.Parallel()
	path := writeJournal(t, bigJournal(3*minGarbage))
	s := mustOpen(t, path)
	oldSize := int64(len(readFile(t, path)))
	var atRename *mark
	s.h.trace = func(op, p string) {
		if op == "rename" && p == path {
			atRename, _ = readMark(path)
		}
	}
	if err := s.Retain(uids(0, 10)); err != nil {
		t.Fatal(err)
	}
	s.h.trace = nil
	newContent := readFile(t, path)
	if atRename == nil {
		t.Fatal("no compaction or no mark at the rename")
	}
	if atRename.size > oldSize || atRename.size > int64(len(newContent)) {
		t.Errorf("mark at the rename claims %d bytes; old journal %d, new %d: a crash there would refuse a sound journal",
			atRename.size, oldSize, len(newContent))
	}
	if err := s.Add("after", t0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	if !s.Has("after") {
		t.Error("record after the compaction lost")
	}
	s.Close()
	writeFile(t, path, newContent) // drop the record added after compaction
	if _, err := Open(path); !errors.Is(err, ErrShortened) {
		t.Errorf("Open of the cut compacted journal = %v; want ErrShortened", err)
	}
}

// A mark that is not exactly what popfetch writes (torn, edited, another
// file) is refused, naming the file and the fix.
func TestMarkMalformed(t *testing.T) {
	t.Parallel()
	good := string(encodeMark(mark{100, 5}))
	if m, err := parseMark([]byte(good)); err != nil || m != (mark{100, 5}) {
		t.Fatalf("parseMark(encodeMark) = %+v, %v", m, err)
	}
	for _, bad := range []string{
		"",
		good[:len(good)-1],
		strings.Replace(good, "100", "900", 1), // checksum no longer matches
		strings.Replace(good, "popfetch-uidl-len 1", "popfetch-uidl-len 2", 1),
		good + "x",
		strings.Repeat("\x00", len(good)),
	} {
		path, _ := markedJournal(t)
		writeFile(t, path+".len", bad)
		_, err := Open(path)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "remove "+path+".len") {
			t.Errorf("mark %q: Open = %v; want ErrCorrupt telling to remove the mark", bad, err)
		}
	}
}

func FuzzParseMark(f *testing.F) {
	f.Add(encodeMark(mark{0, 0}))
	f.Add(encodeMark(mark{1 << 40, 123456}))
	f.Add([]byte("popfetch-uidl-len 1 -0000000000000000001 00000000000000000001 00000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMark(b)
		if err != nil {
			return
		}
		if m.size < 0 || m.lines < 0 || string(encodeMark(m)) != string(b) {
			t.Fatalf("parseMark(%q) = %+v, which encodes as %q", b, m, encodeMark(m))
		}
	})
}
