package alert

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
)

// CommandTimeout bounds one run of an alert command; its process group
// is killed after it, and the notice is retried.
const CommandTimeout = time.Minute

// targetSender is the real Sender: a Maildir and an SMTP/LMTP server
// through package deliver (the same durable targets as mail, so an alert
// in a Maildir is fsynced like any copy), and the command.
type targetSender struct{ host string }

// NewSender returns the Sender that delivers to the real targets, with
// host in From and Message-ID. A notice gets no Received: field from
// popfetch: it was written here, not retrieved (deliver.Message.Local).
func NewSender(host string) Sender { return targetSender{host: host} }

func (s targetSender) Send(ctx context.Context, n Notice, a *rcfile.Alert, target string) error {
	switch target {
	case targetCommand:
		return runCommand(ctx, a.Command, JSON(n, s.host))
	case targetMaildir, targetSMTP:
	default:
		return fmt.Errorf("unknown alert target %q", target)
	}
	raw, err := Compose(n, s.host, a.To)
	if err != nil {
		return err
	}
	acct := n.Account
	if acct == "" {
		acct = "(daemon)"
	}
	m := &deliver.Message{Account: acct, Server: s.host, User: "popfetch-alert", UID: n.ID, Fetched: n.At, Raw: raw, Local: true}
	var t deliver.Target
	rc := deliver.Recipient{Address: a.To}
	if target == targetMaildir {
		md := deliver.NewMaildir(a.Maildir, deliver.MaildirOptions{LocalHost: s.host})
		defer md.Close()
		t = md
	} else if t, err = smtpTarget(a.SMTP, s.host); err != nil {
		return err
	}
	errs := t.Deliver(ctx, m, "", []deliver.Recipient{rc}, nil)
	if len(errs) > 0 && errs[0] != nil {
		return fmt.Errorf("alert %s to %s: %w", n.ID, target, errs[0])
	}
	return nil
}

func smtpTarget(s *rcfile.SMTP, host string) (deliver.Target, error) {
	o := deliver.SMTPOptions{Addr: s.Server, LMTP: s.LMTP, Helo: s.Helo, TLS: string(s.TLS), Sender: s.Sender, Timeout: s.Timeout, LocalHost: host}
	if s.CAFile != "" {
		pem, err := trust.ReadTrusted(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("alert smtp ca_file: %w", err)
		}
		o.RootCAs = x509.NewCertPool()
		if !o.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("alert smtp ca_file %s holds no PEM certificate", s.CAFile)
		}
	}
	return deliver.NewSMTP(o), nil
}

// runCommand runs argv without a shell, doc on its stdin. Exit 0 is
// success; anything else (or CommandTimeout) is a failure to retry,
// with the first line of its stderr.
func runCommand(ctx context.Context, argv []string, doc []byte) error {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(doc)
	// The MDA's minimal environment (deliver.MDAOptions.Env), not
	// popfetch's own: that may hold a password (password_env) or
	// variables such as LD_PRELOAD that change what the program does.
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for _, k := range []string{"HOME", "USER", "LOGNAME"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	// Only the start of stderr is kept (the error quotes its first
	// line); the rest is read and dropped, so that a chatty command
	// neither fills the daemon's memory nor dies of EPIPE.
	stderr := &headWriter{max: 4096}
	cmd.Stderr = stderr
	// Its own process group, killed whole: a helper's children must not
	// outlive the timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("alert command %s: no exit within %s", argv[0], CommandTimeout)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(stderr.buf.String()), "\n")
	if len(line) > 200 {
		line = line[:200]
	}
	if line != "" {
		return fmt.Errorf("alert command %s: %w: %q", argv[0], err, line)
	}
	return fmt.Errorf("alert command %s: %w", argv[0], err)
}

// headWriter keeps the first max bytes written to it.
type headWriter struct {
	buf bytes.Buffer
	max int
}

func (w *headWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
