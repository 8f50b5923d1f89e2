package uidl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a child that holds a Store open
// (TestLockReleasedOnKill).
const helperEnv = "POPFETCH_UIDL_TEST_HOLD"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		holdLock(path)
		return
	}
	os.Exit(m.Run())
}

// holdLock opens the store, tells the parent, and blocks until stdin closes
// or the process is killed. No sleeps: the parent waits for the "locked" line.
func holdLock(path string) {
	s, err := Open(path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	if err := s.Add("held", time.Unix(1, 0)); err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	s.Close()
	os.Exit(0)
}

var t0 = time.Unix(1_700_000_000, 0)

func journalPath(t testing.TB) string {
	t.Helper()
	return Path(t.TempDir(), "joe@pop.example.com")
}

func writeJournal(t testing.TB, content string) string {
	t.Helper()
	path := journalPath(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustOpen(t testing.TB, path string) *Store {
	t.Helper()
	return mustOpenHooks(t, path, testHooks())
}

// mustOpenHooks is mustOpen with the Store's seams given.
func mustOpenHooks(t testing.TB, path string, h *hooks) *Store {
	t.Helper()
	s, err := openHooks(path, nil, h)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parseFile replays the journal at path without locking it, the way an
// admin's grep would see it.
func parseFile(t testing.TB, path string) *state {
	t.Helper()
	b := readFile(t, path)
	st, res, err := replay(strings.NewReader(b), int64(len(b)), path)
	if err != nil {
		t.Fatalf("replay %s: %v", path, err)
	}
	if res.torn || int(res.good) != len(b) {
		t.Fatalf("replay %s: torn=%v good=%d len=%d", path, res.torn, res.good, len(b))
	}
	return st
}

func TestValidUID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uid  string
		want bool
	}{
		{"a", true},
		{"!", true},
		{"~", true},
		{"whqtswO00WBw418f9t5JxYwZ", true},
		{strings.Repeat("x", 70), true},
		{strings.Repeat("x", 71), false},
		{"", false},
		{"a b", false},
		{"a\nb", false},
		{"a\x00", false},
		{"a\x7f", false},
		{"é", false},
		{"a\r", false},
	}
	for _, tt := range tests {
		if got := ValidUID(tt.uid); got != tt.want {
			t.Errorf("ValidUID(%q) = %v; want %v", tt.uid, got, tt.want)
		}
	}
}

func TestValidRecipient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rcpt string
		want bool
	}{
		{"joe@example.com", true},
		{"jörg@example.com", true},
		{"postmaster", true},
		{strings.Repeat("x", 320), true},
		{strings.Repeat("x", 321), false},
		{"", false},
		{"a b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\u00a0b", false}, // no-break space
		{"a\u2028b", false}, // line separator
		{"a\u0085b", false}, // NEL
		{"a\xffb", false},   // not UTF-8
		{"a\x1b[31m", false},
	}
	for _, tt := range tests {
		if got := ValidRecipient(tt.rcpt); got != tt.want {
			t.Errorf("ValidRecipient(%q) = %v; want %v", tt.rcpt, got, tt.want)
		}
	}
}

// view is a comparable summary of a Store or state for table tests.
type view struct {
	delivered []string
	rcpts     map[string][]string
	noted     []string
	first     map[string]int64
	ids       map[string]string // identities and intent identity, by uid (nil if none)
}

func viewOf(st *state) view {
	v := view{rcpts: map[string][]string{}, first: map[string]int64{}}
	for uid, e := range st.m {
		if e.delivered {
			v.delivered = append(v.delivered, uid)
		}
		if e.noted {
			v.noted = append(v.noted, uid)
		}
		if len(e.rcpts) > 0 {
			v.rcpts[uid] = e.rcpts
		}
		v.first[uid] = e.first
		if len(e.ids) > 0 || e.intentID.Known() || e.givenUp || e.rcptsID.Known() {
			if v.ids == nil {
				v.ids = map[string]string{}
			}
			v.ids[uid] = fmt.Sprint(e.ids, e.idAt, e.intentID, e.givenUp, e.givenUpSize, e.rcptsID)
		}
	}
	slices.Sort(v.delivered)
	slices.Sort(v.noted)
	return v
}

func (v view) String() string {
	s := fmt.Sprintf("delivered=%v rcpts=%v noted=%v first=%v", v.delivered, v.rcpts, v.noted, v.first)
	if v.ids != nil {
		s += fmt.Sprintf(" ids=%v", v.ids)
	}
	return s
}

func TestOpenReplay(t *testing.T) {
	t.Parallel()
	const h = header + "\n"
	tests := []struct {
		name     string
		content  string
		want     string // view.String() of the state after Open
		wantFile string // file content after Open ("" = unchanged)
		wantErr  string // substring of the error; also errors.Is ErrCorrupt
	}{
		{
			name:     "empty file gets a header",
			content:  "",
			want:     "delivered=[] rcpts=map[] noted=[] first=map[]",
			wantFile: h,
		},
		{
			name:    "header only",
			content: h,
			want:    "delivered=[] rcpts=map[] noted=[] first=map[]",
		},
		{
			name:    "all kinds",
			content: h + "+ a 10\nr b 11 x@y\nr b 12 z@y\nn c 13\n+ d 14\n- d\n",
			want:    "delivered=[a] rcpts=map[b:[x@y z@y]] noted=[c] first=map[a:10 b:11 c:13]",
		},
		{
			name:     "torn tail is truncated",
			content:  h + "+ a 10\n+ b 2",
			want:     "delivered=[a] rcpts=map[] noted=[] first=map[a:10]",
			wantFile: h + "+ a 10\n",
		},
		{
			name:     "torn header",
			content:  "popfetch-ui",
			want:     "delivered=[] rcpts=map[] noted=[] first=map[]",
			wantFile: h,
		},
		{
			name:     "zero-filled unsynced tail",
			content:  h + "+ a 10\n\x00\x00\x00\x00+ b 11\n",
			want:     "delivered=[a] rcpts=map[] noted=[] first=map[a:10]",
			wantFile: h + "+ a 10\n",
		},
		{
			name:     "zero-filled tail without newline",
			content:  h + "+ a 10\n" + strings.Repeat("\x00", 5000),
			want:     "delivered=[a] rcpts=map[] noted=[] first=map[a:10]",
			wantFile: h + "+ a 10\n",
		},
		{
			name:    "duplicates keep the first time",
			content: h + "+ a 10\n+ a 20\nn a 30\nn a 40\n",
			want:    "delivered=[a] rcpts=map[] noted=[a] first=map[a:10]",
		},
		{
			name:    "forgotten then re-added starts a new first-seen",
			content: h + "+ a 10\n- a\n+ a 50\n",
			want:    "delivered=[a] rcpts=map[] noted=[] first=map[a:50]",
		},
		{
			name:    "delivery subsumes recipients",
			content: h + "r a 10 x\n+ a 11\nr a 12 y\n",
			want:    "delivered=[a] rcpts=map[] noted=[] first=map[a:10]",
		},
		{
			name:    "forgetting an unknown uid is harmless",
			content: h + "- zz\n",
			want:    "delivered=[] rcpts=map[] noted=[] first=map[]",
		},
		{name: "missing header", content: "+ a 10\n", wantErr: ":1: missing header"},
		{name: "future version", content: "popfetch-uidl 4\n", wantErr: ":1: unsupported format"},
		{name: "identity in a version 1 journal", content: headerV1 + "\n+ a 10 5 ab\n", wantErr: ":2: record"},
		{name: "identity not hex", content: h + "+ a 10 5 AB\n", wantErr: ":2: record"},
		{name: "identity negative size", content: h + "+ a 10 -5 ab\n", wantErr: ":2: record"},
		{name: "identity without digest", content: h + "+ a 10 5\n", wantErr: ":2: record"},
		{name: "unknown kind", content: h + "+ a 10\nx a 10\n+ b 11\n", wantErr: ":3: unknown record kind"},
		{name: "invalid uid", content: h + "+ a\x7fb 10\n+ b 11\n", wantErr: ":2: record"},
		{name: "uid too long", content: h + "+ " + strings.Repeat("u", 71) + " 10\n", wantErr: ":2: record"},
		{name: "bad time", content: h + "+ a 1x\n", wantErr: ":2: record"},
		{name: "plus sign time", content: h + "+ a +1\n", wantErr: ":2: record"},
		{name: "missing time", content: h + "+ a\n", wantErr: ":2: record"},
		{name: "extra field", content: h + "+ a 10 x\n", wantErr: ":2: record"},
		{name: "double space", content: h + "+  a 10\n", wantErr: ":2: record"},
		{name: "crlf", content: h + "+ a 10\r\n", wantErr: ":2: record"},
		{name: "bad rcpt", content: h + "r a 10 \x01\n", wantErr: ":2: record"},
		{name: "empty line", content: h + "\n+ a 10\n", wantErr: ":2: malformed"},
		{name: "very long line", content: h + "+ " + strings.Repeat("a", 100000) + " 1\n+ b 2\n", wantErr: ":2: line too long"},
		{
			name:    "too many recipients",
			content: h + rcptRecords(MaxRecipients+1),
			wantErr: fmt.Sprintf(":%d: record", MaxRecipients+2),
		},
		{
			// A NUL far from the end is not a crash tail: refuse.
			name:    "nul in the middle",
			content: h + "\x00\n" + strings.Repeat("+ a 10\n", maxWrite/7+1),
			wantErr: ":2: malformed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeJournal(t, tt.content)
			s, err := Open(path)
			if tt.wantErr != "" {
				if err == nil {
					s.Close()
					t.Fatalf("Open = nil; want error containing %q", tt.wantErr)
				}
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path+tt.wantErr) {
					t.Fatalf("Open = %v; want ErrCorrupt containing %q", err, path+tt.wantErr)
				}
				if got := readFile(t, path); got != tt.content {
					t.Errorf("corrupt journal was modified")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open = %v", err)
			}
			defer s.Close()
			if got := viewOf(s.st).String(); got != tt.want {
				t.Errorf("state = %s\nwant    %s", got, tt.want)
			}
			want := tt.wantFile
			if want == "" {
				want = tt.content
			}
			if got := readFile(t, path); got != want {
				t.Errorf("file after Open = %q; want %q", got, want)
			}
		})
	}
}

// recordOps captures the durability-relevant operations done through h.
func recordOps(h *hooks) *[]string {
	var mu sync.Mutex
	ops := &[]string{}
	h.trace = func(op, path string) {
		mu.Lock()
		defer mu.Unlock()
		*ops = append(*ops, op+" "+filepath.Base(path))
	}
	return ops
}

func TestAddDurable(t *testing.T) {
	t.Parallel()
	path := journalPath(t)
	s := mustOpen(t, path)
	ops := recordOps(s.h)
	if err := s.Add("uid-1", t0); err != nil {
		t.Fatalf("Add = %v", err)
	}
	// Durable before return: the fsync follows the write, and the record is
	// in the file (read without the Store) as soon as Add returned. The
	// length mark is raised only after the fsync, and not fsynced itself.
	base := filepath.Base(path)
	if want := []string{"write " + base, "sync " + base, "write " + base + ".len"}; !slices.Equal(*ops, want) {
		t.Errorf("ops = %q; want %q", *ops, want)
	}
	if got := readFile(t, path); got != header+"\n+ uid-1 1700000000\n" {
		t.Errorf("file = %q", got)
	}
	if !s.Has("uid-1") || s.Len() != 1 {
		t.Errorf("Has = %v, Len = %d; want true, 1", s.Has("uid-1"), s.Len())
	}
	if ft, ok := s.FirstSeen("uid-1"); !ok || !ft.Equal(t0) {
		t.Errorf("FirstSeen = %v, %v; want %v, true", ft, ok, t0)
	}

	// Adding again writes nothing.
	*ops = nil
	if err := s.Add("uid-1", t0.Add(time.Hour)); err != nil || len(*ops) != 0 {
		t.Errorf("second Add = %v, ops %q; want nil, none", err, *ops)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, path)
	if !s2.Has("uid-1") {
		t.Error("after reopen: Has = false")
	}
}

func TestMutationErrors(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, journalPath(t))
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"Add empty", s.Add("", t0), ErrBadUID},
		{"Add space", s.Add("a b", t0), ErrBadUID},
		{"Add newline", s.Add("a\n+ evil 1", t0), ErrBadUID},
		{"Note long", s.Note(strings.Repeat("a", 71), t0), ErrBadUID},
		{"AddRecipient bad uid", s.AddRecipient("a\x00", "x@y", t0), ErrBadUID},
		{"AddRecipient space", s.AddRecipient("a", "x y", t0), ErrBadRecipient},
		{"AddRecipient newline", s.AddRecipient("a", "x\n+ b 1", t0), ErrBadRecipient},
		{"AddRecipient empty", s.AddRecipient("a", "", t0), ErrBadRecipient},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s = %v; want %v", tt.name, tt.err, tt.want)
		}
	}
	if s.Len() != 0 || len(s.st.m) != 0 {
		t.Errorf("state changed by rejected calls: %v", viewOf(s.st))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	if err := s.Add("a", t0); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v; want ErrClosed", err)
	}
	if err := s.Retain(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Retain after Close = %v; want ErrClosed", err)
	}
}

// rcptRecords returns n "r" records of UID "m" for distinct recipients.
func rcptRecords(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "r m 1 r%d@example.com\n", i)
	}
	return b.String()
}

func TestMaxRecipients(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, writeJournal(t, header+"\n"+rcptRecords(MaxRecipients)))
	if got := len(s.Recipients("m")); got != MaxRecipients {
		t.Fatalf("Recipients = %d", got)
	}
	if err := s.AddRecipient("m", "r0@example.com", t0); err != nil {
		t.Errorf("AddRecipient(known) = %v; want nil", err)
	}
	if err := s.AddRecipient("m", "one-more@example.com", t0); !errors.Is(err, ErrBadRecipient) {
		t.Errorf("AddRecipient beyond the cap = %v; want ErrBadRecipient", err)
	}
	if err := s.Add("m", t0); err != nil || s.Recipients("m") != nil {
		t.Errorf("Add = %v, Recipients = %d; want nil, none", err, len(s.Recipients("m")))
	}
}

func TestMultidropAndNote(t *testing.T) {
	t.Parallel()
	path := journalPath(t)
	s := mustOpen(t, path)
	steps := []struct {
		name string
		do   func() error
	}{
		{"rcpt a x", func() error { return s.AddRecipient("a", "x@example.com", t0) }},
		{"rcpt a y", func() error { return s.AddRecipient("a", "y@example.com", t0.Add(time.Second)) }},
		{"rcpt a x again", func() error { return s.AddRecipient("a", "x@example.com", t0) }},
		{"note big", func() error { return s.Note("big", t0.Add(2*time.Second)) }},
		{"note big again", func() error { return s.Note("big", t0.Add(3*time.Second)) }},
		{"give up bad", func() error { return s.GiveUp("bad", t0.Add(5*time.Second)) }},
		{"give up bad again", func() error { return s.GiveUp("bad", t0.Add(6*time.Second)) }},
		{"rcpt b x", func() error { return s.AddRecipient("b", "x@example.com", t0) }},
		{"add b", func() error { return s.Add("b", t0.Add(4*time.Second)) }},
		{"rcpt b after delivery", func() error { return s.AddRecipient("b", "z@example.com", t0) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
	check := func(s *Store, when string) {
		t.Helper()
		if got := s.Recipients("a"); !slices.Equal(got, []string{"x@example.com", "y@example.com"}) {
			t.Errorf("%s: Recipients(a) = %q", when, got)
		}
		if got := s.Recipients("b"); got != nil {
			t.Errorf("%s: Recipients(b) = %q; want nil after Add", when, got)
		}
		if s.Has("a") || !s.Has("b") || s.Has("big") {
			t.Errorf("%s: Has(a,b,big) = %v,%v,%v; want false,true,false", when, s.Has("a"), s.Has("b"), s.Has("big"))
		}
		if !s.Noted("big") || s.Noted("a") {
			t.Errorf("%s: Noted(big,a) = %v,%v", when, s.Noted("big"), s.Noted("a"))
		}
		if !s.GivenUp("bad") || s.GivenUp("big") || s.Has("bad") || s.Noted("bad") {
			t.Errorf("%s: GivenUp(bad,big) = %v,%v, Has(bad) = %v, Noted(bad) = %v; want true,false,false,false", when, s.GivenUp("bad"), s.GivenUp("big"), s.Has("bad"), s.Noted("bad"))
		}
		if ft, _ := s.FirstSeen("big"); ft.Unix() != t0.Unix()+2 {
			t.Errorf("%s: FirstSeen(big) = %v", when, ft)
		}
		if ft, _ := s.FirstSeen("b"); !ft.Equal(t0) {
			t.Errorf("%s: FirstSeen(b) = %v; want the first recipient's time", when, ft)
		}
		if s.Len() != 1 {
			t.Errorf("%s: Len = %d; want 1", when, s.Len())
		}
	}
	check(s, "live")
	want := header + "\n" +
		"r a 1700000000 x@example.com\n" +
		"r a 1700000000 y@example.com\n" +
		"n big 1700000002\n" +
		"p bad 1700000005\n" +
		"r b 1700000000 x@example.com\n" +
		"+ b 1700000004\n" // a "+" carries its delivery's time
	if got := readFile(t, path); got != want {
		t.Errorf("journal =\n%s\nwant\n%s", got, want)
	}
	s.Close()
	check(mustOpen(t, path), "reopened")
}

func TestRetain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		journal  string
		onServer []string
		want     string
	}{
		{
			name:     "keeps listed, forgets the rest with partial and noted records",
			journal:  "+ a 1\n+ b 2\nr c 3 x\nn d 4\n+ e 5\n",
			onServer: []string{"a", "e", "new-1"},
			want:     "delivered=[a e] rcpts=map[] noted=[] first=map[a:1 e:5]",
		},
		{
			name:     "nothing vanished",
			journal:  "+ a 1\nn b 2\n",
			onServer: []string{"b", "a"},
			want:     "delivered=[a] rcpts=map[] noted=[b] first=map[a:1 b:2]",
		},
		{
			name:     "empty listing forgets everything",
			journal:  "+ a 1\nr b 2 x\n",
			onServer: nil,
			want:     "delivered=[] rcpts=map[] noted=[] first=map[]",
		},
		{
			name:     "invalid uids in the listing are ignored",
			journal:  "+ a 1\n",
			onServer: []string{"a", "", "b c"},
			want:     "delivered=[a] rcpts=map[] noted=[] first=map[a:1]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeJournal(t, header+"\n"+tt.journal)
			s := mustOpen(t, path)
			if err := s.Retain(tt.onServer); err != nil {
				t.Fatalf("Retain = %v", err)
			}
			if got := viewOf(s.st).String(); got != tt.want {
				t.Errorf("state = %s\nwant    %s", got, tt.want)
			}
			// Durable: the file alone says the same.
			if got := viewOf(parseFile(t, path)).String(); got != tt.want {
				t.Errorf("file state = %s\nwant         %s", got, tt.want)
			}
			s.Close()
			if got := viewOf(mustOpen(t, path).st).String(); got != tt.want {
				t.Errorf("reopened = %s\nwant       %s", got, tt.want)
			}
		})
	}
}

func TestRetainAppendsForgetRecords(t *testing.T) {
	t.Parallel()
	path := writeJournal(t, header+"\n+ a 1\n+ b 2\n+ c 3\n")
	s := mustOpen(t, path)
	ops := recordOps(s.h)
	if err := s.Retain([]string{"b"}); err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(path)
	if want := []string{"write " + base, "sync " + base, "write " + base + ".len"}; !slices.Equal(*ops, want) {
		t.Errorf("ops = %q; want one write and one fsync (and the mark's pwrite)", *ops)
	}
	if got, want := readFile(t, path), header+"\n+ a 1\n+ b 2\n+ c 3\n- a\n- c\n"; got != want {
		t.Errorf("journal = %q; want %q", got, want)
	}
}

// bigJournal returns a journal text with n delivered UIDs "uid-<i>".
func bigJournal(n int) string {
	var b strings.Builder
	b.WriteString(header + "\n")
	for i := range n {
		fmt.Fprintf(&b, "+ uid-%d %d\n", i, 1_700_000_000+i)
	}
	return b.String()
}

func uids(from, to int) []string {
	var u []string
	for i := from; i < to; i++ {
		u = append(u, fmt.Sprintf("uid-%d", i))
	}
	return u
}

func TestRetainCompacts(t *testing.T) {
	t.Parallel()
	const n = 3 * minGarbage
	path := writeJournal(t, bigJournal(n))
	s := mustOpen(t, path)
	ops := recordOps(s.h)

	// Forgetting a third leaves dead (n/3) < live (2n/3): append only.
	if err := s.Retain(uids(n/3, n)); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(*ops, "rename "+filepath.Base(path)) {
		t.Fatalf("compacted too early: %q", *ops)
	}
	// Forgetting more makes dead records dominate: compact.
	*ops = nil
	if err := s.Retain(uids(n-10, n)); err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(path)
	// The mark is lowered to what old and new journal both hold, durably,
	// before the rename.
	want := []string{"write " + base + ".tmp", "sync " + base + ".tmp", "write " + base + ".len", "sync " + base + ".len",
		"rename " + base, "syncdir " + filepath.Base(filepath.Dir(path))}
	if !slices.Equal(*ops, want) {
		t.Errorf("compaction ops = %q; want %q", *ops, want)
	}
	lines := strings.SplitAfter(bigJournal(n), "\n")
	if got, want := readFile(t, path), header+"\n"+strings.Join(lines[n-9:], ""); got != want {
		t.Errorf("compacted journal = %q; want %q", got, want)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("tmp file left behind: %v", err)
	}
	// The store keeps working on the new inode.
	if err := s.Add("after", t0); err != nil {
		t.Fatal(err)
	}
	if !parseFile(t, path).m["after"].delivered {
		t.Error("Add after compaction did not reach the new journal")
	}
	if s.Len() != 11 || s.st.records != 11 {
		t.Errorf("Len = %d, records = %d; want 11, 11", s.Len(), s.st.records)
	}
}

func TestOpenCompactsGarbage(t *testing.T) {
	t.Parallel()
	// Duplicates are dead records too.
	j := bigJournal(minGarbage + 1)
	j += strings.TrimPrefix(j, header+"\n")
	path := writeJournal(t, j+"+ x 1\n- x\n")
	h := testHooks()
	ops := recordOps(h)
	s := mustOpenHooks(t, path, h)
	if !slices.Contains(*ops, "rename "+filepath.Base(path)) {
		t.Fatalf("Open did not compact: %q", *ops)
	}
	if got := readFile(t, path); got != bigJournal(minGarbage+1) {
		t.Errorf("compacted journal differs from the live records (%d bytes)", len(got))
	}
	if s.Len() != minGarbage+1 {
		t.Errorf("Len = %d", s.Len())
	}
}

func TestStaleTmpRemoved(t *testing.T) {
	t.Parallel()
	path := writeJournal(t, header+"\n+ a 1\n")
	if err := os.WriteFile(path+".tmp", []byte("half a compaction"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, path)
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("stale tmp still there: %v", err)
	}
	if !s.Has("a") {
		t.Error("journal lost")
	}
}

func TestLock(t *testing.T) {
	t.Parallel()
	path := journalPath(t)
	s := mustOpen(t, path)
	_, err := openHooks(path, nil, testHooks())
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path+".lock") {
		t.Fatalf("second Open = %v; want ErrLocked naming the lock file", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, path)
}

// TestLockWaitsForBriefHolder: a lock held for a moment, as a forking child
// holds a just-closed Store's lock until it execs, is waited for rather
// than reported as another popfetch.
func TestLockWaitsForBriefHolder(t *testing.T) {
	path := journalPath(t)
	mustOpen(t, path).Close()
	// Another open file description of the lock file, as the child has.
	f, err := os.OpenFile(path+".lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	h := testHooks()
	done := make(chan struct{})
	defer func() { <-done }() // before f.Close
	go func() {
		defer close(done)
		time.Sleep(h.lockGrace / 5)
		syscall.Flock(fd, syscall.LOCK_UN)
	}()
	// Without the grace this is ErrLocked at once: the flock is held.
	s, err := openHooks(path, nil, h)
	if err != nil {
		t.Fatalf("Open while the lock is held briefly = %v; want it to wait", err)
	}
	s.Close()
}

func TestLockReleasedOnKill(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := journalPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, %v", line, err)
	}
	if _, err := openHooks(path, nil, testHooks()); !errors.Is(err, ErrLocked) {
		t.Errorf("Open while child holds the lock = %v; want ErrLocked", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait() // the kernel has dropped the flock once the child is reaped
	s := mustOpen(t, path)
	if !s.Has("held") {
		t.Error("the killed child's durable Add is missing")
	}
}

func TestModes(t *testing.T) {
	// umask is process-wide: this test must not run in parallel.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	state := filepath.Join(t.TempDir(), "a", "b")
	path := Path(state, "joe@pop.example.com")
	mustOpen(t, path)
	for _, c := range []struct {
		name string
		want os.FileMode
	}{
		{filepath.Dir(state), 0o700},
		{state, 0o700},
		{filepath.Dir(path), 0o700},
		{path, 0o600},
		{path + ".lock", 0o600},
		{path + ".len", 0o600},
	} {
		fi, err := os.Stat(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.want {
			t.Errorf("mode of %s = %v; want %v", c.name, fi.Mode().Perm(), c.want)
		}
	}
}

func TestInsecureRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(path string) error
	}{
		{"journal world-readable", func(p string) error { return os.Chmod(p, 0o644) }},
		{"lock group-writable", func(p string) error { return os.WriteFile(p+".lock", nil, 0o660) }},
		{"dir world-writable", func(p string) error { return os.Chmod(filepath.Dir(p), 0o777) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeJournal(t, header+"\n")
			old := syscall.Umask(0)
			err := tt.setup(path)
			syscall.Umask(old)
			if err != nil {
				t.Fatal(err)
			}
			if s, err := Open(path); !errors.Is(err, ErrInsecure) {
				if s != nil {
					s.Close()
				}
				t.Errorf("Open = %v; want ErrInsecure", err)
			}
		})
	}
}

func TestSymlinkRefused(t *testing.T) {
	t.Parallel()
	path := journalPath(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte(header+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("Open followed a symlink")
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, journalPath(t))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5 {
				uid := fmt.Sprintf("g%d-%d", g, i)
				if err := s.Add(uid, t0); err != nil {
					t.Error(err)
				}
				s.Has(uid)
				s.Len()
			}
		})
	}
	wg.Wait()
	if s.Len() != 20 {
		t.Errorf("Len = %d; want 20", s.Len())
	}
}

func TestLegacyPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		user, server string
		port         int
		want         string
	}{
		{"joe", "pop.example.com", 995, "joe@pop.example.com:995"},
		{"joe@example.com", "POP.Example.COM", 110, "joe@example.com@pop.example.com:110"},
		{"a/b", "h", 1, "a%2Fb@h:1"},
		{"..", "h", 1, "%2E.@h:1"},
		{".hidden", "h", 1, "%2Ehidden@h:1"},
		{"-rf", "h", 1, "%2Drf@h:1"},
		{"a-b.c", "h", 1, "a-b.c@h:1"},
		{"100%", "h", 1, "100%25@h:1"},
		{"nul\x00", "h", 1, "nul%00@h:1"},
		{"sp ace\n", "h", 1, "sp%20ace%0A@h:1"},
		{"jörg", "h", 1, "j%C3%B6rg@h:1"},
		{"u", "evil@host", 1, "u@evil%40host:1"},
		{"u", "../../etc", 1, "u@..%2F..%2Fetc:1"},
		{"u", "::1", 995, "u@::1:995"},
		{"", "", 0, "@:0"},
	}
	for _, tt := range tests {
		got := LegacyPath("/state", tt.user, tt.server, tt.port)
		if want := "/state/uidl/" + tt.want; got != want {
			t.Errorf("LegacyPath(%q, %q, %d) = %q; want %q", tt.user, tt.server, tt.port, got, want)
		}
	}
}

func TestLegacyPathUniqueAndContained(t *testing.T) {
	t.Parallel()
	users := []string{"", "joe", "Joe", "joe@x", "joe@x@y", "joe:1", ".", "..", "/", "a/../b", "%", "%25", "%2F",
		"\x00", " ", "-", ".x", "%2Ex", "a@b", strings.Repeat("u", 300), strings.Repeat("u", 301), strings.Repeat("%", 200)}
	servers := []string{"", "h", "x@y", "y", "h:1", "::1", "/", "..", "%40", "@", strings.Repeat("s", 300)}
	ports := []int{0, 1, 11, 110, 995, -1}
	seen := map[string]string{}
	for _, u := range users {
		for _, h := range servers {
			for _, p := range ports {
				path := LegacyPath("/state", u, h, p)
				key := fmt.Sprintf("%q %q %d", u, h, p)
				if prev, ok := seen[path]; ok {
					t.Fatalf("%s and %s both map to %s", prev, key, path)
				}
				seen[path] = key
				dir, base := filepath.Split(path)
				if dir != "/state/uidl/" || base == "." || base == ".." || strings.HasPrefix(base, ".") {
					t.Errorf("Path(%s) = %q escapes or hides", key, path)
				}
				if len(base)+len(".lock") > 255 || strings.ContainsAny(base, "/\x00") {
					t.Errorf("Path(%s) = %q: bad file name", key, path)
				}
				for _, sfx := range []string{".lock", ".tmp"} {
					if prev, ok := seen[path+sfx]; ok {
						t.Errorf("%s lock/tmp file equals journal of %s", key, prev)
					}
				}
			}
		}
	}
}

// TestAddFailureBreaksStore fills a tiny tmpfs so a write fails: the store
// must refuse further records and leave a journal that reopens cleanly.
func TestAddFailureBreaksStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8k"); err != nil {
		t.Skipf("cannot mount tmpfs (needs root): %v", err)
	}
	defer syscall.Unmount(dir, 0)
	path := Path(dir, "joe@h")
	s := mustOpen(t, path)
	var err error
	i := 0
	for ; err == nil && i < 1000; i++ {
		err = s.Add(fmt.Sprintf("%070d", i), t0)
	}
	if err == nil {
		t.Fatal("no write error on a full filesystem")
	}
	if err2 := s.Add("more", t0); err2 == nil {
		t.Error("Add after a failed write succeeded")
	}
	s.Close()
	s2 := mustOpen(t, path)
	if s2.Len() != i-1 {
		t.Errorf("reopened Len = %d; want %d (every Add that returned nil)", s2.Len(), i-1)
	}
	s2.Close()
}

func TestOpenCreatesDurably(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "new")
	path := Path(state, "joe@h")
	h := testHooks()
	ops := recordOps(h)
	mustOpenHooks(t, path, h)
	// Each new directory entry is fsynced in its parent before anything is
	// written below it; the header is fsynced before Open returns.
	base := filepath.Base(path)
	want := []string{
		"syncdir " + filepath.Base(filepath.Dir(state)), // created "new"
		"syncdir new",  // created "uidl"
		"syncdir uidl", // created the journal
		"write " + base,
		"sync " + base,
		"rename " + base + ".len", // the length mark, complete or absent
		"syncdir uidl",
	}
	if !slices.Equal(*ops, want) {
		t.Errorf("ops = %q\nwant  %q", *ops, want)
	}
	if got := readFile(t, path); got != header+"\n" {
		t.Errorf("new journal = %q", got)
	}
}

func TestRetainLargeBatchCompacts(t *testing.T) {
	t.Parallel()
	// 1200 forgotten 60-byte UIDs make a "-" batch over maxWrite: compact
	// rather than issue one write that a crash could tear across pages.
	var b strings.Builder
	b.WriteString(header + "\n")
	var keep []string
	for i := range 5000 {
		uid := fmt.Sprintf("%060d", i)
		fmt.Fprintf(&b, "+ %s 1\n", uid)
		if i >= 1200 {
			keep = append(keep, uid)
		}
	}
	path := writeJournal(t, b.String())
	s := mustOpen(t, path)
	ops := recordOps(s.h)
	if err := s.Retain(keep); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(*ops, "rename "+filepath.Base(path)) {
		t.Errorf("ops = %q; want a compaction", *ops)
	}
	if st := parseFile(t, path); len(st.m) != 3800 || st.records != 3800 {
		t.Errorf("journal has %d uids in %d records; want 3800", len(st.m), st.records)
	}
}

func TestRetainCompactionFailureKeepsStore(t *testing.T) {
	t.Parallel()
	path := writeJournal(t, bigJournal(minGarbage))
	s := mustOpen(t, path)
	// A non-empty directory where the .tmp file goes makes compaction fail
	// before its rename.
	if err := os.MkdirAll(filepath.Join(path+".tmp", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Retain(nil); err == nil {
		t.Fatal("Retain = nil; want the compaction error")
	}
	if s.Len() != minGarbage || parseFile(t, path).delivered != minGarbage {
		t.Errorf("failed Retain changed the state: Len = %d", s.Len())
	}
	if err := s.Add("still-works", t0); err != nil {
		t.Errorf("Add after a failed compaction = %v", err)
	}
}

// AddLater writes the record at once (a crash of popfetch keeps it) and
// fsyncs only on Sync; Close syncs what is pending; Open of a journal left
// with unsynced records fsyncs it before anyone relies on them.
func TestAddLaterSync(t *testing.T) {
	t.Parallel()
	path := journalPath(t)
	s := mustOpen(t, path)
	ops := recordOps(s.h)
	base := filepath.Base(path)
	for _, u := range []string{"uid-1", "uid-2"} {
		if err := s.AddLater(u, t0); err != nil {
			t.Fatalf("AddLater = %v", err)
		}
	}
	if want := []string{"write " + base, "write " + base}; !slices.Equal(*ops, want) {
		t.Errorf("ops after AddLater = %q; want %q", *ops, want)
	}
	if got := readFile(t, path); got != header+"\n+ uid-1 1700000000\n+ uid-2 1700000000\n" {
		t.Errorf("file = %q; AddLater must write before returning", got)
	}
	if !s.Has("uid-2") {
		t.Error("Has(uid-2) = false after AddLater")
	}
	*ops = nil
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil { // nothing pending: no second fsync
		t.Fatal(err)
	}
	if want := []string{"sync " + base, "write " + base + ".len"}; !slices.Equal(*ops, want) {
		t.Errorf("ops after Sync = %q; want %q", *ops, want)
	}
	*ops = nil
	if err := s.AddLater("uid-3", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"write " + base, "sync " + base, "write " + base + ".len"}; !slices.Equal(*ops, want) {
		t.Errorf("ops through Close = %q; want %q", *ops, want)
	}
	*ops = nil
	s2 := mustOpenHooks(t, path, s.h)
	defer s2.Close()
	if !s2.Has("uid-3") || s2.Len() != 3 {
		t.Errorf("after reopen Has(uid-3) = %v, Len = %d", s2.Has("uid-3"), s2.Len())
	}
	if !slices.Contains(*ops, "sync "+base) {
		t.Errorf("Open did not fsync the journal: %q", *ops)
	}
}

// An intent survives a reopen (it is what recovery after a kill reads), is
// superseded by Add, forgotten with its UID, kept by compaction, and its
// path round-trips through the escaping whatever bytes it holds.
func TestIntent(t *testing.T) {
	t.Parallel()
	path := journalPath(t)
	s := mustOpen(t, path)
	weird := "/tmp/My Mail/new/1.M2P3 %41\tx\u00e9"
	if err := s.Intend("uid-1", weird); err != nil {
		t.Fatal(err)
	}
	if err := s.Intend("uid-2", "/m/new/2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Intend("uid-3", "/"+strings.Repeat("x", 500)); err == nil {
		t.Error("Intend accepted a path longer than a record allows")
	}
	if err := s.Add("uid-2", t0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	got := s.Intents()
	if len(got) != 1 || got["uid-1"] != weird {
		t.Fatalf("Intents = %q; want only uid-1 → %q", got, weird)
	}
	if s.Has("uid-1") {
		t.Fatal("an intent is not a delivery")
	}
	if err := s.compactNow(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	defer s.Close()
	if got := s.Intents(); got["uid-1"] != weird {
		t.Fatalf("after compaction Intents = %q", got)
	}
	if err := s.Retain([]string{"uid-2"}); err != nil {
		t.Fatal(err)
	}
	if got := s.Intents(); len(got) != 0 {
		t.Fatalf("after Retain Intents = %q; want none", got)
	}
}

// failAfter makes the journal's n-th write(2) or fsync(2) from now (and
// every one after it) fail with errno; short makes a failing write put
// half its bytes in the file first, as a write that runs out of space
// part-way does.
func failAfter(h *hooks, op string, n int, errno syscall.Errno, short bool) {
	count := 0
	fail := func() bool { count++; return count >= n }
	switch op {
	case "write":
		h.write = func(f *os.File, b []byte) (int, error) {
			if !fail() {
				return f.Write(b)
			}
			if short {
				k, _ := f.Write(b[:len(b)/2])
				return k, &os.PathError{Op: "write", Path: f.Name(), Err: errno}
			}
			return 0, &os.PathError{Op: "write", Path: f.Name(), Err: errno}
		}
	case "sync":
		h.sync = func(f *os.File) error {
			if !fail() {
				return f.Sync()
			}
			return &os.PathError{Op: "sync", Path: f.Name(), Err: errno}
		}
	}
}

// TestJournalFailpoints breaks the journal's n-th write or fsync the way
// a full or failing disk does, in the middle of a session's pattern of
// records (intent, delivery record, an fsync per batch), and checks what
// the next Open finds: every record whose write was accepted, synced or
// not, so that no copy already delivered is fetched again (the only
// duplicate allowed is the message whose own intent could not be
// written), the store refuses records after the failure, and the journal
// replays cleanly.
func TestJournalFailpoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		op    string
		n     int
		errno syscall.Errno
		short bool
	}{
		{"write", 1, syscall.ENOSPC, false},
		{"write", 7, syscall.ENOSPC, false},
		{"write", 8, syscall.ENOSPC, true},
		{"write", 13, syscall.EIO, true},
		{"sync", 1, syscall.EIO, false},
		{"sync", 2, syscall.ENOSPC, false},
		{"sync", 3, syscall.EIO, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s%d-%s-short=%v", tt.op, tt.n, tt.errno, tt.short), func(t *testing.T) {
			path := journalPath(t)
			s := mustOpen(t, path)
			if err := s.Add("old", t0); err != nil {
				t.Fatal(err)
			}
			failAfter(s.h, tt.op, tt.n, tt.errno, tt.short)
			intended := map[string]bool{} // Intend returned nil
			added := map[string]bool{}    // AddLater returned nil
			var failed error
			for i := 0; i < 40 && failed == nil; i++ {
				uid := fmt.Sprintf("uid-%02d", i)
				if failed = s.Intend(uid, "/m/new/"+uid); failed != nil {
					break
				}
				intended[uid] = true
				if failed = s.AddLater(uid, t0); failed != nil {
					break
				}
				added[uid] = true
				if i%4 == 3 {
					failed = s.Sync()
				}
			}
			if failed == nil {
				t.Fatal("no failure injected")
			}
			if !errors.Is(failed, tt.errno) {
				t.Errorf("error = %v; want %v", failed, tt.errno)
			}
			if s.Err() == nil {
				t.Error("Err() = nil after a failed write")
			}
			if err := s.Add("after", t0); err == nil {
				t.Error("Add after a failure succeeded")
			}
			s.Close()
			s2 := mustOpen(t, path)
			intents := s2.Intents()
			if !s2.Has("old") {
				t.Error("a synced record was lost")
			}
			for uid := range intended {
				if added[uid] && !s2.Has(uid) {
					t.Errorf("%s: accepted record lost: the next poll delivers it again", uid)
				}
				if !s2.Has(uid) && intents[uid] == "" {
					t.Errorf("%s: neither record nor intent survived", uid)
				}
			}
			if s2.Has("after") {
				t.Error("a record written after the failure is in the journal")
			}
			parseFile(t, path) // whole lines only
		})
	}
}

// DELE refusals are counted per UID across reopens (one-shot runs), kept
// by compaction, reset by an accepted DELE and forgotten with the UID.
func TestDeleRefusals(t *testing.T) {
	t.Parallel()
	path := journalPath(t)
	s := mustOpen(t, path)
	if err := s.Add("a", t0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		s.Close()
		s = mustOpen(t, path)
		n, err := s.RefuseDele("a", t0.Add(time.Duration(i)*time.Hour))
		if err != nil || n != i {
			t.Fatalf("RefuseDele #%d = %d, %v", i, n, err)
		}
	}
	if err := s.compactNow(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	if n, at := s.DeleRefusals("a"); n != 3 || !at.Equal(t0.Add(3*time.Hour)) || !s.Has("a") {
		t.Fatalf("after compaction: DeleRefusals = %d, %v; Has = %v", n, at, s.Has("a"))
	}
	if ft, _ := s.FirstSeen("a"); !ft.Equal(t0) {
		t.Errorf("FirstSeen = %v; the refusal time must not replace it", ft)
	}
	if err := s.DeleAccepted("a", t0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	if n, _ := s.DeleRefusals("a"); n != 0 {
		t.Errorf("after DeleAccepted: %d refusals", n)
	}
	if n, _ := s.RefuseDele("a", t0); n != 1 {
		t.Errorf("a refusal after an accepted DELE counts %d; want 1", n)
	}
	if err := s.Retain(nil); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.DeleRefusals("a"); n != 0 {
		t.Errorf("after Retain: %d refusals", n)
	}
	for _, bad := range []string{"d a 10\n", "d a 10 x\n", "d a 10 01\n", "d a 10 -1\n", "d a 10 1234567\n", "d a 10 1 2\n"} {
		p := writeJournal(t, header+"\n"+bad)
		if _, err := Open(p); !errors.Is(err, ErrCorrupt) {
			t.Errorf("journal with %q: Open = %v; want ErrCorrupt", bad, err)
		}
	}
}

// RETR failures are counted per UID across reopens (one-shot runs), for a
// UID with no other record too, kept by compaction, reset by a successful
// retrieval (written only when there was a count), ended by giving the
// message up and forgotten with the UID.
func TestRetrFailures(t *testing.T) {
	t.Parallel()
	path := journalPath(t)
	s := mustOpen(t, path)
	if err := s.Add("b", t0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		s.Close()
		s = mustOpen(t, path)
		for _, uid := range []string{"a", "b"} {
			n, err := s.RetrFailed(uid, t0.Add(time.Duration(i)*time.Hour))
			if err != nil || n != i {
				t.Fatalf("RetrFailed(%s) #%d = %d, %v", uid, i, n, err)
			}
		}
	}
	if s.Has("a") || s.GivenUp("a") || s.Noted("a") {
		t.Fatal("a failure recorded the UID as delivered, given up or noted")
	}
	if err := s.compactNow(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	if a, b := s.RetrFailures("a"), s.RetrFailures("b"); a != 3 || b != 3 || !s.Has("b") {
		t.Fatalf("after compaction: RetrFailures = %d, %d; Has(b) = %v", a, b, s.Has("b"))
	}
	if ft, _ := s.FirstSeen("b"); !ft.Equal(t0) {
		t.Errorf("FirstSeen(b) = %v; the failure time must not replace it", ft)
	}
	if err := s.RetrOK("a", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.RetrOK("b", t0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	if a, b := s.RetrFailures("a"), s.RetrFailures("b"); a != 0 || b != 0 || !s.Has("b") {
		t.Fatalf("after RetrOK: RetrFailures = %d, %d; Has(b) = %v", a, b, s.Has("b"))
	}
	if _, ok := s.FirstSeen("a"); ok {
		t.Error("a UID known only by its failures is still known after they ended")
	}
	// No count, nothing written.
	before := fileSize(t, path)
	if err := s.RetrOK("a", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.RetrOK("b", t0); err != nil {
		t.Fatal(err)
	}
	if after := fileSize(t, path); after != before {
		t.Errorf("RetrOK without a count wrote %d bytes", after-before)
	}
	if n, _ := s.RetrFailed("a", t0); n != 1 {
		t.Errorf("a failure after a success counts %d; want 1", n)
	}
	if err := s.GiveUpSize("a", 10, t0); err != nil {
		t.Fatal(err)
	}
	if n := s.RetrFailures("a"); n != 0 {
		t.Errorf("after GiveUpSize: %d failures", n)
	}
	if n, _ := s.RetrFailed("b", t0); n != 1 {
		t.Fatalf("RetrFailed(b) = %d", n)
	}
	if err := s.Retain(nil); err != nil {
		t.Fatal(err)
	}
	if n := s.RetrFailures("b"); n != 0 {
		t.Errorf("after Retain: %d failures", n)
	}
	s.Close()
	for _, bad := range []string{"f a 10\n", "f a 10 x\n", "f a 10 01\n", "f a 10 -1\n", "f a 10 1234567\n", "f a 10 1 2\n"} {
		p := writeJournal(t, header+"\n"+bad)
		if _, err := Open(p); !errors.Is(err, ErrCorrupt) {
			t.Errorf("journal with %q: Open = %v; want ErrCorrupt", bad, err)
		}
	}
	if _, err := Open(writeJournal(t, headerV1+"\n+ a 1\nf a 2 1\n")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("format 1 journal with an f record: Open = %v; want ErrCorrupt", err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
