package interop

import (
	"bytes"
	"testing"
	"time"

	"github.com/popfetch/popfetch/rcfile"
)

// TestFilterMailutils: a command filter against GNU mailutils pop3d (a
// server other than dovecot): a filter answering 75 keeps every message
// on the server and delivers none; the next poll with a filter that
// stamps a field delivers each message once, filtered and otherwise as
// served, and empties the maildrop.
func TestFilterMailutils(t *testing.T) {
	t.Parallel()
	s := StartMailutils(t, MailutilsOptions{TLS: Plain})
	msgs := messages(1, 12)
	s.Put(t, msgs...)
	a := account(t, s)
	a.Filters = []rcfile.Filter{{Name: "busy", Command: []string{"/bin/sh", "-c", "cat >/dev/null; exit 75"}, Timeout: 20 * time.Second}}
	res := poll(t, s, a)
	if res.Delivered != 0 || res.Deleted != 0 {
		t.Errorf("tempfail poll = %+v; want nothing delivered or deleted", res)
	}
	if n := s.Count(t); n != len(msgs) {
		t.Fatalf("server holds %d messages after a tempfail; want %d", n, len(msgs))
	}
	if got := delivered(t, s, a.Deliver.Maildir); len(got) != 0 {
		t.Fatalf("%d messages delivered despite the tempfail", len(got))
	}
	a.Filters = []rcfile.Filter{{Name: "stamp", Command: []string{"/bin/sh", "-c", `printf 'X-Filtered: yes\n'; cat`}, Timeout: 20 * time.Second}}
	res = poll(t, s, a)
	if res.Err != nil || res.Delivered != len(msgs) || res.Deleted != len(msgs) {
		t.Errorf("filtered poll = %+v; want %d delivered and deleted", res, len(msgs))
	}
	got := delivered(t, s, a.Deliver.Maildir)
	for _, m := range msgs {
		copies := got[seqOf(m)]
		if len(copies) != 1 {
			t.Errorf("message %s: %d copies", seqOf(m), len(copies))
			continue
		}
		w := want(s, m)
		if !bytes.HasPrefix(copies[0], []byte("X-Filtered: yes")) || !bytes.HasSuffix(copies[0], w) {
			t.Errorf("message %s:\ngot  %q\nwant X-Filtered: yes + %q", seqOf(m), copies[0], w)
		}
	}
	if n := s.Count(t); n != 0 {
		t.Errorf("server holds %d messages; want 0", n)
	}
}
