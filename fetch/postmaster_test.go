package fetch

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest/fault"
	"github.com/popfetch/popfetch/rcfile"
)

// TestPostmasterReasonCap: single-drop and multidrop share one postmaster
// fallback, which cuts X-Popfetch-Reason to maxReason bytes at a rune
// boundary and keeps a shorter reason whole. A multidrop reason composed
// of many parts is cut in the field but whole in the warning.
func TestPostmasterReasonCap(t *testing.T) {
	long := func(n int) string {
		var b strings.Builder
		for i := 0; b.Len() < n; i++ {
			b.WriteString("unknown" + strings.Repeat("x", 50) + string(rune('a'+i%26)) + "@example.com ")
		}
		return b.String()[:n]
	}
	var unknown []string
	for i := range 5 {
		unknown = append(unknown, strings.Repeat(string(rune('a'+i)), 60)+"@example.com")
	}
	raw := []byte(strings.ReplaceAll("To: alice@example.com, "+strings.Join(unknown, ", ")+"\nMessage-ID: <1@x>\n\nbody\n", "\n", "\r\n"))
	tests := []struct {
		name      string
		multidrop bool
		reason    string // single-drop: the target's permanent failure
		want      string // the field; "" to check only its form
		wantLog   string // in the warning, if set
	}{
		{name: "short", reason: "MDA exit 67: no such user", want: "MDA exit 67: no such user", wantLog: `delivered to the postmaster" reason="MDA exit 67: no such user"`},
		{name: "exactly the cap", reason: long(maxReason), want: long(maxReason)},
		{name: "one over", reason: long(maxReason + 1), want: long(maxReason)},
		{name: "long", reason: long(1000), want: long(maxReason)},
		{name: "rune boundary", reason: strings.Repeat("é", maxReason), want: strings.Repeat("é", maxReason/2)},
		{name: "rune boundary odd", reason: "x" + strings.Repeat("é", maxReason), want: "x" + strings.Repeat("é", (maxReason-1)/2)},
		{name: "multidrop", multidrop: true, wantLog: unknown[4]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users, pm := fault.New(), fault.New()
			m := &deliver.Message{UID: "m1", Raw: raw}
			logs := &logCapture{}
			var d Dispatcher = &singleDrop{target: users, postmaster: pm, rcpt: deliver.Recipient{User: "joe"}}
			users.Permanent("joe", tt.reason)
			if tt.multidrop {
				a := &rcfile.Account{Name: "t", Username: "catchall", Multidrop: testMultidrop(mdUser("alice", "alice"))}
				var err error
				if d, err = newMultidrop(a, users, pm, "test.host"); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Dispatch(context.Background(), m, nopProgress{}, logs.logger()); err != nil {
				t.Fatal(err)
			}
			got, ok := pm.LookupReason("m1")
			if !ok || len(pm.Copies("postmaster")) != 1 {
				t.Fatalf("postmaster copies %v", pm.All())
			}
			if len(got) > maxReason || !utf8.ValidString(got) {
				t.Errorf("X-Popfetch-Reason is %d bytes (valid UTF-8: %v); want at most %d", len(got), utf8.ValidString(got), maxReason)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("X-Popfetch-Reason = %q; want %q", got, tt.want)
			}
			if tt.multidrop {
				if !strings.HasPrefix(got, "partly routed (to alice); not routed: unknown user") || len(got) != maxReason {
					t.Errorf("X-Popfetch-Reason = %q (%d bytes); want the route's reason cut at %d", got, len(got), maxReason)
				}
			}
			if tt.wantLog != "" && !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("the warning lacks %q:\n%s", tt.wantLog, logs.String())
			}
		})
	}
}
