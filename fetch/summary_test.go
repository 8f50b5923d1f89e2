package fetch

import (
	"encoding/json"
	"strings"
	"testing"
)

// The counters of the audit trail survive Summarize and JSON (the control
// socket, status) under stable names.
func TestSummarizeCounters(t *testing.T) {
	s := Summarize(Result{Account: "a", Delivered: 5, Postmaster: 2, Kept: 3, GivenUp: 1, Bytes: 12345, MailboxBytes: 67890})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"delivered":5`, `"postmaster":2`, `"kept":3`, `"given_up":1`, `"bytes":12345`, `"mailbox_bytes":67890`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("PollSummary JSON %s lacks %s", b, want)
		}
	}
	var back PollSummary
	if err := json.Unmarshal(b, &back); err != nil || back != s {
		t.Errorf("round trip: %+v, %v; want %+v", back, err, s)
	}
}
