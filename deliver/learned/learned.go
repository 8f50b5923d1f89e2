// Package learned keeps the learned routes of a multidrop mailbox: the
// mappings an administrator taught popfetch when resending a message from
// the postmaster to the right user (popfetch reroute --learn), which
// routing uses from then on (deliver.Directory.SetLearned).
//
// The file is plain text, one route per line:
//
//	# comment lines and blank lines are allowed
//	list@lists.example.org  alice  # learned 2026-12-04T19:30:00Z from <msg>
//	list-id:news.lists.example.net  bob
//
// KEY is a full address (the domain normalised by deliver.NormalizeDomain,
// the local part as written; the Directory folds its case unless the
// account is case-sensitive) or "list-id:" and a List-Id identifier
// (RFC 2919: the part inside <...>, lower-case). USER is a user name as
// the rc file allows it. Parsing is strict: a malformed line is an error
// naming the file and line, so a damaged file stops the poll instead of
// sending mail to the postmaster. The file is written only by Add and
// Forget, atomically and under a lock (see doc/design.md §4.6).
package learned

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/internal/durable"
	"github.com/popfetch/popfetch/internal/trust"
)

// Limits of the file: generous for a hand-taught list, small enough that a
// damaged or hostile file cannot make each poll expensive.
const (
	MaxFileBytes = 1 << 20
	MaxLineBytes = 1000
	MaxRoutes    = 10000
	// maxComment bounds the comment Add writes, so a line stays under
	// MaxLineBytes whatever the caller passes.
	maxComment = 400
	// lockWait bounds how long Add and Forget wait for another writer.
	lockWait = 30 * time.Second
)

// ListIDPrefix starts a List-Id key.
const ListIDPrefix = "list-id:"

// Route is one learned route.
type Route struct {
	Key     string // canonical: "local@domain" or "list-id:ID" (see ParseKey)
	User    string
	Comment string // the trailing comment without "#", trimmed; "" if none
	Line    int    // the line it was read from; 0 if not read from a file
}

// IsListID reports whether the route is a List-Id route.
func (r Route) IsListID() bool { return strings.HasPrefix(r.Key, ListIDPrefix) }

// String is the route's line in the file (without the newline).
func (r Route) String() string {
	s := r.Key + " " + r.User
	if r.Comment != "" {
		s += " # " + r.Comment
	}
	return s
}

// ParseKey returns the canonical form of a route key: an address with its
// domain normalised (deliver.NormalizeDomain) and its local part as
// written, or "list-id:" with a valid List-Id identifier, lower-cased
// (the "list-id:" prefix in any case; the identifier may keep its angle
// brackets). Anything else is an error saying why.
func ParseKey(s string) (string, error) {
	if len(s) >= len(ListIDPrefix) && strings.EqualFold(s[:len(ListIDPrefix)], ListIDPrefix) {
		id := strings.TrimSpace(s[len(ListIDPrefix):])
		if strings.HasPrefix(id, "<") && strings.HasSuffix(id, ">") {
			id = id[1 : len(id)-1]
		}
		v, ok := deliver.ValidListID(id)
		if !ok {
			return "", fmt.Errorf("invalid List-Id identifier %s (want list-id:LABEL.NAMESPACE, the part of a List-Id field inside <...>)", strconv.Quote(id))
		}
		return ListIDPrefix + v, nil
	}
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || s[0] == '#' { // a line starting with '#' is a comment
		return "", fmt.Errorf("invalid key %s: want an address local@domain or list-id:ID", strconv.Quote(s))
	}
	local := s[:i]
	if len(local) > 64 || !safe(local) {
		// RFC 5321 §4.5.3.1.1: a local part has at most 64 octets.
		return "", fmt.Errorf("invalid local part in %s", strconv.Quote(s))
	}
	dom, ok := deliver.NormalizeDomain(s[i+1:])
	if !ok {
		return "", fmt.Errorf("invalid domain in %s", strconv.Quote(s))
	}
	return local + "@" + dom, nil
}

// safe reports whether s is valid UTF-8 without white space, control or
// format characters (the rule deliver applies to everything that reaches
// a recipient), so it stays one field of a line and never carries CR/LF
// into a header or an argument.
func safe(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}

// ValidUser reports whether s can be the user of a route: the rc file's
// rule for user names (rcfile/validate.go, userNameRE): letters, digits
// and . _ + - (not first), at most 64 bytes, so that it is safe in a
// Maildir path ({user}) and as an MDA argument.
func ValidUser(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case i > 0 && (c == '.' || c == '+' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Parse parses the file's contents; name is used in errors ("name:LINE:
// ..."). Every line must be blank, a comment, or "KEY USER" optionally
// followed by white space and a "#" comment; fields are separated by
// spaces or tabs. Keys are canonicalised (ParseKey), and each may appear
// only once. Control characters (other than tab and a CR before the
// newline) and invalid UTF-8 are errors.
func Parse(data []byte, name string) ([]Route, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, MaxFileBytes)
	}
	var routes []Route
	first := map[string]int{}
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(line) > MaxLineBytes {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, n, MaxLineBytes)
		}
		r, ok, err := parseLine(string(bytes.TrimSuffix(line, []byte("\r"))))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if !ok {
			continue
		}
		if prev, dup := first[r.Key]; dup {
			return nil, fmt.Errorf("%s:%d: %s already has a route at line %d", name, n, r.Key, prev)
		}
		if len(routes) == MaxRoutes {
			return nil, fmt.Errorf("%s:%d: more than %d routes", name, n, MaxRoutes)
		}
		first[r.Key] = n
		r.Line = n
		routes = append(routes, r)
	}
	return routes, nil
}

// parseLine parses one line; ok is false for a blank or comment line.
func parseLine(line string) (r Route, ok bool, err error) {
	if !utf8.ValidString(line) {
		return Route{}, false, errors.New("not valid UTF-8")
	}
	for _, c := range line {
		if c < ' ' && c != '\t' || c == 0x7f {
			return Route{}, false, fmt.Errorf("control character %U", c)
		}
	}
	s := strings.TrimLeft(line, " \t")
	if s == "" || s[0] == '#' {
		return Route{}, false, nil
	}
	key, rest := cutField(s)
	user, rest := cutField(rest)
	if user == "" {
		return Route{}, false, errors.New("want KEY USER [# comment]")
	}
	k, err := ParseKey(key)
	if err != nil {
		return Route{}, false, err
	}
	if !ValidUser(user) {
		return Route{}, false, fmt.Errorf("invalid user name %s: letters, digits and . _ + - (not first), at most 64 bytes", strconv.Quote(user))
	}
	r = Route{Key: k, User: user}
	// A KEY may hold '#' (it is atext), a USER never does: a comment
	// can only start after the user.
	if rest != "" {
		c, ok := strings.CutPrefix(rest, "#")
		if !ok {
			f, _ := cutField(rest)
			return Route{}, false, fmt.Errorf("unexpected %s after the user (a comment starts with #)", strconv.Quote(f))
		}
		r.Comment = strings.TrimSpace(c)
	}
	return r, true, nil
}

// cutField returns the first field of s (up to a space or tab) and the
// rest with its leading white space removed.
func cutField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

// Read reads the routes of the file at path; a missing file holds none.
// The file is opened through internal/trust: one another user can change
// would let that user choose who receives mail, so it is refused.
func Read(path string) ([]Route, error) {
	f, err := trust.OpenTrusted(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return Parse(data, path)
}

// Maps splits routes into the two maps deliver.Directory.SetLearned
// takes: addresses to users, and List-Id identifiers (without the
// "list-id:" prefix) to users.
func Maps(routes []Route) (addrs, listIDs map[string]string) {
	addrs, listIDs = map[string]string{}, map[string]string{}
	for _, r := range routes {
		if id, ok := strings.CutPrefix(r.Key, ListIDPrefix); ok {
			listIDs[id] = r.User
		} else {
			addrs[r.Key] = r.User
		}
	}
	return addrs, listIDs
}

// Add maps key to user in the file at path, creating it (and its
// directory, 0700) if missing. prev is the user key was mapped to before
// ("" if it was not; prev == user means nothing changed and the file was
// left as it was); a route to another user is replaced in place. comment
// is kept on the line, cleaned of control characters and cut to a
// bounded length.
func Add(path, key, user, comment string) (prev string, err error) {
	k, err := ParseKey(key)
	if err != nil {
		return "", err
	}
	if !ValidUser(user) {
		return "", fmt.Errorf("invalid user name %s: letters, digits and . _ + - (not first), at most 64 bytes", strconv.Quote(user))
	}
	r := Route{Key: k, User: user, Comment: cleanComment(comment)}
	err = update(path, func(routes []Route) ([]Route, bool, error) {
		for i, old := range routes {
			if old.Key == k {
				prev = old.User
				if old.User == user {
					return nil, false, nil
				}
				routes[i] = r
				return routes, true, nil
			}
		}
		if len(routes) >= MaxRoutes {
			return nil, false, fmt.Errorf("%s already holds %d routes, the most it may", path, MaxRoutes)
		}
		return append(routes, r), true, nil
	})
	return prev, err
}

// Forget removes the route of key from the file at path; existed reports
// whether there was one.
func Forget(path, key string) (existed bool, err error) {
	k, err := ParseKey(key)
	if err != nil {
		return false, err
	}
	err = update(path, func(routes []Route) ([]Route, bool, error) {
		for i, old := range routes {
			if old.Key == k {
				existed = true
				return append(routes[:i:i], routes[i+1:]...), true, nil
			}
		}
		return nil, false, nil
	})
	return existed, err
}

// cleanComment makes a comment fit one line and safe to print: control
// characters (C0, DEL and C1, whose U+009B is a terminal's CSI) become
// spaces, format characters (Cf: the bidirectional overrides that make
// text read in another order than it is stored) are dropped, white space
// runs collapse, and it is cut at maxComment bytes on a rune boundary.
func cleanComment(c string) string {
	c = strings.ToValidUTF8(c, "?")
	c = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r):
			return ' '
		case unicode.Is(unicode.Cf, r):
			return -1
		}
		return r
	}, c)
	c = strings.Join(strings.Fields(c), " ")
	if len(c) > maxComment {
		c = deliver.SafeValue(c, maxComment)
	}
	return c
}

// update runs change on the routes of the file at path under the file's
// lock and, if it says so, writes the result back atomically: the lines
// of the old file that are not routes (comments, blank lines) are kept
// in place, routes changed in place, new ones appended.
func update(path string, change func([]Route) ([]Route, bool, error)) error {
	dir := filepath.Dir(path)
	// The state directory first, before anything is created in it: a
	// directory made here by the wrong user (root, for a daemon that runs
	// as another) would stop every poll of the daemon that cannot read it.
	if err := checkStateDir(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := trust.CheckDir(dir); err != nil {
		return err
	}
	unlock, err := lock(path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	old, err := readRaw(path)
	if err != nil {
		return err
	}
	routes, err := Parse(old, path)
	if err != nil {
		return fmt.Errorf("%w (fix or remove the line, then try again)", err)
	}
	next, write, err := change(append([]Route(nil), routes...))
	if err != nil || !write {
		return err
	}
	return writeFile(path, render(old, routes, next))
}

// checkStateDir refuses a state directory that belongs to another user
// than the one popfetch runs as (or root), saying to run as its owner:
// the daemon that owns it must be able to read and replace what is
// written there. A missing one is left to MkdirAll and CheckDir.
func checkStateDir(state string) error {
	fi, err := os.Stat(state)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		name := strconv.FormatUint(uint64(st.Uid), 10)
		if u, err := user.LookupId(name); err == nil {
			name = u.Username
		}
		return fmt.Errorf("the state directory %s belongs to %s, who runs the daemon, not to the user popfetch runs as: learn routes as that user (sudo -u %s popfetch reroute ...): %w", state, name, name, trust.ErrUntrustedFile)
	}
	return trust.CheckDir(state)
}

// readRaw reads the file at path through internal/trust; a missing file
// is empty.
func readRaw(path string) ([]byte, error) {
	f, err := trust.OpenTrusted(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
}

// render rebuilds the file: old's lines with each route line replaced by
// its route in next (or dropped if next lacks its key), then the routes
// of next that old did not have.
func render(old []byte, was, next []Route) []byte {
	byKey := make(map[string]Route, len(next))
	for _, r := range next {
		byKey[r.Key] = r
	}
	atLine := make(map[int]string, len(was))
	for _, r := range was {
		atLine[r.Line] = r.Key
	}
	var b bytes.Buffer
	if len(old) == 0 {
		b.WriteString("# popfetch learned routes: KEY USER [# comment]; see popfetch.hcl(5).\n")
		b.WriteString("# Change them with popfetch reroute --learn / --forget.\n")
	}
	seen := map[string]bool{}
	n := 0
	for len(old) > 0 {
		n++
		line := old
		if i := bytes.IndexByte(old, '\n'); i >= 0 {
			line, old = old[:i], old[i+1:]
		} else {
			old = nil
		}
		k, isRoute := atLine[n]
		if !isRoute {
			b.Write(line)
			b.WriteByte('\n')
			continue
		}
		seen[k] = true
		if r, ok := byKey[k]; ok {
			b.WriteString(r.String())
			b.WriteByte('\n')
		}
	}
	for _, r := range next {
		if !seen[r.Key] {
			b.WriteString(r.String())
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// writeFile replaces the file at path: a new file created 0600 with
// O_EXCL (never chmod afterwards), written, fsynced, renamed over the old
// one, and the directory fsynced, so a crash leaves the old routes or the
// new ones, never a torn file.
func writeFile(path string, data []byte) error {
	if len(data) > MaxFileBytes {
		return fmt.Errorf("%s would grow past %d bytes", path, MaxFileBytes)
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	f, err := os.OpenFile(tmp, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Left by a process with our pid that died; we hold the lock,
		// so nobody else writes it.
		os.Remove(tmp)
		f, err = os.OpenFile(tmp, flags, 0o600)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// lock takes an exclusive flock on the lock file name (a file of its own:
// the routes file is replaced by rename, so a lock on it would be on the
// old inode), waiting up to lockWait for another writer. The lock file is
// opened without following a symbolic link and must be a regular file of
// the user popfetch runs as.
func lock(name string) (unlock func(), err error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("the lock %s is a symbolic link, which popfetch never creates: check who made it, then remove it", name)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("the lock %s is not a regular file: check who made it, then remove it", name)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); err == nil && ok && int(st.Uid) != os.Geteuid() {
		err = fmt.Errorf("the lock %s is owned by uid %d, not by the user popfetch runs as: check who made it, then remove it", name, st.Uid)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: another popfetch has held it for %v", name, lockWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
