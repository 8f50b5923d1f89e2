package uidl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ mailbox, want string }{
		{"joe@pop.example.com", "joe@pop.example.com.uidl"},
		{"tunnel2", "tunnel2.uidl"},
		{"a/b@h", "a%2Fb@h.uidl"},
		{"..", "%2E..uidl"},
		{"-rf@h", "%2Drf@h.uidl"},
		{"100%@h", "100%25@h.uidl"},
		{"sp ace\n@h", "sp%20ace%0A@h.uidl"},
		{"jörg@h", "j%C3%B6rg@h.uidl"},
		{"", "%.uidl"},
	}
	for _, tt := range tests {
		if got, want := Path("/state", tt.mailbox), "/state/uidl/"+tt.want; got != want {
			t.Errorf("Path(%q) = %q; want %q", tt.mailbox, got, want)
		}
	}
}

// FuzzMailboxPath: a journal name stays in the uidl directory, is a valid
// file name, decodes back to its mailbox unless shortened, and never equals
// a lock, temporary or older version's journal name.
func FuzzMailboxPath(f *testing.F) {
	for _, s := range []string{"joe@pop.example.com", "tunnel2", "../..", ".x\x00%", strings.Repeat("%", 120), "x.lock", "joe@h:995"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, mailbox string) {
		path := Path("/state", mailbox)
		dir, base := filepath.Split(path)
		if dir != "/state/uidl/" || strings.HasPrefix(base, ".") || strings.ContainsAny(base, "/\x00") || len(base) > maxName {
			t.Fatalf("Path(%q) = %q escapes, hides or is invalid", mailbox, path)
		}
		if !strings.HasSuffix(base, journalSuffix) {
			t.Fatalf("Path(%q) = %q lacks %s, so it could equal a lock, tmp or legacy name", mailbox, path, journalSuffix)
		}
		name := strings.TrimSuffix(base, journalSuffix)
		if strings.Contains(name, "%~") {
			return // shortened: unique by SHA-256
		}
		var b []byte
		if name == "%" {
			name = ""
		}
		for i := 0; i < len(name); i++ {
			if name[i] == '%' {
				v, ok := unhex(name[i+1 : i+3])
				if !ok {
					t.Fatalf("bad escape in %q", name)
				}
				b = append(b, v)
				i += 2
				continue
			}
			b = append(b, name[i])
		}
		if string(b) != mailbox {
			t.Fatalf("Path(%q) decodes to %q", mailbox, b)
		}
	})
}

func unhex(s string) (byte, bool) {
	var v byte
	for i := 0; i < 2; i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | (c - '0')
		case 'A' <= c && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

// An older version's journal, kept per port (USER@SERVER:PORT), is moved to
// the mailbox's name on first open, under both locks, with its content; a
// later open ignores leftovers. Two old journals (two ports) are refused.
func TestOpenMigrating(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	old := LegacyPath(state, "joe", "Pop.Example.com", 110)
	if err := os.MkdirAll(filepath.Dir(old), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, []byte(headerV1+"\n+ a 10\n+ b 11\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(old+".lock", nil, 0o600)
	legacy, err := LegacyPaths(state, "joe", "pop.example.com", 995, true)
	if err != nil || len(legacy) != 1 || legacy[0] != old {
		t.Fatalf("LegacyPaths = %v, %v; want [%s]", legacy, err, old)
	}
	if l, _ := LegacyPaths(state, "joe", "pop.example.com", 995, false); l != nil {
		t.Fatalf("LegacyPaths of port 995 only = %v; want none", l)
	}
	path := Path(state, "joe@pop.example.com")
	s, err := OpenMigrating(path, legacy)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Has("a") || !s.Has("b") || s.Len() != 2 {
		t.Fatalf("migrated store lacks the old records: Len %d", s.Len())
	}
	if err := s.Add("c", time.Unix(12, 0)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, gone := range []string{old, old + ".lock"} {
		if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after migration (%v)", gone, err)
		}
	}
	if got := readFile(t, path); got != header+"\n+ a 10\n+ b 11\n+ c 12\n" {
		t.Fatalf("journal = %q", got)
	}

	// A leftover old journal (say, an older popfetch ran again) does not
	// replace the journal in use.
	os.WriteFile(old, []byte(headerV1+"\n"), 0o600)
	s, err = OpenMigrating(path, []string{old})
	if err != nil || s.Len() != 3 {
		t.Fatalf("reopen with a leftover = %v, Len %d; want the journal in use", err, s.Len())
	}
	s.Close()

	// Two ports' journals and no new one: refused, nothing moved.
	state2 := t.TempDir()
	for _, port := range []int{110, 995} {
		p := LegacyPath(state2, "joe", "h", port)
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte(headerV1+"\n+ a 1\n"), 0o600)
	}
	legacy, _ = LegacyPaths(state2, "joe", "h", 110, true)
	if len(legacy) != 2 {
		t.Fatalf("LegacyPaths = %v; want 2", legacy)
	}
	path2 := Path(state2, "joe@h")
	if _, err := OpenMigrating(path2, legacy); !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "mailbox_id") {
		t.Fatalf("OpenMigrating with two old journals = %v; want ErrAmbiguous with a hint", err)
	}
	if _, err := os.Lstat(path2); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused migration created %s", path2)
	}
}

// Migration waits for no one: an older popfetch holding the old journal's
// lock makes the open fail with ErrLocked, and nothing moves.
func TestOpenMigratingLocked(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	old := LegacyPath(state, "joe", "h", 110)
	os.MkdirAll(filepath.Dir(old), 0o700)
	os.WriteFile(old, []byte(headerV1+"\n+ a 1\n"), 0o600)
	held, err := testHooks().lockFile(old + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	path := Path(state, "joe@h")
	if _, err := openHooks(path, []string{old}, testHooks()); !errors.Is(err, ErrLocked) {
		t.Fatalf("OpenMigrating while the old journal is locked = %v; want ErrLocked", err)
	}
	if _, err := os.Lstat(old); err != nil {
		t.Fatalf("old journal moved despite the lock: %v", err)
	}
}
