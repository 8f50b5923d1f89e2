package fetch

import (
	"fmt"
	"path/filepath"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/learned"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/uidl"
)

// LearnedPath is the learned-routes file of multidrop account a:
// STATE_DIR/learned/MAILBOX.routes, MAILBOX being a.Mailbox() escaped as
// the UID journal's name is (uidl.FileName). The routes belong to the
// mailbox, like its journal: they describe the addresses that reach it,
// so renaming the account or moving it from port 110 to 995 keeps them
// (doc/design.md §4.6). popfetch reroute writes it, each poll and popfetch
// check read it.
func LearnedPath(a *rcfile.Account) string {
	return filepath.Join(a.StateDir, "learned", uidl.FileName(a.Mailbox(), ".routes"))
}

// loadLearned reads a's learned routes and gives them to dir; call it
// after every user is in dir (see deliver.Directory.SetLearned). Like the
// aliases file it is read at each poll, through internal/trust. A file
// that cannot be read, is refused or does not parse fails the poll: the
// mail waits on the server for the file to be fixed instead of going to
// the postmaster as unknown (the error names the file and line).
func loadLearned(a *rcfile.Account, dir *deliver.Directory) error {
	routes, err := learned.Read(LearnedPath(a))
	if err != nil {
		return fmt.Errorf("learned routes: %w", err)
	}
	dir.SetLearned(learned.Maps(routes))
	return nil
}

// RoutesToday returns what an address routes to by multidrop account a's
// configuration as it is, learned routes left out: the users a message
// addressed (To) to it alone would be delivered to, nil if none (an
// unknown address, or one outside local_domains). popfetch reroute
// --learn uses it to learn only addresses that reach nobody: a learned
// route comes before the aliases file and system users, so one for an
// address that routes would take its mail from the users it reaches. An
// LDAP directory is not consulted (it is loaded by a poll).
func RoutesToday(a *rcfile.Account) (func(addr string) []string, error) {
	if a.Multidrop == nil {
		return nil, fmt.Errorf("account %s is not a multidrop account", a.Name)
	}
	r, _, err := RouteRules(a, nil)
	if err != nil {
		return nil, fmt.Errorf("account %s: %w", a.Name, err)
	}
	r.Directory.SetLearned(nil, nil)
	rules := *r
	rules.EnvelopeHeader, rules.EnvelopeIgnore, rules.QVirtual = "", nil, ""
	rules.FallbackHeaders = []string{"To"}
	return func(addr string) []string {
		var users []string
		for _, rc := range deliver.RouteHeader([]byte("To: <"+addr+">\r\n\r\n"), &rules).Rcpts {
			users = append(users, rc.User)
		}
		return users
	}, nil
}
