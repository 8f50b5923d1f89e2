package alert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/popfetch/popfetch/internal/logsafe"
)

// what says in words what a condition means and what to do about it.
var what = map[Condition]struct{ title, todo string }{
	AuthHold: {"authentication hold",
		"The server rejected the account's credentials. popfetch does not try again on its own, so that the provider does not lock the account. " +
			"Fix the password (or its password_file, password_env or password_command) in the rc file, then reload (systemctl reload popfetch, or kill -HUP) " +
			"or run `popfetch now ACCOUNT`. Mail waits on the server meanwhile."},
	Failing: {"polls failing",
		"Every poll of this account failed for longer than the alert block's `after`. Check the error below: the server's name and port, the network, TLS certificates. " +
			"Mail waits on the server; popfetch keeps retrying with backoff."},
	DeliveryFailing: {"delivery failing",
		"A delivery target refused messages temporarily for longer than `after` (a full disk, an LMTP or SMTP server down, an MDA exiting 75). " +
			"The messages stay on the POP3 server and are retried every poll; fix the target before the server's quota fills up."},
	DeleRefused: {"server refuses to delete",
		"The server kept refusing DELE for messages popfetch delivered. They are safe in their targets but stay on the server, which fills up. " +
			"Check the mailbox on the server (permissions, a read-only or locked mailbox)."},
	ReloadRejected: {"rc file rejected",
		"The rc file was changed (or SIGHUP sent) and the new file has errors; popfetch goes on with the configuration it had. " +
			"Run `popfetch check` to see every problem, fix the file, and reload."},
	OAuth2Refresh: {"OAuth2 token refresh failed",
		"popfetch could not get an OAuth2 access token. If the error says sign-in is required, run `popfetch login ACCOUNT`; " +
			"otherwise the identity provider could not be reached and popfetch retries."},
	OAuth2Expiring: {"OAuth2 refresh token expiring",
		"The identity provider said when this account's refresh token stops working, and that time is near. After it popfetch cannot get an access token " +
			"and the account stops until someone signs in again. Run `popfetch login ACCOUNT` (as the user popfetch runs as) before then; a new sign-in starts a new token. " +
			"Google limits the refresh tokens of an app in testing mode to 7 days: publishing the app lifts that."},
	NoSuccess: {"no successful poll",
		"No poll of this account succeeded for longer than `after`, and none failed either: the account is not being polled. " +
			"Check `popfetch status` (a LOGIN-DELAY, a stuck session) and the log."},
	MailboxFull: {"mailbox on the server growing",
		"This account keeps its mail on the server (keep = true), and the mailbox there passed the alert block's mailbox_messages or mailbox_size. " +
			"The provider's quota may soon refuse new mail: set delete_after, or clean up the mailbox."},
}

// Title is the condition in words, as in the alert's subject.
func Title(c Condition) string {
	if w, ok := what[c]; ok {
		return w.title
	}
	return string(c)
}

// Subject is the Subject of n's message: the account and the condition.
func Subject(n Notice) string {
	who := "popfetch"
	if n.Account != "" {
		who = "account " + n.Account
	}
	if n.Event == Cleared {
		return fmt.Sprintf("[popfetch] RESOLVED: %s: %s", who, Title(n.Condition))
	}
	return fmt.Sprintf("[popfetch] ALERT: %s: %s", who, Title(n.Condition))
}

// Body is the text of n's message.
func Body(n Notice, host string) string {
	var b strings.Builder
	who := "popfetch"
	if n.Account != "" {
		who = fmt.Sprintf("Account %q", n.Account)
	}
	if n.Event == Cleared {
		fmt.Fprintf(&b, "RESOLVED: %s: %s.\n\n", who, Title(n.Condition))
		b.WriteString(wrap(fmt.Sprintf("The condition began at %s and ended at %s (%s): %s.",
			n.Since.UTC().Format(time.RFC3339), n.At.UTC().Format(time.RFC3339), n.At.Sub(n.Since).Round(time.Second), logsafe.Escape(n.Detail, 0)), 72))
		b.WriteString("Nothing more to do.\n")
	} else {
		fmt.Fprintf(&b, "ALERT: %s: %s, since %s.\n\n", who, Title(n.Condition), n.Since.UTC().Format(time.RFC3339))
		if n.Detail != "" {
			b.WriteString("What happened:\n")
			// The detail quotes servers and files: a mail reader in a
			// terminal must not interpret any of it, and an 8bit part
			// holds no NUL or bare CR.
			for _, l := range strings.Split(n.Detail, "\n") {
				b.WriteString(indent(wrap(logsafe.Escape(l, 0), 70), "  "))
			}
			b.WriteString("\n")
		}
		b.WriteString("What to do:\n")
		b.WriteString(wrap(what[n.Condition].todo, 72))
		b.WriteString("\n" + wrap("You get one more message when this condition ends. `popfetch status` lists the alerts active now.", 72))
	}
	fmt.Fprintf(&b, "\n-- \npopfetch on %s\ncondition %s, notice %s\n", host, n.Condition, n.ID)
	return b.String()
}

// indent puts prefix in front of every line of s.
func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(prefix + l)
		}
	}
	return b.String()
}

// wrap breaks s into lines of at most width characters, at spaces.
func wrap(s string, width int) string {
	var b strings.Builder
	line := 0
	for _, w := range strings.Fields(s) {
		if line > 0 && line+1+len(w) > width {
			b.WriteString("\n")
			line = 0
		}
		if line > 0 {
			b.WriteString(" ")
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteString("\n")
	return b.String()
}

// Compose builds n as an RFC 5322 message with CRLF line ends, from
// popfetch@host to to ("" = postmaster@host).
func Compose(n Notice, host, to string) ([]byte, error) {
	var h mail.Header
	h.SetDate(n.At)
	h.SetAddressList("From", []*mail.Address{{Name: "popfetch", Address: "popfetch@" + host}})
	if to == "" {
		to = "postmaster@" + host
	}
	h.SetAddressList("To", []*mail.Address{{Address: to}})
	h.SetSubject(Subject(n))
	h.SetMessageID(n.ID + "@" + host)
	// RFC 3834: machine-made; autoresponders must not answer it.
	h.Set("Auto-Submitted", "auto-generated")
	h.Set("X-Popfetch-Alert", string(n.Event)+"; condition="+string(n.Condition))
	h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	body := Body(n, host)
	// Readable as it is (8bit, RFC 6152) unless a line is too long for
	// RFC 5322's 998: a word longer than that (a path) goes
	// quoted-printable.
	cte := "8bit"
	for _, l := range strings.Split(body, "\n") {
		if len(l) > 900 {
			cte = "quoted-printable"
		}
	}
	h.Set("Content-Transfer-Encoding", cte)
	var buf bytes.Buffer
	w, err := mail.CreateSingleInlineWriter(&buf, h)
	if err != nil {
		return nil, fmt.Errorf("alert %s: %w", n.ID, err)
	}
	if _, err := w.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n"))); err != nil {
		return nil, fmt.Errorf("alert %s: %w", n.ID, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("alert %s: %w", n.ID, err)
	}
	return buf.Bytes(), nil
}

// Document is the JSON an alert command reads on its stdin, one per run.
type Document struct {
	Event     Event     `json:"event"` // "raised" or "cleared"
	Account   string    `json:"account,omitempty"`
	Condition Condition `json:"condition"`
	Title     string    `json:"title"`
	Subject   string    `json:"subject"`
	Since     time.Time `json:"since"`
	At        time.Time `json:"at"`
	Detail    string    `json:"detail,omitempty"`
	Host      string    `json:"host"`
	ID        string    `json:"id"`
}

// JSON is n as the Document an alert command reads.
func JSON(n Notice, host string) []byte {
	b, _ := json.Marshal(Document{Event: n.Event, Account: n.Account, Condition: n.Condition, Title: Title(n.Condition), Subject: Subject(n),
		Since: n.Since.UTC(), At: n.At.UTC(), Detail: n.Detail, Host: host, ID: n.ID})
	return append(b, '\n')
}
