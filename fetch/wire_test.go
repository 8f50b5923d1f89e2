package fetch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/deliver/delivertest/fault"
)

// intentLog is a Progress that keeps the intents of one message and
// checks that each names a file that does not exist yet.
type intentLog struct {
	nopProgress
	t       *testing.T
	intents []string
}

func (l *intentLog) Intend(path string) error {
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		l.t.Errorf("intent for %s recorded after it appeared (stat err %v)", path, err)
	}
	l.intents = append(l.intents, path)
	return nil
}

// A single-drop copy into a Maildir, the user's or, after a permanent
// failure, the postmaster's, is recorded as an intent with its final
// path before it is committed: exactly one intent, naming the one file
// in new/. A target that cannot deliver in two phases records none.
func TestSingleDropIntent(t *testing.T) {
	perm := &deliver.Error{Target: "fake", Permanent: true, Reason: "no such user"}
	tests := []struct {
		name      string
		user, pm  bool // Maildir targets; else a fake
		userFails bool
		want      string // the Maildir whose new/ the intent names, "" for none
	}{
		{name: "maildir", user: true, want: "user"},
		{name: "postmaster maildir", pm: true, userFails: true, want: "pm"},
		{name: "one-step target", want: ""},
		{name: "one-step postmaster", userFails: true, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fake := fault.New()
			if tt.userFails {
				fake.Fail("joe", perm)
			}
			d := &singleDrop{target: fake, postmaster: fake, rcpt: deliver.Recipient{User: "joe"}}
			if tt.user {
				d.target = deliver.NewMaildir(filepath.Join(dir, "user"), deliver.MaildirOptions{LocalHost: "h"})
			}
			if tt.pm {
				d.postmaster = deliver.NewMaildir(filepath.Join(dir, "pm"), deliver.MaildirOptions{LocalHost: "h"})
			}
			p := &intentLog{t: t}
			if err := d.Dispatch(context.Background(), &deliver.Message{UID: "u1", Raw: []byte("Subject: x\r\n\r\nbody\r\n")}, p, nil); err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if len(p.intents) != 0 {
					t.Fatalf("intents %q; want none", p.intents)
				}
				return
			}
			files := delivertest.MaildirFiles(t, filepath.Join(dir, tt.want), "new")
			if len(files) != 1 || len(p.intents) != 1 || p.intents[0] != files[0] {
				t.Fatalf("intents %q; new/ holds %v", p.intents, files)
			}
			if !deliver.Committed(p.intents[0]) {
				t.Error("the intent's copy is not Committed")
			}
			if tt.pm {
				b, _ := os.ReadFile(p.intents[0])
				if !strings.Contains(string(b), "X-Popfetch-Reason: no such user\n") {
					t.Errorf("postmaster copy lacks the reason:\n%s", b)
				}
			}
		})
	}
}
