package fetch

import (
	"errors"
	"time"

	"github.com/popfetch/popfetch/fetch/oauth"
)

// PollSummary is a Result in a form that survives JSON (the control
// socket) and status output: the error is its text.
type PollSummary struct {
	Account    string        `json:"account"`
	Start      time.Time     `json:"start"`
	Elapsed    time.Duration `json:"elapsed"`
	Messages   int           `json:"messages"`
	New        int           `json:"new"`
	Delivered  int           `json:"delivered"`
	Deleted    int           `json:"deleted"`
	Skipped    int           `json:"skipped"`
	Failed     int           `json:"failed"`
	LoginDelay time.Duration `json:"login_delay,omitempty"`
	Err        string        `json:"err,omitempty"`
	// AuthFailed survives JSON where errors.Is(Err, ErrAuth) does not:
	// `popfetch now` maps it to the authentication exit status. It is
	// set for ErrLoginRefused too: the login failed either way.
	AuthFailed bool `json:"auth_failed,omitempty"`
	// LoginRequired: the account's OAuth2 grant is gone (revoked,
	// expired, never signed in); a human must run `popfetch login`.
	LoginRequired bool `json:"login_required,omitempty"`
	// Undeletable: delivered messages the server keeps refusing to
	// delete (Result.Undeletable).
	Undeletable int `json:"undeletable,omitempty"`
	// NotStarted: stopped before it connected (Result.NotStarted).
	NotStarted bool `json:"not_started,omitempty"`
	// Postmaster, Kept, GivenUp, Bytes and MailboxBytes are Result's.
	Postmaster   int   `json:"postmaster"`
	Kept         int   `json:"kept"`
	GivenUp      int   `json:"given_up"`
	Bytes        int64 `json:"bytes"`
	MailboxBytes int64 `json:"mailbox_bytes"`
}

// Summarize converts a Result for status and the control socket.
func Summarize(r Result) PollSummary {
	s := PollSummary{
		Account: r.Account, Start: r.Start, Elapsed: r.Elapsed,
		Messages: r.Messages, New: r.New, Delivered: r.Delivered, Deleted: r.Deleted,
		Skipped: r.Skipped, Failed: r.Failed, Undeletable: r.Undeletable, LoginDelay: r.LoginDelay,
		NotStarted: r.NotStarted,
		Postmaster: r.Postmaster, Kept: r.Kept, GivenUp: r.GivenUp, Bytes: r.Bytes, MailboxBytes: r.MailboxBytes,
	}
	if r.Err != nil {
		s.Err = r.Err.Error()
		s.AuthFailed = errors.Is(r.Err, ErrAuth) || errors.Is(r.Err, ErrLoginRefused)
		s.LoginRequired = errors.Is(r.Err, oauth.ErrLoginRequired)
	}
	return s
}
