package learned

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/popfetch/popfetch/internal/trust"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Route
		err      string // substring; "" = no error
	}{
		{name: "empty"},
		{name: "comments and blanks", in: "# x\n\n   \t\n  # y\n"},
		{
			name: "routes",
			in: "# learned routes\n" +
				"List@Lists.EXAMPLE.org.  alice # learned 2026-12-04T19:30:00Z from msg\n" +
				"\tlist-id:<News.Example.NET>\tbob\r\n" +
				"a#b@example.com carol #c # d\n" +
				"LIST-ID:x.y dave#\n" +
				"\"j d\"@example.com eve",
			err: `x:5: invalid user name "dave#"`,
		},
		{
			name: "routes ok",
			in: "List@Lists.EXAMPLE.org.  alice # learned 2026-12-04T19:30:00Z from msg\n" +
				"\tlist-id:<News.Example.NET>\tbob\r\n" +
				"a#b@example.com carol #c # d\n" +
				"LIST-ID:x.y dave #\n" +
				"jörg@bücher.example erin",
			want: []Route{
				{Key: "List@lists.example.org", User: "alice", Comment: "learned 2026-12-04T19:30:00Z from msg", Line: 1},
				{Key: "list-id:news.example.net", User: "bob", Line: 2},
				{Key: "a#b@example.com", User: "carol", Comment: "c # d", Line: 3},
				{Key: "list-id:x.y", User: "dave", Line: 4},
				{Key: "jörg@xn--bcher-kva.example", User: "erin", Line: 5},
			},
		},
		{name: "key only", in: "\n\nlist@example.org\n", err: "x:3: want KEY USER"},
		{name: "extra field", in: "list@example.org alice bob\n", err: `x:1: unexpected "bob" after the user`},
		{name: "bad user", in: "list@example.org ../etc\n", err: `x:1: invalid user name "../etc"`},
		{name: "user with dash first", in: "list@example.org -x\n", err: `invalid user name "-x"`},
		{name: "bare local part", in: "joe alice\n", err: "x:1: invalid key"},
		{name: "empty local part", in: "@example.com alice\n", err: "x:1: invalid key"},
		{name: "bad domain", in: "joe@exa mple.com alice\n", err: "x:1: unexpected"},
		{name: "bad domain 2", in: "joe@-bad-.example alice\n", err: "x:1: invalid domain"},
		{name: "long local part", in: strings.Repeat("a", 65) + "@example.com alice\n", err: "invalid local part"},
		{name: "bad list-id", in: "list-id:nodot alice\n", err: "x:1: invalid List-Id identifier"},
		{name: "duplicate", in: "a@example.com alice\n# c\nA@EXAMPLE.COM bob\na@Example.com. carol\n", err: "x:4: a@example.com already has a route at line 1"},
		{name: "duplicate list-id", in: "list-id:a.b alice\nlist-id:<A.B> bob\n", err: "x:2: list-id:a.b already has a route at line 1"},
		{name: "control character", in: "a@example.com alice # x\x00y\n", err: "x:1: control character"},
		{name: "invalid utf-8", in: "a@example.com alice # \xff\n", err: "x:1: not valid UTF-8"},
		{name: "long line", in: "a@example.com alice # " + strings.Repeat("x", MaxLineBytes) + "\n", err: "x:1: line longer than 1000 bytes"},
		{name: "too big", in: strings.Repeat("#\n", MaxFileBytes/2+1), err: "x: larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in), "x")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse = %v, %v; want error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("Parse = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseTooManyRoutes(t *testing.T) {
	var b strings.Builder
	for i := 0; i <= MaxRoutes; i++ {
		fmt.Fprintf(&b, "u%d@example.com alice\n", i)
	}
	_, err := Parse([]byte(b.String()), "x")
	if want := fmt.Sprintf("x:%d: more than %d routes", MaxRoutes+1, MaxRoutes); err == nil || err.Error() != want {
		t.Fatalf("Parse = %v; want %q", err, want)
	}
}

func TestAddForget(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "learned")
	path := filepath.Join(dir, "box.routes")
	if rs, err := Read(path); err != nil || rs != nil {
		t.Fatalf("Read(missing) = %v, %v; want nil, nil", rs, err)
	}
	if ok, err := Forget(path, "a@example.com"); ok || err != nil {
		t.Fatalf("Forget(missing file) = %v, %v", ok, err)
	}
	prev, err := Add(path, "List@LISTS.example.org", "alice", "learned now from\nmsg\x1b[31m")
	if err != nil || prev != "" {
		t.Fatalf("Add = %q, %v", prev, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode = %v, %v; want 0700", di.Mode(), err)
	}
	// A hand-written comment and a blank line survive rewrites.
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(b, []byte("\n# mine\nold@example.com bob\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if prev, err := Add(path, "list-id:<News.Example.net>", "carol", ""); err != nil || prev != "" {
		t.Fatalf("Add(list-id) = %q, %v", prev, err)
	}
	if prev, err := Add(path, "List@lists.example.org", "bob", "again"); err != nil || prev != "alice" {
		t.Fatalf("Add(replace) = %q, %v; want prev alice", prev, err)
	}
	if prev, err := Add(path, "List@Lists.Example.Org.", "bob", "unchanged"); err != nil || prev != "bob" {
		t.Fatalf("Add(same) = %q, %v; want prev bob", prev, err)
	}
	if _, err := Add(path, "x@example.com", "a/b", ""); err == nil {
		t.Fatal("Add(bad user) = nil error")
	}
	for _, k := range []string{"nope", "#x@example.com", "list-id:nodot", ""} {
		if _, err := Add(path, k, "alice", ""); err == nil {
			t.Fatalf("Add(%q) = nil error", k)
		}
	}
	if ok, err := Forget(path, "OLD@example.com"); ok || err != nil {
		t.Fatalf("Forget(other case) = %v, %v; want false (local parts as written)", ok, err)
	}
	if ok, err := Forget(path, "old@EXAMPLE.com"); !ok || err != nil {
		t.Fatalf("Forget = %v, %v; want true", ok, err)
	}
	got, _ := os.ReadFile(path)
	want := "# popfetch learned routes: KEY USER [# comment]; see popfetch.hcl(5).\n" +
		"# Change them with popfetch reroute --learn / --forget.\n" +
		"List@lists.example.org bob # again\n" +
		"\n# mine\n" +
		"list-id:news.example.net carol\n"
	if string(got) != want {
		t.Fatalf("file =\n%s\nwant\n%s", got, want)
	}
	rs, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	addrs, ids := Maps(rs)
	if len(addrs) != 1 || addrs["List@lists.example.org"] != "bob" || len(ids) != 1 || ids["news.example.net"] != "carol" {
		t.Fatalf("Maps = %v, %v", addrs, ids)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// TestAddComment: the comment Add writes is one line, without control
// characters, bounded.
func TestAddComment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r")
	if _, err := Add(path, "a@example.com", "alice", "x\r\ny\x00z "+strings.Repeat("é", 1000)); err != nil {
		t.Fatal(err)
	}
	rs, err := Read(path)
	if err != nil || len(rs) != 1 {
		t.Fatalf("Read = %v, %v", rs, err)
	}
	if c := rs[0].Comment; !strings.HasPrefix(c, "x y z é") || len(c) > maxComment {
		t.Errorf("comment = %q (%d bytes)", c, len(c))
	}
	// C1 controls (U+009B is CSI) and format characters (bidi
	// overrides) are no more kept than C0 ones.
	if _, err := Add(path, "b@example.com", "bob", "new/1.\u202etxt.exe\u009b2J\u200b\u2066x\u0085y"); err != nil {
		t.Fatal(err)
	}
	rs, err = Read(path)
	if err != nil || len(rs) != 2 || rs[1].Comment != "new/1.txt.exe 2Jx y" {
		t.Errorf("Read = %+v, %v; want the comment %q", rs, err, "new/1.txt.exe 2Jx y")
	}
}

// TestAddConcurrent: writers take the lock, so no update is lost.
func TestAddConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r")
	var wg sync.WaitGroup
	const n = 20
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Add(path, fmt.Sprintf("u%d@example.com", i), "alice", ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	rs, err := Read(path)
	if err != nil || len(rs) != n {
		t.Fatalf("Read = %d routes, %v; want %d", len(rs), err, n)
	}
}

// TestReadUntrusted: a file others can write is refused (whoever can
// change it chooses who receives mail); so is a broken one, with its line.
func TestReadUntrusted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r")
	if err := os.WriteFile(path, []byte("a@example.com alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); !errors.Is(err, trust.ErrUntrustedFile) {
		t.Fatalf("Read(0666) = %v; want ErrUntrustedFile", err)
	}
	if _, err := Add(path, "b@example.com", "bob", ""); !errors.Is(err, trust.ErrUntrustedFile) {
		t.Fatalf("Add(0666) = %v; want ErrUntrustedFile", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("a@example.com alice\nbroken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err == nil || !strings.Contains(err.Error(), path+":2: ") {
		t.Fatalf("Read(broken) = %v; want an error naming %s:2", err, path)
	}
	if _, err := Add(path, "b@example.com", "bob", ""); err == nil || !strings.Contains(err.Error(), path+":2: ") {
		t.Fatalf("Add(broken) = %v; want an error naming %s:2", err, path)
	}
}

// TestLockSymlink: a symbolic link planted as the lock is refused, not
// followed.
func TestLockSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r")
	target := filepath.Join(dir, "elsewhere")
	if err := os.Symlink(target, path+".lock"); err != nil {
		t.Fatal(err)
	}
	if _, err := Add(path, "a@example.com", "alice", ""); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Add = %v; want a symbolic link error", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link's target was created: %v", err)
	}
}

// FuzzParse: never panics; what parses renders to lines that parse back
// to the same routes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a@example.com alice\n", "list-id:<a.b> bob # c\n", "# x\n\n", "a#b@x.y z #\r\n",
		"jörg@bücher.example erin", "a@b c d\n", "\xff", "a@[192.0.2.1] u\n", " #a@b.c u\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data, "f")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		var b strings.Builder
		for _, r := range rs {
			if !ValidUser(r.User) || strings.ContainsAny(r.Key+r.Comment, "\r\n") {
				t.Fatalf("unsafe route %+v", r)
			}
			b.WriteString(r.String() + "\n")
		}
		again, err := Parse([]byte(b.String()), "f")
		if err != nil || len(again) != len(rs) {
			t.Fatalf("re-parse of %q = %v, %v", b.String(), again, err)
		}
		for i := range rs {
			if again[i].Key != rs[i].Key || again[i].User != rs[i].User || again[i].Comment != rs[i].Comment {
				t.Fatalf("re-parse: %+v != %+v", again[i], rs[i])
			}
		}
	})
}

// TestAddStateDirOfAnotherUser: as root, in a state directory that
// belongs to another user (the daemon's), Add refuses before creating
// anything, and says to run as that user (not to chown the directory to
// root, which would stop the daemon).
func TestAddStateDirOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := Add(filepath.Join(state, "learned", "box.routes"), "a@example.com", "alice", "")
	if err == nil || !strings.Contains(err.Error(), "sudo -u ") || strings.Contains(err.Error(), "chown root") {
		t.Errorf("Add = %v; want it refused with advice to run as the state directory's owner", err)
	}
	if _, err := os.Lstat(filepath.Join(state, "learned")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Add left %s/learned behind (%v)", state, err)
	}
}
