package fetch

import (
	"context"
	"errors"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/ldapdir"
	"github.com/popfetch/popfetch/rcfile"
)

// RouteRules returns the routing rules a poll of multidrop account a
// routes with (newMultidrop builds them: users, aliases_file,
// system_users, envelope_ignore with the mailbox's own address), with
// snap's directory users and groups merged as a poll merges them (nil:
// none), for `popfetch check --route`. Nothing is delivered: the targets
// are built only to be dropped. ignored lists the directory entries the
// merge skipped.
func RouteRules(a *rcfile.Account, snap *ldapdir.Snapshot) (rules *deliver.Rules, ignored []string, err error) {
	if a.Multidrop == nil {
		return nil, nil, errors.New("not a multidrop account")
	}
	disp, err := newMultidrop(a, nil, nil, localHostOnce())
	if err != nil {
		return nil, nil, err
	}
	md := disp.(*multidrop)
	if snap != nil {
		ignored = md.useDirectory(snap)
	}
	return md.rules, ignored, nil
}

// CheckSMTP opens the SMTP or LMTP target s as a delivery would
// and says QUIT (deliver.SMTP.Check), for `popfetch check --connect`.
func CheckSMTP(ctx context.Context, s *rcfile.SMTP) error {
	t, err := newSMTPTarget(s, localHostOnce())
	if err != nil {
		return err
	}
	return t.(*deliver.SMTP).Check(ctx)
}
