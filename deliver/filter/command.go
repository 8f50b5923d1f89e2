package filter

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/d--j/go-milter/milterutil"
	"golang.org/x/text/transform"

	"github.com/popfetch/popfetch/deliver"
)

// CommandOptions configures a command filter. The zero value is usable.
type CommandOptions struct {
	// Timeout bounds one run; on expiry the program's process group is
	// killed. Default 2 minutes.
	Timeout time.Duration
	// TempExitCodes mean "not now" (TempFail); nil means [75]
	// (EX_TEMPFAIL), as for the MDA.
	TempExitCodes []int
	// RejectExitCodes: nil means every other non-zero exit status
	// rejects (the MDA's rule: permanent); otherwise only these reject
	// and any other non-zero status counts as TempFail (a crashing
	// script must not reject mail).
	RejectExitCodes []int
	// AllowStderr: output on stderr with exit 0 is fine. By default it
	// rejects, as for the MDA.
	AllowStderr bool
	// MaxOutput bounds the message the program writes on stdout; more is
	// an error (the filter is unavailable). Default twice the input plus
	// 1 MiB.
	MaxOutput int64
	// Env is the program's environment; nil means the MDA's minimal one.
	Env []string
}

// Command is a filter program (spamc, rspamc, a script): the message on
// stdin, the message with the filter's changes on stdout (nothing on
// stdout: unchanged), the verdict in its exit status: 0 accept,
// TempExitCodes tempfail, the others reject. It runs under the MDA's
// rules (deliver.MDA.RunFilter): no shell, an absolute program path,
// {sender} as the only placeholder, its own process group killed on
// timeout. Nothing of the message but the checked sender reaches its
// arguments.
type Command struct {
	name string
	mda  *deliver.MDA
	opts CommandOptions
}

// NewCommand checks argv (as deliver.NewMDA does, and that only {sender}
// is used: a filter runs once per message, not per recipient).
func NewCommand(name string, argv []string, opts CommandOptions) (*Command, error) {
	for _, a := range argv {
		for _, ph := range deliver.MDAPlaceholders(a) {
			if ph.Text != "{sender}" {
				return nil, fmt.Errorf("filter %s: placeholder %s: a filter command may only use {sender}", name, ph.Text)
			}
		}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.TempExitCodes == nil {
		opts.TempExitCodes = []int{75}
	}
	mda, err := deliver.NewMDA(argv, deliver.MDAOptions{Timeout: opts.Timeout, TempExitCodes: opts.TempExitCodes,
		AllowStderr: opts.AllowStderr, Env: opts.Env})
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", name, err)
	}
	return &Command{name: name, mda: mda, opts: opts}, nil
}

// Name returns the filter's name.
func (c *Command) Name() string { return c.name }

// Check runs the program on m. A run that could not give a verdict (not
// started, killed by the timeout or a signal, input not read, output too
// large or not a message) is an error: the filter is unavailable.
func (c *Command) Check(ctx context.Context, env *Envelope, m *deliver.Message) (Verdict, error) {
	v := Verdict{Filter: c.name}
	limit := c.opts.MaxOutput
	if limit <= 0 {
		limit = 2*m.Size() + 1<<20
	}
	out := deliver.NewSpool(env.SpoolDir, 0)
	// LF line ends for the program (the Unix convention, as for the
	// MDA), CRLF again in the spool (a deliver.Message's convention).
	cw := &cappedWriter{max: limit}
	cw.w = transform.NewWriter(out, &milterutil.CrLfCanonicalizationTransformer{})
	err := c.mda.RunFilter(ctx, env.Sender, deliver.Open(m, nil, true), cw)
	if ferr := cw.w.(*transform.Writer).Close(); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		out.Close()
		return c.classify(err)
	}
	if cw.err != nil {
		out.Close()
		return v, fmt.Errorf("filter %s: keeping its output: %w", c.name, cw.err)
	}
	if cw.over {
		out.Close()
		return v, fmt.Errorf("filter %s: output over %d bytes", c.name, limit)
	}
	if err := out.Flush(); err != nil {
		out.Close()
		return v, fmt.Errorf("filter %s: keeping its output: %w", c.name, err)
	}
	if out.Len() == 0 {
		out.Close()
		return v, nil // exit 0, nothing on stdout: unchanged
	}
	if err := sameMessage(m, out); err != nil {
		out.Close()
		return v, fmt.Errorf("filter %s: its output is not a message (%w)", c.name, err)
	}
	v.Message = out
	return v, nil
}

// sameMessage checks that out, a program's output after exit 0, is the
// message in as the program changed it, not a report about it: a scanner
// writing "stdin: OK" (clamdscan) or JSON (rspamc --json) exits 0 too,
// and its output taken for the message would be delivered instead of
// it. out must have header fields, a From field when in has one (RFC
// 5322 §3.6 requires it, and filters keep it), and more than its header
// when in has a body.
func sameMessage(in *deliver.Message, out *deliver.Spool) error {
	oh := out.Head()
	ofs, oend := splitHeader(oh)
	if len(ofs) == 0 {
		return errors.New("no header field")
	}
	ifs, iend := splitHeader(in.Head())
	if hasField(ifs, "From") && !hasField(ofs, "From") {
		return errors.New("no From field")
	}
	inBody := in.Size() > int64(iend)+2
	if inBody && int64(oend) >= out.Len() {
		return errors.New("the header only")
	}
	return nil
}

func hasField(fs []rawField, name string) bool {
	for _, f := range fs {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// classify maps a failed run to a verdict or an error.
func (c *Command) classify(err error) (Verdict, error) {
	v := Verdict{Filter: c.name}
	var de *deliver.Error
	reason := err.Error()
	if errors.As(err, &de) {
		reason = strings.Replace(de.Reason, "MDA ", "", 1)
	}
	v.Reply = deliver.SafeValue(reason, 300)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		code := ee.ExitCode()
		switch {
		case slices.Contains(c.opts.TempExitCodes, code):
			v.Action = TempFail
		case c.opts.RejectExitCodes == nil || slices.Contains(c.opts.RejectExitCodes, code):
			v.Action = Reject
		default:
			v.Action = TempFail
		}
		return v, nil
	}
	if deliver.IsPermanent(err) {
		// Exit 0 with stderr output, or a sender unfit for an argument.
		v.Action = Reject
		return v, nil
	}
	return v, fmt.Errorf("filter %s: %s", c.name, v.Reply)
}

// cappedWriter passes on up to max bytes and swallows the rest, and
// everything after a write error (so the program never blocks on a full
// pipe), noting what happened.
type cappedWriter struct {
	w    interface{ Write([]byte) (int, error) }
	max  int64
	n    int64
	over bool
	err  error
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	if c.over || c.err != nil || c.n+int64(len(p)) > c.max {
		c.over = c.over || c.err == nil
		return len(p), nil
	}
	c.n += int64(len(p))
	if _, err := c.w.Write(p); err != nil {
		c.err = err
	}
	return len(p), nil
}
