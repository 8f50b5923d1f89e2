package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// checkSample is how many users, groups and skipped entries `popfetch
// check --connect` shows of a directory.
const checkSample = 5

// checkDirectory loads account a's user directory (multidrop ldap) for
// `popfetch check --connect` and prints what routing would get from it:
// counts, a sample of users and groups, and what is skipped and why. It
// returns the exit code: a directory that cannot be loaded, or yields no
// user, is a failure (mail would wait on the server).
func checkDirectory(ctx context.Context, w io.Writer, p *fetch.Poller, a *rcfile.Account) int {
	if a.Multidrop == nil || a.Multidrop.LDAP == nil {
		return exitOK
	}
	name, url := printable(a.Name, 60), printable(a.Multidrop.LDAP.URL, 200)
	snap, err := p.CheckDirectory(ctx, a)
	if err != nil {
		fmt.Fprintf(w, "%s: directory %s: error: %s\n", name, url, printable(err.Error(), 500))
		return exitFail
	}
	addrs := 0
	for _, as := range snap.Users {
		addrs += len(as)
	}
	fmt.Fprintf(w, "%s: directory %s: %d users, %d addresses, %d groups\n", name, url, len(snap.Users), addrs, len(snap.Groups))
	sample := func(m map[string][]string, prefix string) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys[:min(len(keys), checkSample)] {
			vs := make([]string, 0, len(m[k]))
			for _, v := range m[k] {
				vs = append(vs, printable(v, 200))
			}
			fmt.Fprintf(w, "  %s%s: %s\n", prefix, printable(k, 200), strings.Join(vs, ", "))
		}
		if len(keys) > checkSample {
			fmt.Fprintf(w, "  ... %d more\n", len(keys)-checkSample)
		}
	}
	sample(snap.Users, "")
	sample(snap.Groups, "group ")
	skipped := append(slices.Clone(snap.Skipped), fetch.DirectoryConflicts(a, snap)...)
	if len(skipped) > 0 {
		fmt.Fprintf(w, "  skipped %d:\n", len(skipped))
		for _, why := range skipped[:min(len(skipped), checkSample)] {
			fmt.Fprintf(w, "    %s\n", printable(why, 300))
		}
	}
	return exitOK
}
