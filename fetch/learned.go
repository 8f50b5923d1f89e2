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
