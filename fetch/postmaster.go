package fetch

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// maxUnrouted bounds X-Popfetch-Unrouted, in bytes: whole addresses only,
// and "(N more)", an RFC 5322 comment that address parsers skip, when the
// rest does not fit. With the field name the line stays below RFC 5322
// §2.1.1's 998 characters.
const maxUnrouted = 900

// toPostmaster is the postmaster fallback of single-drop and multidrop
// alike: it delivers the one postmaster copy of m through pm with the
// reason (cause's deliver.Error Reason, else its text), cut to maxReason,
// in X-Popfetch-Reason, and returns that reason and the copy's receipt. intend is as for
// deliverCopy (nil: no intent). unrouted are the addresses that reached
// nobody (unknown users, and the users whose delivery failed
// permanently), listed in X-Popfetch-Unrouted when there are any, so that
// whoever works through the postmaster's mailbox (popfetch postmaster)
// need not parse the reason. No postmaster, or a failing one, returns an
// error: the message then stays on the server, it is never dropped.
func toPostmaster(ctx context.Context, pm deliver.Target, m *deliver.Message, sender string, cause error, unrouted []string, intend func(path string) error) (string, deliver.Receipt, error) {
	if pm == nil {
		return "", deliver.Receipt{}, fmt.Errorf("%w (permanent; no postmaster configured, so the message stays on the server)", cause)
	}
	reason := deliver.SafeValue(reasonOf(cause), maxReason)
	extra := []deliver.Field{{Name: "X-Popfetch-Reason", Value: reason}}
	if v := unroutedValue(unrouted); v != "" {
		extra = append(extra, deliver.Field{Name: "X-Popfetch-Unrouted", Value: v})
	}
	rc, err := deliverCopy(ctx, pm, m, sender, deliver.Recipient{User: "postmaster"}, extra, intend)
	if err != nil {
		return "", deliver.Receipt{}, fmt.Errorf("%v; postmaster delivery failed too: %w", cause, err)
	}
	return reason, rc, nil
}

// reasonOf is the reason err gives for X-Popfetch-Reason.
func reasonOf(err error) string {
	var de *deliver.Error
	if errors.As(err, &de) && de.Reason != "" {
		return de.Reason
	}
	return err.Error()
}

// unroutedValue is the X-Popfetch-Unrouted value for addrs: each address
// made safe (deliver.SafeValue), duplicates (ignoring case) and empty ones
// dropped, joined by ", ", and cut to maxUnrouted bytes after a whole
// address, with "(N more)" for the rest.
func unroutedValue(addrs []string) string {
	var b strings.Builder
	seen := map[string]bool{}
	var list []string
	for _, a := range addrs {
		a = strings.TrimSpace(deliver.SafeValue(a, 320))
		if k := strings.ToLower(a); a != "" && !seen[k] {
			seen[k] = true
			list = append(list, a)
		}
	}
	for i, a := range list {
		more := ""
		if rest := len(list) - i - 1; rest > 0 {
			more = fmt.Sprintf(" (%d more)", rest)
		}
		sep := ""
		if i > 0 {
			sep = ", "
		}
		if b.Len()+len(sep)+len(a)+len(more) > maxUnrouted {
			if i == 0 {
				// Not even one fits (it cannot: 320 < maxUnrouted); say
				// how many rather than cut an address.
				return fmt.Sprintf("(%d addresses)", len(list))
			}
			fmt.Fprintf(&b, " (%d more)", len(list)-i)
			break
		}
		b.WriteString(sep + a)
	}
	return b.String()
}
