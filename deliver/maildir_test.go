package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

var _ Target = (*Maildir)(nil)

// testMessage returns a message with CRLF endings, a line starting with a
// dot and one with "From ", the way a POP3 server hands it over.
func testMessage(bodySize int) *Message {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.org>\r\nTo: joe@example.com\r\nSubject: test\r\n\r\n")
	b.WriteString(".dot line\r\nFrom the start\r\n")
	line := strings.Repeat("x", 70) + "\r\n"
	for b.Len() < bodySize {
		b.WriteString(line)
	}
	return &Message{
		Account: "acct",
		Server:  "pop.example.org",
		User:    "joe",
		UID:     "00000001abcdef",
		Fetched: time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC),
		Raw:     []byte(b.String()),
	}
}

// lf is the LF form of a CRLF text.
func lf(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// makeMaildir creates dir/{tmp,new,cur}.
func makeMaildir(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

// recMaildir is a Maildir target for a fresh Maildir whose file system
// calls go through r.
func recMaildir(t *testing.T, r *recFS) (string, *Maildir) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "Maildir")
	makeMaildir(t, dir)
	return dir, NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: r})
}

// closeAtEnd closes the directories d keeps open when the test ends
// (before the cleanups registered earlier, such as an unmount).
func closeAtEnd(t *testing.T, d *Maildir) {
	t.Helper()
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
}

// wantTemporary fails unless err is a temporary *Error.
func wantTemporary(t *testing.T, err error) *Error {
	t.Helper()
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error = %v (%T); want *Error", err, err)
	}
	if de.Permanent || IsPermanent(err) {
		t.Fatalf("error = %v; want temporary", err)
	}
	return de
}

// wantPermanent fails unless err is a permanent *Error.
func wantPermanent(t *testing.T, err error) {
	t.Helper()
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error = %v (%T); want *Error", err, err)
	}
	if !de.Permanent || !IsPermanent(err) {
		t.Fatalf("error = %v; want permanent", err)
	}
	if strings.ContainsAny(de.Reason, "\r\n") {
		t.Errorf("Reason %q contains a line break", de.Reason)
	}
}

// wantClean fails unless tmp/ is empty and new/ holds exactly n files.
func wantClean(t *testing.T, dir string, n int) {
	t.Helper()
	if got := delivertest.Names(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ = %q; want empty", got)
	}
	if got := delivertest.Names(t, filepath.Join(dir, "new")); len(got) != n {
		t.Errorf("new/ = %q; want %d files", got, n)
	}
}

func TestMaildirDeliver(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "home", "joe", "Maildir") // parents missing too
	m := testMessage(4096)
	d := NewMaildir(dir, MaildirOptions{LocalHost: "mx.example.com"})
	rc := Recipient{User: "joe", Address: "joe@example.com", Domain: "example.com"}

	errs := d.Deliver(context.Background(), m, "alice@example.org", []Recipient{rc}, nil)
	if len(errs) != 1 || errs[0] != nil {
		t.Fatalf("Deliver() = %v; want [<nil>]", errs)
	}
	wantClean(t, dir, 1)

	for _, p := range []string{"home", "home/joe", "home/joe/Maildir", "home/joe/Maildir/tmp", "home/joe/Maildir/new", "home/joe/Maildir/cur"} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v; want a 0700 directory", p, fi.Mode())
		}
	}

	name := delivertest.Names(t, filepath.Join(dir, "new"))[0]
	path := filepath.Join(dir, "new", name)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("message mode %v; want 0600", fi.Mode().Perm())
	}
	re := regexp.MustCompile(`^\d+\.M\d+P` + strconv.Itoa(os.Getpid()) + `Q\d+R[0-9a-f]{16}\.mx\.example\.com,S=(\d+)$`)
	sm := re.FindStringSubmatch(name)
	if sm == nil {
		t.Fatalf("file name %q does not match %v", name, re)
	}
	if sm[1] != strconv.FormatInt(fi.Size(), 10) {
		t.Errorf("name has S=%s; file size is %d", sm[1], fi.Size())
	}

	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "Received: " + lf(Received(m, "mx.example.com", rc.Address).Value) + "\n" +
		"Delivered-To: joe@example.com\n" + lf(string(m.Raw))
	if string(got) != want {
		t.Errorf("message =\n%q\nwant\n%q", got, want)
	}
	if bytes.IndexByte(got, '\r') >= 0 {
		t.Error("message contains CR; want LF line endings")
	}
	if !bytes.HasPrefix(got, []byte("Received: from pop.example.org\n\tby mx.example.com ")) {
		t.Errorf("message starts %q; want the Received field first", got[:60])
	}
}

func TestMaildirExtraFieldsAndSingleDrop(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	m := testMessage(100)
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
	extra := []Field{{"X-Popfetch-Reason", "no local recipient"}}
	// Single drop: one Recipient with empty fields, so no Delivered-To.
	if errs := d.Deliver(context.Background(), m, "", []Recipient{{}}, extra); errs[0] != nil {
		t.Fatal(errs[0])
	}
	got, err := os.ReadFile(filepath.Join(dir, "new", delivertest.Names(t, filepath.Join(dir, "new"))[0]))
	if err != nil {
		t.Fatal(err)
	}
	want := "X-Popfetch-Reason: no local recipient\nReceived: " + lf(Received(m, "h", "").Value) + "\n" + lf(string(m.Raw))
	if string(got) != want {
		t.Errorf("message =\n%q\nwant\n%q", got, want)
	}
}

func TestMaildirMultipleRecipients(t *testing.T) {
	root := t.TempDir()
	m := testMessage(500)
	rcpts := []Recipient{
		{User: "joe", Address: "joe@example.com", Domain: "example.com"},
		{User: "ann", Address: "ann+lists@example.com", Domain: "example.com"},
		{User: "bob", Address: "bob@example.net", Domain: "example.net"},
	}
	d := NewMaildir(filepath.Join(root, "{domain}", "{user}", "Maildir"), MaildirOptions{LocalHost: "h"})
	errs := d.Deliver(context.Background(), m, "", rcpts, nil)
	for i, rc := range rcpts {
		if errs[i] != nil {
			t.Fatalf("rcpt %d: %v", i, errs[i])
		}
		dir := filepath.Join(root, rc.Domain, rc.User, "Maildir")
		wantClean(t, dir, 1)
		got, err := os.ReadFile(filepath.Join(dir, "new", delivertest.Names(t, filepath.Join(dir, "new"))[0]))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(got, []byte("\nDelivered-To: "+rc.Address+"\n")) || bytes.Count(got, []byte("Delivered-To:")) != 1 {
			t.Errorf("%s: copy lacks its own single Delivered-To:\n%s", rc.User, got[:200])
		}
	}

	// Two recipients sharing one Maildir still get one copy each.
	shared := filepath.Join(root, "shared")
	d = NewMaildir(shared, MaildirOptions{LocalHost: "h"})
	errs = d.Deliver(context.Background(), m, "", rcpts[:2], nil)
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	wantClean(t, shared, 2)
	var seen []string
	for _, n := range delivertest.Names(t, filepath.Join(shared, "new")) {
		b, err := os.ReadFile(filepath.Join(shared, "new", n))
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, []byte("Delivered-To: "))
		seen = append(seen, string(b[i:i+bytes.IndexByte(b[i:], '\n')]))
	}
	if len(seen) != 2 || seen[0] == seen[1] {
		t.Errorf("Delivered-To fields = %q; want one per recipient", seen)
	}
}

func TestMaildirPlaceholderInjection(t *testing.T) {
	tests := []struct {
		path string
		rc   Recipient
	}{
		{"{user}/Maildir", Recipient{User: "../../etc"}},
		{"{user}/Maildir", Recipient{User: ".."}},
		{"{user}/Maildir", Recipient{User: "."}},
		{"{user}/Maildir", Recipient{User: "a/b"}},
		{"{user}/Maildir", Recipient{User: "-x"}},
		{"{user}/Maildir", Recipient{User: ".hidden"}},
		{"{user}/Maildir", Recipient{User: ""}},
		{"{user}/Maildir", Recipient{User: "a\x00b"}},
		{"{user}/Maildir", Recipient{User: "a\nb"}},
		{"{user}/Maildir", Recipient{User: "a\x7fb"}},
		{"{user}/Maildir", Recipient{User: strings.Repeat("a", 65)}},
		{"{domain}/{user}", Recipient{User: "joe", Domain: "../x"}},
		{"{domain}/{user}", Recipient{User: "joe", Domain: ""}},
		{"{domain}/{user}", Recipient{User: "/", Domain: "example.com"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s=%q,%q", tt.path, tt.rc.User, tt.rc.Domain), func(t *testing.T) {
			root := t.TempDir()
			// The sandbox sits below root so that a ".." escape would
			// show up in root.
			sandbox := filepath.Join(root, "sandbox")
			if err := os.Mkdir(sandbox, 0o700); err != nil {
				t.Fatal(err)
			}
			d := NewMaildir(filepath.Join(sandbox, tt.path), MaildirOptions{LocalHost: "h"})
			errs := d.Deliver(context.Background(), testMessage(100), "", []Recipient{tt.rc}, nil)
			wantPermanent(t, errs[0])
			if !errors.Is(errs[0], errBadComponent) {
				t.Errorf("error %v does not wrap errBadComponent", errs[0])
			}
			if got := delivertest.Names(t, sandbox); len(got) != 0 {
				t.Errorf("sandbox holds %q; want nothing written", got)
			}
			if got := delivertest.Names(t, root); len(got) != 1 {
				t.Errorf("root holds %q; want only the sandbox", got)
			}
		})
	}
}

func TestMaildirPlaceholderValid(t *testing.T) {
	tests := []struct {
		user, domain, want string
	}{
		{"joe", "example.com", "example.com/joe"},
		{"j.o-e_1", "example.com", "example.com/j.o-e_1"},
		{strings.Repeat("a", 64), "x", "x/" + strings.Repeat("a", 64)},
		// One pass: a user named like a placeholder is not expanded again.
		{"{domain}", "example.com", "example.com/{domain}"},
	}
	for _, tt := range tests {
		root := t.TempDir()
		d := NewMaildir(filepath.Join(root, "{domain}", "{user}"), MaildirOptions{LocalHost: "h"})
		got, err := d.dir(Recipient{User: tt.user, Domain: tt.domain})
		if err != nil {
			t.Errorf("dir(%q, %q) = %v", tt.user, tt.domain, err)
			continue
		}
		if want := filepath.Join(root, tt.want); got != want {
			t.Errorf("dir(%q, %q) = %q; want %q", tt.user, tt.domain, got, want)
		}
	}
	// No placeholders: single drop, values ignored.
	d := NewMaildir("/var/mail/joe", MaildirOptions{})
	if got, err := d.dir(Recipient{User: "../x"}); err != nil || got != "/var/mail/joe" {
		t.Errorf("dir without placeholders = %q, %v", got, err)
	}
}

func TestMaildirCancelled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
	errs := d.Deliver(ctx, testMessage(100), "", []Recipient{{}, {}}, nil)
	for _, err := range errs {
		wantTemporary(t, err)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v does not wrap context.Canceled", err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Maildir created after cancellation: %v", err)
	}
}

func TestMaildirHostEscape(t *testing.T) {
	tests := []struct{ host, want string }{
		{"mx.example.com", "mx.example.com"},
		{"a/b:c", `a\057b\072c`},
		{"a,S=1", `a\054S=1`},
		{`a\072`, `a\134072`},
		{"a\nb", "a b"},
	}
	for _, tt := range tests {
		if got := escapeHost(tt.host); got != tt.want {
			t.Errorf("escapeHost(%q) = %q; want %q", tt.host, got, tt.want)
		}
	}
	d := NewMaildir(t.TempDir(), MaildirOptions{LocalHost: "a/b:c"})
	name, err := d.uniqueName()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(name, `.a\057b\072c`) || strings.ContainsAny(name, "/:") {
		t.Errorf("uniqueName() = %q", name)
	}
	if other, _ := d.uniqueName(); other == name {
		t.Errorf("uniqueName() twice = %q", name)
	}
}

// recFS records the Maildir's filesystem operations on the real
// filesystem and fails chosen ones: fsync on tmpfs (and often in CI) is a
// no-op, so only the recorded order shows the durability discipline.
type recFS struct {
	osFS
	t    *testing.T
	ops  []string
	fail map[string]error // op → injected error
	// clobber makes the first n links (or renames) find their target
	// taken by a real file, so that the system call itself reports
	// EEXIST.
	clobber int
	opens   int // Maildirs opened afresh
}

// op is "<verb> <where>": where is the Maildir subdirectory (tmp, new)
// or the base name of a directory.
func (r *recFS) op(verb, where string) error {
	op := verb + " " + where
	r.ops = append(r.ops, op)
	return r.fail[op]
}

func (r *recFS) Mkdir(dir *os.File, name string, perm fs.FileMode, own *fileOwner) error {
	if err := r.op("mkdir", name); err != nil {
		return err
	}
	return r.osFS.Mkdir(dir, name, perm, own)
}

func (r *recFS) OpenExcl(dir *os.File, name string, perm fs.FileMode) (maildirFile, error) {
	path := filepath.Join(dir.Name(), name)
	if err := r.op("create", filepath.Base(dir.Name())); err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f, err := r.osFS.OpenExcl(dir, name, perm)
	if err != nil {
		return nil, err
	}
	return &recFile{r: r, f: f, name: path}, nil
}

// Rename fails as Link does, and clobbers like it.
func (r *recFS) Rename(olddir *os.File, oldname string, newdir *os.File, newname string) error {
	if err := r.op("rename", filepath.Base(olddir.Name())); err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(olddir.Name(), oldname), New: filepath.Join(newdir.Name(), newname), Err: err}
	}
	if r.clobber > 0 {
		r.clobber--
		if err := os.WriteFile(filepath.Join(newdir.Name(), newname), []byte("someone else's"), 0o600); err != nil {
			r.t.Fatal(err)
		}
	}
	return r.osFS.Rename(olddir, oldname, newdir, newname)
}

// OpenDir records only how often the Maildir is opened afresh: once per
// open, at its root.
func (r *recFS) OpenDir(dir *os.File, name string, follow bool) (*os.File, error) {
	if dir == nil && name == "/" {
		r.opens++
	}
	return r.osFS.OpenDir(dir, name, follow)
}

func (r *recFS) Link(olddir *os.File, oldname string, newdir *os.File, newname string) error {
	if err := r.op("link", filepath.Base(olddir.Name())); err != nil {
		return &os.LinkError{Op: "link", Old: filepath.Join(olddir.Name(), oldname), New: filepath.Join(newdir.Name(), newname), Err: err}
	}
	if r.clobber > 0 {
		r.clobber--
		if err := os.WriteFile(filepath.Join(newdir.Name(), newname), []byte("someone else's"), 0o600); err != nil {
			r.t.Fatal(err)
		}
	}
	return r.osFS.Link(olddir, oldname, newdir, newname)
}

func (r *recFS) SyncDir(dir *os.File) error {
	if err := r.op("syncdir", filepath.Base(dir.Name())); err != nil {
		return err
	}
	return r.osFS.SyncDir(dir)
}

func (r *recFS) Remove(dir *os.File, name string) error {
	if err := r.op("remove", filepath.Base(dir.Name())); err != nil {
		return err
	}
	return r.osFS.Remove(dir, name)
}

type recFile struct {
	r    *recFS
	f    maildirFile
	name string
}

func (f *recFile) Write(p []byte) (int, error) {
	if err := f.r.op("write", filepath.Base(filepath.Dir(f.name))); err != nil {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: err}
	}
	return f.f.Write(p)
}

func (f *recFile) Chown(uid, gid int) error {
	if err := f.r.op("chown", filepath.Base(filepath.Dir(f.name))); err != nil {
		return err
	}
	return f.f.Chown(uid, gid)
}

func (f *recFile) Sync() error {
	if err := f.r.op("sync", filepath.Base(filepath.Dir(f.name))); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *recFile) Close() error {
	err := f.r.op("close", filepath.Base(filepath.Dir(f.name)))
	// Close the real file either way: the injected error stands for a
	// deferred write error, after which the descriptor is gone too.
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// compact drops repeated consecutive ops (the writes).
func compact(ops []string) []string {
	var out []string
	for _, op := range ops {
		if len(out) == 0 || out[len(out)-1] != op {
			out = append(out, op)
		}
	}
	return out
}

func TestMaildirDurabilityOrder(t *testing.T) {
	r := &recFS{t: t}
	dir, d := recMaildir(t, r)
	// 100 KB: several writes through the 32 KB copy buffer.
	if errs := d.Deliver(context.Background(), testMessage(100<<10), "", []Recipient{{}}, nil); errs[0] != nil {
		t.Fatal(errs[0])
	}
	want := []string{"create tmp", "write tmp", "sync tmp", "close tmp", "rename tmp", "syncdir new"}
	if got := compact(r.ops); !slicesEqual(got, want) {
		t.Errorf("operations = %q; want %q", got, want)
	}
	if n := strings.Count(strings.Join(r.ops, ","), "write tmp"); n < 2 {
		t.Errorf("%d writes; want the message written in several", n)
	}
	wantClean(t, dir, 1)
}

// Where renameat2(RENAME_NOREPLACE) is not supported (an old kernel, a
// filesystem without the flag), Commit links and then removes the tmp
// name, and remembers it: the next copy into that Maildir links at once.
// Any other rename failure is a failure, not a reason to link.
func TestMaildirRenameFallback(t *testing.T) {
	for _, errno := range []error{syscall.EINVAL, syscall.ENOSYS, syscall.EOPNOTSUPP} {
		t.Run(errno.Error(), func(t *testing.T) {
			r := &recFS{t: t, fail: map[string]error{"rename tmp": errno}}
			dir, d := recMaildir(t, r)
			closeAtEnd(t, d)
			for i, want := range [][]string{
				{"create tmp", "write tmp", "sync tmp", "close tmp", "rename tmp", "link tmp", "syncdir new", "remove tmp"},
				{"create tmp", "write tmp", "sync tmp", "close tmp", "link tmp", "syncdir new", "remove tmp"},
			} {
				r.ops = nil
				if errs := d.Deliver(context.Background(), testMessage(1000), "", []Recipient{{}}, nil); errs[0] != nil {
					t.Fatal(errs[0])
				}
				if got := compact(r.ops); !slicesEqual(got, want) {
					t.Errorf("copy %d: operations = %q; want %q", i+1, got, want)
				}
				wantClean(t, dir, i+1)
			}
		})
	}
	r := &recFS{t: t, fail: map[string]error{"rename tmp": syscall.EXDEV}}
	dir, d := recMaildir(t, r)
	closeAtEnd(t, d)
	errs := d.Deliver(context.Background(), testMessage(1000), "", []Recipient{{}}, nil)
	wantTemporary(t, errs[0])
	if got, want := compact(r.ops), []string{"create tmp", "write tmp", "sync tmp", "close tmp", "rename tmp", "remove tmp"}; !slicesEqual(got, want) {
		t.Errorf("operations = %q; want %q", got, want)
	}
	wantClean(t, dir, 0)
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

func TestMaildirFailures(t *testing.T) {
	eio := syscall.EIO
	tests := []struct {
		op   string
		err  error
		link bool     // renameat2 unsupported: the link fallback
		want []string // ops after the failure, compacted
	}{
		{"create tmp", syscall.EACCES, false, []string{"create tmp"}},
		{"write tmp", syscall.ENOSPC, false, []string{"create tmp", "write tmp", "close tmp", "remove tmp"}},
		{"write tmp", syscall.EDQUOT, false, []string{"create tmp", "write tmp", "close tmp", "remove tmp"}},
		{"sync tmp", eio, false, []string{"create tmp", "write tmp", "sync tmp", "close tmp", "remove tmp"}},
		{"close tmp", eio, false, []string{"create tmp", "write tmp", "sync tmp", "close tmp", "remove tmp"}},
		{"rename tmp", syscall.EROFS, false, []string{"create tmp", "write tmp", "sync tmp", "close tmp", "rename tmp", "remove tmp"}},
		{"link tmp", syscall.EROFS, true, []string{"create tmp", "write tmp", "sync tmp", "close tmp", "rename tmp", "link tmp", "remove tmp"}},
		// The copy was visible in new/ but not durable: withdrawn, and
		// the message stays on the server. Renamed, it has no tmp name.
		{"syncdir new", eio, false, []string{"create tmp", "write tmp", "sync tmp", "close tmp", "rename tmp", "syncdir new", "remove new"}},
		{"syncdir new", eio, true, []string{"create tmp", "write tmp", "sync tmp", "close tmp", "rename tmp", "link tmp", "syncdir new", "remove new", "remove tmp"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v/link=%v", tt.op, tt.err, tt.link), func(t *testing.T) {
			r := &recFS{t: t, fail: map[string]error{tt.op: tt.err}}
			if tt.link {
				r.fail["rename tmp"] = syscall.EINVAL
			}
			dir, d := recMaildir(t, r)
			closeAtEnd(t, d)
			errs := d.Deliver(context.Background(), testMessage(100<<10), "", []Recipient{{}}, nil)
			de := wantTemporary(t, errs[0])
			if !errors.Is(errs[0], tt.err) {
				t.Errorf("error %v does not wrap %v", errs[0], tt.err)
			}
			if !strings.Contains(de.Error(), dir) {
				t.Errorf("error %q does not name the path", de.Error())
			}
			if !strings.Contains(de.Reason, tt.err.Error()) || strings.ContainsAny(de.Reason, "\r\n") {
				t.Errorf("Reason = %q", de.Reason)
			}
			if got := compact(r.ops); !slicesEqual(got, tt.want) {
				t.Errorf("operations = %q; want %q", got, tt.want)
			}
			wantClean(t, dir, 0)
		})
	}
}

func TestMaildirLinkExists(t *testing.T) {
	r := &recFS{t: t, clobber: 2}
	dir, d := recMaildir(t, r)
	m := testMessage(1000)
	if errs := d.Deliver(context.Background(), m, "", []Recipient{{}}, nil); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if n := strings.Count(strings.Join(r.ops, ","), "rename tmp"); n != 3 {
		t.Errorf("%d renames; want 3 (two clashes, then a fresh name)", n)
	}
	names := delivertest.Names(t, filepath.Join(dir, "new"))
	if len(names) != 3 {
		t.Fatalf("new/ = %q; want the 2 existing files and the message", names)
	}
	var mine int
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, "new", n))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) == "someone else's" {
			continue // not overwritten
		}
		mine++
		if !bytes.HasSuffix(b, []byte(lf(string(m.Raw)))) {
			t.Errorf("%s: not the message", n)
		}
	}
	if mine != 1 {
		t.Errorf("%d copies of the message; want 1", mine)
	}
	if got := delivertest.Names(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ = %q; want empty", got)
	}

	// A clash every time ends in a temporary error, not a loop.
	dir = filepath.Join(t.TempDir(), "Maildir")
	makeMaildir(t, dir)
	r = &recFS{t: t, clobber: maxNameTries}
	d = NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: r})
	errs := d.Deliver(context.Background(), m, "", []Recipient{{}}, nil)
	wantTemporary(t, errs[0])
	if !errors.Is(errs[0], fs.ErrExist) {
		t.Errorf("error %v does not wrap fs.ErrExist", errs[0])
	}
	wantClean(t, dir, maxNameTries) // only the foreign files
}

func TestMaildirCreateFsyncsParents(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "Maildir")
	r := &recFS{t: t}
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h", fs: r})
	if errs := d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// Each new directory is followed by an fsync of its parent, before
	// the first file is created.
	want := []string{
		"mkdir a", "syncdir " + filepath.Base(root),
		"mkdir Maildir", "syncdir a",
		"mkdir tmp", "syncdir Maildir",
		"mkdir new", "syncdir Maildir",
		"mkdir cur", "syncdir Maildir",
		"create tmp",
	}
	if got := r.ops[:len(want)]; !slicesEqual(got, want) {
		t.Errorf("operations = %q; want %q", got, want)
	}
	wantClean(t, dir, 1)

	// A file where a directory belongs: temporary, it needs an operator.
	bad := filepath.Join(root, "file")
	if err := os.WriteFile(bad, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d = NewMaildir(bad, MaildirOptions{LocalHost: "h"})
	wantTemporary(t, d.Deliver(context.Background(), testMessage(100), "", []Recipient{{}}, nil)[0])
}

// mountTmpfs mounts a small tmpfs on a fresh directory, or skips: the
// tests run as root here and in CI, but must not fail elsewhere.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("mount tmpfs: %v (needs root)", err)
	}
	// Registered after TempDir, so it runs before the removal.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

func TestMaildirDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, "size=64k,mode=0700")
	dir := filepath.Join(mnt, "Maildir")
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
	closeAtEnd(t, d) // before the unmount: its directories stay open
	errs := d.Deliver(context.Background(), testMessage(200<<10), "", []Recipient{{}}, nil)
	wantTemporary(t, errs[0])
	if !errors.Is(errs[0], syscall.ENOSPC) {
		t.Errorf("error %v does not wrap ENOSPC", errs[0])
	}
	wantClean(t, dir, 0)

	// Once there is room again, the same target works.
	if errs := d.Deliver(context.Background(), testMessage(10<<10), "", []Recipient{{}}, nil); errs[0] != nil {
		t.Fatalf("small message after ENOSPC: %v", errs[0])
	}
	wantClean(t, dir, 1)
}

func TestMaildirReadOnly(t *testing.T) {
	mnt := mountTmpfs(t, "size=1m,mode=0700")
	dir := filepath.Join(mnt, "Maildir")
	makeMaildir(t, dir)
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("remount ro: %v", err)
	}
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
	closeAtEnd(t, d)
	errs := d.Deliver(context.Background(), testMessage(1000), "", []Recipient{{}}, nil)
	wantTemporary(t, errs[0])
	if !errors.Is(errs[0], syscall.EROFS) {
		t.Errorf("error %v does not wrap EROFS", errs[0])
	}
	wantClean(t, dir, 0)

	// A Maildir still to be created on a read-only filesystem.
	d = NewMaildir(filepath.Join(mnt, "other"), MaildirOptions{LocalHost: "h"})
	closeAtEnd(t, d)
	wantTemporary(t, d.Deliver(context.Background(), testMessage(1000), "", []Recipient{{}}, nil)[0])
}

// BenchmarkMaildirDeliver measures one durable delivery (two fsyncs) of a
// 20 KB message on the real filesystem under /tmp: one at a time, and
// from 8 goroutines at once as a session delivers (Parallel8), where
// copies share the fsyncs of new/.
func BenchmarkMaildirDeliver(b *testing.B) {
	base, err := os.MkdirTemp("/tmp", "popfetch-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	m := testMessage(20 << 10)
	rcpts := []Recipient{{User: "joe", Address: "joe@example.com", Domain: "example.com"}}
	for _, workers := range []int{1, 8} {
		name := "Serial"
		if workers > 1 {
			name = fmt.Sprintf("Parallel%d", workers)
		}
		b.Run(name, func(b *testing.B) {
			d := NewMaildir(filepath.Join(base, name), MaildirOptions{LocalHost: "bench.example"})
			b.Cleanup(func() { d.Close() })
			b.SetBytes(int64(len(m.Raw)))
			b.ReportAllocs()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range workers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if errs := d.Deliver(context.Background(), m, "", rcpts, nil); errs[0] != nil {
							b.Error(errs[0])
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// tmp/ files left by a killed delivery are removed once they are older than
// the 36 hours the Maildir spec allows; recent ones (a delivery in progress
// in another process) are left alone.
func TestMaildirCleansStaleTmp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	makeMaildir(t, dir)
	stale, fresh := filepath.Join(dir, "tmp", "stale"), filepath.Join(dir, "tmp", "fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-37 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
	if errs := d.Deliver(context.Background(), testMessage(10), "", []Recipient{{}}, nil); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale tmp file still there (err %v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("recent tmp file removed: %v", err)
	}
}

// A Maildir removed while popfetch runs is re-created: each copy opens its
// Maildir afresh.
func TestMaildirRecreatedAfterRemoval(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
	deliverOK := func() error { return d.Deliver(context.Background(), testMessage(10), "", []Recipient{{}}, nil)[0] }
	if err := deliverOK(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := deliverOK(); err != nil {
		t.Fatalf("delivery into a removed Maildir = %v; want it re-created", err)
	}
	wantClean(t, dir, 1)
}

// Two phases: Prepare leaves a complete copy in tmp/ and names its file in
// new/ (Path) before it exists there; Commit links it under that name,
// Abort withdraws it. (This replaces the link hook that reported the name
// through the context.)
func TestMaildirPrepareCommit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := NewMaildir(dir, MaildirOptions{LocalHost: "h"})
	m := testMessage(10)
	p, err := d.Prepare(context.Background(), m, "", Recipient{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := p.Path()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("%s exists before Commit (stat err %v)", path, err)
	}
	if tmp := delivertest.Names(t, filepath.Join(dir, "tmp")); len(tmp) != 1 {
		t.Fatalf("tmp/ = %q; want the prepared copy", tmp)
	}
	if Committed(path) {
		t.Error("Committed before Commit")
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	names := delivertest.Names(t, filepath.Join(dir, "new"))
	if len(names) != 1 || path != filepath.Join(dir, "new", names[0]) {
		t.Fatalf("Path was %q; new/ holds %q", path, names)
	}
	if b, _ := os.ReadFile(path); !bytes.HasSuffix(b, []byte(lf(string(m.Raw)))) {
		t.Errorf("%s is not the message", path)
	}
	wantClean(t, dir, 1)
	if !Committed(path) {
		t.Error("not Committed after Commit")
	}
	if err := p.Commit(); err == nil {
		t.Error("a second Commit succeeded")
	}
	p.Abort() // after Commit: nothing
	wantClean(t, dir, 1)

	p, err = d.Prepare(context.Background(), m, "", Recipient{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Abort()
	wantClean(t, dir, 1)
	if Committed(p.Path()) {
		t.Error("an aborted copy is Committed")
	}
	if err := p.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}

	// Cancelled before Prepare: no file at all.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Prepare(ctx, m, "", Recipient{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Prepare with a cancelled ctx = %v", err)
	}
	wantClean(t, dir, 1)
}

// A name in new/ taken between Prepare and Commit: Commit says so
// (ErrNameTaken) and offers a fresh Path, which a caller records before
// committing again; the other file is left alone.
func TestMaildirCommitNameTaken(t *testing.T) {
	r := &recFS{t: t, clobber: 1}
	dir, d := recMaildir(t, r)
	p, err := d.Prepare(context.Background(), testMessage(10), "", Recipient{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := p.Path()
	err = p.Commit()
	if !errors.Is(err, ErrNameTaken) {
		t.Fatalf("Commit = %v; want ErrNameTaken", err)
	}
	second := p.Path()
	if second == first || Committed(second) {
		t.Fatalf("Path after the clash = %q (was %q); want a fresh, free name", second, first)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(first); string(b) != "someone else's" {
		t.Errorf("the other file was changed: %q", b)
	}
	if !Committed(second) {
		t.Error("copy not committed under its fresh name")
	}
	wantClean(t, dir, 2)
}

// Committed finds a copy in new/ or, moved by a mail reader, in cur/ with
// or without flags; nothing else.
func TestCommitted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	makeMaildir(t, dir)
	for _, f := range []string{"new/a,S=1", "cur/b,S=1", "cur/c,S=1:2,S", "cur/d,S=10"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"a,S=1", true},
		{"b,S=1", true},
		{"c,S=1", true},
		{"d,S=1", false}, // a longer name is another file
		{"e,S=1", false},
	} {
		if got := Committed(filepath.Join(dir, "new", tt.name)); got != tt.want {
			t.Errorf("Committed(new/%s) = %v; want %v", tt.name, got, tt.want)
		}
	}
	if err := SyncCommitted(filepath.Join(dir, "new", "a,S=1")); err != nil {
		t.Errorf("SyncCommitted = %v", err)
	}
}

// SyncCommitted makes durable the directory entry the copy has now: a
// copy that a mail reader moved to cur/ after a killed run left it in
// new/ unsynced is durable once cur/ is fsynced, not new/, whose entry is
// gone.
func TestSyncCommittedWhereFound(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	makeMaildir(t, dir)
	for _, f := range []string{"new/a,S=1", "cur/c,S=1:2,S"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var synced []string
	defer func(old func(string) error) { syncCommittedDir = old }(syncCommittedDir)
	syncCommittedDir = func(d string) error { synced = append(synced, d); return nil }
	for _, tt := range []struct{ name, want string }{
		{"a,S=1", "new"},
		{"c,S=1", "cur"},
	} {
		synced = nil
		if err := SyncCommitted(filepath.Join(dir, "new", tt.name)); err != nil {
			t.Fatalf("SyncCommitted(%s) = %v", tt.name, err)
		}
		if want := filepath.Join(dir, tt.want); len(synced) != 1 || synced[0] != want {
			t.Errorf("SyncCommitted(new/%s) fsynced %v; want %s", tt.name, synced, want)
		}
	}
	if err := SyncCommitted(filepath.Join(dir, "new", "gone,S=1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SyncCommitted of a copy that is nowhere = %v; want ErrNotExist", err)
	}
}
