// Package rules decides where a fetched copy goes by its header: filing
// rules (the rc file's rule blocks), compiled once and evaluated in order
// on each copy's header fields, the first that matches deciding. It is
// pure: it reads a header and returns a Decision, and the caller acts on
// it (files the copy in a Maildir++ folder, delivers it elsewhere, gives
// it to the postmaster, or discards it, always logging that).
//
// Matching, by field:
//
//   - a rule names one header field; names compare without regard to
//     case (RFC 5322 §1.2.2), and every occurrence of the field counts,
//     topmost first, up to MaxOccurrences of them from the top and as
//     many from the bottom (where a filter adds its fields);
//   - the value is the field unfolded (RFC 5322 §2.2.3) and trimmed of
//     surrounding white space, as routing reads it
//     (deliver.HeaderFields); encoded words (RFC 2047) are not decoded;
//   - only its first MaxValueBytes bytes are compared: Contains and
//     Matches look at that prefix, and a longer value never Equals;
//   - Equals and Contains compare after lower-casing both sides
//     (Unicode, strings.ToLower) unless the rule is CaseSensitive;
//     Matches is an RE2 regular expression (Go's regexp) as written,
//     unanchored: (?i) makes it case-insensitive, ^ and $ anchor it.
//
// RE2 runs in time linear in its input, so a rule costs at most
// 2 × MaxOccurrences × MaxValueBytes bytes of matching per copy whatever the
// message holds.
package rules

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/popfetch/popfetch/deliver"
)

const (
	// MaxValueBytes is how much of a field's value a rule looks at.
	MaxValueBytes = 4096
	// MaxOccurrences bounds the occurrences of a field a rule looks at,
	// from the top, and again from the bottom.
	MaxOccurrences = 50
	// MaxRules bounds the rules of one Set.
	MaxRules = 200
	// MaxReasonBytes bounds a postmaster reason, which goes into a
	// header field of the postmaster's copy.
	MaxReasonBytes = 200
)

// Op is how a rule compares a field's value.
type Op int

const (
	Equals   Op = iota + 1 // the whole value
	Contains               // a substring of it
	Matches                // an RE2 regular expression finds a match in it
)

func (o Op) String() string {
	switch o {
	case Equals:
		return "equals"
	case Contains:
		return "contains"
	case Matches:
		return "matches"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Kind is what a matching rule does with the copy.
type Kind int

const (
	// Folder files the copy in a Maildir++ folder of its Maildir.
	Folder Kind = iota + 1
	// Deliver sends the copy to another destination of the caller's
	// (Action.Target) instead.
	Deliver
	// Postmaster gives the copy to the postmaster, with Action.Reason.
	Postmaster
	// Discard drops the copy: it counts as done without being
	// delivered. Only an explicit rule does this, and the caller logs
	// every discarded copy.
	Discard
)

func (k Kind) String() string {
	switch k {
	case Folder:
		return "folder"
	case Deliver:
		return "deliver"
	case Postmaster:
		return "postmaster"
	case Discard:
		return "discard"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Action is what a rule does when it matches.
type Action struct {
	Kind   Kind
	Folder string // Folder: a valid deliver.ValidFolder name
	Reason string // Postmaster: why, for X-Popfetch-Reason and the log
	Target int    // Deliver: which of the caller's destinations
}

// Spec is one rule as configured.
type Spec struct {
	Name          string // for logs: the rc file's rule label
	Field         string // the header field's name
	Op            Op
	Value         string // the text (Equals, Contains) or the RE2 pattern (Matches)
	CaseSensitive bool   // Equals and Contains only
	Action        Action
}

// Error is a Spec that does not compile. Attr names the part that is
// wrong, as the rc file spells it ("header", "equals", "contains",
// "matches", "case_sensitive", "folder", "postmaster"), or "" for the
// rule as a whole.
type Error struct {
	Index int // in the Specs given to Compile
	Name  string
	Attr  string
	Err   error
}

func (e *Error) Error() string {
	if e.Attr == "" {
		return fmt.Sprintf("rule %q: %v", e.Name, e.Err)
	}
	return fmt.Sprintf("rule %q: %s: %v", e.Name, e.Attr, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// rule is a compiled Spec.
type rule struct {
	spec  Spec
	key   string // the field name, canonical as deliver.HeaderFields gives it
	value string // lower-cased unless CaseSensitive (Equals, Contains)
	re    *regexp.Regexp
}

// Set is compiled rules, in order. The zero Set and nil have no rules.
// A Set is safe for concurrent use.
type Set struct {
	rules []rule
}

// Compile checks and compiles specs, in order. The error is an *Error for
// the first spec that fails, or a plain error for too many rules.
func Compile(specs []Spec) (*Set, error) {
	if len(specs) > MaxRules {
		return nil, fmt.Errorf("%d rules; at most %d are allowed", len(specs), MaxRules)
	}
	s := &Set{rules: make([]rule, 0, len(specs))}
	for i, sp := range specs {
		r, attr, err := compile(sp)
		if err != nil {
			return nil, &Error{Index: i, Name: sp.Name, Attr: attr, Err: err}
		}
		s.rules = append(s.rules, r)
	}
	return s, nil
}

// Check reports what Compile would say of sp alone, for the rc file's
// validation: the attribute at fault ("" the rule) and the error.
func Check(sp Spec) (attr string, err error) {
	_, attr, err = compile(sp)
	return attr, err
}

func compile(sp Spec) (rule, string, error) {
	r := rule{spec: sp}
	if err := validFieldName(sp.Field); err != nil {
		return r, "header", err
	}
	r.key = deliver.CanonicalFieldName(sp.Field)
	op := sp.Op.String()
	switch sp.Op {
	case Equals, Contains:
		if sp.Value == "" && sp.Op == Contains {
			return r, op, errors.New("an empty text is contained in every value; use matches = \".\" for \"the field is present\"")
		}
		r.value = sp.Value
		if !sp.CaseSensitive {
			r.value = strings.ToLower(sp.Value)
		}
	case Matches:
		if sp.CaseSensitive {
			return r, "case_sensitive", errors.New("a regular expression is case-sensitive as written; start it with (?i) to ignore case")
		}
		re, err := regexp.Compile(sp.Value)
		if err != nil {
			return r, op, fmt.Errorf("not an RE2 regular expression: %w", err)
		}
		r.re = re
	default:
		return r, "", errors.New("needs exactly one of equals, contains or matches")
	}
	if len(sp.Value) > MaxValueBytes {
		return r, op, fmt.Errorf("longer than %d bytes, the part of a value a rule compares", MaxValueBytes)
	}
	switch a := sp.Action; a.Kind {
	case Folder:
		if err := deliver.ValidFolder(a.Folder); err != nil {
			return r, "folder", err
		}
	case Postmaster:
		if a.Reason == "" {
			return r, "postmaster", errors.New("needs a reason, for the postmaster's copy and the log")
		}
		if len(a.Reason) > MaxReasonBytes {
			return r, "postmaster", fmt.Errorf("the reason is longer than %d bytes", MaxReasonBytes)
		}
		for _, c := range []byte(a.Reason) {
			if c < 0x20 || c == 0x7f {
				return r, "postmaster", fmt.Errorf("the reason contains control character %#02x", c)
			}
		}
	case Deliver:
		if a.Target < 0 {
			return r, "deliver", errors.New("no destination")
		}
	case Discard:
	default:
		return r, "", errors.New("needs exactly one action: folder, deliver, postmaster or discard")
	}
	return r, "", nil
}

// validFieldName: a field name is printable ASCII other than ':' (RFC
// 5322 §3.6.8), and not empty.
func validFieldName(name string) error {
	if name == "" {
		return errors.New("empty; name a header field such as \"X-Spam-Flag\"")
	}
	if len(name) > 200 {
		return errors.New("longer than 200 bytes")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return fmt.Errorf("%q is not a header field name (printable ASCII without spaces or ':')", name)
		}
	}
	return nil
}

// Len is the number of rules.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Decision is what the first matching rule decided.
type Decision struct {
	Index  int    // the rule's index in its Set
	Rule   string // its name
	Action Action
	// Field and Value are what matched, Value cut to 200 bytes and
	// free of control characters, for the log.
	Field, Value string
}

// Eval evaluates the rules in order on the header section head (as
// deliver.Message.Head gives it) and returns the first match's Decision,
// or ok=false when none matches (the copy goes where it would without
// rules).
func (s *Set) Eval(head []byte) (d Decision, ok bool) {
	if s.Len() == 0 {
		return Decision{}, false
	}
	fields, _ := deliver.HeaderFields(head)
	return s.EvalFields(fields)
}

// EvalFields is Eval on fields already read (deliver.HeaderFields).
func (s *Set) EvalFields(fields []deliver.Field) (d Decision, ok bool) {
	if s.Len() == 0 {
		return Decision{}, false
	}
	// Lower-cased prefixes, computed once per field a rule asks for.
	lower := make(map[int]string)
	for i := range s.rules {
		r := &s.rules[i]
		// The first MaxOccurrences and the last MaxOccurrences: a
		// filter adds its field at the end (or inserts it at the top),
		// and fields the sender wrote in between must not push it out.
		var occ []int
		for j, f := range fields {
			if strings.EqualFold(f.Name, r.key) {
				occ = append(occ, j)
			}
		}
		if len(occ) > 2*MaxOccurrences {
			occ = append(occ[:MaxOccurrences:MaxOccurrences], occ[len(occ)-MaxOccurrences:]...)
		}
		for _, j := range occ {
			f := fields[j]
			if r.match(f.Value, j, lower) {
				return Decision{
					Index:  i,
					Rule:   r.spec.Name,
					Action: r.spec.Action,
					Field:  r.key,
					Value:  deliver.SafeValue(f.Value, 200),
				}, true
			}
		}
	}
	return Decision{}, false
}

// match reports whether r matches value, the value of field j.
func (r *rule) match(value string, j int, lower map[int]string) bool {
	prefix := value
	if len(prefix) > MaxValueBytes {
		prefix = prefix[:MaxValueBytes]
	}
	if r.spec.Op == Matches {
		return r.re.MatchString(prefix)
	}
	if !r.spec.CaseSensitive {
		l, ok := lower[j]
		if !ok {
			l = strings.ToLower(prefix)
			lower[j] = l
		}
		prefix = l
	}
	switch r.spec.Op {
	case Equals:
		return len(value) <= MaxValueBytes && prefix == r.value
	case Contains:
		return strings.Contains(prefix, r.value)
	}
	return false
}
