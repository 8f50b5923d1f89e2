//go:build linux

package deliver

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/internal/trust"
)

// countSpoolDirOpens counts the spool directory's opens (with their
// checks) for the rest of the test.
func countSpoolDirOpens(t *testing.T) *int {
	n := new(int)
	spoolDirOpen = func(dir string) (*os.File, error) {
		*n++
		return openSpoolDir(dir)
	}
	t.Cleanup(func() { spoolDirOpen = openSpoolDir })
	return n
}

// withoutTmpfile runs f in both ways a spool file is made: O_TMPFILE,
// and a name created and removed at once.
func withoutTmpfile(t *testing.T, f func(t *testing.T)) {
	t.Run("O_TMPFILE", f)
	t.Run("without O_TMPFILE", func(t *testing.T) {
		spoolTmpfile = func(int) (int, error) { return -1, syscall.EOPNOTSUPP }
		defer func() { spoolTmpfile = openTmpfile }()
		f(t)
	})
}

// spoolToFile writes a message that does not fit the spool's memory into
// a new spool of sd and returns its error; the spool is closed at the end
// of the test.
func spoolToFile(t *testing.T, sd *SpoolDir) (*Spool, error) {
	t.Helper()
	s := NewSpoolIn(sd, 4)
	t.Cleanup(func() { s.Close() })
	raw := []byte("A: b\r\n\r\nbody\r\n")
	if _, err := s.Write(raw); err != nil {
		return s, err
	}
	if s.f == nil {
		t.Fatal("no spool file past the limit")
	}
	if got, err := io.ReadAll(s.Reader()); err != nil || string(got) != string(raw) {
		t.Fatalf("read back %q, %v", got, err)
	}
	return s, nil
}

// TestSpoolDirOpenedOnce: the spools of one SpoolDir open (and check) the
// directory once, when the first needs a file, and not at all when none
// does; spools of their own (NewSpool) open it per file as before. Close
// releases the descriptor, and a spool needing a file after it still
// gets one.
func TestSpoolDirOpenedOnce(t *testing.T) {
	withoutTmpfile(t, func(t *testing.T) {
		opens := countSpoolDirOpens(t)
		dir := filepath.Join(t.TempDir(), "state", "spool")
		sd := NewSpoolDir(dir)
		small := NewSpoolIn(sd, 0)
		small.Write([]byte("A: b\r\n\r\nbody\r\n"))
		small.Close()
		if *opens != 0 {
			t.Fatalf("%d opens for a message held in memory; want 0", *opens)
		}
		for range 5 {
			s, err := spoolToFile(t, sd)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
		if *opens != 1 {
			t.Errorf("%d opens of the spool directory for 5 spool files; want 1", *opens)
		}
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("spool directory: %v %v", fi, err)
		}
		before := openFDs(t)
		if err := sd.Close(); err != nil {
			t.Fatal(err)
		}
		if after := openFDs(t); after >= before {
			t.Errorf("%d descriptors open before Close, %d after; want the directory's released", before, after)
		}
		if _, err := spoolToFile(t, sd); err != nil {
			t.Fatalf("a spool file after Close: %v", err)
		}
		if *opens != 2 {
			t.Errorf("%d opens after a spool file made after Close; want 2", *opens)
		}
		*opens = 0
		for range 3 {
			fillSpool(t, dir, 4, []byte("A: b\r\n\r\nbody\r\n"), nil).Close()
		}
		if *opens != 3 {
			t.Errorf("%d opens for 3 spools of their own; want 3", *opens)
		}
	})
}

// TestSpoolDirChanged: what a SpoolDir does when its directory changes
// after it opened it. Renamed away, or renamed away and replaced by a
// symlink, the files go on being made in the directory that was opened
// and checked, never through the symlink, until the poll ends; the next
// SpoolDir refuses the symlink. Removed, it is opened afresh from the
// path with all its checks: made again, or refused if a symlink took its
// place.
func TestSpoolDirChanged(t *testing.T) {
	tests := []struct {
		name string
		// change changes dir, and returns the directory the next file
		// is made in, "" for none
		change  func(t *testing.T, dir, elsewhere string) string
		opens   int  // opens in all, the first one included
		refused bool // the next file is refused
		// a new SpoolDir (the next poll's) refuses the path
		nextRefused bool
	}{
		{"renamed away", func(t *testing.T, dir, _ string) string {
			mustRename(t, dir, dir+".moved")
			return dir + ".moved"
		}, 1, false, false},
		{"swapped for a symlink", func(t *testing.T, dir, elsewhere string) string {
			mustRename(t, dir, dir+".moved")
			symlinkAs(t, elsewhere, dir)
			return dir + ".moved"
		}, 1, false, true},
		{"replaced by a directory others can write", func(t *testing.T, dir, _ string) string {
			mustRename(t, dir, dir+".moved")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			os.Chmod(dir, 0o777)
			return dir + ".moved"
		}, 1, false, true},
		{"removed", func(t *testing.T, dir, _ string) string {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			return dir
		}, 2, false, false},
		{"removed and a symlink in its place", func(t *testing.T, dir, elsewhere string) string {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			symlinkAs(t, elsewhere, dir)
			return ""
		}, 2, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withoutTmpfile(t, func(t *testing.T) {
				opens := countSpoolDirOpens(t)
				base := t.TempDir()
				dir := filepath.Join(base, "spool")
				elsewhere := filepath.Join(base, "elsewhere")
				if err := os.Mkdir(elsewhere, 0o700); err != nil {
					t.Fatal(err)
				}
				sd := NewSpoolDir(dir)
				defer sd.Close()
				if _, err := spoolToFile(t, sd); err != nil {
					t.Fatal(err)
				}
				in := tt.change(t, dir, elsewhere)
				s, err := spoolToFile(t, sd)
				if *opens != tt.opens {
					t.Errorf("%d opens of the spool directory; want %d", *opens, tt.opens)
				}
				if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
					t.Errorf("the symlink's target holds %v; want nothing", ents)
				}
				if tt.refused {
					if !errors.Is(err, trust.ErrUntrustedFile) {
						t.Fatalf("spool file = %v; want ErrUntrustedFile", err)
					}
					if _, err := spoolToFile(t, NewSpoolDir(dir)); !errors.Is(err, trust.ErrUntrustedFile) {
						t.Errorf("a new SpoolDir's spool file: %v; want ErrUntrustedFile", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				// An unnamed file's link names the directory it is in.
				l, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(s.f.Fd())))
				if err != nil {
					t.Skip(err)
				}
				if !strings.HasPrefix(l, in+"/") {
					t.Errorf("spool file made at %s; want it in %s", l, in)
				}
				if ents, _ := os.ReadDir(in); len(ents) != 0 {
					t.Errorf("%s holds %v; want the file unnamed", in, ents)
				}
				// The next poll looks at the path afresh.
				next := NewSpoolDir(dir)
				defer next.Close()
				if _, err := spoolToFile(t, next); tt.nextRefused != errors.Is(err, trust.ErrUntrustedFile) || !tt.nextRefused && err != nil {
					t.Errorf("a new SpoolDir's spool file: %v; want refused %v", err, tt.nextRefused)
				}
			})
		})
	}
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolDirStale: a create that fails with ESTALE (an NFS directory
// removed by another client) opens the directory again from its path, once,
// instead of failing every spooled message for the rest of the poll.
func TestSpoolDirStale(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	opens := countSpoolDirOpens(t)
	fails := 1
	spoolCreateIn = func(d *os.File, path string) (*os.File, error) {
		if fails > 0 {
			fails--
			return nil, &os.PathError{Op: "create spool file", Path: path, Err: syscall.ESTALE}
		}
		return createSpoolFileIn(d, path)
	}
	t.Cleanup(func() { spoolCreateIn = createSpoolFileIn })
	sd := NewSpoolDir(dir)
	defer sd.Close()
	if _, err := spoolToFile(t, sd); err != nil {
		t.Fatalf("spool after a stale handle: %v", err)
	}
	if *opens != 2 {
		t.Fatalf("spool directory opened %d times, want 2 (the first, then once more after ESTALE)", *opens)
	}
	// A handle that stays stale fails the spool, after one reopen.
	fails = 2
	*opens = 0
	_, err := spoolToFile(t, sd)
	if !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("spool with a handle stale twice: %v, want ESTALE", err)
	}
	if *opens != 1 {
		t.Fatalf("spool directory opened %d times, want 1 reopen", *opens)
	}
}
