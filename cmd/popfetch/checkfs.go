package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/rules"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/uidl"
)

// finding is one problem `popfetch check` found with what an account
// delivers to or keeps, without side effects (nothing is created or
// written). An error will make polls fail; a warning may be fine.
type finding struct {
	account string
	at      hcl.Range // the attribute, or zero
	warning bool
	text    string
}

func (f finding) String() string {
	sev := "error"
	if f.warning {
		sev = "warning"
	}
	pos := ""
	if f.at.Filename != "" {
		pos = fmt.Sprintf("%s:%d:%d: ", f.at.Filename, f.at.Start.Line, f.at.Start.Column)
	}
	return fmt.Sprintf("%s: %s%s: %s", printable(f.account, 60), pos, sev, printable(f.text, 500))
}

// checkFiles looks at what each account's polls will need on this host:
// its Maildirs and MDA programs (deliver.CheckMaildir, deliver.CheckMDA,
// the rules delivery applies), its state directory and journal
// (uidl.Check), its aliases_file (must exist) and password_files (must
// be readable; the rc file's Load already refused ones that are too open
// or changeable by others, and warned about a missing password_file). access is access(2) for the user popfetch
// runs as; nil = the real one.
func checkFiles(accts []*rcfile.Account, access deliver.Access) []finding {
	if access == nil {
		access = trust.EffectiveAccess
	}
	var out []finding
	for _, a := range accts {
		add := func(at hcl.Range, warning bool, format string, args ...any) {
			out = append(out, finding{account: a.Name, at: at, warning: warning, text: fmt.Sprintf(format, args...)})
		}
		dests := []struct {
			what string
			d    *rcfile.Destination
		}{{"deliver", &a.Deliver}, {"postmaster", a.Postmaster}}
		if a.Multidrop != nil {
			for _, u := range a.Multidrop.Users {
				dests = append(dests, struct {
					what string
					d    *rcfile.Destination
				}{"user " + u.Name, u.Deliver})
			}
		}
		// The filing rules' targets: a deliver action's destination, and
		// a folder action's folder of the Maildir it files in.
		ruleDests := func(rs []rcfile.Rule, whose string, d *rcfile.Destination, folderOnly bool) {
			for _, r := range rs {
				what := whose + "rule " + r.Spec.Name
				switch r.Spec.Action.Kind {
				case rules.Deliver:
					if folderOnly {
						continue
					}
					dests = append(dests, struct {
						what string
						d    *rcfile.Destination
					}{what, r.Deliver})
				case rules.Folder:
					if d != nil && d.Maildir != "" {
						for _, p := range deliver.CheckFolder(d.Maildir, r.Spec.Action.Folder, access) {
							add(r.DeclRange, p.Warning, "%s: %v", what, p.Err)
						}
					}
				}
			}
		}
		ruleDests(a.Rules, "", &a.Deliver, false)
		if a.Multidrop != nil {
			for _, u := range a.Multidrop.Users {
				d := &a.Deliver
				if u.Deliver != nil {
					// The account's rules file this user's copies
					// in the user's own Maildir.
					d = u.Deliver
					ruleDests(a.Rules, "user "+u.Name+": ", d, true)
				}
				ruleDests(u.Rules, "user "+u.Name+": ", d, false)
			}
		}
		for _, t := range dests {
			d := t.d
			if d == nil {
				continue
			}
			var probs []deliver.Problem
			var at hcl.Range
			switch {
			case d.Maildir != "":
				probs, at = deliver.CheckMaildir(d.Maildir, access), d.MaildirRange
				if d.Folder != "" {
					for _, p := range deliver.CheckFolder(d.Maildir, d.Folder, access) {
						add(d.FolderRange, p.Warning, "%s: %v", t.what, p.Err)
					}
				}
			case len(d.MDA) > 0:
				probs, at = deliver.CheckMDA(d.MDA, access), d.MDARange
			}
			for _, p := range probs {
				add(at, p.Warning, "%s: %v", t.what, p.Err)
			}
		}
		if err := uidl.Check(uidl.Path(a.StateDir, a.Mailbox()), access); err != nil {
			add(hcl.Range{}, false, "state_dir: %v", err)
		}
		// missingOK: Load already warns about a password_file that does
		// not exist, which may be provisioned later (systemd
		// credentials); an aliases_file it leaves to the poll.
		file := func(path string, at hcl.Range, attr string, missingOK bool) {
			if path == "" {
				return
			}
			_, err := os.Stat(path)
			if errors.Is(err, fs.ErrNotExist) {
				if !missingOK {
					add(at, false, "%s %s does not exist", attr, path)
				}
				return
			}
			if err == nil {
				err = access(path, trust.R)
			}
			if err != nil {
				add(at, false, "%s %s cannot be read: %v", attr, path, err)
			}
		}
		file(a.Password.File, a.Password.Range, "password_file", true)
		if m := a.Multidrop; m != nil {
			file(m.AliasesFile, m.AliasesFileRange, "aliases_file", false)
			if m.LDAP != nil {
				file(m.LDAP.Password.File, m.LDAP.Password.Range, "ldap password_file", true)
			}
		}
	}
	return out
}

// printFindings prints fs and returns the exit code: exitFail when one is
// an error (polls would fail), else exitOK.
func printFindings(w io.Writer, fs []finding) int {
	code := exitOK
	for _, f := range fs {
		fmt.Fprintln(w, f)
		if !f.warning {
			code = exitFail
		}
	}
	return code
}

// checkSMTPTargets opens each SMTP or LMTP target of a (deliver,
// postmaster, users' own) as a delivery would, says EHLO/LHLO (and
// STARTTLS if configured) and QUIT, without MAIL FROM, for `check
// --connect`; each target once. It returns exitFail when one cannot be
// reached: mail would wait on the server.
func checkSMTPTargets(ctx context.Context, w io.Writer, a *rcfile.Account) int {
	dests := []*rcfile.Destination{&a.Deliver, a.Postmaster}
	if a.Multidrop != nil {
		for _, u := range a.Multidrop.Users {
			dests = append(dests, u.Deliver)
		}
	}
	code := exitOK
	seen := map[rcfile.SMTP]bool{}
	for _, d := range dests {
		if d == nil || d.SMTP == nil || seen[*d.SMTP] {
			continue
		}
		seen[*d.SMTP] = true
		proto := "smtp"
		if d.SMTP.LMTP {
			proto = "lmtp"
		}
		if err := fetch.CheckSMTP(ctx, d.SMTP); err != nil {
			fmt.Fprintf(w, "%s: %s %s: error: %s\n", printable(a.Name, 60), proto, printable(d.SMTP.Server, 200), printable(err.Error(), 500))
			code = exitFail
			continue
		}
		steps := "EHLO"
		if d.SMTP.LMTP {
			steps = "LHLO"
		}
		switch d.SMTP.TLS {
		case rcfile.TLSStartTLS:
			steps += ", STARTTLS"
		case rcfile.TLSImplicit:
			steps = "TLS, " + steps
		}
		fmt.Fprintf(w, "%s: %s %s: ok (%s, QUIT)\n", printable(a.Name, 60), proto, printable(d.SMTP.Server, 200), steps)
	}
	return code
}
