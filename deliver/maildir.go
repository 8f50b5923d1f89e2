package deliver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/popfetch/popfetch/internal/crashpoint"
	"github.com/popfetch/popfetch/internal/durable"
)

// MaildirOptions configures a Maildir target.
type MaildirOptions struct {
	// LocalHost names this machine in the Received: trace field and in the
	// unique file names; default os.Hostname().
	LocalHost string
	// Logger receives what cannot be returned: a tmp/ file left behind
	// after the copy was already durable in new/. Default: discard.
	Logger *slog.Logger
	// Folder, if set, delivers into that Maildir++ folder of the Maildir
	// instead of its inbox: "Junk" is the directory .Junk, "Lists.dev"
	// is .Lists.dev (see ValidFolder). It is created when missing, with
	// its maildirfolder marker. A name ValidFolder refuses makes every
	// delivery fail temporarily: the rc file's validation refuses it
	// first.
	Folder string

	// fs is the filesystem seam; nil means the real one. Tests replace it
	// to record the order of operations (fsync on tmpfs proves nothing)
	// and to inject failures at each step.
	fs maildirFS
	// asRoot makes the Maildir give what it creates below {user} to that
	// user, as when running as root; lookupUser replaces os/user.Lookup.
	// For tests.
	asRoot     bool
	lookupUser func(name string) (*user.User, error)
}

// Maildir is a Target delivering into a Maildir (cr.yp.to/proto/maildir.html),
// durably: see Deliver. It is safe for concurrent use: unique names, not
// locks, keep concurrent deliveries (even from other programs) apart.
type Maildir struct {
	path   string
	host   string // LocalHost as given, for Received:
	name   string // LocalHost escaped for file names
	log    *slog.Logger
	fs     maildirFS
	expand bool // path holds {user} or {domain}
	// folder is the Maildir++ folder delivered into ("" the inbox), and
	// folderErr what ValidFolder said of it.
	folder    string
	folderErr error
	// trailing counts the components of path from the first one holding a
	// placeholder to its end: below the admin's fixed prefix, where no
	// symlink is followed (see open). 0 without placeholders.
	trailing int
	// userTrailing likewise counts from the first component holding
	// {user}: what popfetch creates there belongs to that user (see
	// owner). 0 when the path has no {user} or popfetch is not root.
	userTrailing int
	// owners caches owner lookups: user name → *fileOwner, or nil for a
	// name that is no system user (warned about once).
	owners     sync.Map
	lookupUser func(name string) (*user.User, error)
	// ready holds the Maildirs whose stale tmp/ files were cleaned in
	// this process.
	ready sync.Map

	// dirs caches the opened directories of the Maildirs delivered to
	// recently (see acquire), at most maxOpenMaildirs of them; tick
	// orders their use, for evicting the least recently used.
	dirsMu sync.Mutex
	dirs   map[dirKey]*openMaildir
	tick   uint64
	// syncs shares the fsyncs of new/ between concurrent Commits into
	// one directory (group commit, see Prepared.Commit).
	syncs durable.GroupSync[dirID]
	// files shares the syncs of the files written into tmp/ between
	// concurrent Prepares on one filesystem (see syncFile); nil for
	// fileSyncs, which tests replace with their own.
	files *durable.FileSync[uint64]
}

// fileSyncs is the process's one FileSync: copies delivered at once by
// different accounts' Maildirs into one filesystem share its syncs too.
var fileSyncs = &durable.FileSync[uint64]{Gather: fileSyncGather}

// fileSyncGather is how long a Prepare that finds no sync of its
// filesystem running waits for others to join it (durable.FileSync's
// Gather): as dirSyncGather, the copies of a session are written within
// about a millisecond of each other, and a syncfs shared by them replaces
// as many fsyncs.
const fileSyncGather = time.Millisecond

// maxOpenMaildirs bounds the Maildirs whose directories a Maildir keeps
// open: 3 descriptors each, so a multidrop template serving thousands of
// users holds at most a few hundred, and each user's mail of one poll
// (which usually arrives close together) still finds them open.
const maxOpenMaildirs = 64

// dirKey names a cached Maildir: its absolute path, and the owner given
// to what was created for it (see owner).
type dirKey struct {
	path     string
	uid, gid int
	owned    bool
}

// dirID identifies a directory: device and inode number.
type dirID struct{ dev, ino uint64 }

// maildirPlaceholders are the placeholders a Maildir path may hold
// (multidrop), by name, written as MDAPlaceholders describes: the rc
// file's validation asks MaildirPlaceholders, so this is the only list.
var maildirPlaceholders = map[string]bool{"user": true, "domain": true}

// hasPlaceholder reports whether s holds the Maildir placeholder {name},
// or with name "" any of them.
func hasPlaceholder(s, name string) bool {
	found := false
	scanPlaceholders(s, func(_, _ int, n string) {
		found = found || maildirPlaceholders[n] && (name == "" || n == name)
	})
	return found
}

// maxNameTries bounds the retries when a generated name exists already.
// Names carry the time, pid, a counter and 64 random bits, so a clash means
// clock or pid reuse across hosts sharing the directory; a few fresh names
// settle it, and an endless loop would hide a real problem.
const maxNameTries = 8

// NewMaildir returns a Target delivering into the Maildir at path. path
// comes from the trusted config (already ~-expanded); it may contain the
// placeholders {user} and {domain}, replaced by the recipient's User and
// Domain after validation (see validComponent). A value that fails it gives
// a permanent *Error: a hostile header must never pick a path.
func NewMaildir(path string, opts MaildirOptions) *Maildir {
	host := opts.LocalHost
	if host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		host = h
	}
	d := &Maildir{
		path:   path,
		host:   host,
		name:   escapeHost(host),
		log:    opts.Logger,
		fs:     opts.fs,
		expand: hasPlaceholder(path, ""),
		folder: opts.Folder,
	}
	if d.folder != "" {
		d.folderErr = ValidFolder(d.folder)
	}
	d.syncs.Gather = dirSyncGather
	if d.expand {
		comps := pathComponents(path)
		for i, c := range comps {
			if hasPlaceholder(c, "") {
				d.trailing = len(comps) - i
				break
			}
		}
		if os.Geteuid() == 0 || opts.asRoot {
			for i, c := range comps {
				if hasPlaceholder(c, "user") {
					d.userTrailing = len(comps) - i
					break
				}
			}
		}
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.fs == nil {
		d.fs = osFS{}
	}
	d.lookupUser = opts.lookupUser
	if d.lookupUser == nil {
		d.lookupUser = user.Lookup
	}
	return d
}

// fileOwner is the owner popfetch gives what it creates in a user's
// Maildir.
type fileOwner struct{ uid, gid int }

// owner returns the owner of what popfetch creates for rc below the first
// {user} component of a multidrop Maildir template, or nil to leave it as
// created. popfetch running as root would otherwise leave a new Maildir
// (directories 0700, files 0600) readable by root only, and its user could
// not read mail that is already deleted from the server. The owner is the
// system user named by the routed user (uid and primary gid, from
// os/user.Lookup); a routed user that is no system user (a virtual
// mailbox) leaves the files root's, with a warning once per user. A lookup
// that fails otherwise (NSS unavailable) is an error: the copy waits rather
// than being written with the wrong owner.
func (d *Maildir) owner(rc Recipient) (*fileOwner, error) {
	if d.userTrailing == 0 {
		return nil, nil
	}
	if o, ok := d.owners.Load(rc.User); ok {
		return o.(*fileOwner), nil
	}
	u, err := d.lookupUser(rc.User)
	if err != nil {
		if !errors.As(err, new(user.UnknownUserError)) {
			return nil, fmt.Errorf("look up the owner of user %q's Maildir: %w", rc.User, err)
		}
		if _, warned := d.owners.LoadOrStore(rc.User, (*fileOwner)(nil)); !warned {
			d.log.Warn("maildir: no system user of this name; what popfetch creates in the Maildir stays owned by root", "user", rc.User, "path", d.path)
		}
		return nil, nil
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("owner of user %q's Maildir: %w", rc.User, err)
	}
	o := &fileOwner{uid: uid, gid: gid}
	d.owners.Store(rc.User, o)
	return o, nil
}

// Deliver writes one copy of m per recipient, each with its own Received:
// and Delivered-To: fields after extra. A nil result means that copy is
// durable: the file was written in tmp/, fsynced and closed, linked into
// new/ (never overwriting), and new/ was fsynced. Failures are *Error:
// temporary for everything the filesystem reports (a full disk, EIO, a
// read-only mount or a permission problem clears once an operator fixes
// it, and the message stays on the server meanwhile), permanent only for a
// {user} or {domain} value that may not name a directory. sender is not
// used: the envelope sender is the Return-Path of the original message.
func (d *Maildir) Deliver(ctx context.Context, m *Message, sender string, rcpts []Recipient, extra []Field) []error {
	return d.DeliverReporting(ctx, m, sender, rcpts, extra, nil)
}

// DeliverReporting is Deliver, passing each copy's result to report as
// soon as it is final (see ResultFunc).
func (d *Maildir) DeliverReporting(ctx context.Context, m *Message, sender string, rcpts []Recipient, extra []Field, report ResultFunc) []error {
	res := newResults(len(rcpts), report)
	for i, rc := range rcpts {
		// Reported copy by copy: each is durable on its
		// own, whatever happens to the ones after it.
		rcpt, err := d.deliverOne(ctx, m, rc, extra)
		res.delivered(i, rcpt)
		res.set(i, err)
	}
	return res.done()
}

func (d *Maildir) deliverOne(ctx context.Context, m *Message, rc Recipient, extra []Field) (Receipt, error) {
	p, err := d.Prepare(ctx, m, "", rc, extra)
	if err != nil {
		return Receipt{}, err
	}
	for {
		if err := p.Commit(); !errors.Is(err, ErrNameTaken) {
			return p.Receipt(), err
		}
	}
}

// Prepare is the first of Deliver's two phases for one copy, for a caller
// that records the copy's final name before it appears (an intent): the
// copy of m for rc is written in tmp/, fsynced and closed, and its name in
// new/ is chosen (Prepared.Path). Commit then makes it a delivery, Abort
// withdraws it; one of them must follow, as the copy holds the Maildir's
// directories open. The errors are Deliver's. sender is not used (see
// Deliver).
func (d *Maildir) Prepare(ctx context.Context, m *Message, sender string, rc Recipient, extra []Field) (*Prepared, error) {
	dir, err := d.dir(rc)
	if err != nil {
		return nil, err
	}
	target := "maildir " + dir
	if d.folder != "" {
		target = "maildir " + filepath.Join(dir, folderDir(d.folder))
		if d.folderErr != nil {
			// A configuration error: the message waits on the server
			// until it is fixed.
			return nil, tempError(target, "maildir folder", d.folderErr)
		}
	}
	// Checked per copy, before any file exists: a copy is either written
	// completely or not started.
	if err := ctx.Err(); err != nil {
		return nil, &Error{Target: target, Reason: "delivery cancelled", Err: err}
	}
	own, err := d.owner(rc)
	if err != nil {
		return nil, tempError(target, "open maildir", err)
	}
	fields := d.copyFields(m, rc, extra)
	// Written as the message arrived (Stream), if it is this copy.
	if p, ok, err := m.takeStreamed(d, target, rc, fields); ok {
		return p, err
	}
	for try := 0; ; try++ {
		md, cached, err := d.acquire(dir, own)
		if err != nil {
			return nil, tempError(target, "open maildir", withPath(dir, err))
		}
		p, err := d.prepare(md, target, Open(m, fields, true))
		if err == nil {
			return p, nil
		}
		// prepare released md. A tmp/ removed after the check in
		// acquire, or removed and re-created with its inode number
		// reused, cannot take a file (ENOENT): none exists yet, so once
		// more with the directories opened afresh.
		if cached && try == 0 && errors.Is(err, fs.ErrNotExist) {
			d.forget(md)
			continue
		}
		return nil, err
	}
}

// openMaildir is one Maildir's directories, opened once (see open) and
// shared by the copies delivered there while it stays cached (see
// acquire). All file operations go through these descriptors (openat,
// renameat2, linkat, unlinkat), never through a path again: a directory
// swapped for a symlink after open cannot redirect a copy.
type openMaildir struct {
	key           dirKey
	path          string
	tmp, new, cur *os.File
	own           *fileOwner // of the files created, nil to leave them
	// newID identifies new/ as opened, for acquire's check that the
	// path still leads to it; newPath is its path, built once.
	newID   dirID
	newPath string
	// syncDev names the filesystem of tmp/, where every file of md is
	// made, for sharing the files' syncs (see syncFile); syncShared
	// says whether they may share them at all.
	syncDev    uint64
	syncShared bool
	// noRename is set once renameat2(RENAME_NOREPLACE) proved
	// unsupported here: Commit links instead.
	noRename atomic.Bool
	// dirOps serialises the name operations in tmp/ and new/ (create,
	// rename, link): the kernel takes the directory's lock for each, and
	// concurrent deliverers contending for it spin on it in the kernel,
	// burning CPU that waiting here does not.
	dirOps sync.Mutex

	// Guarded by Maildir.dirsMu.
	refs    int    // copies using md, plus none for the cache itself
	used    uint64 // Maildir.tick at the last acquire
	evicted bool   // out of the cache: closed once refs drops to 0
}

// acquire returns the open directories of the Maildir at dir for a copy
// owned by own, from the cache when they are still the ones the path
// leads to; cached reports that they were. The copy gives them back with
// release.
//
// How a cached Maildir notices a change: before each use, new/ is looked
// up again by path (fstatat, without following a final symlink) and must
// still be the directory (device and inode) that open checked: new/ is
// where the copy appears, and its path is what Prepared.Path records for
// a run killed before it records the delivery. A Maildir renamed away
// (and perhaps re-created), a new/ replaced, removed or swapped for a
// symlink fail the check, and the Maildir is opened afresh through open,
// with all of its checks (and so re-created, or refused). A path that
// leads to the very new/ cached, through whatever symlinks, delivers
// where a fresh open would have. What the check cannot see (a change
// between it and the copy's system calls) is the same race a fresh open
// has, and is as harmless: the copy lands in the directory that was
// checked. A removed new/ whose inode number was reused refuses the
// copy's rename (ENOENT: Linux makes no entry in a removed directory).
//
// tmp/ is not looked up again, as nothing depends on its path: a copy
// only passes through it, made and renamed through the descriptor that
// open checked, and appears in new/ all the same. A tmp/ renamed away
// or swapped for a symlink since is still the directory that was
// checked, and nothing is made where the symlink points; the copies go
// on passing through it while the Maildir stays cached (fetch builds its
// targets per poll, see fetch/session.go: the next poll opens tmp/
// afresh and refuses a symlink). A removed tmp/ cannot take a file
// (ENOENT), and Prepare opens the Maildir afresh once.
func (d *Maildir) acquire(dir string, own *fileOwner) (md *openMaildir, cached bool, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, false, err
	}
	if d.userTrailing == 0 {
		own = nil
	}
	key := dirKey{path: abs}
	if d.folder != "" {
		key.path = filepath.Join(abs, folderDir(d.folder))
	}
	if own != nil {
		key.uid, key.gid, key.owned = own.uid, own.gid, true
	}
	d.dirsMu.Lock()
	md = d.dirs[key]
	if md != nil {
		md.refs++
		d.tick++
		md.used = d.tick
	}
	d.dirsMu.Unlock()
	if md != nil {
		if d.current(md) {
			return md, true, nil
		}
		d.forget(md)
		d.release(md)
	}
	if md, err = d.open(abs, own); err != nil {
		return nil, false, err
	}
	md.key = key
	md.refs = 1
	d.dirsMu.Lock()
	defer d.dirsMu.Unlock()
	if d.dirs == nil {
		d.dirs = make(map[dirKey]*openMaildir)
	}
	if old := d.dirs[key]; old != nil {
		// Another copy opened it meanwhile: this one replaces it.
		d.evictLocked(old)
	}
	d.tick++
	md.used = d.tick
	d.dirs[key] = md
	for len(d.dirs) > maxOpenMaildirs {
		var lru *openMaildir
		for _, c := range d.dirs {
			if lru == nil || c.used < lru.used {
				lru = c
			}
		}
		d.evictLocked(lru)
	}
	return md, false, nil
}

// current reports whether md's path still leads to its new/ (see
// acquire).
func (d *Maildir) current(md *openMaildir) bool {
	newID, err := d.fs.DirID(nil, md.newPath)
	return err == nil && newID == md.newID
}

// forget takes md out of the cache, if it is still there; the copies
// using it keep it until they release it.
func (d *Maildir) forget(md *openMaildir) {
	d.dirsMu.Lock()
	if d.dirs[md.key] == md {
		d.evictLocked(md)
	}
	d.dirsMu.Unlock()
}

func (d *Maildir) evictLocked(md *openMaildir) {
	if d.dirs[md.key] == md {
		delete(d.dirs, md.key)
	}
	md.evicted = true
	if md.refs == 0 {
		md.close()
	}
}

// release gives back md after a copy is done with it.
func (d *Maildir) release(md *openMaildir) {
	d.dirsMu.Lock()
	md.refs--
	if md.refs == 0 && md.evicted {
		md.close()
	}
	d.dirsMu.Unlock()
}

// Close closes the directories d keeps open. Copies still prepared keep
// theirs until they are committed or withdrawn; a delivery after Close
// opens its Maildir again. The error is always nil (closing a directory
// opened for lookups reports nothing worth acting on); it makes Maildir
// an io.Closer.
func (d *Maildir) Close() error {
	d.dirsMu.Lock()
	defer d.dirsMu.Unlock()
	for _, md := range d.dirs {
		d.evictLocked(md)
	}
	return nil
}

func (md *openMaildir) close() {
	for _, f := range []*os.File{md.tmp, md.new, md.cur} {
		if f != nil {
			f.Close()
		}
	}
}

// open opens the Maildir at dir, creating what is missing (mode 0700,
// each new directory fsynced in its parent): its path one component at a
// time, then the folder if d has one (see openFolder), then tmp/, new/
// and cur/ (the folder's, then).
//
// Symlinks: the components of the configured path before the first
// placeholder are the admin's and are followed, so a Maildir (or a
// template's fixed prefix) that is a symlink chosen by the admin works.
// From the first placeholder on (the per-user or per-domain directories,
// which their users may own) and for tmp/, new/ and cur/ of every Maildir,
// a symlink is refused (O_NOFOLLOW): followed, it would let whoever can
// write there send the copy, written by popfetch (perhaps root), anywhere,
// and the message would then be deleted from the server. The refusal is a
// temporary failure, so the message stays on the server until an admin
// replaces the symlink with a directory.
//
// Ownership: what open creates from the first {user} component on, and
// tmp/, new/ and cur/ there, is given to own (see owner) right after it is
// created and before it is used; existing directories are left alone.
// When popfetch gives Maildirs away (root, a {user} template), the
// directories it creates above the {user} component stay root's with mode
// 0711, so that each user can pass through to their own.
func (d *Maildir) open(abs string, own *fileOwner) (*openMaildir, error) {
	comps := pathComponents(abs)
	follow := len(comps) - d.trailing
	owned := len(comps) - d.userTrailing
	if d.userTrailing == 0 {
		own = nil
	}
	cur, err := d.fs.OpenDir(nil, "/", true)
	if err != nil {
		return nil, err
	}
	for i, c := range comps {
		var o *fileOwner
		perm := fs.FileMode(0o700)
		switch {
		case i >= owned:
			o = own
		case d.userTrailing > 0:
			// Above the user's directory (a {domain} level, or a missing
			// part of the fixed prefix): root's, and its users must pass
			// through it to reach their own, without listing the others.
			perm = 0o711
		}
		next, err := d.openOrCreate(cur, c, i < follow, perm, o)
		cur.Close()
		if err != nil {
			return nil, err
		}
		cur = next
	}
	root := cur
	if d.folder != "" {
		// A Maildir++ folder: a directory of the Maildir like tmp/, so
		// never followed if a symlink, and owned like tmp/ (see
		// openFolder).
		folder, err := d.openFolder(root, own)
		root.Close()
		if err != nil {
			return nil, err
		}
		root = folder
		abs = filepath.Join(abs, folderDir(d.folder))
	}
	defer root.Close()
	md := &openMaildir{path: abs, own: own, newPath: filepath.Join(abs, "new")}
	for _, sub := range []struct {
		name string
		f    **os.File
	}{{"tmp", &md.tmp}, {"new", &md.new}, {"cur", &md.cur}} {
		if *sub.f, err = d.openOrCreate(root, sub.name, false, 0o700, own); err != nil {
			md.close()
			return nil, err
		}
	}
	// Of the descriptor, not the path: what acquire compares the path
	// with later is what was opened here, with the checks above.
	if md.newID, err = d.fs.DirID(md.new, ""); err != nil {
		md.close()
		return nil, err
	}
	// A file made in tmp/ (through md.tmp, openat) is on tmp/'s
	// filesystem: asked once here rather than of every file.
	md.syncDev, md.syncShared = d.fs.SyncKey(md.tmp)
	// A delivery killed between creating its tmp/ file and removing it
	// leaves the file behind; the Maildir spec lets a writer remove tmp/
	// files older than 36 hours. Once per Maildir per process is enough.
	// It only tidies, so its error is logged, not returned.
	if _, done := d.ready.Load(abs); !done {
		if _, real := d.fs.(osFS); real {
			if err := cleanTmp(md.tmp); err != nil {
				d.log.Warn("cleaning stale tmp/ files", "path", md.tmp.Name(), "err", err)
			}
		}
		d.ready.Store(abs, true)
	}
	return md, nil
}

// openOrCreate opens the directory name in parent, creating it (mode
// perm, owned by own unless nil, then an fsync of parent: otherwise a
// crash could take a fresh new/, and the message durably linked into it,
// with it) if it is missing.
func (d *Maildir) openOrCreate(parent *os.File, name string, follow bool, perm fs.FileMode, own *fileOwner) (*os.File, error) {
	f, err := d.fs.OpenDir(parent, name, follow)
	if !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	// ErrExist: a concurrent delivery made it, and may not have fsynced
	// parent yet (or may fail before it does): this copy must not go on
	// before the directory entry is durable either.
	if err := d.fs.Mkdir(parent, name, perm, own); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	if err := d.fs.SyncDir(parent); err != nil {
		return nil, withPath(parent.Name(), err)
	}
	return d.fs.OpenDir(parent, name, follow)
}

// pathComponents splits a cleaned path into its components ("/a/b" →
// a, b); the root itself has none.
func pathComponents(p string) []string {
	p = filepath.Clean(p)
	var out []string
	for _, c := range strings.Split(p, string(filepath.Separator)) {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// staleTmp is the Maildir spec's age after which a file in tmp/ may be
// removed.
const staleTmp = 36 * time.Hour

// Prepared is a copy written durably in a Maildir's tmp/ whose name in
// new/ is chosen but not yet taken: the first phase of a delivery (see
// Maildir.Prepare). It is not safe for concurrent use.
type Prepared struct {
	d       *Maildir
	md      *openMaildir // nil once committed or withdrawn
	target  string
	tmpDir  string // md's tmp/ and new/, for the messages and Path
	newDir  string
	tmpName string
	size    int64  // for the ",S=" of the name
	name    string // in new/
	clashes int    // names found taken so far
	moved   bool   // renamed (not linked) into new/: tmpName is gone
}

// ErrNameTaken is wrapped by the error of a Prepared.Commit that found its
// name in new/ taken by another file (see maxNameTries): the copy is still
// prepared, under a fresh name. The caller records the new Path and calls
// Commit again, or Abort.
var ErrNameTaken = errors.New("maildir: name in new/ taken; the copy has a fresh name")

// prepare stores r as one message in md's tmp/ and chooses its name in
// new/: the Maildir protocol up to the link, with the fsyncs it leaves
// implicit, in the order that makes new/ hold only complete, durable
// files (doc/design.md §2.2; mox store/account.go does the same). On success the Prepared
// holds md (until Commit or Abort); on failure md is released.
func (d *Maildir) prepare(md *openMaildir, target string, r io.Reader) (*Prepared, error) {
	base, f, err := d.createTmp(md)
	if err != nil {
		d.release(md)
		if base == "" {
			return nil, tempError(target, "make unique name", err)
		}
		return nil, tempError(target, "create tmp file", withPath(filepath.Join(md.tmp.Name(), base), err))
	}
	p := &Prepared{d: d, md: md, target: target, tmpDir: md.tmp.Name(), newDir: md.new.Name(), tmpName: base}

	if md.own != nil {
		// Through the descriptor, before the file is linked into new/.
		if err := f.Chown(md.own.uid, md.own.gid); err != nil {
			f.Close()
			return nil, p.fail("chown tmp file", err)
		}
	}
	cw := &countWriter{w: f}
	if _, err := io.Copy(cw, r); err != nil {
		f.Close()
		return nil, p.fail("write tmp file", err)
	}
	if err := d.syncFile(md, f); err != nil {
		f.Close()
		return nil, p.fail("fsync tmp file", err)
	}
	crashpoint.Hit("file-synced")
	// Close can report a deferred write error (NFS, quota): unchecked, a
	// short file would be linked into new/.
	if err := f.Close(); err != nil {
		return nil, p.fail("close tmp file", err)
	}
	p.size = cw.n
	p.setName(base)
	return p, nil
}

// syncFile makes f, a file made in md's tmp/, durable before it returns,
// data and inode, as fsync(2) of f does, which is what it does when f is
// alone or on a filesystem whose syncfs(2) is not known to do the same
// (durable.SharedSyncKey, asked of tmp/ when md was opened: f is on
// tmp/'s filesystem). Copies written at once into one such
// filesystem share one syncfs instead (durable.FileSync): each returns
// after a syncfs that started after its call, followed by a device flush
// (durable.SyncFilesystem), and after a check of its own file's
// writeback errors; the copy is only then renamed into new/, so new/
// still holds only durable files (doc/design.md §2.2).
func (d *Maildir) syncFile(md *openMaildir, f maildirFile) error {
	if g, ok := f.(groupSyncFile); ok && md.syncShared {
		files := d.files
		if files == nil {
			files = fileSyncs
		}
		return files.Sync(md.syncDev, g)
	}
	return f.Sync()
}

// setName names the copy in new/ after base: ",S=" is the file size,
// which dovecot reads instead of stat'ing the file.
func (p *Prepared) setName(base string) {
	p.name = base + ",S=" + strconv.FormatInt(p.size, 10)
}

// Path is where the copy appears in new/ once committed: an absolute path
// for Committed to look for after a crash.
func (p *Prepared) Path() string {
	return filepath.Join(p.newDir, p.name)
}

// Receipt says where the copy is once committed: its path relative to
// the Maildir's root (new/NAME), which a mail reader may since have moved
// to cur/.
func (p *Prepared) Receipt() Receipt {
	return Receipt{Kind: "maildir", Dest: "new/" + p.name}
}

// dirSyncGather is how long a Commit that finds no fsync of new/ running
// waits for others to join it (durable.GroupSync.Gather): a session
// delivers many copies at once, whose file fsyncs end within about a
// millisecond of each other.
const dirSyncGather = time.Millisecond

// Commit is the second phase: it moves the copy into new/ under Path
// (never overwriting: renameat2 with RENAME_NOREPLACE, or where that is
// not supported a link and then the removal of the tmp name) and fsyncs
// new/. A nil result means the copy is durable. A name that another file
// took meanwhile gives an error wrapping ErrNameTaken and a fresh Path,
// up to maxNameTries names; every other failure is a temporary *Error,
// and the copy is gone from tmp/ and new/ alike.
//
// Commits into one new/ at the same time share its fsync (group commit,
// durable.GroupSync): each returns after an fsync of new/ that started
// after its own rename, with that fsync's result, so none is reported
// durable on an fsync that may have missed it.
func (p *Prepared) Commit() error {
	if p.md == nil {
		return errors.New("maildir: Commit of a copy already committed or withdrawn")
	}
	d, md := p.d, p.md
	step := "rename into new"
	var err error
	link := md.noRename.Load()
	if !link {
		md.dirOps.Lock()
		err = d.fs.Rename(md.tmp, p.tmpName, md.new, p.name)
		md.dirOps.Unlock()
		if renameUnsupported(err) {
			// Remembered for this Maildir: one failed probe per open.
			md.noRename.Store(true)
			link = true
		}
	}
	if link {
		step = "link into new"
		md.dirOps.Lock()
		err = d.fs.Link(md.tmp, p.tmpName, md.new, p.name)
		md.dirOps.Unlock()
	}
	if errors.Is(err, fs.ErrExist) {
		if p.clashes++; p.clashes < maxNameTries {
			base, uerr := d.uniqueName()
			if uerr == nil {
				taken := p.Path()
				p.setName(base)
				return fmt.Errorf("%w: %s", ErrNameTaken, taken)
			}
			err = uerr
		} else {
			err = fs.ErrExist // keep the reason once the tries run out
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// new/ (or tmp/) went away since acquire checked it: the
			// next copy opens the Maildir afresh.
			d.forget(md)
		}
		return p.fail(step, err)
	}
	p.moved = !link
	crashpoint.Hit("moved")
	// Without this a crash can lose the directory entry even though the
	// file's data is on disk.
	if err := d.syncs.Sync(md.newID, func() error { return d.fs.SyncDir(md.new) }); err != nil {
		// The copy is visible but may not survive a crash. Failing leaves
		// the message on the server; withdrawing the copy keeps the retry
		// from producing a duplicate (unless a reader took it already).
		if rerr := d.fs.Remove(md.new, p.name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			d.log.Warn("maildir: withdrawing copy after failed fsync", "path", p.Path(), "err", rerr)
		}
		return p.fail("fsync new directory", withPath(p.newDir, err))
	}
	crashpoint.Hit("dir-synced")
	// Delivered. A tmp/ leftover of a link is harmless (readers clean
	// tmp/ after 36 hours) and must not turn a durable delivery into a
	// failure, which would deliver the message twice.
	if !p.moved {
		if err := d.fs.Remove(md.tmp, p.tmpName); err != nil {
			d.log.Warn("maildir: removing tmp file after delivery", "path", p.tmpPath(), "err", err)
		}
	}
	p.finish()
	return nil
}

// Abort withdraws a prepared copy: its tmp file is removed. It does
// nothing after Commit returned nil or a failure other than ErrNameTaken.
func (p *Prepared) Abort() {
	if p.md == nil {
		return
	}
	p.removeTmp()
	p.finish()
}

// fail removes the tmp file, ends the copy and returns the temporary
// *Error for step.
func (p *Prepared) fail(step string, err error) error {
	tmp := p.tmpPath()
	p.removeTmp()
	p.finish()
	return tempError(p.target, step, withPath(tmp, err))
}

// removeTmp removes the tmp file: incomplete, not durable or not wanted,
// it must not linger for a reader that ignores tmp/'s 36-hour rule.
func (p *Prepared) removeTmp() {
	if p.moved {
		return // renamed into new/: no tmp name left
	}
	if err := p.d.fs.Remove(p.md.tmp, p.tmpName); err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.d.log.Warn("maildir: removing tmp file", "path", p.tmpPath(), "err", err)
	}
}

func (p *Prepared) tmpPath() string { return filepath.Join(p.tmpDir, p.tmpName) }

func (p *Prepared) finish() {
	p.d.release(p.md)
	p.md = nil
}

// Committed reports whether a file holds the name of the copy a Prepared
// named path (its Path) in its Maildir: in new/, or moved to cur/ by a
// mail reader, as NAME or NAME:2,FLAGS. A run killed between recording a
// copy's Path and recording the delivery asks it on the next start, so as
// not to deliver that copy again; OpenCommitted then tells whether that
// file can be the copy.
func Committed(path string) bool {
	_, ok := findCommitted(path)
	return ok
}

// findCommitted returns the file Committed finds for path.
func findCommitted(path string) (string, bool) {
	if _, err := os.Stat(path); err == nil {
		return path, true
	}
	name := filepath.Base(path)
	cur := filepath.Join(filepath.Dir(filepath.Dir(path)), "cur")
	ents, err := os.ReadDir(cur)
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		if n := e.Name(); n == name || strings.HasPrefix(n, name+":") {
			return filepath.Join(cur, n), true
		}
	}
	return "", false
}

// ErrNotCopy is wrapped by OpenCommitted's error for a file that holds a
// copy's name but cannot be the copy Prepare wrote.
var ErrNotCopy = errors.New("maildir: the file is not the copy popfetch wrote")

// OpenCommitted opens the file Committed finds for path, if it can be the
// copy a Prepared wrote there: a regular file (not followed if a symlink,
// not waited on if a FIFO) of the size its name carries (",S=", see
// Prepared.setName). Otherwise the error wraps ErrNotCopy, or
// fs.ErrNotExist when no file holds the name. A Commit that found its
// name taken (ErrNameTaken) leaves another's file there, and a run killed
// before recording the fresh name leaves that name as its intent: that
// file must not be taken for the delivery. The content is the copy as
// Open writes it with LF line ends: the fields popfetch added, then the
// message; the caller reads it as a stream (it may be as large as any
// message) and compares it with what it knows of the message. A read that
// finds another size than the name's fails with ErrNotCopy.
func OpenCommitted(path string) (io.ReadCloser, error) {
	found, ok := findCommitted(path)
	if !ok {
		return nil, fmt.Errorf("maildir: %s: %w", path, fs.ErrNotExist)
	}
	name, _, _ := strings.Cut(filepath.Base(path), ":")
	i := strings.LastIndex(name, ",S=")
	if i < 0 {
		return nil, fmt.Errorf("%w: %s: no size in the name", ErrNotCopy, found)
	}
	want, err := strconv.ParseInt(name[i+len(",S="):], 10, 64)
	if err != nil || want < 0 {
		return nil, fmt.Errorf("%w: %s: no size in the name", ErrNotCopy, found)
	}
	f, err := os.OpenFile(found, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%w: %s: a symlink", ErrNotCopy, found)
		}
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s: not a regular file", ErrNotCopy, found)
	}
	if st.Size() != want {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %d bytes, the copy had %d", ErrNotCopy, found, st.Size(), want)
	}
	return &committedReader{f: f, name: found, want: want}, nil
}

// committedReader reads a committed copy, failing if it turns out to hold
// another number of bytes than its name says (changed since the check).
type committedReader struct {
	f    *os.File
	name string
	want int64
	n    int64
}

func (r *committedReader) Read(p []byte) (int, error) {
	if left := r.want + 1 - r.n; int64(len(p)) > left {
		p = p[:left] // one byte more than the size shows a longer file
	}
	n, err := r.f.Read(p)
	r.n += int64(n)
	if r.n > r.want || err == io.EOF && r.n != r.want {
		return n, fmt.Errorf("%w: %s: %d bytes read, the copy had %d", ErrNotCopy, r.name, r.n, r.want)
	}
	return n, err
}

func (r *committedReader) Close() error { return r.f.Close() }

// SyncCommitted makes the directory entry of the copy Committed finds for
// path durable: the move of a killed run into new/ may so far exist only
// in the page cache, and so may a mail reader's move of it on to cur/
// since, which only an fsync of cur/ makes durable (new/ no longer holds
// it). A copy moved again while its directory is fsynced is looked for
// once more, a few times; a copy that is nowhere is fs.ErrNotExist.
func SyncCommitted(path string) error {
	for range 3 {
		found, ok := findCommitted(path)
		if !ok {
			return fmt.Errorf("maildir: %s: %w", path, fs.ErrNotExist)
		}
		dir := filepath.Dir(found)
		if err := syncCommittedDir(dir); err != nil {
			return err
		}
		if again, ok := findCommitted(path); ok && filepath.Dir(again) == dir {
			return nil
		}
	}
	return fmt.Errorf("maildir: %s keeps moving; its directory entry is not known to be durable", path)
}

// syncCommittedDir fsyncs a directory for SyncCommitted; tests replace it.
var syncCommittedDir = durable.SyncDir

// dir expands the placeholders in d.path for rc.
func (d *Maildir) dir(rc Recipient) (string, error) {
	if !d.expand {
		return d.path, nil
	}
	vals := map[string]string{"user": rc.User, "domain": rc.Domain}
	for _, what := range []string{"user", "domain"} {
		ph := "{" + what + "}"
		if !hasPlaceholder(d.path, what) {
			continue
		}
		if err := validComponent(vals[what]); err != nil {
			return "", &Error{
				Target:    "maildir " + d.path,
				Permanent: true,
				Reason:    SafeValue(fmt.Sprintf("invalid %s %q for %s: %v", what, vals[what], ph, err), 200),
				Err:       fmt.Errorf("expand %s %s in %s: %w", what, ph, d.path, err),
			}
		}
	}
	// One pass: a user literally named "{domain}" is not expanded again.
	return expandKnown(d.path, maildirPlaceholders, vals), nil
}

// errBadComponent is wrapped by the permanent errors of validComponent.
var errBadComponent = errors.New("not usable as a path component")

// validComponent reports whether v may replace a placeholder: one plain
// path component that cannot climb out (".."), hide (".x"), pass as a
// command-line option ("-x") to whatever later handles the path, or carry
// control characters into logs and file names.
func validComponent(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("empty: %w", errBadComponent)
	case len(v) > 64:
		return fmt.Errorf("longer than 64 bytes: %w", errBadComponent)
	case v[0] == '.' || v[0] == '-':
		return fmt.Errorf("starts with %q: %w", v[0], errBadComponent)
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '/':
			return fmt.Errorf("contains '/': %w", errBadComponent)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("contains control character %#02x: %w", c, errBadComponent)
		}
	}
	return nil
}

// delivered counts names made by this process (the spec's Q field).
var delivered atomic.Uint64

// pid is this process's id for the names: a Go program keeps its pid
// (it never forks without exec), and getpid(2) per copy showed in
// system call counts.
var pid = uint64(os.Getpid())

// uniqueName returns a name per the Maildir spec's modern form,
// <sec>.M<usec>P<pid>Q<count>R<random>.<host>: unique across processes
// (pid), within one (counter), and across pid reuse and hosts sharing an
// NFS directory (64 random bits).
func (d *Maildir) uniqueName() (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	now := time.Now()
	b := make([]byte, 0, 80+len(d.name))
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, ".M"...)
	b = strconv.AppendInt(b, int64(now.Nanosecond()/1000), 10)
	b = append(b, 'P')
	b = strconv.AppendUint(b, pid, 10)
	b = append(b, 'Q')
	b = strconv.AppendUint(b, delivered.Add(1), 10)
	b = append(b, 'R')
	b = hex.AppendEncode(b, rnd[:])
	b = append(b, '.')
	b = append(b, d.name...)
	return string(b), nil
}

// escapeHost escapes a host name for a Maildir file name: '/' and ':' as
// the spec says (\057, \072), ',' likewise because dovecot reads ",S=" after
// it, and '\' itself so that the escapes stay unambiguous.
var hostEscaper = strings.NewReplacer(`\`, `\134`, "/", `\057`, ":", `\072`, ",", `\054`)

func escapeHost(h string) string {
	return hostEscaper.Replace(SafeValue(h, 255))
}

// tempError is a temporary *Error for a filesystem failure. The Reason is
// the step and the errno text, not the path, which is in Err.
func tempError(target, step string, err error) error {
	reason := step
	var errno syscall.Errno
	if errors.As(err, &errno) {
		reason += ": " + errno.Error()
	} else {
		reason += ": " + err.Error()
	}
	return &Error{Target: target, Reason: SafeValue(reason, 200), Err: fmt.Errorf("%s: %w", step, err)}
}

// withPath makes sure err names path: errors from package os already do.
func withPath(path string, err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	if errors.As(err, &pe) || errors.As(err, &le) {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// countWriter counts the bytes written for the ",S=" size. It also hides
// any ReadFrom of the file, so each write goes through the seam.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// maildirFS is the filesystem seam of Maildir. Directories are open
// files, and names are single components relative to one (the *at system
// calls). Errors name the full path, for the operator.
type maildirFS interface {
	// OpenDir opens the directory name in dir (nil: name is absolute),
	// following a symlink only if follow is set; a refused symlink is
	// errSymlink.
	OpenDir(dir *os.File, name string, follow bool) (*os.File, error)
	// Mkdir creates the directory name in dir with mode perm exactly (no
	// umask), owned by own unless nil.
	Mkdir(dir *os.File, name string, perm fs.FileMode, own *fileOwner) error
	OpenExcl(dir *os.File, name string, perm fs.FileMode) (maildirFile, error)
	Link(olddir *os.File, oldname string, newdir *os.File, newname string) error
	// Rename moves oldname to newname without ever replacing newname
	// (renameat2 RENAME_NOREPLACE: EEXIST instead); an error for which
	// renameUnsupported holds says the system cannot do that.
	Rename(olddir *os.File, oldname string, newdir *os.File, newname string) error
	// DirID identifies the directory name in dir (nil: name is
	// absolute; "": dir itself), not following a final symlink.
	DirID(dir *os.File, name string) (dirID, error)
	// SyncKey names the filesystem of the files made in dir for
	// durable.FileSync, or says (ok false) that they are fsynced one
	// by one (see durable.SharedSyncKey).
	SyncKey(dir *os.File) (dev uint64, ok bool)
	SyncDir(dir *os.File) error
	Remove(dir *os.File, name string) error
}

// maildirFile is what Maildir does with an open tmp file.
type maildirFile interface {
	io.Writer
	Chown(uid, gid int) error
	Sync() error
	Close() error
}

// groupSyncFile is a maildirFile that can be made durable together with
// others on its filesystem (see Maildir.syncFile).
type groupSyncFile interface {
	maildirFile
	durable.SyncFile
}

// errSymlink is the reason a symlink where popfetch follows none (see
// Maildir.open) is refused.
var errSymlink = errors.New("is a symbolic link, which popfetch does not follow below a Maildir template's fixed prefix or for a Maildir's folders and tmp/, new/ and cur/ (hint: replace it with a directory, or configure the real path)")
