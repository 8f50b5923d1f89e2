package fetch

import (
	"context"
	"errors"
	"fmt"

	"github.com/popfetch/popfetch/deliver"
)

// maxReason bounds X-Popfetch-Reason, in bytes (cut at a rune boundary).
// The field is a pointer for whoever reads the postmaster's mailbox, not
// the record: the reasons deliver gives (an MDA's stderr, an SMTP reply, a
// filesystem error) fit within it, and a longer reason composed for a
// multidrop message (several users, unrouted addresses) is whole in that
// message's warning in the log. The unfolded field line stays far below
// RFC 5322 §2.1.1's limit of 998 characters for any reader or filter
// downstream.
const maxReason = 300

// toPostmaster is the postmaster fallback of single-drop and multidrop
// alike: it delivers the one postmaster copy of m through pm with the
// reason (cause's deliver.Error Reason, else its text), cut to maxReason,
// in X-Popfetch-Reason, and returns that reason. intend is as for
// deliverCopy (nil: no intent). No postmaster, or a failing one, returns
// an error: the message then stays on the server, it is never dropped.
func toPostmaster(ctx context.Context, pm deliver.Target, m *deliver.Message, sender string, cause error, intend func(path string) error) (string, error) {
	if pm == nil {
		return "", fmt.Errorf("%w (permanent; no postmaster configured, so the message stays on the server)", cause)
	}
	reason := deliver.SafeValue(reasonOf(cause), maxReason)
	extra := []deliver.Field{{Name: "X-Popfetch-Reason", Value: reason}}
	if err := deliverCopy(ctx, pm, m, sender, deliver.Recipient{User: "postmaster"}, extra, intend); err != nil {
		return "", fmt.Errorf("%v; postmaster delivery failed too: %w", cause, err)
	}
	return reason, nil
}

// reasonOf is the reason err gives for X-Popfetch-Reason.
func reasonOf(err error) string {
	var de *deliver.Error
	if errors.As(err, &de) && de.Reason != "" {
		return de.Reason
	}
	return err.Error()
}
