package daemon

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/popfetch/popfetch/rcfile"
)

// TestDaemonReloadMailboxIDRefused: mailbox_id names an account's UIDL
// journal; setting, changing or removing it in a running daemon would
// start the mailbox the account logs in to (user, server, port) with a
// new, empty journal (a keep mailbox fetched again in full), like a moved
// state_dir. Such a reload is refused whole, also when the account is
// renamed at the same time or was removed and is added back, and the
// running config stays. A changed port, user or server is another login,
// and two accounts that log in to one place with their own mailbox_id from
// the start are kept apart as they were.
func TestDaemonReloadMailboxIDRefused(t *testing.T) {
	box := func(name, user string, port int, id string) *rcfile.Account {
		a := acct(name, "pop.example", time.Hour)
		a.Username, a.Port, a.MailboxID = user, port, id
		return a
	}
	for _, tc := range []struct {
		name  string
		start *rcfile.Config
		steps []*rcfile.Config
		want  string // for the last step; "" = applied
	}{
		{name: "set", start: config(box("a", "joe", 995, "")),
			steps: []*rcfile.Config{config(box("a", "joe", 995, "t1"))},
			want:  "account a: mailbox_id changed: joe@pop.example:995 was polled with the journal joe@pop.example, not t1"},
		{name: "changed", start: config(box("a", "joe", 995, "t1")),
			steps: []*rcfile.Config{config(box("a", "joe", 995, "t2"))},
			want:  "account a: mailbox_id changed: joe@pop.example:995 was polled with the journal t1, not t2"},
		{name: "removed", start: config(box("a", "joe", 995, "t1")),
			steps: []*rcfile.Config{config(box("a", "joe", 995, ""))},
			want:  "not joe@pop.example"},
		{name: "renamed and changed", start: config(box("a", "joe", 995, "t1")),
			steps: []*rcfile.Config{config(box("x", "joe", 995, "t2"))},
			want:  "account x: mailbox_id changed"},
		{name: "removed, then added back changed", start: config(box("a", "joe", 995, "t1"), box("b", "ann", 995, "")),
			steps: []*rcfile.Config{config(box("b", "ann", 995, "")), config(box("a", "joe", 995, "t2"), box("b", "ann", 995, ""))},
			want:  "account a: mailbox_id changed"},
		{name: "unchanged", start: config(box("a", "joe", 995, "t1")),
			steps: []*rcfile.Config{config(box("a", "joe", 995, "t1"))}},
		{name: "renamed", start: config(box("a", "joe", 995, "t1")),
			steps: []*rcfile.Config{config(box("x", "joe", 995, "t1"))}},
		{name: "other port", start: config(box("a", "joe", 1110, "t1")),
			steps: []*rcfile.Config{config(box("a", "joe", 1110, "t1"), box("b", "joe", 1111, "t2"))}},
		{name: "port moved", start: config(box("a", "joe", 1110, "t1")),
			steps: []*rcfile.Config{config(box("a", "joe", 1111, "t1"))}},
		{name: "two at one login from the start", start: config(box("a", "joe", 1110, "t1"), box("b", "joe", 1110, "t2")),
			steps: []*rcfile.Config{config(box("b", "joe", 1110, "t2"), box("a", "joe", 1110, "t1"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, tc.start, nil)
				running := func() string {
					h.d.mu.Lock()
					defer h.d.mu.Unlock()
					var ids []string
					for _, a := range h.d.cfg.Accounts {
						ids = append(ids, a.Name+"="+a.MailboxID)
					}
					return strings.Join(ids, " ")
				}
				for i, next := range tc.steps {
					gen, before := h.d.Status().Generation, running()
					err := h.d.Reload(next)
					if i < len(tc.steps)-1 || tc.want == "" {
						if err != nil || h.d.Status().Generation != gen+1 {
							t.Fatalf("step %d: Reload = %v, generation %d; want nil, %d", i, err, h.d.Status().Generation, gen+1)
						}
						continue
					}
					if !errors.Is(err, ErrRestartRequired) || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("Reload = %v; want ErrRestartRequired containing %q", err, tc.want)
					}
					if got := running(); h.d.Status().Generation != gen || got != before {
						t.Fatalf("after a refused reload: generation %d, accounts %s; want %d, the old ones %s", h.d.Status().Generation, got, gen, before)
					}
				}
			})
		})
	}
}
