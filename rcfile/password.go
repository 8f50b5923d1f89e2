package rcfile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/popfetch/popfetch/internal/trust"
	"github.com/zclconf/go-cty/cty"
)

// CommandTimeout bounds password_command: a password manager waiting for a
// PIN that never comes must not stall the daemon.
const CommandTimeout = 30 * time.Second

// maxSecretRead bounds what is read from a password file or command.
const maxSecretRead = 4096

// Resolve returns the password from its source: the inline value; the
// first line of password_file (which must not be readable by group or
// others: ErrInsecureFile, and must pass trust.CheckTrusted: trust.ErrUntrustedFile); the environment variable (unset or empty is an
// error); or the first line of password_command's stdout. The command runs
// without a shell, argv[0] absolute or looked up in $PATH (and checked
// with trust.CheckPath where it is found), with stdin empty, a CommandTimeout
// limit and the first line of its stderr quoted in the error (see
// stderrHint).
//
// A line ends at LF only. The result must not contain CR, LF or NUL and
// must not be empty: a CR (say from a CRLF file) is an error, not
// silently stripped, because it would otherwise end up in PASS. Errors
// never contain the secret; callers must not log the result either.
func (p Password) Resolve(ctx context.Context) (string, error) {
	var s string
	var err error
	switch {
	case p.Command != nil:
		s, err = runSecretCommand(ctx, p.Command, "password_command", maxSecretRead)
	case p.File != "":
		s, err = readSecretFile(p.File, "password_file")
	case p.Env != "":
		v, ok := os.LookupEnv(p.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("password_env: environment variable %s is unset or empty", p.Env)
		}
		s = v
	case p.Inline != "":
		s = p.Inline
	default:
		return "", errors.New("no password source configured")
	}
	if err != nil {
		return "", err
	}
	if err := checkSecret(s, p.kind()); err != nil {
		return "", err
	}
	return s, nil
}

func (p Password) kind() string {
	switch {
	case p.Command != nil:
		return "password_command"
	case p.File != "":
		return "password_file " + p.File
	case p.Env != "":
		return "password_env " + p.Env
	}
	return "password"
}

func checkSecret(s, from string) error {
	if s == "" {
		return fmt.Errorf("%s: the password is empty", from)
	}
	if i := strings.IndexAny(s, "\r\n\x00"); i >= 0 {
		hint := ""
		if s[i] == '\r' {
			hint = " (a CRLF line ending?)"
		}
		return fmt.Errorf("%s: the password contains a %s character%s, which cannot be sent in PASS", from, ctlName(s[i]), hint)
	}
	if len(s) > maxPassword {
		return fmt.Errorf("%s: the password is %d bytes long; at most %d are allowed", from, len(s), maxPassword)
	}
	return nil
}

// readSecretFile reads the first line of a secret file set by attribute
// attr (password_file, client_secret_file).
func readSecretFile(path, attr string) (string, error) {
	f, err := trust.OpenNonBlock(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", attr, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %w", attr, err)
	}
	if fi.Mode().Perm()&0o044 != 0 {
		return "", fmt.Errorf("%s %s has mode %04o: %w (hint: chmod 600 %s)", attr, path, fi.Mode().Perm(), ErrInsecureFile, path)
	}
	if err := trust.CheckInfo(path, fi); err != nil {
		return "", fmt.Errorf("%s: %w", attr, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretRead))
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", attr, path, err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(line), nil
}

// runSecretCommand runs a command set by attribute attr
// (password_command, oauth2_token_command) and returns the first line of
// its stdout, of which it reads at most max bytes. A first line that does
// not end within them is an error: its beginning is not the secret.
func runSecretCommand(ctx context.Context, argv []string, attr string, max int) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", errors.New(attr + " is empty")
	}
	if strings.Contains(argv[0], "/") && !filepath.IsAbs(argv[0]) {
		// Parse rejects this too; a hand-built Password must not run
		// something relative to whatever the working directory is.
		return "", fmt.Errorf("%s %s: must be an absolute path or a bare name", attr, argv[0])
	}
	// Checked at load too, but the program may have been missing then or
	// changed since; a bare name is checked where $PATH finds it now, and
	// that file is the one run.
	prog := argv[0]
	if !filepath.IsAbs(prog) {
		p, err := exec.LookPath(prog)
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", attr, argv[0], err)
		}
		prog = p
	}
	if err := trust.CheckPath(prog); err != nil {
		return "", fmt.Errorf("%s: %w", attr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, argv[1:]...)
	cmd.Args[0] = argv[0]
	var stdout, stderr capWriter
	stdout.max, stderr.max = max, 1024
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A grandchild that keeps the pipes open must not hold Run forever
	// once the command itself has exited or been killed.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s", CommandTimeout)
		}
		msg := fmt.Sprintf("%s %s: %v", attr, argv[0], err)
		if e := stderrHint(stderr.buf.Bytes(), stdout.buf.Bytes()); e != "" {
			msg += fmt.Sprintf(" (stderr: %q)", e)
		}
		return "", errors.New(msg)
	}
	line, _, found := bytes.Cut(stdout.buf.Bytes(), []byte("\n"))
	if !found && stdout.over {
		return "", fmt.Errorf("%s %s: the first line of its output is longer than %d bytes", attr, argv[0], max)
	}
	return string(line), nil
}

// maxStderrHint bounds the stderr quoted in a password_command error.
const maxStderrHint = 80

// stderrHint is what a failed password_command's error quotes of its
// stderr: the first non-blank line, at most maxStderrHint bytes, and
// nothing at all if the command wrote anything to stdout, which is
// where the secret goes (a helper that fails after printing it may
// repeat it on stderr). Only the first line: a helper that prints the
// secret on stderr usually does so after its message.
func stderrHint(stderr, stdout []byte) string {
	if len(bytes.TrimSpace(stdout)) > 0 {
		return ""
	}
	var line []byte
	for l := range bytes.SplitSeq(stderr, []byte("\n")) {
		if l = bytes.TrimSpace(l); len(l) > 0 {
			line = l
			break
		}
	}
	if len(line) > maxStderrHint {
		line = line[:maxStderrHint]
		for len(line) > 0 && !utf8.Valid(line) {
			line = line[:len(line)-1] // not in the middle of a character
		}
		return string(line) + "..."
	}
	return string(line)
}

// capWriter keeps the first max bytes and discards the rest while still
// reporting success, so a chatty command does not die of EPIPE.
type capWriter struct {
	buf  bytes.Buffer
	max  int
	over bool // more than max bytes were written
}

func (w *capWriter) Write(p []byte) (int, error) {
	room := w.max - w.buf.Len()
	if room > 0 {
		w.buf.Write(p[:min(room, len(p))])
	}
	if len(p) > max(room, 0) {
		w.over = true
	}
	return len(p), nil
}

// String describes the source with the secret masked, in the form Format
// prints; it is safe to log.
func (p Password) String() string {
	k, v := p.setting()
	if k == "" {
		return "no password"
	}
	return k + " = " + hclValue(v)
}

// setting is the attribute that describes the source, with an inline
// secret replaced by ********; k is "" if there is no source.
func (p Password) setting() (k string, v cty.Value) {
	switch {
	case p.Command != nil:
		return "password_command", stringList(p.Command)
	case p.File != "":
		return "password_file", cty.StringVal(p.File)
	case p.Env != "":
		return "password_env", cty.StringVal(p.Env)
	case p.Inline != "":
		return "password", cty.StringVal("********")
	}
	return "", cty.NilVal
}

// GoString keeps %#v from printing the inline secret.
func (p Password) GoString() string { return "rcfile.Password{" + p.String() + "}" }

// LogValue keeps slog from printing the inline secret.
func (p Password) LogValue() slog.Value { return slog.StringValue(p.String()) }

// MarshalJSON keeps encoding/json from printing the inline secret, as
// slog's JSON handler does with a struct that holds a Password (an
// Account, an LDAP): LogValue covers only a Password logged by itself.
func (p Password) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }
