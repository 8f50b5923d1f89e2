package rcfile

import (
	"github.com/hashicorp/hcl/v2"
	"path/filepath"
	"strings"
	"time"
)

// Bounds of an alert block's after: below a minute every blip alerts;
// beyond 30 days nobody is told in time.
const (
	minAlertAfter = time.Minute
	maxAlertAfter = 30 * 24 * time.Hour
)

// DefaultAlertAfter is an alert block's default after for an account
// polled every interval: the longer of an hour and three polls, so that
// a blip (or one slow poll of a daily account) alerts nobody.
func DefaultAlertAfter(interval time.Duration) time.Duration {
	return max(time.Hour, 3*interval)
}

// alert builds an alert block. The block's targets are all optional and
// may be combined: a block with none only sets when trouble counts
// (alerts are then logged and listed by `popfetch status`).
func (p *parser) alert(h *alertHCL) *Alert {
	if h == nil {
		return nil
	}
	out := &Alert{Range: h.DefRange}
	if h.Maildir != nil {
		if strings.ContainsRune(*h.Maildir, '{') {
			p.errorf(h.MaildirRange, "Placeholder not allowed here",
				"The alert maildir is one fixed Maildir (such as the postmaster's); {user} and {domain} are not replaced here.")
		}
		out.Maildir, _ = p.path(*h.Maildir, h.MaildirRange)
	}
	if h.SMTP != nil {
		out.SMTP = p.smtp(h.SMTP)
	}
	if h.To != nil {
		out.To = *h.To
		if at := strings.LastIndexByte(out.To, '@'); at <= 0 || at == len(out.To)-1 || strings.ContainsAny(out.To, "\r\n\t\x00<>(),;:\" ") {
			p.errorf(h.ToRange, "Invalid to",
				`to is one bare address such as "postmaster@example.com", without a name, <> or spaces.`)
		}
	} else if h.SMTP != nil {
		p.errorf(h.SMTP.DefRange, "Missing to",
			`An alert block with an smtp block needs the recipient of the alerts: to = "postmaster@example.com".`)
	}
	if h.Command != nil {
		out.Command = *h.Command
		p.alertCommand(out.Command, h.CommandRange)
	}
	if h.After != nil {
		out.After = p.duration(h.After, h.AfterRange, "after", 0, minAlertAfter, maxAlertAfter)
	}
	if h.MailboxMessages != nil {
		out.MailboxMessages = *h.MailboxMessages
		if out.MailboxMessages < 0 {
			p.errorf(h.MailboxMessagesRange, "Invalid mailbox_messages",
				"mailbox_messages must be 0 (no threshold) or more, not %d.", out.MailboxMessages)
			out.MailboxMessages = 0
		}
	}
	if isSet(h.MailboxSizeRange) {
		out.MailboxSize = p.size(h.MailboxSize, h.MailboxSizeRange, "mailbox_size")
	}
	if out.Maildir == "" && out.SMTP == nil && out.Command == nil && h.Maildir == nil {
		p.warnf(h.DefRange, "Alert block without a target",
			`This alert block sends alerts nowhere: they are only logged and listed by "popfetch status". `+
				`Add maildir = "/var/mail/postmaster/Maildir", an smtp block with to = "...", or command = ["/usr/local/bin/notify"].`)
	}
	return out
}

// alertCommand checks an alert command's argv by the mda rules: an
// absolute program (no $PATH search: it may run as root), no NUL. It has
// no placeholders; the alert comes on stdin as JSON, never in argv, so
// no header value can reach a shell.
func (p *parser) alertCommand(argv []string, rng hcl.Range) {
	if len(argv) == 0 || argv[0] == "" {
		p.errorf(rng, "Invalid command",
			`command is a program and its arguments, e.g. ["/usr/local/bin/alert-ntfy", "popfetch"]; it reads one JSON document per alert on stdin.`)
		return
	}
	if !filepath.IsAbs(argv[0]) {
		p.errorf(rng, "Invalid command",
			"The program %q must be an absolute path such as \"/usr/local/bin/alert-ntfy\"; the alert command runs without a shell or $PATH search.", argv[0])
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			p.errorf(rng, "Invalid command", "Argument %d contains a NUL byte.", i)
		}
	}
}
