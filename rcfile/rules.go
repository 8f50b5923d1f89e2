package rcfile

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/popfetch/popfetch/deliver/rules"
)

// rules checks and builds a list of rule blocks (an account's or a
// multidrop user's). perUser says whether a deliver action's maildir may
// hold {user} and {domain} (multidrop), as for dest. Every problem is
// reported at the attribute that has it; a rule with one is left out.
func (p *parser) rules(in []*ruleHCL, what string, perUser bool) []Rule {
	var out []Rule
	names := map[string]hcl.Range{}
	for i, r := range in {
		if i == rules.MaxRules {
			p.errorf(r.DefRange, "Too many rules",
				"%s has more than %d rule blocks; popfetch evaluates at most %d per account or user.", what, rules.MaxRules, rules.MaxRules)
			break
		}
		if prev, ok := names[r.Name]; ok {
			p.errorf(r.NameRange, "Duplicate rule name",
				"%s already has a rule %q (at %s); each rule needs its own name, which the log reports.", what, r.Name, prev)
			continue
		}
		names[r.Name] = r.NameRange
		if rule, ok := p.rule(r, len(out), perUser); ok {
			out = append(out, rule)
		}
	}
	return out
}

// rule checks and builds one rule block; index is its place in its list
// (a deliver action's Target).
func (p *parser) rule(r *ruleHCL, index int, perUser bool) (Rule, bool) {
	ok := true
	fail := func(rng hcl.Range, summary, format string, args ...any) {
		if !isSet(rng) {
			rng = r.DefRange
		}
		p.errorf(rng, summary, format, args...)
		ok = false
	}
	if r.Name == "" || len(r.Name) > 64 || !ruleNameOK(r.Name) {
		fail(r.NameRange, "Invalid rule name",
			"A rule's name is 1 to 64 printable ASCII characters (it names the rule in the log), not %q.", r.Name)
	}
	sp := rules.Spec{Name: r.Name}
	if r.Header == nil {
		if !isSet(r.HeaderRange) {
			fail(r.DefRange, "Missing header", "rule %q needs header = \"Field-Name\", the header field it looks at.", r.Name)
		}
		ok = false
	} else {
		sp.Field = *r.Header
	}

	type part struct {
		name string
		rng  hcl.Range
	}
	var conds []part
	for _, c := range []struct {
		v   *string
		rng hcl.Range
		op  rules.Op
	}{{r.Equals, r.EqualsRange, rules.Equals}, {r.Contains, r.ContainsRange, rules.Contains}, {r.Matches, r.MatchesRange, rules.Matches}} {
		if c.v != nil {
			conds = append(conds, part{c.op.String(), c.rng})
			sp.Op, sp.Value = c.op, *c.v
		}
	}
	switch len(conds) {
	case 0:
		if !isSet(r.EqualsRange) && !isSet(r.ContainsRange) && !isSet(r.MatchesRange) {
			fail(r.DefRange, "Missing condition",
				"rule %q needs exactly one of equals = \"text\", contains = \"text\" or matches = \"regexp\".", r.Name)
		}
		ok = false
	case 1:
	default:
		fail(conds[1].rng, "Two conditions",
			"rule %q has both %s (at %s) and %s; a rule has exactly one condition (write two rules for two).", r.Name, conds[0].name, conds[0].rng, conds[1].name)
	}
	if r.CaseSensitive != nil {
		sp.CaseSensitive = *r.CaseSensitive
	}

	var acts []part
	var dest *Destination
	if r.Folder != nil {
		acts = append(acts, part{"folder", r.FolderRange})
		sp.Action = rules.Action{Kind: rules.Folder, Folder: *r.Folder}
	}
	if r.Deliver != nil {
		acts = append(acts, part{"deliver", r.Deliver.DefRange})
		sp.Action = rules.Action{Kind: rules.Deliver, Target: index}
		if dest = p.dest(r.Deliver, "rule deliver", perUser); dest == nil {
			ok = false
		}
	}
	if r.Postmaster != nil {
		acts = append(acts, part{"postmaster", r.PostmasterRange})
		sp.Action = rules.Action{Kind: rules.Postmaster, Reason: *r.Postmaster}
	}
	if r.Discard != nil {
		acts = append(acts, part{"discard", r.DiscardRange})
		sp.Action = rules.Action{Kind: rules.Discard}
		if !*r.Discard {
			fail(r.DiscardRange, "Invalid discard",
				"discard = false does nothing; a rule discards a copy only with discard = true, and otherwise needs another action.")
		}
	}
	switch len(acts) {
	case 0:
		if !isSet(r.FolderRange) && !isSet(r.PostmasterRange) && !isSet(r.DiscardRange) {
			fail(r.DefRange, "Missing action",
				"rule %q needs exactly one action: folder = \"Junk\", deliver { ... }, postmaster = \"reason\" or discard = true.", r.Name)
		}
		ok = false
	case 1:
	default:
		fail(acts[1].rng, "Two actions",
			"rule %q has both %s (at %s) and %s; a rule has exactly one action.", r.Name, acts[0].name, acts[0].rng, acts[1].name)
	}
	if ok {
		if attr, err := rules.Check(sp); err != nil {
			rng := map[string]hcl.Range{
				"header": r.HeaderRange, "equals": r.EqualsRange, "contains": r.ContainsRange, "matches": r.MatchesRange,
				"case_sensitive": r.CaseSensitiveRange, "folder": r.FolderRange, "postmaster": r.PostmasterRange,
			}[attr]
			what := attr
			if what == "" {
				what = "rule"
			}
			fail(rng, "Invalid "+what, "rule %q: %v.", r.Name, err)
		}
	}
	return Rule{Spec: sp, Deliver: dest, DeclRange: r.DefRange}, ok
}

// ruleNameOK: printable ASCII, for log lines.
func ruleNameOK(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ruleTargets checks that a's rules can act where they send a copy: a
// folder action needs a Maildir (the account's deliver target, or for a
// multidrop user the user's own if set), a postmaster action a
// postmaster block.
func (p *parser) ruleTargets(a *Account) {
	check := func(rs []Rule, dests []*Destination, whose string) {
		for _, r := range rs {
			switch r.Spec.Action.Kind {
			case rules.Folder:
				for _, d := range dests {
					if d != nil && d.Maildir == "" {
						p.errorf(r.DeclRange, "Folder needs a maildir",
							"rule %q files into folder %q, but %s delivers to no Maildir; use deliver { maildir = ... } in the rule instead.", r.Spec.Name, r.Spec.Action.Folder, whose)
						break
					}
				}
			case rules.Postmaster:
				if a.Postmaster == nil {
					p.errorf(r.DeclRange, "No postmaster",
						"rule %q gives copies to the postmaster, but account %q has no postmaster block; add one, e.g. postmaster { maildir = \"/var/mail/postmaster\" }.", r.Spec.Name, a.Name)
				}
			}
		}
	}
	check(a.Rules, []*Destination{&a.Deliver}, fmt.Sprintf("account %q", a.Name))
	if a.Multidrop == nil {
		return
	}
	for _, u := range a.Multidrop.Users {
		d := &a.Deliver
		if u.Deliver != nil {
			d = u.Deliver
		}
		check(u.Rules, []*Destination{d}, fmt.Sprintf("user %q", u.Name))
		if u.Deliver != nil {
			// The account's rules apply to this user's copy too.
			check(a.Rules, []*Destination{u.Deliver}, fmt.Sprintf("user %q's own deliver block", u.Name))
		}
	}
}
