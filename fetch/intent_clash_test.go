package fetch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest/fault"
)

// clashProgress is a Progress that, at the first intent, puts another
// file under the intended name (a clash, as another program sharing the
// Maildir would cause) and fails to record the second, the fresh name's.
type clashProgress struct {
	nopProgress
	t     *testing.T
	calls int
}

func (p *clashProgress) Intend(path string) error {
	p.calls++
	if p.calls == 1 {
		if err := os.WriteFile(path, []byte("someone else's"), 0o600); err != nil {
			p.t.Fatal(err)
		}
		return nil
	}
	return errors.New("journal write failed (simulated)")
}

// After a Commit finds the copy's name taken, the fresh name must be
// recorded before the copy is committed under it: the recorded intent
// still names the other file. When that record fails the copy is aborted,
// not committed, and the delivery fails temporarily (the message stays on
// the server and is fetched again), for the user's Maildir and the
// postmaster's alike.
func TestIntentAfterNameClashFails(t *testing.T) {
	perm := &deliver.Error{Target: "fake", Permanent: true, Reason: "no such user"}
	for _, tt := range []struct {
		name string
		pm   bool // the copy is the postmaster's: the user's target fails permanently
	}{
		{name: "user maildir"},
		{name: "postmaster maildir", pm: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			box := filepath.Join(t.TempDir(), "Maildir")
			md := deliver.NewMaildir(box, deliver.MaildirOptions{LocalHost: "h"})
			d := &singleDrop{target: md, rcpt: deliver.Recipient{User: "joe"}}
			if tt.pm {
				fake := fault.New()
				fake.Fail("joe", perm)
				d.target, d.postmaster = fake, md
			}
			p := &clashProgress{t: t}
			err := d.Dispatch(context.Background(), &deliver.Message{UID: "u1", Raw: []byte("Subject: x\r\n\r\nbody\r\n")}, p, nil)
			if err == nil || deliver.IsPermanent(err) {
				t.Fatalf("Dispatch = %v; want a temporary failure", err)
			}
			if p.calls != 2 {
				t.Fatalf("%d intents; want 2 (the first name, then the fresh one)", p.calls)
			}
			ents, _ := os.ReadDir(filepath.Join(box, "new"))
			if len(ents) != 1 {
				t.Fatalf("new/ holds %v; want only the other file", ents)
			}
			if b, _ := os.ReadFile(filepath.Join(box, "new", ents[0].Name())); string(b) != "someone else's" {
				t.Errorf("new/ holds %q; want only the other file", b)
			}
			if tmp, _ := os.ReadDir(filepath.Join(box, "tmp")); len(tmp) != 0 {
				t.Errorf("tmp/ holds %v after the abort", tmp)
			}
		})
	}
}
