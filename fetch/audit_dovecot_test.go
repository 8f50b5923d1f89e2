package fetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/rcfile"
)

// The audit trail end to end, against a real dovecot: for a single-drop
// Maildir, procmail as the MDA, and a multidrop mailbox delivering
// through dovecot's LMTP with an unroutable copy at the postmaster, each
// message gets one audit line, in text and in JSON alike, that says where
// each copy went (the file in the Maildir, the MDA, the LMTP server and
// its reply, or the postmaster and why) and that it was deleted from the
// server.
func TestAuditLinesDovecot(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{LMTP: true})
	type copyWant struct{ user, rcpt, target, dest, reply, reason string } // "" = not checked; dest "new/" = a file in the Maildir
	run := func(t *testing.T, a *rcfile.Account, mb *dovecottest.Mailbox, msgs [][]byte, want map[string][]copyWant, maildirs map[string]string) {
		t.Helper()
		mb.Put(t, msgs...)
		var logs auditLogs
		p := &Poller{Log: logs.logger()}
		res := p.Poll(context.Background(), a)
		if res.Err != nil || res.Delivered != len(msgs) || res.Deleted != len(msgs) {
			t.Fatalf("Poll = %+v", res)
		}
		if mb.Count(t) != 0 {
			t.Errorf("%d messages left on the server", mb.Count(t))
		}
		recs := logs.records(t, "message delivered")
		lines := logs.textLines("message delivered")
		if len(recs) != len(msgs) || len(lines) != len(msgs) {
			t.Fatalf("audit lines: %d JSON, %d text; want %d:\n%s", len(recs), len(lines), len(msgs), logs.text.String())
		}
		for i, r := range recs {
			t.Logf("text: %s", lines[i])
			mid := path(r, "message_id")
			w, ok := want[mid]
			if !ok {
				t.Errorf("audit line for an unexpected message_id %q", mid)
				continue
			}
			if path(r, "on_server") != "deleted" || path(r, "from") != "sender@example.net" || path(r, "account") != a.Name || path(r, "uid") == "" || path(r, "size") == "" {
				t.Errorf("audit line %v: want on_server deleted, from sender@example.net, account, uid, size", r)
			}
			for k, c := range w {
				pre := fmt.Sprintf("copy.%d.", k+1)
				got := func(key string) string { return path(r, pre+key) }
				user := c.user
				if user == "postmaster" {
					user = "" // the postmaster's copy has postmaster=true instead
				}
				if c.user != "postmaster" && got("user") != user {
					t.Errorf("%s: %suser = %q; want %q", mid, pre, got("user"), user)
				}
				for key, v := range map[string]string{"target": c.target, "reason": c.reason, "rcpt": c.rcpt} {
					if v != "" && !strings.Contains(got(key), v) {
						t.Errorf("%s: %s%s = %q; want %q", mid, pre, key, got(key), v)
					}
				}
				if c.user == "postmaster" && got("postmaster") != "true" {
					t.Errorf("%s: %spostmaster = %q; want true", mid, pre, got("postmaster"))
				}
				if c.reply != "" && !strings.HasPrefix(got("reply"), c.reply) {
					t.Errorf("%s: %sreply = %q; want it to start %q", mid, pre, got("reply"), c.reply)
				}
				switch {
				case c.dest == "new/":
					root := maildirs[c.user]
					if _, err := os.Stat(filepath.Join(root, got("dest"))); err != nil || !strings.HasPrefix(got("dest"), "new/") {
						t.Errorf("%s: %sdest = %q is no file in %s: %v", mid, pre, got("dest"), root, err)
					}
				case got("dest") != c.dest:
					t.Errorf("%s: %sdest = %q; want %q", mid, pre, got("dest"), c.dest)
				}
				// The text line has the same keys.
				if !strings.Contains(lines[i], " "+pre+"target="+c.target) {
					t.Errorf("text line lacks %starget=%s: %s", pre, c.target, lines[i])
				}
			}
			if extra := path(r, fmt.Sprintf("copy.%d.target", len(w)+1)); extra != "" {
				t.Errorf("%s: more copies than %d: %v", mid, len(w), r)
			}
		}
		sum := logs.records(t, "poll done")
		if len(sum) != 1 || path(sum[0], "delivered") != fmt.Sprint(res.Delivered) || path(sum[0], "postmaster") != fmt.Sprint(res.Postmaster) {
			t.Errorf("poll done %v; want delivered=%d postmaster=%d", sum, res.Delivered, res.Postmaster)
		} else if e, ok := sum[0]["elapsed"].(float64); !ok || e <= 0 || e > 60 {
			t.Errorf("poll done elapsed = %v; want seconds in a float", sum[0]["elapsed"])
		}
		t.Logf("text: %s", logs.textLines("poll done")[0])
		for _, l := range strings.Split(strings.TrimSpace(logs.json.String()), "\n") {
			if strings.Contains(l, `"msg":"message delivered"`) || strings.Contains(l, `"msg":"poll done"`) {
				t.Logf("json: %s", l)
			}
		}
	}
	msg := func(seq int, to string) []byte {
		return fmt.Appendf(nil, "Return-Path: <sender@example.net>\r\nFrom: Sender <sender@example.net>\r\nTo: %s\r\nMessage-ID: <audit-%d@example.net>\r\nSubject: audit %d\r\n\r\nbody %d\r\n", to, seq, seq, seq)
	}

	t.Run("maildir", func(t *testing.T) {
		mb := srv.AddUser(t, "audit-maildir", "pw")
		a := dovecotAccount(t, srv, mb, rcfile.TLSNone)
		run(t, a, mb, [][]byte{msg(1, "joe@example.com")},
			map[string][]copyWant{"audit-1@example.net": {{target: "maildir", dest: "new/"}}},
			map[string]string{"": a.Deliver.Maildir})
	})

	t.Run("procmail", func(t *testing.T) {
		requireProcmail(t)
		dir := t.TempDir()
		rc := filepath.Join(dir, "procmailrc")
		// The trailing slash makes procmail deliver in Maildir format.
		if err := os.WriteFile(rc, []byte("DEFAULT="+dir+"/Maildir/\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		mb := srv.AddUser(t, "audit-mda", "pw")
		a := dovecotAccount(t, srv, mb, rcfile.TLSNone)
		a.Deliver = rcfile.Destination{MDA: []string{"/usr/bin/procmail", "-m", rc}}
		run(t, a, mb, [][]byte{msg(2, "joe@example.com")},
			map[string][]copyWant{"audit-2@example.net": {{target: "mda", dest: "/usr/bin/procmail"}}}, nil)
	})

	// Multidrop through dovecot's LMTP: one message for alice, one for
	// bob and an unknown user (bob's copy and the postmaster's), one for
	// nobody known (the postmaster's alone).
	t.Run("multidrop lmtp", func(t *testing.T) {
		for _, u := range []string{"alice", "bob"} {
			srv.AddUser(t, u, "pw-"+u)
		}
		mb := srv.AddUser(t, "audit-catchall", "pw")
		a := mdAccount(t, srv, mb, rcfile.TLSNone)
		a.Deliver = rcfile.Destination{SMTP: &rcfile.SMTP{Server: srv.LMTPAddr, LMTP: true, Helo: "popfetch.test"}}
		pm := map[string]string{"postmaster": a.Postmaster.Maildir}
		run(t, a, mb, [][]byte{msg(3, "alice@example.com"), msg(4, "bob@example.com, zed@example.com"), msg(5, "zed@example.com")},
			map[string][]copyWant{
				"audit-3@example.net": {{user: "alice", rcpt: "alice@example.com", target: "lmtp", dest: srv.LMTPAddr, reply: "250 2.0.0 <alice@example.com>"}},
				"audit-4@example.net": {{user: "bob", target: "lmtp", dest: srv.LMTPAddr, reply: "250 2.0.0 <bob@example.com>"},
					{user: "postmaster", target: "maildir", dest: "new/", reason: "zed@example.com"}},
				"audit-5@example.net": {{user: "postmaster", target: "maildir", dest: "new/", reason: "zed@example.com"}},
			}, pm)
	})
}
