package fetch

import (
	"context"
	"fmt"
	"net/mail"
	"strings"
	"sync"
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

// fieldTarget is a Target that accepts every copy and keeps the fields
// given with it, by UID.
type fieldTarget struct {
	mu     sync.Mutex
	fields map[string][]deliver.Field
}

func (f *fieldTarget) Deliver(ctx context.Context, m *deliver.Message, sender string, rcpts []deliver.Recipient, extra []deliver.Field) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fields == nil {
		f.fields = map[string][]deliver.Field{}
	}
	f.fields[m.UID] = append([]deliver.Field(nil), extra...)
	return make([]error, len(rcpts))
}

// field returns the value of the field name given with uid's copy, and
// whether the copy and the field exist.
func (f *fieldTarget) field(uid, name string) (string, bool, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fs, copied := f.fields[uid]
	for _, x := range fs {
		if x.Name == name {
			return x.Value, copied, true
		}
	}
	return "", copied, false
}

// TestPostmasterUnrouted: the postmaster copy names, in
// X-Popfetch-Unrouted, exactly the addresses that reached nobody: unknown
// users of a local domain and the users whose delivery failed permanently
// (their routed address); not an unparseable or foreign address, and not
// on a single-drop postmaster copy. A long list is cut after a whole
// address with an RFC 5322 comment saying how many more, so that an
// address list parser reads it.
func TestPostmasterUnrouted(t *testing.T) {
	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf("%s%02d@example.com", strings.Repeat("u", 30), i))
	}
	tests := []struct {
		name   string
		header string
		perm   []string // users whose delivery fails permanently
		single bool
		want   string // "" = no field; "-" = no postmaster copy
	}{
		{name: "unknown only", header: "To: dave@example.com", want: "dave@example.com"},
		{name: "partial", header: "To: alice@example.com, Dave@Example.com, eve@example.com", want: "Dave@example.com, eve@example.com"},
		{name: "duplicates", header: "To: dave@example.com\nCc: DAVE@example.com", want: "dave@example.com"},
		{name: "permanent failure", header: "To: alice@example.com, bob+x@example.com", perm: []string{"bob"}, want: "bob+x@example.com"},
		{name: "unknown and failed", header: "To: bob@example.com, dave@example.com", perm: []string{"bob"}, want: "dave@example.com, bob@example.com"},
		{name: "every user failed", header: "To: alice@example.com", perm: []string{"alice"}, want: "alice@example.com"},
		{name: "nothing local", header: "To: someone@elsewhere.test", want: ""},
		{name: "unparseable", header: "To: alice@example.com, a@b@@c", want: ""},
		{name: "routed", header: "To: alice@example.com", want: "-"},
		{name: "many", header: "To: " + strings.Join(many, ",\n\t")},
		{name: "single drop", single: true, perm: []string{"joe"}, header: "To: dave@example.com", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users, pm := fault.New(), &fieldTarget{}
			for _, u := range tt.perm {
				users.Permanent(u, "no such mailbox")
			}
			var d Dispatcher = &singleDrop{target: users, postmaster: pm, rcpt: deliver.Recipient{User: "joe"}}
			if !tt.single {
				a := &rcfile.Account{Name: "t", Username: "catchall", Multidrop: testMultidrop(mdUser("alice", "alice"), mdUser("bob", "bob"))}
				var err error
				if d, err = newMultidrop(a, users, pm, "test.host"); err != nil {
					t.Fatal(err)
				}
			}
			raw := []byte(strings.ReplaceAll(tt.header+"\nMessage-ID: <1@x>\n\nbody\n", "\n", "\r\n"))
			if err := d.Dispatch(context.Background(), &deliver.Message{UID: "m1", Raw: raw}, nopProgress{}, nil); err != nil {
				t.Fatal(err)
			}
			got, copied, ok := pm.field("m1", "X-Popfetch-Unrouted")
			switch {
			case tt.want == "-":
				if copied {
					t.Fatalf("the postmaster got a copy of a routed message")
				}
				return
			case !copied:
				t.Fatalf("no postmaster copy")
			case tt.name == "many":
				if !ok || len(got) > maxUnrouted || !strings.HasSuffix(got, " more)") {
					t.Fatalf("X-Popfetch-Unrouted = %q (%d bytes); want a list cut at %d bytes with \"(N more)\"", got, len(got), maxUnrouted)
				}
				list, err := mail.ParseAddressList(got)
				if err != nil {
					t.Fatalf("X-Popfetch-Unrouted %q is no address list: %v", got, err)
				}
				n := 0
				fmt.Sscanf(got[strings.LastIndexByte(got, '(')+1:], "%d", &n)
				if len(list) == 0 || len(list)+n != len(many) {
					t.Errorf("X-Popfetch-Unrouted lists %d addresses and %d more; want %d in all", len(list), n, len(many))
				}
				for i, a := range list {
					if a.Address != many[i] {
						t.Errorf("address %d = %q; want %q", i, a.Address, many[i])
					}
				}
			case tt.want == "":
				if ok {
					t.Errorf("X-Popfetch-Unrouted = %q; want none", got)
				}
			case got != tt.want:
				t.Errorf("X-Popfetch-Unrouted = %q; want %q", got, tt.want)
			}
			if _, _, ok := pm.field("m1", "X-Popfetch-Reason"); !ok {
				t.Errorf("the postmaster copy has no X-Popfetch-Reason")
			}
		})
	}
}
