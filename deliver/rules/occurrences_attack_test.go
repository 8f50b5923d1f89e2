package rules

import (
	"strings"
	"testing"
)

// TestEvalFilterFieldAfterForgedOnes: a filter appends its verdict field
// (SMFIR_ADDHEADER puts it at the end of the header); a sender who wrote
// more than MaxOccurrences fields of that name above it must not keep
// the rule from seeing it, or any spam could opt out of the Junk rule.
func TestEvalFilterFieldAfterForgedOnes(t *testing.T) {
	s, err := Compile([]Spec{{Name: "junk", Field: "X-Spam-Flag", Op: Equals, Value: "YES", Action: junk()}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, MaxOccurrences - 1, MaxOccurrences, MaxOccurrences + 1, 500} {
		head := "From: a@example.org\r\n" + strings.Repeat("X-Spam-Flag: NO\r\n", n) +
			"Subject: x\r\nX-Spam-Flag: YES\r\n\r\n"
		if _, ok := s.Eval([]byte(head)); !ok {
			t.Errorf("%d forged fields above the filter's: the rule missed it", n)
		}
		// A filter that inserts at the top (SMFIR_INSHEADER index 0).
		head = "X-Spam-Flag: YES\r\nFrom: a@example.org\r\n" + strings.Repeat("X-Spam-Flag: NO\r\n", n) + "\r\n"
		if _, ok := s.Eval([]byte(head)); !ok {
			t.Errorf("%d forged fields below the filter's: the rule missed it", n)
		}
	}
}
