package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/learned"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// unroutedField is the field popfetch adds to a postmaster copy of a
// multidrop message: the addresses that did not route, comma-separated.
const unroutedField = "X-Popfetch-Unrouted"

// learnKeys returns the learned-route keys a message from the postmaster
// teaches when the administrator sends it on to a user: the addresses in
// its X-Popfetch-Unrouted field (only one popfetch added, above its own
// Received field: see deliver.FieldAddresses), else its List-Id as
// "list-id:ID". Never an address from From, Reply-To or Sender: the
// sender writes those, and a route learned from them would route the
// next message by its author.
func learnKeys(raw []byte) []string {
	if addrs := deliver.FieldAddresses(raw, unroutedField); len(addrs) > 0 {
		return addrs
	}
	if id := deliver.ListID(raw); id != "" {
		return []string{learned.ListIDPrefix + id}
	}
	return nil
}

// learnRoutes adds a route to user for every key learnKeys finds in raw to
// the learned-routes file of multidrop account a (fetch.LearnedPath), with
// a comment naming the time and source (the message file). It returns one
// line per route learned ("KEY -> USER", with "(was OTHER)" when it
// replaced a route to another user, "(already learned)" when the route
// was there); keys that cannot be routes are reported on stderr and
// skipped. It is an error if nothing could be learned.
func (g *globals) learnRoutes(a *rcfile.Account, raw []byte, user string, source string) ([]string, error) {
	if a.Multidrop == nil {
		return nil, fmt.Errorf("account %s is not a multidrop account: only multidrop routing uses learned routes", a.Name)
	}
	if !learned.ValidUser(user) {
		return nil, fmt.Errorf("invalid user name %q: letters, digits and . _ + - (not first), at most 64 bytes", user)
	}
	keys := learnKeys(raw)
	if len(keys) == 0 {
		return nil, fmt.Errorf("nothing to learn from %s: it has no %s field from popfetch and no List-Id", source, unroutedField)
	}
	if !knownUser(a.Multidrop, user) {
		fmt.Fprintf(g.stderr, "popfetch: warning: %s is not a user of account %s; routing ignores its learned routes until it is\n", user, a.Name)
	}
	var routes func(string) []string
	if err := asStateOwner(a.StateDir, func() (err error) {
		routes, err = fetch.RoutesToday(a)
		return err
	}); err != nil {
		return nil, err
	}
	path := fetch.LearnedPath(a)
	comment := "learned " + time.Now().UTC().Format(time.RFC3339) + " from " + source
	var out []string
	var skipped []error
	for _, k := range keys {
		k, err := learned.ParseKey(foldKey(a.Multidrop, k))
		if err != nil {
			skipped = append(skipped, err)
			fmt.Fprintf(g.stderr, "popfetch: not learned: %v\n", err)
			continue
		}
		if !strings.HasPrefix(k, learned.ListIDPrefix) {
			// Only an address that reaches nobody today is learned: a
			// learned route comes first, so one for an address that
			// routes would take its mail from the users it reaches.
			if us := routes(k); slices.Equal(us, []string{user}) {
				out = append(out, k+" already routes to "+user)
				continue
			} else if len(us) > 0 {
				err := fmt.Errorf("%s already routes to %s: not learned (only an address that reaches nobody can be; change the rc file or aliases file instead)", k, strings.Join(us, ", "))
				skipped = append(skipped, err)
				fmt.Fprintf(g.stderr, "popfetch: not learned: %v\n", err)
				continue
			}
		}
		var prev string
		err = asStateOwner(a.StateDir, func() (err error) {
			prev, err = learned.Add(path, k, user, comment)
			return err
		})
		if err != nil {
			return out, fmt.Errorf("learn %s -> %s: %w", k, user, err)
		}
		line := k + " -> " + user
		switch prev {
		case "":
		case user:
			line += " (already learned)"
		default:
			line += " (was " + prev + ")"
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("nothing learned from %s: %w", source, errors.Join(skipped...))
	}
	return out, nil
}

// forgetRoute removes the learned route of key (an address or
// "list-id:ID") from account a's learned-routes file; existed reports
// whether there was one. Without case_sensitive the key is also tried
// with its local part lower-cased, the form learnRoutes stores.
func (g *globals) forgetRoute(a *rcfile.Account, key string) (bool, error) {
	if a.Multidrop == nil {
		return false, fmt.Errorf("account %s is not a multidrop account: it has no learned routes", a.Name)
	}
	if _, err := learned.ParseKey(key); err != nil {
		return false, err
	}
	path := fetch.LearnedPath(a)
	var existed bool
	err := asStateOwner(a.StateDir, func() (err error) {
		existed, err = learned.Forget(path, key)
		if err != nil || existed {
			return err
		}
		if k := foldKey(a.Multidrop, key); k != key {
			existed, err = learned.Forget(path, k)
		}
		return err
	})
	return existed, err
}

// foldKey lower-cases the local part of an address key unless the
// account's local parts are case-sensitive, so that one address is one
// route whatever case a message spelled it in (routing folds the same
// way).
func foldKey(md *rcfile.Multidrop, key string) string {
	if md.CaseSensitive || strings.HasPrefix(key, learned.ListIDPrefix) {
		return key
	}
	i := strings.LastIndexByte(key, '@')
	if i < 0 {
		return key
	}
	return strings.ToLower(key[:i]) + key[i:]
}

// knownUser reports whether user may be a user of md: configured, or
// from a source check cannot see without loading it (system users, the
// aliases file, an LDAP directory).
func knownUser(md *rcfile.Multidrop, user string) bool {
	if md.SystemUsers || md.AliasesFile != "" || md.LDAP != nil {
		return true
	}
	return slices.ContainsFunc(md.Users, func(u *rcfile.User) bool { return u.Name == user })
}

// printLearned writes the learned routes of every multidrop account of
// cfg that has some as comment lines (the output of check stays a valid
// rc file). ok is
// false if a file could not be read or parsed: every poll of that account
// would fail too.
func printLearned(w io.Writer, cfg *rcfile.Config) (ok bool) {
	ok = true
	for _, a := range cfg.Accounts {
		if a.Multidrop == nil {
			continue
		}
		path := fetch.LearnedPath(a)
		routes, err := learned.Read(path)
		if err != nil {
			fmt.Fprintf(w, "# account %s: learned routes: error: %s\n", a.Name, oneLine(err.Error()))
			ok = false
			continue
		}
		if len(routes) == 0 {
			continue
		}
		fmt.Fprintf(w, "# account %s: %d learned routes in %s\n", a.Name, len(routes), rcfile.QuotePath(path))
		for _, r := range routes {
			line := "# learned route: " + r.Key + " -> " + r.User
			if r.Comment != "" {
				// A hand-edited file may hold any printable text;
				// Parse refuses only C0 controls.
				line += " (" + termSafe(r.Comment, 0) + ")"
			}
			fmt.Fprintln(w, line)
		}
	}
	return ok
}

// oneLine keeps an error on one comment line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(deliver.SafeValue(s, len(s))), " ")
}
