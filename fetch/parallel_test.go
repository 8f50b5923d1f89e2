package fetch

import (
	"testing"

	"github.com/popfetch/popfetch/deliver"
)

// Many Maildir copies at once share fsyncs; MDA processes and SMTP/LMTP
// transactions are someone else's cost, so a session runs few of them.
func TestParallelByTarget(t *testing.T) {
	md := deliver.NewMaildir(t.TempDir(), deliver.MaildirOptions{})
	mda := &deliver.MDA{}
	tests := []struct {
		name string
		d    Dispatcher
		want int
	}{
		{"single-drop maildir", &singleDrop{target: md}, maildirPar},
		{"single-drop maildir, maildir postmaster", &singleDrop{target: md, postmaster: md}, maildirPar},
		{"single-drop mda", &singleDrop{target: mda}, deliverers},
		{"single-drop maildir, mda postmaster", &singleDrop{target: md, postmaster: mda}, deliverers},
		{"multidrop maildirs", &multidrop{def: md, users: map[string]deliver.Target{"a": md}}, maildirPar},
		{"multidrop, one user's mda", &multidrop{def: md, users: map[string]deliver.Target{"a": mda}}, deliverers},
		{"multidrop, mda postmaster", &multidrop{def: md, postmaster: mda}, deliverers},
	}
	for _, tt := range tests {
		if got := parallel(tt.d); got != tt.want {
			t.Errorf("%s: parallel = %d, want %d", tt.name, got, tt.want)
		}
	}
}
