package uidl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// v1Journal is a format 1 journal as the version with the length mark
// wrote it, "d" records included.
const v1Journal = headerV1 + "\n+ a 10\n+ b 11\nd b 20 2\nr c 12 x@example.com\n+ e 13\n- e\n"

// markOf returns a mark claiming all of content.
func markOf(content string) string {
	return string(encodeMark(mark{int64(len(content)), int64(strings.Count(content, "\n"))}))
}

// TestUpgradeKeepsMark: the upgrade of a format 1 journal is a compaction
// through the length mark: a journal without a mark gets one, a mark is
// lowered before the rename to what the old and the new file both hold
// and raised after it, the "d" records survive, and a cut of the upgraded
// journal is still caught. A format 1 journal shorter than its mark is
// refused, not upgraded.
func TestUpgradeKeepsMark(t *testing.T) {
	t.Parallel()
	const want = header + "\n+ a 10\n+ b 11\nd b 20 2\nr c 12 x@example.com\n"
	tests := []struct {
		name   string
		mark   string // content of the .len file; "" for none
		refuse bool
	}{
		{"no mark", "", false},
		{"mark of the whole journal", markOf(v1Journal), false},
		{"mark of a prefix", markOf(headerV1 + "\n+ a 10\n"), false},
		{"shortened below its mark", markOf(v1Journal + "+ f 14\n"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeJournal(t, v1Journal)
			if tt.mark != "" {
				writeFile(t, path+markSuffix, tt.mark)
			}
			var atRename *mark
			renamed := false
			h := testHooks()
			h.trace = func(op, p string) {
				if op == "rename" && p == path {
					renamed = true
					atRename, _ = readMark(path)
				}
			}
			s, err := openHooks(path, nil, h)
			h.trace = nil
			if tt.refuse {
				if err == nil {
					s.Close()
					t.Fatal("Open upgraded a journal shorter than its mark")
				}
				if !errors.Is(err, ErrShortened) {
					t.Errorf("Open = %v; want ErrShortened", err)
				}
				if got := readFile(t, path); got != v1Journal {
					t.Errorf("refused journal changed to %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, path); got != want {
				t.Fatalf("upgraded journal = %q; want %q", got, want)
			}
			if n, _ := s.DeleRefusals("b"); n != 2 {
				t.Errorf("DeleRefusals(b) = %d after the upgrade; want 2", n)
			}
			if !renamed {
				t.Fatal("no rename: the journal was not upgraded by compaction")
			}
			if tt.mark != "" && (atRename == nil || atRename.size > int64(len(want)) || atRename.lines > int64(strings.Count(want, "\n"))) {
				t.Errorf("mark at the upgrade's rename = %+v; it must hold for the new journal (%d bytes)", atRename, len(want))
			}
			m, err := readMark(path)
			if err != nil || m == nil || m.size != int64(len(want)) || m.lines != int64(strings.Count(want, "\n")) {
				t.Fatalf("mark after the upgrade = %+v, %v; want the upgraded journal", m, err)
			}
			if err := s.Add("f", t0); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = mustOpen(t, path)
			s.Close()
			writeFile(t, path, want) // drop the record added after the upgrade
			if _, err := Open(path); !errors.Is(err, ErrShortened) {
				t.Errorf("Open of the cut upgraded journal = %v; want ErrShortened", err)
			}
		})
	}
}

// TestMigrateMovesMark: the length mark of an older version's journal
// (USER@SERVER:PORT.len) moves with it to MAILBOX.uidl.len, so the check
// that the journal was not shortened survives the rename; a mark left
// without its journal moves too and makes Open refuse; a migration
// interrupted between the mark and the journal completes; a new name's
// mark that is another file is not overwritten.
func TestMigrateMovesMark(t *testing.T) {
	t.Parallel()
	const content = headerV1 + "\n+ a 10\n+ b 11\n"
	tests := []struct {
		name    string
		setup   func(t *testing.T, old, path string)
		wantErr error // nil: migrated and opened
	}{
		{"journal and mark", func(t *testing.T, old, path string) {
			writeFile(t, old, content)
			writeFile(t, old+markSuffix, markOf(content))
		}, nil},
		{"journal without mark", func(t *testing.T, old, path string) {
			writeFile(t, old, content)
		}, nil},
		{"stale temporary files", func(t *testing.T, old, path string) {
			writeFile(t, old, content)
			writeFile(t, old+markSuffix, markOf(content))
			writeFile(t, old+".tmp", "x")
			writeFile(t, old+markSuffix+".tmp", "x")
		}, nil},
		{"journal shorter than its mark", func(t *testing.T, old, path string) {
			writeFile(t, old, content)
			writeFile(t, old+markSuffix, markOf(content+"+ c 12\n"))
		}, ErrShortened},
		{"mark left, journal deleted", func(t *testing.T, old, path string) {
			writeFile(t, old+markSuffix, markOf(content))
		}, ErrShortened},
		{"interrupted after linking the mark", func(t *testing.T, old, path string) {
			writeFile(t, old, content)
			writeFile(t, old+markSuffix, markOf(content))
			if err := os.Link(old+markSuffix, path+markSuffix); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"another mark under the new name", func(t *testing.T, old, path string) {
			writeFile(t, old, content)
			writeFile(t, old+markSuffix, markOf(content))
			writeFile(t, path+markSuffix, markOf(content))
		}, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := t.TempDir()
			old := LegacyPath(state, "joe", "h", 110)
			path := Path(state, "joe@h")
			if err := os.MkdirAll(filepath.Dir(old), 0o700); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, old, path)
			legacy, err := LegacyPaths(state, "joe", "h", 110, true)
			if err != nil || len(legacy) != 1 || legacy[0] != old {
				t.Fatalf("LegacyPaths(any port) = %v, %v; want [%s]", legacy, err, old)
			}
			if l, err := LegacyPaths(state, "joe", "h", 110, false); err != nil || len(l) != 1 || l[0] != old {
				t.Fatalf("LegacyPaths(110) = %v, %v; want [%s]", l, err, old)
			}
			s, err := OpenMigrating(path, legacy)
			if tt.wantErr != nil {
				if err == nil {
					s.Close()
					t.Fatalf("OpenMigrating succeeded; want %v", tt.wantErr)
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("OpenMigrating = %v; want %v", err, tt.wantErr)
				}
				if tt.wantErr == ErrShortened && !strings.Contains(err.Error(), path+markSuffix) {
					t.Errorf("error %q does not name %s", err, path+markSuffix)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !s.Has("a") || !s.Has("b") {
				t.Errorf("migrated journal lost records")
			}
			s.Close()
			for _, gone := range []string{old, old + markSuffix, old + ".lock", old + ".tmp", old + markSuffix + ".tmp"} {
				if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still exists after migration (%v)", gone, err)
				}
			}
			m, err := readMark(path)
			got := readFile(t, path)
			if err != nil || m == nil || m.size != int64(len(got)) {
				t.Fatalf("mark after migration = %+v, %v; want one for the %d-byte journal", m, err, len(got))
			}
			writeFile(t, path, header+"\n+ a 10\n") // cut after the migration
			if _, err := Open(path); !errors.Is(err, ErrShortened) {
				t.Errorf("Open of the cut migrated journal = %v; want ErrShortened", err)
			}
		})
	}
}
