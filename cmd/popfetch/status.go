package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/hashicorp/hcl/v2"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/daemon"
	"github.com/popfetch/popfetch/internal/logsafe"
	"github.com/popfetch/popfetch/rcfile"
)

// writeStatus prints s as a table for `popfetch status`.
func writeStatus(w io.Writer, s daemon.Status) {
	writeStatusAt(w, s, time.Now())
}

const statusLayout = "2006-01-02 15:04:05"

// writeStatusAt is writeStatus with the time the ages are counted to.
func writeStatusAt(w io.Writer, s daemon.Status, now time.Time) {
	const layout = statusLayout
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(layout)
	}
	fmt.Fprintf(w, "daemon started %s; config %s generation %d loaded %s\n",
		at(s.Started), printable(s.ConfigPath, 200), s.Generation, at(s.LoadedAt))
	switch r := s.LastReload; {
	case r == nil:
		fmt.Fprintln(w, "last reload: none since the start")
	case r.OK:
		fmt.Fprintf(w, "last reload: %s applied\n", at(r.At))
	default:
		fmt.Fprintf(w, "last reload: %s reload rejected; generation %d stays in effect\n", at(r.At), s.Generation)
		for _, d := range r.Diagnostics {
			fmt.Fprintf(w, "  %s\n", printable(d, 300))
		}
	}
	writeAlerts(w, s.Alerts, now)
	fmt.Fprintln(w)
	if sh := s.Shard; sh != nil {
		// The other accounts are other replicas' business: not listed,
		// and not failing here.
		fmt.Fprintf(w, "shard %s: %d of the %d accounts in the rc file; the others belong to other shards\n\n",
			printable(sh.Shard, 20), sh.Owned, sh.Accounts)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tSTATE\tLAST POLL\tLAST SUCCESS\tTOOK\tNEW\tDELIVERED\tDELETED\tNEXT POLL\tPOLLS\tFAILED\tDELIVERED TOTAL\tERROR")
	for _, a := range s.Accounts {
		last, took, nw, dlv, del, errText := "never", "-", "-", "-", "-", ""
		if l := a.Last; l != nil {
			last, took = at(l.Start), l.Elapsed.Round(time.Millisecond).String()
			nw, dlv, del = fmt.Sprint(l.New), fmt.Sprint(l.Delivered), fmt.Sprint(l.Deleted)
			errText = printable(l.Err, 100)
			if l.Undeletable > 0 && errText == "" {
				errText = fmt.Sprintf("server refuses DELE of %d delivered messages", l.Undeletable)
			}
		}
		next := at(a.NextPoll)
		switch a.State {
		case daemon.StatePolling:
			next = "(polling)"
		case daemon.StateAuthHold:
			next = "held: fix the account, then SIGHUP or `popfetch now`"
			if a.Last != nil && a.Last.LoginRequired {
				// The error column is cut short; the one thing to do
				// must not be.
				next = "held: run `popfetch login " + printable(a.Name, 60) + "`, then SIGHUP or `popfetch now`"
			}
		}
		lastOK := at(a.LastSuccess)
		if a.LastSuccess.IsZero() {
			lastOK = "never"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n",
			printable(a.Name, 60), a.State, last, lastOK, took, nw, dlv, del, next,
			a.Totals.Polls, a.Totals.Failures, a.Totals.Delivered, errText)
	}
	tw.Flush()
	for _, a := range s.Accounts {
		if a.Directory != nil {
			fmt.Fprintf(w, "%s: %s\n", printable(a.Name, 60), directoryLine(a.Directory, now))
		}
	}
}

// writeAlerts lists the alert conditions active now: which account,
// which condition, since when (see popfetch.hcl(5), ALERTS).
func writeAlerts(w io.Writer, alerts []daemon.ActiveAlert, now time.Time) {
	if len(alerts) == 0 {
		fmt.Fprintln(w, "alerts active: none")
		return
	}
	fmt.Fprintf(w, "alerts active: %d\n", len(alerts))
	// No header row: the accounts table below is the one with a header.
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, a := range alerts {
		acct := printable(a.Account, 60)
		if a.Account == "" {
			acct = "(daemon)"
		}
		detail, _, _ := strings.Cut(a.Detail, "\n")
		fmt.Fprintf(tw, "  %s\t%s\tsince %s (%s ago)\t%s\n", acct, printable(a.Condition, 30), a.Since.Format(statusLayout),
			now.Sub(a.Since).Round(time.Second), printable(detail, 120))
	}
	tw.Flush()
}

// reloadErrors are the error diagnostics of an rc file that was not
// reloaded, one line each as the log shows them, for Status (which keeps
// the first few).
func reloadErrors(diags hcl.Diagnostics) []string {
	var out []string
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			out = append(out, rcfile.FormatDiagnostic(d))
		}
	}
	return out
}

// directoryLine describes an account's user directory (multidrop ldap):
// the copy in use and its age, or since when it cannot be loaded and
// whether mail still routes (a copy within its grace period) or waits on
// the server.
func directoryLine(d *fetch.DirectoryState, now time.Time) string {
	at := func(t time.Time) string { return t.Format(statusLayout) }
	head := "directory " + printable(d.Source, 20) + " " + printable(d.URL, 200)
	if d.LastError == "" {
		if !d.Available() {
			return head + ": not loaded yet"
		}
		return fmt.Sprintf("%s: %d users, %d addresses, %d groups, loaded %s (%s ago)", head,
			d.Users, d.Addresses, d.Groups, at(d.LoadedAt), now.Sub(d.LoadedAt).Round(time.Second))
	}
	down := fmt.Sprintf("%s UNAVAILABLE since %s (%s)", head, at(d.FailingSince), printableEnds(d.LastError, 60, 200))
	if d.Available() {
		return fmt.Sprintf("%s; using the copy loaded %s (%d users, %d addresses), grace until %s", down,
			at(d.LoadedAt), d.Users, d.Addresses, at(d.GraceUntil))
	}
	return down + "; no good copy: mail waits on the server"
}

// printableEnds is printable(s) cut to its first head and last tail
// runes when longer: an error names the operation first (with the whole
// search filter) and the server's reason last, and the reason is what
// the administrator needs.
func printableEnds(s string, head, tail int) string {
	r := []rune(s)
	if len(r) <= head+tail {
		return printable(s, head+tail)
	}
	return printable(string(r[:head]), head) + " … " + printable(string(r[len(r)-tail:]), tail)
}

// printable escapes the characters termSafe replaces (control and
// bidirectional ones: logsafe.Unsafe decides, for the logs too) and cuts
// s to n runes: error texts quote what the server said, and a terminal
// must not interpret it (fetchmail CVE-2021-36386 class). Unlike
// logsafe.Escape it leaves a backslash single and writes CR as \x0d: an
// error on a terminal is read by a person, not mapped back to its bytes,
// and the CLI's messages keep the form their tests pin.
func printable(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range s {
		if i == n {
			b.WriteString("…")
			break
		}
		switch {
		case r == unicode.ReplacementChar || logsafe.Unsafe(r) && r <= 0xff:
			fmt.Fprintf(&b, "\\x%02x", r)
		case logsafe.Unsafe(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
		i++
	}
	return b.String()
}
