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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MDAOptions configures an MDA target. The zero value is usable.
type MDAOptions struct {
	// Timeout bounds one MDA run. On expiry the whole process group is
	// killed, because procmail and friends fork helpers that would
	// otherwise survive their parent. Default 5 minutes.
	Timeout time.Duration

	// AllowStderr makes output on stderr with exit status 0 count as
	// delivered. By default it is a temporary failure: an MDA that fails
	// but still exits 0 (a shell wrapper that loses the status, a
	// procmailrc with a broken recipe) must not make popfetch DELE the
	// message.
	AllowStderr bool

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

// Placeholders an MDA argument may contain. Each occurrence is replaced
// inside its own argv element, so a value becomes part of exactly one
// argument whatever it contains.
var mdaPlaceholders = map[string]bool{"user": true, "address": true, "domain": true, "sender": true}

// mdaMaxValue caps a substituted value; no real user, address or domain
// comes close, and an absurd one should not reach an argv.
const mdaMaxValue = 1024

// nullSender is what {sender} becomes for the null reverse path. Postfix's
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

// checkPlaceholders reports an unknown {name} in a.
func checkPlaceholders(a string) error {
	for {
		i := strings.IndexByte(a, '{')
		if i < 0 {
			return nil
		}
		a = a[i+1:]
		j := strings.IndexByte(a, '}')
		if j < 0 {
			return nil
		}
		name := a[:j]
		if isIdent(name) && !mdaPlaceholders[name] {
			return fmt.Errorf("mda: unknown placeholder {%s} (known: {user} {address} {domain} {sender})", name)
		}
	}
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
	var b strings.Builder
	for {
		i := strings.IndexByte(a, '{')
		if i < 0 {
			b.WriteString(a)
			return b.String()
		}
		j := strings.IndexByte(a[i:], '}')
		if j < 0 {
			b.WriteString(a)
			return b.String()
		}
		name := a[i+1 : i+j]
		if v, ok := vals[name]; ok && mdaPlaceholders[name] {
			b.WriteString(a[:i])
			b.WriteString(v)
		} else {
			b.WriteString(a[:i+j+1])
		}
		a = a[i+j+1:]
	}
}

// usesPlaceholder reports whether any argument mentions {name}.
func (d *MDA) usesPlaceholder(name string) bool {
	for _, a := range d.argv[1:] {
		if strings.Contains(a, "{"+name+"}") {
			return true
		}
	}
	return false
}

// checkValue validates a value before it goes into an argv element
// (RELIABILITY §3, PHPMailer CVE-2016-10033): no control characters (a
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
	if sender == "" || sender == "<>" {
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
// Results: exit 0 (and, unless AllowStderr, nothing on stderr, and all of
// stdin read) is delivered. Exit 75 (EX_TEMPFAIL), 73 (EX_CANTCREAT), 74
// (EX_IOERR), death by a signal, the
// timeout, cancellation, and a failure to start are temporary. A program
// that cannot be started (missing, not executable) is a configuration
// problem: temporary, so the mail stays on the server until an admin fixes
// it, instead of every message going to the postmaster. Any other exit
// status is permanent, with the first stderr line in the Reason. A value
// that fails validation is permanent and the MDA is not run.
func (d *MDA) Deliver(ctx context.Context, m *Message, sender string, rcpts []Recipient, extra []Field) []error {
	errs := make([]error, len(rcpts))
	for i, r := range rcpts {
		if err := ctx.Err(); err != nil {
			errs[i] = &Error{Target: d.target, Reason: "delivery cancelled", Err: err}
			continue
		}
		argv, err := d.args(sender, r)
		if err != nil {
			errs[i] = &Error{Target: d.target, Permanent: true, Reason: SafeValue("MDA argument rejected: "+err.Error(), 200), Err: err}
			continue
		}
		fields := append([]Field(nil), extra...)
		fields = append(fields, Received(m, d.opts.LocalHost, r.Address))
		if r.Address != "" {
			fields = append(fields, Field{Name: "Delivered-To", Value: SafeValue(r.Address, 320)})
		}
		errs[i] = d.run(ctx, argv, Open(m, fields, true))
	}
	return errs
}

// run executes one MDA and classifies the outcome.
func (d *MDA) run(ctx context.Context, argv []string, msg io.Reader) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()

	// We keep our own copy of the read end of the stdin pipe. Relying on
	// EPIPE misses an MDA that exits 0 without reading a message smaller
	// than the pipe buffer; instead, once the MDA is gone, we drain what it
	// left unread. Holding the read end also means the writer never sees
	// EPIPE: it can only block, and the drain unblocks it.
	pr, pw, err := os.Pipe()
	if err != nil {
		return &Error{Target: d.target, Reason: "MDA stdin pipe failed", Err: err}
	}
	defer pr.Close()

	stderr := &headBuffer{max: 4096}
	cmd := &exec.Cmd{
		Path:   argv[0],
		Args:   argv,
		Env:    d.opts.Env,
		Dir:    "/", // not popfetch's cwd, which may be anywhere (or gone)
		Stdin:  pr,
		Stderr: stderr,
		// A new process group, so the timeout kills the MDA's helpers too.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		// A grandchild that keeps stderr open must not hang the poll.
		WaitDelay: d.waitDelay,
	}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return &Error{Target: d.target, Reason: SafeValue("MDA could not be started (check the mda setting): "+err.Error(), 200), Err: err}
	}
	pgid := cmd.Process.Pid
	stopKill := context.AfterFunc(ctx, func() { syscall.Kill(-pgid, syscall.SIGKILL) })

	writeErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(pw, msg)
		pw.Close()
		writeErr <- err
	}()

	waitErr := cmd.Wait()
	killed := !stopKill() // the AfterFunc ran: timeout or cancellation
	// The MDA is gone; whatever is still in the pipe it never read.
	unread, _ := io.Copy(io.Discard, pr)
	werr := <-writeErr

	line := firstLine(stderr.Bytes())
	var ee *exec.ExitError
	switch {
	case waitErr == nil || errors.Is(waitErr, exec.ErrWaitDelay):
		// Exit 0. ErrWaitDelay means a helper still held stderr open; the
		// MDA itself succeeded, so its status decides, with what stderr
		// we did capture.
	case errors.As(waitErr, &ee):
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			if killed {
				return d.killedError(ctx)
			}
			return &Error{Target: d.target, Reason: reasonLine(fmt.Sprintf("MDA killed by signal %d (%v)", int(st.Signal()), st.Signal()), line), Err: waitErr}
		}
		code := ee.ExitCode()
		// sysexits.h: EX_TEMPFAIL (75) says "try again"; EX_CANTCREAT (73)
		// and EX_IOERR (74) are what procmail and maildrop return for an
		// unwritable or full mailbox, a local problem an admin fixes, so
		// the message waits on the server rather than going to the
		// postmaster.
		if code == 75 || code == 73 || code == 74 {
			return &Error{Target: d.target, Reason: reasonLine(fmt.Sprintf("MDA exit %d", code), line), Err: waitErr}
		}
		return &Error{Target: d.target, Permanent: true, Reason: reasonLine("MDA exit "+strconv.Itoa(code), line), Err: waitErr}
	default:
		return &Error{Target: d.target, Reason: reasonLine("MDA wait failed", waitErr.Error()), Err: waitErr}
	}
	if unread > 0 || werr != nil {
		// fetchmail and getmail treat this as an error too: a procmail that
		// exits 0 after reading half a message may have delivered half.
		return &Error{Target: d.target, Reason: "MDA exit 0 without reading all of the message", Err: werr}
	}
	if stderr.n > 0 && !d.opts.AllowStderr {
		return &Error{Target: d.target, Reason: reasonLine("MDA exit 0 with output on stderr", line)}
	}
	return nil
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

// firstLine returns the first non-empty stderr line, made safe for a header
// and a log: control characters replaced, at most 200 bytes, valid UTF-8.
func firstLine(b []byte) string {
	for _, l := range bytes.Split(b, []byte("\n")) {
		s := strings.TrimSpace(SafeValue(string(l), 200))
		if s != "" {
			return strings.ToValidUTF8(s, "?")
		}
	}
	return ""
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
