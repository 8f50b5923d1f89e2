package deliver

import (
	"sync"

	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/emersion/go-maildir"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// MaildirOptions configures a Maildir target.
type MaildirOptions struct {
	// LocalHost names this machine in the Received: trace field and in the
	// unique file names; default os.Hostname().
	LocalHost string
	// Logger receives what cannot be returned: a tmp/ file left behind
	// after the copy was already durable in new/. Default: discard.
	Logger *slog.Logger

	// fs is the filesystem seam; nil means the real one. Tests replace it
	// to record the order of operations (fsync on tmpfs proves nothing)
	// and to inject failures at each step.
	fs maildirFS
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
	// ready holds the Maildirs already checked by init in this process,
	// so each message costs no Stat calls for them.
	ready sync.Map
}

// Placeholders a Maildir path may hold (multidrop).
const (
	placeholderUser   = "{user}"
	placeholderDomain = "{domain}"
)

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
		expand: strings.Contains(path, placeholderUser) || strings.Contains(path, placeholderDomain),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.fs == nil {
		d.fs = osFS{}
	}
	return d
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
	res := newResults(ctx, len(rcpts))
	for i, rc := range rcpts {
		// Reported copy by copy (WithResultHook): each is durable on its
		// own, whatever happens to the ones after it.
		res.set(i, d.deliverOne(ctx, m, rc, extra))
	}
	return res.done()
}

func (d *Maildir) deliverOne(ctx context.Context, m *Message, rc Recipient, extra []Field) error {
	dir, err := d.dir(rc)
	if err != nil {
		return err
	}
	target := "maildir " + dir
	// Checked per copy, before any file exists: a copy is either written
	// completely or not started.
	if err := ctx.Err(); err != nil {
		return &Error{Target: target, Reason: "delivery cancelled", Err: err}
	}
	if err := d.init(dir); err != nil {
		return tempError(target, "create maildir", withPath(dir, err))
	}

	fields := make([]Field, 0, len(extra)+2)
	fields = append(fields, extra...)
	fields = append(fields, Received(m, d.host, rc.Address))
	if rc.Address != "" {
		fields = append(fields, Field{Name: "Delivered-To", Value: SafeValue(rc.Address, 320)})
	}
	err = d.write(dir, target, Open(m, fields, true), linkHook(ctx))
	if err != nil {
		// The Maildir may have been removed or replaced meanwhile: check
		// (and re-create) it again next time.
		d.ready.Delete(dir)
	}
	return err
}

// write stores r as one message in dir: the Maildir protocol with the
// fsyncs it leaves implicit, in the order that makes new/ hold only
// complete, durable files (STYLE.md §A, mox store/account.go).
func (d *Maildir) write(dir, target string, r io.Reader, hook func(path string)) error {
	// tmp/: O_EXCL so that a clash never appends to someone else's file.
	var (
		base, tmp string
		f         maildirFile
		err       error
	)
	for range maxNameTries {
		if base, err = d.uniqueName(); err != nil {
			return tempError(target, "make unique name", err)
		}
		tmp = filepath.Join(dir, "tmp", base)
		f, err = d.fs.OpenExcl(tmp, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return tempError(target, "create tmp file", err)
	}
	fail := func(step string, err error) error {
		// The tmp file is incomplete or not durable: it must not linger
		// for a reader that ignores tmp/'s 36-hour rule.
		if rerr := d.fs.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			d.log.Warn("maildir: removing tmp file", "path", tmp, "err", rerr)
		}
		return tempError(target, step, withPath(tmp, err))
	}

	cw := &countWriter{w: f}
	if _, err := io.Copy(cw, r); err != nil {
		f.Close()
		return fail("write tmp file", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fail("fsync tmp file", err)
	}
	// Close can report a deferred write error (NFS, quota): unchecked, a
	// short file would be linked into new/.
	if err := f.Close(); err != nil {
		return fail("close tmp file", err)
	}

	// new/: link, not rename (os.Rename overwrites). ",S=" is the file
	// size, which dovecot reads instead of stat'ing the file.
	newDir := filepath.Join(dir, "new")
	var final string
	for range maxNameTries {
		final = filepath.Join(newDir, base+",S="+strconv.FormatInt(cw.n, 10))
		if hook != nil {
			hook(final)
		}
		err = d.fs.Link(tmp, final)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
		if base, err = d.uniqueName(); err != nil {
			break
		}
		err = fs.ErrExist // keep the reason if the tries run out
	}
	if err != nil {
		return fail("link into new", err)
	}
	// Without this a crash can lose the directory entry even though the
	// file's data is on disk.
	if err := d.fs.SyncDir(newDir); err != nil {
		// The copy is visible but may not survive a crash. Failing leaves
		// the message on the server; withdrawing the copy keeps the retry
		// from producing a duplicate (unless a reader took it already).
		if rerr := d.fs.Remove(final); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			d.log.Warn("maildir: withdrawing copy after failed fsync", "path", final, "err", rerr)
		}
		return fail("fsync new directory", withPath(newDir, err))
	}
	// Delivered. A tmp/ leftover is harmless (readers clean tmp/ after 36
	// hours) and must not turn a durable delivery into a failure, which
	// would deliver the message twice.
	if err := d.fs.Remove(tmp); err != nil {
		d.log.Warn("maildir: removing tmp file after delivery", "path", tmp, "err", err)
	}
	return nil
}

// dir expands the placeholders in d.path for rc.
func (d *Maildir) dir(rc Recipient) (string, error) {
	if !d.expand {
		return d.path, nil
	}
	var oldnew []string
	for _, p := range []struct{ ph, val, what string }{
		{placeholderUser, rc.User, "user"},
		{placeholderDomain, rc.Domain, "domain"},
	} {
		if !strings.Contains(d.path, p.ph) {
			continue
		}
		if err := validComponent(p.val); err != nil {
			return "", &Error{
				Target:    "maildir " + d.path,
				Permanent: true,
				Reason:    SafeValue(fmt.Sprintf("invalid %s %q for %s: %v", p.what, p.val, p.ph, err), 200),
				Err:       fmt.Errorf("expand %s %s in %s: %w", p.what, p.ph, d.path, err),
			}
		}
		oldnew = append(oldnew, p.ph, p.val)
	}
	// One pass: a user literally named "{domain}" is not expanded again.
	return strings.NewReplacer(oldnew...).Replace(d.path), nil
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

// init makes sure dir/{tmp,new,cur} exist, creating what is missing with
// mode 0700, parents included.
func (d *Maildir) init(dir string) error {
	if _, ok := d.ready.Load(dir); ok {
		return nil
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := d.mkdirs(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	// A delivery killed between creating its tmp/ file and removing it
	// leaves the file behind; the Maildir spec lets a writer remove tmp/
	// files older than 36 hours, which go-maildir's Clean does. Once per
	// Maildir per process is enough. It only tidies, so its error is
	// logged, not returned.
	if _, real := d.fs.(osFS); real {
		if err := maildir.Dir(dir).Clean(); err != nil {
			d.log.Warn("cleaning stale tmp/ files", "path", dir, "err", err)
		}
	}
	d.ready.Store(dir, true)
	return nil
}

// mkdirs is os.MkdirAll plus an fsync of each parent that gained an entry:
// otherwise a crash could take a fresh new/ directory, and the message
// durably linked into it, with it.
func (d *Maildir) mkdirs(path string) error {
	fi, err := d.fs.Stat(path)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: %w", path, syscall.ENOTDIR)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(path)
	if parent != path {
		if err := d.mkdirs(parent); err != nil {
			return err
		}
	}
	if err := d.fs.Mkdir(path, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) { // a concurrent delivery made it
			return nil
		}
		return err
	}
	return d.fs.SyncDir(parent)
}

type linkHookKey struct{}

// WithLinkHook returns a ctx under which a Maildir target calls hook with
// the path of a copy in new/ just before it creates it. popfetch records
// that path (an intent) so that, if it is killed after the link but before
// the message's UID is recorded, the next poll finds the file and does not
// deliver the message again. Use it only when one Deliver call makes one
// copy (single-drop); hook must not block for long.
func WithLinkHook(ctx context.Context, hook func(path string)) context.Context {
	return context.WithValue(ctx, linkHookKey{}, hook)
}

func linkHook(ctx context.Context) func(string) {
	h, _ := ctx.Value(linkHookKey{}).(func(string))
	return h
}

// delivered counts names made by this process (the spec's Q field).
var delivered atomic.Uint64

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
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000,
		os.Getpid(), delivered.Add(1), hex.EncodeToString(rnd[:]), d.name), nil
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

// maildirFS is the filesystem seam of Maildir.
type maildirFS interface {
	Stat(name string) (fs.FileInfo, error)
	Mkdir(name string, perm fs.FileMode) error
	OpenExcl(name string, perm fs.FileMode) (maildirFile, error)
	Link(oldname, newname string) error
	SyncDir(name string) error
	Remove(name string) error
}

// maildirFile is what Maildir does with an open tmp file.
type maildirFile interface {
	io.Writer
	Sync() error
	Close() error
}

// osFS is the real filesystem.
type osFS struct{}

func (osFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

func (osFS) Mkdir(name string, perm fs.FileMode) error {
	if err := os.Mkdir(name, perm); err != nil {
		return err
	}
	// The umask may have narrowed perm, and a Maildir the owner cannot
	// enter is useless; chmod never widens it beyond perm.
	return os.Chmod(name, perm)
}

func (osFS) OpenExcl(name string, perm fs.FileMode) (maildirFile, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
}

func (osFS) Link(oldname, newname string) error { return os.Link(oldname, newname) }

func (osFS) SyncDir(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (osFS) Remove(name string) error { return os.Remove(name) }
