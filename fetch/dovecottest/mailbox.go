package dovecottest

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// writeCerts writes a throw-away CA and a server certificate for 127.0.0.1
// and localhost (pop3test's, ECDSA P-256: fast, no DH parameters needed).
func (s *Server) writeCerts() error {
	dir := filepath.Join(s.Dir, "tls")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	caPEM, crt, key, err := pop3test.NewCertPEM("127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	s.CAPEM = caPEM
	s.CAFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(s.CAFile, s.CAPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "server.crt"), crt, 0o644); err != nil {
		return err
	}
	// Read by dovecot's config process, which runs as root.
	return os.WriteFile(filepath.Join(dir, "server.key"), key, 0o600)
}

// writeUser writes the user's own passwd-file, users.d/NAME, by rename so
// that dovecot's auth process never reads half a file. One file per user
// because dovecot re-stats a passwd-file at most once per second: a user
// appended to a shared file within a second of another lookup stays unknown
// until the next second. A per-user file that did not exist is not cached
// (dovecot forgets paths that failed with ENOENT), so a new user can log in
// at once.
func (s *Server) writeUser(u userEntry) error {
	// user:{scheme}password:uid:gid:gecos:home:shell
	line := fmt.Sprintf("%s:{PLAIN}%s:%d:%d::%s::\n", u.name, u.pass, s.mailUID, s.mailGID, u.home)
	path := filepath.Join(s.Dir, "users.d", u.name)
	tmp := filepath.Join(s.Dir, "users.d", "."+u.name+".tmp")
	if err := os.WriteFile(tmp, []byte(line), 0o640); err != nil {
		return err
	}
	// Readable by dovecot's auth process (user dovecot), not by the world.
	if s.authGID >= 0 {
		if err := os.Chown(tmp, 0, s.authGID); err != nil {
			return err
		}
	} else if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// AddUser creates a POP3 user with a password and an empty Maildir owned by
// the mail uid. It may be called at any time after Start; the running
// dovecot finds the new user on the next login.
func (s *Server) AddUser(t testing.TB, name, pass string) *Mailbox {
	t.Helper()
	if name == "" || strings.ContainsAny(name, ":/@\n\r\t ") || name == "." || name == ".." {
		t.Fatalf("dovecottest: AddUser(%q): unusable user name", name)
	}
	if strings.ContainsAny(pass, ":\n\r") {
		t.Fatalf("dovecottest: AddUser(%q): password must not contain ':' or line breaks", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[name] {
		t.Fatalf("dovecottest: AddUser(%q): user exists", name)
	}
	home := filepath.Join(s.Dir, "mail", name)
	m := &Mailbox{User: name, Pass: pass, Maildir: filepath.Join(home, "Maildir"), uid: s.mailUID, gid: s.mailGID}
	for _, d := range []string{home, m.Maildir, filepath.Join(m.Maildir, "cur"),
		filepath.Join(m.Maildir, "new"), filepath.Join(m.Maildir, "tmp")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("dovecottest: AddUser: %v", err)
		}
		if err := os.Chown(d, s.mailUID, s.mailGID); err != nil {
			t.Fatalf("dovecottest: AddUser: %v", err)
		}
	}
	s.users[name] = true
	if err := s.writeUser(userEntry{name, pass, home}); err != nil {
		t.Fatalf("dovecottest: AddUser: %v", err)
	}
	return m
}

// MaildirAt is a Mailbox for a Maildir that dir already is (tmp/, new/,
// cur/), owned by uid:gid: Put, Count and Messages for the harnesses of
// other servers (fetch/interop), which share the mail user (MailUser).
func MaildirAt(dir string, uid, gid int) *Mailbox {
	return &Mailbox{Maildir: dir, uid: uid, gid: gid}
}

// Maildir file names must be unique, and dovecot assigns UIDs to new files
// in the order of the time stamp in their names, so each name gets a time
// strictly later than the previous one: messages get UIDs in Put order.
var (
	nameMu   sync.Mutex
	lastName time.Time
	nameSeq  int
)

func nextName() string {
	nameMu.Lock()
	defer nameMu.Unlock()
	now := time.Now().Truncate(time.Microsecond)
	if !now.After(lastName) {
		now = lastName.Add(time.Microsecond)
	}
	lastName = now
	nameSeq++
	return fmt.Sprintf("%d.M%06dP%dQ%d.popfetchtest", now.Unix(), now.Nanosecond()/1000, os.Getpid(), nameSeq)
}

// Put writes raw messages (CRLF or LF, stored as given) into new/, owned by
// the mail uid, in the Maildir way (tmp/, then rename). Dovecot gives them
// UIDs, and so UIDLs, in argument order; the UIDLs are stable.
func (m *Mailbox) Put(t testing.TB, msgs ...[]byte) {
	t.Helper()
	for _, msg := range msgs {
		name := nextName()
		tmp := filepath.Join(m.Maildir, "tmp", name)
		if err := os.WriteFile(tmp, msg, 0o600); err != nil {
			t.Fatalf("dovecottest: Put: %v", err)
		}
		if err := os.Chown(tmp, m.uid, m.gid); err != nil {
			t.Fatalf("dovecottest: Put: %v", err)
		}
		if err := os.Rename(tmp, filepath.Join(m.Maildir, "new", name)); err != nil {
			t.Fatalf("dovecottest: Put: %v", err)
		}
	}
}

// files lists the message files in new/ and cur/, oldest first (by mtime,
// then name), skipping dot files.
func (m *Mailbox) files(t testing.TB) []string {
	t.Helper()
	type file struct {
		path string
		mod  time.Time
	}
	var fs []file
	// A file renamed from new/ to cur/ between the two reads would be seen
	// twice; the unique part of a Maildir name is what precedes ':'.
	seen := map[string]bool{}
	for _, p := range delivertest.MaildirFiles(t, m.Maildir) {
		base, _, _ := strings.Cut(filepath.Base(p), ":")
		if seen[base] {
			continue
		}
		info, err := os.Lstat(p)
		if err != nil && filepath.Base(filepath.Dir(p)) == "new" {
			// Moved from new/ to cur/ by dovecot meanwhile (a session
			// ending after its client left, as popfetch does when it
			// marked nothing for deletion), maybe after cur/ was
			// listed: look for it there.
			if moved, _ := filepath.Glob(filepath.Join(m.Maildir, "cur", globEscape(base)+"*")); len(moved) > 0 {
				p = moved[0]
				info, err = os.Lstat(p)
			}
		}
		if err != nil {
			// Expunged meanwhile.
			continue
		}
		if !info.Mode().IsRegular() {
			continue
		}
		seen[base] = true
		fs = append(fs, file{p, info.ModTime()})
	}
	slices.SortFunc(fs, func(a, b file) int {
		return cmp.Or(a.mod.Compare(b.mod), strings.Compare(filepath.Base(a.path), filepath.Base(b.path)))
	})
	paths := make([]string, len(fs))
	for i, f := range fs {
		paths[i] = f.path
	}
	return paths
}

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(s)
}

// Count returns the number of messages in the mailbox (new/ + cur/).
func (m *Mailbox) Count(t testing.TB) int {
	t.Helper()
	return len(m.files(t))
}

// Messages returns the raw stored contents of every message in the
// mailbox, oldest first. Dovecot stores LMTP deliveries with LF line ends and
// adds Return-Path and Delivered-To headers (and a Received header).
func (m *Mailbox) Messages(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range m.files(t) {
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue // renamed new/ → cur/ or expunged while we looked
		}
		if err != nil {
			t.Fatalf("dovecottest: %v", err)
		}
		out = append(out, b)
	}
	return out
}
