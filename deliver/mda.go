package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/popfetch/popfetch/internal/trust"
)

// MDAOptions configures an MDA target. The zero value is usable.
type MDAOptions struct {
	// Timeout bounds one MDA run. On expiry the whole process group is
	// killed, because procmail and friends fork helpers that would
	// otherwise survive their parent. Default 5 minutes.
	Timeout time.Duration

	// AllowStderr makes output on stderr with exit status 0 count as
	// delivered. By default it is a permanent failure: an MDA that fails
	// but still exits 0 (a shell wrapper that loses the status, a
	// procmailrc with a broken recipe) must not make popfetch DELE the
	// message unseen, so it goes to the postmaster with the MDA's words.
	// Not temporary: an MDA that did deliver and merely warned would then
	// deliver a duplicate on every poll, forever.
	AllowStderr bool

	// TempExitCodes are the exit statuses that mean "try again later":
	// the message stays on the server for the next poll. Any other
	// non-zero status is permanent. nil means [75] (EX_TEMPFAIL, what
	// procmail, maildrop and dovecot-lda return for a temporary problem);
	// an admin may add, say, 73 (EX_CANTCREAT) and 74 (EX_IOERR), which
	// some MDAs return for an unwritable or full mailbox. A non-nil empty
	// slice makes every non-zero status permanent.
	TempExitCodes []int

	// LocalHost is the "by" host of the Received: field; default
	// os.Hostname().
	LocalHost string

	// Env is the MDA's complete environment. nil means a minimal one:
	// PATH=/usr/bin:/bin plus HOME, USER and LOGNAME copied from popfetch's
	// own environment when set. popfetch's environment is not passed on
	// wholesale: it may hold secrets (a password in a variable) and
	// variables such as LD_PRELOAD or IFS that change what the MDA does.
	// A non-nil empty slice gives an empty environment.
	Env []string
}

// MDA delivers by piping each copy into a program, one run per recipient,
// like fetchmail's --mda and getmail's MDA_external. The program is
// executed directly, never through a shell.
type MDA struct {
	argv      []string
	opts      MDAOptions
	target    string
	waitDelay time.Duration // how long Wait waits for a grandchild holding stderr open
}

// mdaPlaceholders are the placeholders an MDA argument may contain, by
// name. Each occurrence is replaced inside its own argv element, so a
// value becomes part of exactly one argument whatever it contains. The rc
// file's validation asks MDAPlaceholders, so this is the only list.
var mdaPlaceholders = map[string]bool{"user": true, "address": true, "domain": true, "sender": true}

// mdaMaxValue caps a substituted value; no real user, address or domain
// comes close, and an absurd one should not reach an argv.
const mdaMaxValue = 1024

// exTempFail is sysexits.h EX_TEMPFAIL, the MDA convention for "try
// again later".
const exTempFail = 75

// nullSender is what {sender} becomes for the null reverse path (and
// for a reverse path that is unsafe in an argument: see args). Postfix's
// pipe(8) uses the same default (null_sender=MAILER-DAEMON): an empty argv
// element after "-f" confuses MDAs, and "<>" is not an address. The sender
// is only ever informational (procmail -f, a From_ line), never used to
// route.
const nullSender = "MAILER-DAEMON"

// NewMDA checks an MDA command line. argv[0] must be an absolute path, so
// that no PATH lookup (and no exec.ErrDot surprise from a relative PATH
// entry) decides which program receives the mail. Arguments may contain
// {user}, {address}, {domain} and {sender}; any other {name} is an error
// here rather than a literal passed to the MDA for every message.
func NewMDA(argv []string, opts MDAOptions) (*MDA, error) {
	if len(argv) == 0 {
		return nil, errors.New("mda: empty command")
	}
	if !filepath.IsAbs(argv[0]) {
		return nil, fmt.Errorf("mda: program %q is not an absolute path", argv[0])
	}
	if strings.ContainsRune(argv[0], '{') {
		return nil, fmt.Errorf("mda: program %q must not contain placeholders", argv[0])
	}
	for _, a := range argv {
		if strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("mda: argument %q contains NUL", a)
		}
		if err := checkPlaceholders(a); err != nil {
			return nil, err
		}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.TempExitCodes == nil {
		opts.TempExitCodes = []int{exTempFail}
	}
	for _, c := range opts.TempExitCodes {
		// 0 is success; a status is one byte (wait(2)).
		if c < 1 || c > 255 {
			return nil, fmt.Errorf("mda: temporary exit code %d is not between 1 and 255", c)
		}
	}
	opts.TempExitCodes = slices.Clone(opts.TempExitCodes)
	if opts.LocalHost == "" {
		opts.LocalHost, _ = os.Hostname()
	}
	if opts.Env == nil {
		opts.Env = []string{"PATH=/usr/bin:/bin"}
		for _, k := range []string{"HOME", "USER", "LOGNAME"} {
			if v, ok := os.LookupEnv(k); ok {
				opts.Env = append(opts.Env, k+"="+v)
			}
		}
	}
	return &MDA{
		argv:      append([]string(nil), argv...),
		opts:      opts,
		target:    "mda " + argv[0],
		waitDelay: 5 * time.Second,
	}, nil
}

// Placeholder is one placeholder written in an MDA argument or a Maildir
// path.
type Placeholder struct {
	Text  string // as written, braces included: "{user}"
	Known bool   // one the argument or path may contain
}

// MDAPlaceholder is the Placeholder of an MDA argument.
type MDAPlaceholder = Placeholder

// MDAPlaceholders returns the placeholders written in one MDA argument, in
// order; Known is set for {user}, {address}, {domain} and {sender}. A
// placeholder is "{name}" with a name of letters, digits and '_' and no
// brace inside (in "{{user}" it is "{user}", after a literal '{'); any
// other braces ("{}", "a{b c}", an unclosed "{") are literal text, passed
// to the program as they are. An unknown name ("{recipient}", "${HOME}"'s
// "{HOME}") is an error for NewMDA and the rc file alike, rather than a
// literal passed to the MDA for every message. This is the one definition
// of the syntax, for Maildir paths too (MaildirPlaceholders): NewMDA checks
// with it, Deliver expands with it, and the rc file's validation calls it.
func MDAPlaceholders(a string) []Placeholder {
	return placeholders(a, mdaPlaceholders)
}

// MaildirPlaceholders returns the placeholders written in a Maildir path,
// in order, with the syntax of MDAPlaceholders; Known is set for {user}
// and {domain}, the ones NewMaildir replaces. Other braces are literal
// directory names. The rc file's validation calls it, so that what it
// accepts and what a Maildir expands are the same placeholders.
func MaildirPlaceholders(path string) []Placeholder {
	return placeholders(path, maildirPlaceholders)
}

// placeholders lists the placeholders of s, Known for the names in known.
func placeholders(s string, known map[string]bool) []Placeholder {
	var out []Placeholder
	scanPlaceholders(s, func(i, j int, name string) {
		out = append(out, Placeholder{Text: s[i:j], Known: known[name]})
	})
	return out
}

// scanPlaceholders calls f for each placeholder in a: a[i:j] is "{name}".
// Linear in len(a).
func scanPlaceholders(a string, f func(i, j int, name string)) {
	for i := 0; i < len(a); i++ {
		if a[i] != '{' {
			continue
		}
		k := i + 1
		for k < len(a) && a[k] != '{' && a[k] != '}' {
			k++
		}
		if k == len(a) {
			return
		}
		if a[k] == '{' {
			i = k - 1 // the '{' at k may open a placeholder
			continue
		}
		if name := a[i+1 : k]; isIdent(name) {
			f(i, k+1, name)
		}
		i = k
	}
}

// checkPlaceholders reports an unknown {name} in a.
func checkPlaceholders(a string) error {
	for _, ph := range MDAPlaceholders(a) {
		if !ph.Known {
			return fmt.Errorf("mda: unknown placeholder %s (known: {user} {address} {domain} {sender})", ph.Text)
		}
	}
	return nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// expand substitutes the placeholders of one argument. Only names that are
// placeholders are replaced; other braces stay literal.
func expand(a string, vals map[string]string) string {
	return expandKnown(a, mdaPlaceholders, vals)
}

// expandKnown substitutes in a the placeholders whose names are in known
// and have a value in vals; everything else stays as written.
func expandKnown(a string, known map[string]bool, vals map[string]string) string {
	var b strings.Builder
	last := 0
	scanPlaceholders(a, func(i, j int, name string) {
		if v, ok := vals[name]; ok && known[name] {
			b.WriteString(a[last:i])
			b.WriteString(v)
			last = j
		}
	})
	b.WriteString(a[last:])
	return b.String()
}

// usesPlaceholder reports whether any argument has the placeholder {name}.
func (d *MDA) usesPlaceholder(name string) bool {
	used := false
	for _, a := range d.argv[1:] {
		scanPlaceholders(a, func(_, _ int, n string) { used = used || n == name })
	}
	return used
}

// checkValue validates a value before it goes into an argv element
// (doc/design.md §3.4, PHPMailer CVE-2016-10033): no control characters (a
// newline could start a new line in a generated file or header), no
// leading '-' (it would be read as an option, e.g. sendmail -X), and for
// {user} nothing that walks a path. Splitting is impossible anyway because
// there is no shell.
func checkValue(name, v string) error {
	if v == "" {
		return fmt.Errorf("empty {%s}", name)
	}
	if len(v) > mdaMaxValue {
		return fmt.Errorf("{%s} longer than %d bytes", name, mdaMaxValue)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("{%s} %q contains a control character", name, SafeValue(v, 100))
		}
	}
	if v[0] == '-' {
		return fmt.Errorf("{%s} %q starts with '-'", name, v)
	}
	if name == "user" && (strings.ContainsRune(v, '/') || v == "." || v == "..") {
		return fmt.Errorf("{user} %q is not a plain user name", v)
	}
	return nil
}

// args builds the argv for one recipient, or a reason why it must not run.
func (d *MDA) args(sender string, r Recipient) ([]string, error) {
	if sender == "" || sender == "<>" || checkValue("sender", sender) != nil {
		// The sender is informational (see nullSender): one that
		// cannot go into an argument (a leading '-', a control
		// character) is replaced rather than making the message
		// undeliverable to every MDA that takes {sender}.
		sender = nullSender
	}
	vals := map[string]string{"user": r.User, "address": r.Address, "domain": r.Domain, "sender": sender}
	// Validate only what the command line uses: a single-drop recipient
	// has no address, which is fine for "procmail -d {user}".
	for name, v := range vals {
		if !d.usesPlaceholder(name) {
			continue
		}
		if err := checkValue(name, v); err != nil {
			return nil, err
		}
	}
	argv := make([]string, len(d.argv))
	argv[0] = d.argv[0]
	for i, a := range d.argv[1:] {
		argv[i+1] = expand(a, vals)
	}
	return argv, nil
}

// Deliver runs the MDA once per recipient, in order. The copy on stdin is
// extra, a Received: field, Delivered-To: when the recipient has an
// address, and the message, with LF line endings.
//
// Results:
//   - exit 0 with all of stdin read (see unreadCopy) and, unless
//     AllowStderr, nothing on stderr: delivered.
//   - exit 0 with output on stderr: permanent (see AllowStderr).
//   - exit 0 without reading all of stdin: temporary (it may have
//     delivered half a message).
//   - an exit status in TempExitCodes (default 75, EX_TEMPFAIL), death by a
//     signal, the timeout, cancellation: temporary.
//   - a program that cannot be started (missing, not executable): a
//     configuration problem, temporary, so the mail stays on the server
//     until an admin fixes it instead of every message going to the
//     postmaster.
//   - any other exit status: permanent.
//   - a value that fails validation: permanent, and the MDA is not run.
//
// Failure reasons carry the first lines of stderr (see stderrHead). When
// the MDA has exited, whatever is left of its process group is killed, so
// no helper outlives the delivery.
func (d *MDA) Deliver(ctx context.Context, m *Message, sender string, rcpts []Recipient, extra []Field) []error {
	return d.DeliverReporting(ctx, m, sender, rcpts, extra, nil)
}

// DeliverReporting is Deliver, passing each run's result to report as soon
// as it is final (see ResultFunc).
func (d *MDA) DeliverReporting(ctx context.Context, m *Message, sender string, rcpts []Recipient, extra []Field, report ResultFunc) []error {
	res := newResults(len(rcpts), report)
	for i, r := range rcpts {
		if err := ctx.Err(); err != nil {
			res.set(i, &Error{Target: d.target, Reason: "delivery cancelled", Err: err})
			continue
		}
		argv, err := d.args(sender, r)
		if err != nil {
			err = fmt.Errorf("MDA argument rejected: %w", err)
			res.set(i, &Error{Target: d.target, Permanent: true, Reason: SafeValue(err.Error(), 200), Err: err})
			continue
		}
		fields := append([]Field(nil), extra...)
		if !m.Local {
			fields = append(fields, Received(m, d.opts.LocalHost, r.Address))
		}
		if r.Address != "" {
			fields = append(fields, Field{Name: "Delivered-To", Value: SafeValue(r.Address, 320)})
		}
		// Reported run by run.
		res.delivered(i, Receipt{Kind: "mda", Dest: argv[0]})
		res.set(i, d.run(ctx, argv, Open(m, fields, true), nil))
	}
	return res.done()
}

// run executes one MDA and classifies the outcome. stdout, when not nil,
// gets the program's standard output (RunFilter).
func (d *MDA) run(ctx context.Context, argv []string, msg io.Reader, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()

	// The program is checked when the rc file loads, but it may have been
	// missing then, or changed since: whoever can change it or a directory
	// on its way runs code as popfetch. Temporary: the message stays on
	// the server until the program is safe again.
	if err := trust.CheckPath(argv[0]); err != nil {
		return &Error{Target: d.target, Reason: SafeValue("MDA program refused: "+err.Error(), 300), Err: fmt.Errorf("MDA program refused: %w", err)}
	}

	// The whole copy is in a file before the MDA starts, and that file is
	// its stdin: an MDA outlives a popfetch killed with SIGKILL (it runs in
	// its own process group), and from a pipe it would then read EOF in the
	// middle of the message and deliver the truncated part. From a file it
	// reads the complete message whatever happens to popfetch.
	in, size, err := writeCopy(msg)
	if err != nil {
		return &Error{Target: d.target, Reason: "MDA input file: " + SafeValue(err.Error(), 150), Err: fmt.Errorf("MDA input file: %w", err)}
	}
	defer in.Close()

	stderr := &headBuffer{max: 4096}
	cmd := &exec.Cmd{
		Path:   argv[0],
		Args:   argv,
		Env:    d.opts.Env,
		Dir:    "/", // not popfetch's cwd, which may be anywhere (or gone)
		Stdin:  in,
		Stdout: stdout,
		Stderr: stderr,
		// A new process group, so the timeout kills the MDA's helpers too.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		// A grandchild that keeps stderr open must not hang the poll.
		WaitDelay: d.waitDelay,
	}
	if err := cmd.Start(); err != nil {
		return &Error{Target: d.target, Reason: SafeValue("MDA could not be started (check the mda setting): "+err.Error(), 200), Err: err}
	}
	pgid := cmd.Process.Pid
	stopKill := context.AfterFunc(ctx, func() { syscall.Kill(-pgid, syscall.SIGKILL) })

	// Kill what is left of the group while the exited MDA is still an
	// unreaped zombie: its pid, and so the group id, cannot be reused by
	// an unrelated process until Wait reaps it. Helpers it forked
	// (procmail forks) die here instead of outliving the delivery, and one
	// that held stderr open no longer costs the WaitDelay.
	if err := waitExited(pgid); err == nil {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	waitErr := cmd.Wait()
	killed := !stopKill() // the AfterFunc ran: timeout or cancellation
	unread := unreadCopy(in, size)

	said := stderrHead(stderr.Bytes())
	var ee *exec.ExitError
	switch {
	case stdout != nil && errors.Is(waitErr, exec.ErrWaitDelay):
		// A filter's output (RunFilter) still held open by a helper
		// that escaped the group kill: what was read by then may be a
		// truncated message, which must not replace the whole one.
		return &Error{Target: d.target, Reason: "MDA exit 0 but a process it started kept its output open"}
	case waitErr == nil || errors.Is(waitErr, exec.ErrWaitDelay):
		// Exit 0. ErrWaitDelay means a helper in another process group
		// still held stderr open; the MDA itself succeeded, so its status
		// decides, with what stderr we did capture.
	case errors.As(waitErr, &ee):
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			if killed {
				return d.killedError(ctx)
			}
			return &Error{Target: d.target, Reason: reasonLine(fmt.Sprintf("MDA killed by signal %d (%v)", int(st.Signal()), st.Signal()), said), Err: waitErr}
		}
		code := ee.ExitCode()
		if slices.Contains(d.opts.TempExitCodes, code) {
			return &Error{Target: d.target, Reason: reasonLine("MDA exit "+strconv.Itoa(code), said), Err: waitErr}
		}
		return &Error{Target: d.target, Permanent: true, Reason: reasonLine("MDA exit "+strconv.Itoa(code), said), Err: waitErr}
	default:
		return &Error{Target: d.target, Reason: reasonLine("MDA wait failed", SafeValue(waitErr.Error(), 200)), Err: waitErr}
	}
	if unread {
		// fetchmail and getmail treat this as an error too: a procmail that
		// exits 0 after reading half a message may have delivered half.
		return &Error{Target: d.target, Reason: "MDA exit 0 without reading all of the message"}
	}
	if stderr.n > 0 && !d.opts.AllowStderr {
		if said == "" {
			said = "(only white space)"
		}
		return &Error{Target: d.target, Permanent: true, Reason: "MDA exit 0 but wrote to stderr: " + said}
	}
	return nil
}

// writeCopy writes the whole of r into a new anonymous file (see
// newCopyFile), seals it where the system can, and returns it positioned at
// its start, with its size.
func writeCopy(r io.Reader) (*os.File, int64, error) {
	f, err := newCopyFile()
	if err != nil {
		return nil, 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		sealCopy(f)
		_, err = f.Seek(0, io.SeekStart)
	}
	if err == nil {
		err = markUnread(f)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// newUnlinkedTemp returns a 0600 temporary file that no longer has a
// name: only popfetch and the MDA it hands the descriptor to can reach it,
// and the kernel frees it when both are done, even if popfetch is killed.
func newUnlinkedTemp() (*os.File, error) {
	f, err := os.CreateTemp("", "popfetch-mda-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// unreadCopy reports whether an MDA that exited left its input (the copy
// file, size bytes) unread. The MDA shares the file's offset with us, so
// an offset at the end means it read everything with read(2); one part-way
// means it stopped reading (it may have delivered half). An offset still at
// 0 means either nothing read it or it used pread(2) or mmap(2), which
// leave the offset alone (dovecot-lda does): the access time tells them
// apart (see readAny).
func unreadCopy(f *os.File, size int64) bool {
	off, err := f.Seek(0, io.SeekCurrent)
	switch {
	case err != nil:
		return true
	case off >= size:
		return false
	case off > 0:
		return true
	}
	return !readAny(f)
}

// killedError describes an MDA we killed. The MDA's own status decides
// when it exited by itself before the kill landed.
func (d *MDA) killedError(ctx context.Context) error {
	cause := context.Cause(ctx)
	if errors.Is(cause, context.DeadlineExceeded) {
		return &Error{Target: d.target, Reason: "MDA killed after " + d.opts.Timeout.String(), Err: cause}
	}
	return &Error{Target: d.target, Reason: "MDA killed: delivery cancelled", Err: cause}
}

// reasonLine joins a status and an MDA's own words into one safe line.
func reasonLine(status, detail string) string {
	if detail == "" {
		return status
	}
	return status + ": " + detail
}

// What of an MDA's stderr goes into a failure reason: the first few
// non-empty lines, because the first is often only "procmail: error" and
// the cause is on the next one, but bounded, so the whole reason stays
// within what X-Popfetch-Reason keeps (300 bytes).
const (
	stderrHeadLines = 3
	stderrHeadBytes = 240
)

// stderrHead returns the first non-empty lines of an MDA's stderr, joined
// with " | ", for a header and a log: control characters, invalid UTF-8
// and other unprintable runes (ANSI escapes, bidi overrides) are escaped
// as \xNN or \uNNNN, and the result is at most stderrHeadBytes long, cut
// at a rune or escape boundary with "..." appended.
func stderrHead(b []byte) string {
	var out strings.Builder
	lines := 0
	for _, l := range bytes.Split(b, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		if lines == stderrHeadLines {
			break
		}
		if lines > 0 && !appendBounded(&out, " | ") {
			break
		}
		lines++
		if !appendEscaped(&out, l) {
			break
		}
	}
	return out.String()
}

// appendBounded appends s if it fits in stderrHeadBytes (keeping room for
// "..."); otherwise it appends "..." and reports false.
func appendBounded(out *strings.Builder, s string) bool {
	if out.Len()+len(s) > stderrHeadBytes-len("...") {
		out.WriteString("...")
		return false
	}
	out.WriteString(s)
	return true
}

// appendEscaped appends l rune by rune, escaped, until stderrHeadBytes.
func appendEscaped(out *strings.Builder, l []byte) bool {
	for len(l) > 0 {
		r, n := utf8.DecodeRune(l)
		var s string
		switch {
		case r == utf8.RuneError && n == 1:
			s = fmt.Sprintf("\\x%02x", l[0])
		case r == '\t':
			s = " "
		case r < 0x20 || r == 0x7f:
			s = fmt.Sprintf("\\x%02x", r)
		case r != ' ' && !unicode.IsPrint(r):
			s = fmt.Sprintf("\\u%04x", r)
		default:
			s = string(l[:n])
		}
		if !appendBounded(out, s) {
			return false
		}
		l = l[n:]
	}
	return true
}

// headBuffer keeps the first max bytes written and counts the rest, so a
// chatty MDA can neither block on a full pipe nor fill our memory.
type headBuffer struct {
	max int
	n   int64
	buf bytes.Buffer
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	if room := h.max - h.buf.Len(); room > 0 {
		h.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (h *headBuffer) Bytes() []byte { return h.buf.Bytes() }
