package rules

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/popfetch/popfetch/deliver"
)

const spamHead = "Return-Path: <a@example.org>\r\n" +
	"Received: from mx.example.org by pop.example.net\r\n" +
	"From: Alice <a@example.org>\r\n" +
	"Subject: Cheap =?UTF-8?Q?w=C3=A4tches?=\r\n" +
	"x-spam-flag:   YES  \r\n" +
	"X-Spam-Score: 12.5\r\n" +
	"List-Id: Developers\r\n <dev.lists.example.org>\r\n" +
	"X-Virus-Status: Clean\r\n" +
	"X-Virus-Status: Infected (Eicar-Signature)\r\n" +
	"\r\n" +
	"X-Body: not a header\r\n"

func junk() Action { return Action{Kind: Folder, Folder: "Junk"} }

func TestEval(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		head string
		want bool
		val  string // the Decision's Value
	}{
		{"equals, name and value case-insensitive", Spec{Field: "X-Spam-Flag", Op: Equals, Value: "yes", Action: junk()}, spamHead, true, "YES"},
		{"equals, case-sensitive", Spec{Field: "X-Spam-Flag", Op: Equals, Value: "yes", CaseSensitive: true, Action: junk()}, spamHead, false, ""},
		{"equals, case-sensitive hit", Spec{Field: "x-SPAM-flag", Op: Equals, Value: "YES", CaseSensitive: true, Action: junk()}, spamHead, true, "YES"},
		{"equals is the whole value", Spec{Field: "X-Spam-Flag", Op: Equals, Value: "YE", Action: junk()}, spamHead, false, ""},
		{"contains", Spec{Field: "Subject", Op: Contains, Value: "cheap", Action: junk()}, spamHead, true, "Cheap =?UTF-8?Q?w=C3=A4tches?="},
		{"encoded words are not decoded", Spec{Field: "Subject", Op: Contains, Value: "wätches", Action: junk()}, spamHead, false, ""},
		{"unfolded", Spec{Field: "List-Id", Op: Equals, Value: "Developers <dev.lists.example.org>", Action: junk()}, spamHead, true, "Developers <dev.lists.example.org>"},
		{"matches", Spec{Field: "List-Id", Op: Matches, Value: `<dev\.lists\.example\.org>$`, Action: junk()}, spamHead, true, "Developers <dev.lists.example.org>"},
		{"matches is case-sensitive", Spec{Field: "X-Spam-Flag", Op: Matches, Value: `^yes$`, Action: junk()}, spamHead, false, ""},
		{"matches (?i)", Spec{Field: "X-Spam-Flag", Op: Matches, Value: `(?i)^yes$`, Action: junk()}, spamHead, true, "YES"},
		{"every occurrence counts", Spec{Field: "X-Virus-Status", Op: Contains, Value: "infected", Action: junk()}, spamHead, true, "Infected (Eicar-Signature)"},
		{"score", Spec{Field: "X-Spam-Score", Op: Matches, Value: `^([5-9]|[1-9][0-9]+)(\.|$)`, Action: junk()}, spamHead, true, "12.5"},
		{"absent field", Spec{Field: "X-Spam-Status", Op: Matches, Value: `.`, Action: junk()}, spamHead, false, ""},
		{"body is not header", Spec{Field: "X-Body", Op: Matches, Value: `.`, Action: junk()}, spamHead, false, ""},
		{"no header at all", Spec{Field: "Subject", Op: Matches, Value: ``, Action: junk()}, "\r\nSubject: x\r\n", false, ""},
		{"bare LF", Spec{Field: "Subject", Op: Equals, Value: "hi", Action: junk()}, "Subject: hi\n\nbody\n", true, "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Name = "r"
			s, err := Compile([]Spec{tt.spec})
			if err != nil {
				t.Fatal(err)
			}
			d, ok := s.Eval([]byte(tt.head))
			if ok != tt.want {
				t.Fatalf("Eval = %+v, %v; want match %v", d, ok, tt.want)
			}
			if ok && (d.Value != tt.val || d.Rule != "r" || d.Index != 0 || d.Action != tt.spec.Action) {
				t.Errorf("Decision = %+v; want value %q of rule r", d, tt.val)
			}
		})
	}
}

// Rules are evaluated in order and the first match decides.
func TestEvalOrder(t *testing.T) {
	s, err := Compile([]Spec{
		{Name: "virus", Field: "X-Virus-Status", Op: Contains, Value: "infected", Action: Action{Kind: Postmaster, Reason: "virus found"}},
		{Name: "spam", Field: "X-Spam-Flag", Op: Equals, Value: "YES", Action: junk()},
		{Name: "lists", Field: "List-Id", Op: Contains, Value: "<dev.lists.example.org>", Action: Action{Kind: Folder, Folder: "Lists.dev"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		head string
		rule string // "" none
	}{
		{spamHead, "virus"},
		{"X-Spam-Flag: YES\r\nList-Id: <dev.lists.example.org>\r\n\r\n", "spam"},
		{"X-Spam-Flag: NO\r\nList-Id: <dev.lists.example.org>\r\n\r\n", "lists"},
		{"Subject: hello\r\n\r\n", ""},
	} {
		d, ok := s.Eval([]byte(tt.head))
		if ok != (tt.rule != "") || d.Rule != tt.rule {
			t.Errorf("Eval(%q) = %+v, %v; want rule %q", tt.head, d, ok, tt.rule)
		}
	}
	var none *Set
	if _, ok := none.Eval([]byte(spamHead)); ok || none.Len() != 0 {
		t.Error("a nil Set matched")
	}
}

// Only the first MaxValueBytes of a value are compared, and only the
// first and the last MaxOccurrences of a field.
func TestEvalBounds(t *testing.T) {
	long := strings.Repeat("a", MaxValueBytes)
	for _, tt := range []struct {
		name string
		spec Spec
		head string
		want bool
	}{
		{"contains within the bound", Spec{Field: "X", Op: Contains, Value: "needle"}, "X: " + long[:MaxValueBytes-6] + "needle\r\n\r\n", true},
		{"contains beyond the bound", Spec{Field: "X", Op: Contains, Value: "needle"}, "X: " + long + "needle\r\n\r\n", false},
		{"matches beyond the bound", Spec{Field: "X", Op: Matches, Value: "needle"}, "X: " + long + "needle\r\n\r\n", false},
		{"matches $ at the cut", Spec{Field: "X", Op: Matches, Value: "a$"}, "X: " + long + "needle\r\n\r\n", true},
		{"equals at the bound", Spec{Field: "X", Op: Equals, Value: long}, "X: " + long + "\r\n\r\n", true},
		{"a longer value never equals", Spec{Field: "X", Op: Equals, Value: long}, "X: " + long + "b\r\n\r\n", false},
		{"occurrence within the bound", Spec{Field: "X", Op: Equals, Value: "hit"}, strings.Repeat("X: no\r\n", MaxOccurrences-1) + "X: hit\r\n\r\n", true},
		{"occurrence beyond the bound", Spec{Field: "X", Op: Equals, Value: "hit"}, strings.Repeat("X: no\r\n", MaxOccurrences) + "X: hit\r\n" + strings.Repeat("X: no\r\n", MaxOccurrences) + "\r\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Action = junk()
			s, err := Compile([]Spec{tt.spec})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := s.Eval([]byte(tt.head)); ok != tt.want {
				t.Errorf("match = %v; want %v", ok, tt.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	good := Spec{Name: "r", Field: "X-Spam-Flag", Op: Equals, Value: "YES", Action: junk()}
	tests := []struct {
		name string
		edit func(*Spec)
		attr string
		want string
	}{
		{"empty field", func(s *Spec) { s.Field = "" }, "header", "empty"},
		{"field with colon", func(s *Spec) { s.Field = "X-Spam-Flag:" }, "header", "not a header field name"},
		{"field with space", func(s *Spec) { s.Field = "X Spam" }, "header", "not a header field name"},
		{"no op", func(s *Spec) { s.Op = 0 }, "", "exactly one of equals"},
		{"empty contains", func(s *Spec) { s.Op, s.Value = Contains, "" }, "contains", "empty text"},
		{"bad regexp", func(s *Spec) { s.Op, s.Value = Matches, "(" }, "matches", "not an RE2"},
		{"backreference", func(s *Spec) { s.Op, s.Value = Matches, `(a)\1` }, "matches", "not an RE2"},
		{"case_sensitive with matches", func(s *Spec) { s.Op, s.Value, s.CaseSensitive = Matches, "x", true }, "case_sensitive", "(?i)"},
		{"value too long", func(s *Spec) { s.Value = strings.Repeat("x", MaxValueBytes+1) }, "equals", "longer than"},
		{"no action", func(s *Spec) { s.Action = Action{} }, "", "exactly one action"},
		{"bad folder", func(s *Spec) { s.Action.Folder = ".Junk" }, "folder", "starts with a dot"},
		{"postmaster without reason", func(s *Spec) { s.Action = Action{Kind: Postmaster} }, "postmaster", "needs a reason"},
		{"postmaster reason with newline", func(s *Spec) { s.Action = Action{Kind: Postmaster, Reason: "a\r\nBcc: x"} }, "postmaster", "control character"},
		{"postmaster reason too long", func(s *Spec) { s.Action = Action{Kind: Postmaster, Reason: strings.Repeat("x", MaxReasonBytes+1)} }, "postmaster", "longer than"},
		{"deliver without target", func(s *Spec) { s.Action = Action{Kind: Deliver, Target: -1} }, "deliver", "no destination"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := good
			tt.edit(&sp)
			_, err := Compile([]Spec{good, sp})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Compile = %v; want *Error", err)
			}
			if e.Index != 1 || e.Attr != tt.attr || e.Name != "r" || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %+v (%v); want index 1, attr %q, saying %q", e, err, tt.attr, tt.want)
			}
			if attr, cerr := Check(sp); attr != tt.attr || cerr == nil {
				t.Errorf("Check = %q, %v; want %q and an error", attr, cerr, tt.attr)
			}
		})
	}
	for _, k := range []Action{{Kind: Discard}, {Kind: Deliver, Target: 3}, {Kind: Postmaster, Reason: "virus"}} {
		sp := good
		sp.Action = k
		if _, err := Compile([]Spec{sp}); err != nil {
			t.Errorf("action %v: %v", k.Kind, err)
		}
	}
	if _, err := Compile(make([]Spec, MaxRules+1)); err == nil {
		t.Error("no error for too many rules")
	}
}

// EvalFields agrees with Eval on the fields deliver reads.
func TestEvalFields(t *testing.T) {
	s, err := Compile([]Spec{{Name: "r", Field: "x-virus-status", Op: Contains, Value: "INFECTED", Action: junk()}})
	if err != nil {
		t.Fatal(err)
	}
	fields, _ := deliver.HeaderFields([]byte(spamHead))
	d1, ok1 := s.EvalFields(fields)
	d2, ok2 := s.Eval([]byte(spamHead))
	if !ok1 || !ok2 || d1 != d2 || d1.Field != "X-Virus-Status" {
		t.Errorf("EvalFields = %+v, %v; Eval = %+v, %v", d1, ok1, d2, ok2)
	}
}

// FuzzEval: on any header and any pattern, evaluation terminates without
// panicking, a Decision names a field the header has, and the ops agree:
// what Equals matches Contains matches, and so does Matches with the
// quoted text; case-insensitive Equals matches the value in upper and in
// lower case.
func FuzzEval(f *testing.F) {
	f.Add([]byte(spamHead), "X-Spam-Flag", "yes")
	f.Add([]byte("Subject: Grüße\r\n\r\n"), "Subject", "GRÜSSE")
	f.Add([]byte("A: \xff\xfe\r\n\tcont\r\n\r\n"), "a", "\xff")
	f.Add([]byte("X: "+strings.Repeat("ab", MaxValueBytes)+"\r\n\r\n"), "X", "ba")
	f.Add([]byte("Subject: a.b\r\n\r\n"), "subject", "a.b")
	f.Fuzz(func(t *testing.T, head []byte, field, value string) {
		if validFieldName(field) != nil || value == "" || len(value) > MaxValueBytes {
			return
		}
		eval := func(op Op, v string, cs bool) (Decision, bool) {
			s, err := Compile([]Spec{{Name: "f", Field: field, Op: op, Value: v, CaseSensitive: cs, Action: junk()}})
			if err != nil {
				t.Fatalf("Compile(%v %q): %v", op, v, err)
			}
			return s.Eval(head)
		}
		for _, cs := range []bool{false, true} {
			deq, eq := eval(Equals, value, cs)
			_, co := eval(Contains, value, cs)
			if eq && !co {
				t.Errorf("case_sensitive=%v: equals %q matched, contains did not", cs, value)
			}
			if eq && !strings.EqualFold(deq.Field, field) {
				t.Errorf("decision names field %q, not %q", deq.Field, field)
			}
			// Quoting may double the value's length past what a
			// pattern may have (MaxValueBytes): Compile refuses that,
			// rightly, so there is no such rule to compare.
			if q := regexp.QuoteMeta(value); cs && utf8.ValidString(value) && len(q) <= MaxValueBytes {
				_, re := eval(Matches, q, false)
				if co && !re {
					t.Errorf("contains %q matched, matches of it quoted did not", value)
				}
			}
		}
		fields, _ := deliver.HeaderFields(head)
		var named []deliver.Field
		for _, fl := range fields {
			if strings.EqualFold(fl.Name, field) {
				named = append(named, fl)
			}
		}
		for k, fl := range named {
			// A rule looks at the first MaxOccurrences of a field
			// and the last MaxOccurrences, not at those between.
			if k >= MaxOccurrences && k < len(named)-MaxOccurrences || len(fl.Value) > MaxValueBytes || fl.Value == "" {
				continue
			}
			for _, v := range []string{fl.Value, asciiCase(fl.Value, 'a', 'z', 'A'-'a'), asciiCase(fl.Value, 'A', 'Z', 'a'-'A')} {
				if len(v) > MaxValueBytes {
					continue
				}
				if _, ok := eval(Equals, v, false); !ok {
					t.Errorf("case-insensitive equals %q missed the value %q", v, fl.Value)
				}
			}
			break
		}
	})
}

// asciiCase shifts the ASCII letters from lo to hi by delta: the case
// change every case-insensitive comparison must ignore.
func asciiCase(s string, lo, hi byte, delta int) string {
	b := []byte(s)
	for i, c := range b {
		if lo <= c && c <= hi {
			b[i] = byte(int(c) + delta)
		}
	}
	return string(b)
}
