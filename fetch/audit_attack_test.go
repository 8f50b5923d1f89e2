package fetch

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest/fault"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// Many messages delivered 32 at once, one DELE refused and the connection
// dropped in the middle of the DELE replies: every delivered message gets
// exactly one audit line, each names a copy that is in the Maildir, and
// the deleted ones are exactly those whose DELE was answered +OK.
func TestAuditLinesManyExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults []pop3test.Fault
	}{
		{name: "clean"},
		{name: "refused", faults: []pop3test.Fault{{Cmd: "DELE", N: 300, Action: pop3test.Reply, Reply: "-ERR no"}}},
		{name: "dropped", faults: []pop3test.Fault{{Cmd: "DELE", N: 400, Action: pop3test.Drop}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 700
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(n), Faults: tc.faults})
			a := testAccount(t, srv)
			var logs auditLogs
			p := poller(nil)
			p.Log = logs.logger()
			res := p.Poll(context.Background(), a)
			recs := logs.records(t, "message delivered")
			if len(recs) != res.Delivered || res.Delivered != n && tc.name != "dropped" || maildirCount(t, a) != len(recs) {
				t.Fatalf("%d audit lines, Delivered %d; want %d (%+v)", len(recs), res.Delivered, n, res)
			}
			seen := map[string]int{}
			deleted := 0
			for _, r := range recs {
				seen[path(r, "uid")]++
				if path(r, "on_server") == "deleted" {
					deleted++
				}
				if _, err := os.Stat(filepath.Join(a.Deliver.Maildir, path(r, "copy.1.dest"))); err != nil {
					t.Errorf("audit line names a copy not on disk: %v", err)
				}
			}
			for i := 1; i <= n; i++ {
				if c := seen[fmt.Sprintf("uid-%04d", i)]; c > 1 || c == 0 && tc.name != "dropped" {
					t.Errorf("uid-%04d: %d audit lines", i, c)
				}
			}
			if deleted != res.Deleted {
				t.Errorf("%d lines say deleted; Deleted = %d", deleted, res.Deleted)
			}
			if len(logs.textLines("message delivered")) != len(recs) {
				t.Errorf("text lines differ from JSON")
			}
		})
	}
}

// A hostile header: a 1 MB Message-ID, NUL, invalid UTF-8, bidi controls:
// the audit line stays short and carries none of them raw.
func TestAuditLineHostileBounded(t *testing.T) {
	big := strings.Repeat("A", 1<<20)
	for _, data := range []string{
		"Message-ID: <" + big + "@x>\r\nFrom: a@example.com\r\n\r\nbody\r\n",
		"Message-ID: <a\x00b\xff\xfe\u2067@x>\r\nFrom: \"\u202e\" <\x00@x>\r\nReturn-Path: <\x1b[2J\xc0@x>\r\n\r\nbody\r\n",
		"From: " + big + "\r\n\r\nbody\r\n",
		"Message-ID:\r\n " + strings.Repeat("<x@y> ", 200000) + "\r\n\r\nbody\r\n",
	} {
		srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{{UID: "u1", Data: []byte(data)}}})
		a := testAccount(t, srv)
		var logs auditLogs
		p := poller(nil)
		p.Log = logs.logger()
		if res := p.Poll(context.Background(), a); res.Delivered != 1 {
			t.Fatalf("Poll = %+v", res)
		}
		for _, out := range []string{logs.text.String(), logs.json.String()} {
			for _, line := range strings.Split(out, "\n") {
				if len(line) > 8<<10 {
					t.Errorf("log line of %d bytes", len(line))
				}
			}
			if strings.ContainsAny(out, "\x00\x1b\u202e\u2067") || !strings.Contains(strings.ToValidUTF8(out, "?"), "") {
				t.Errorf("raw control in log: %q", out)
			}
		}
	}
}

// With keep, a message delivered in a session that then breaks off (the
// connection drops at a later RETR) is still kept on purpose, not waiting
// for a DELE: its audit line says kept, and it counts in Kept.
func TestAuditLineKeepSessionBroken(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(300), Faults: []pop3test.Fault{{Cmd: "RETR", N: 290, Action: pop3test.Custom,
		// The first round's deliveries end meanwhile, most of them
		// recorded but not yet synced in a batch.
		Func: func(c *pop3test.Conn) { time.Sleep(300 * time.Millisecond); c.Close() }}}})
	a := testAccount(t, srv)
	a.Keep = true
	var logs auditLogs
	p := poller(nil)
	p.Log = logs.logger()
	res := p.Poll(context.Background(), a)
	if res.Err == nil || res.Delivered == 0 {
		t.Fatalf("Poll = %+v; want some delivered, then the drop", res)
	}
	recs := logs.records(t, "message delivered")
	if len(recs) != res.Delivered || res.Kept != res.Delivered {
		t.Errorf("%d audit lines, Kept %d, Delivered %d", len(recs), res.Kept, res.Delivered)
	}
	for _, r := range recs {
		if path(r, "on_server") != "kept" {
			t.Errorf("uid %s: on_server %s; want kept", path(r, "uid"), path(r, "on_server"))
		}
	}
}

// A server may claim any size in its LIST replies: MailboxBytes (the
// popfetch_mailbox_bytes gauge a quota alert watches) saturates rather
// than wrapping around to a negative size, which the gauge would show as
// an empty mailbox.
func TestMailboxBytesSaturates(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(3), ListSize: func(pop3test.Message) int { return math.MaxInt64/2 + 1 }})
	a := testAccount(t, srv)
	res := poller(nil).Poll(context.Background(), a)
	if res.Err != nil || res.Messages != 3 || res.MailboxBytes != math.MaxInt64 {
		t.Errorf("Poll = %+v; want MailboxBytes %d", res, int64(math.MaxInt64))
	}
}

// Multidrop, many messages with dedupe_message_id and several copies of
// one message: each delivered message has one line, with one copy per
// user (a duplicate's copy noted as such), and the postmaster's messages
// count in Postmaster.
func TestAuditLinesMultidropMany(t *testing.T) {
	var ms []pop3test.Message
	for i := range 120 {
		h := fmt.Sprintf("To: alice@example.com, bob@example.com\nMessage-ID: <%d@x>", i%60) // each Message-ID twice
		if i%10 == 0 {
			h = fmt.Sprintf("To: nobody@example.com\nMessage-ID: <pm%d@x>", i)
		}
		ms = append(ms, domainMsg(fmt.Sprintf("m%03d", i), h))
	}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: ms})
	a := testAccount(t, srv)
	var logs auditLogs
	res := mdPoller(t, fault.New(), fault.New(), func(md *rcfile.Multidrop) { md.DedupeMessageID = true }, logs.logger()).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != len(ms) || res.Postmaster != 12 {
		t.Fatalf("Poll = %+v", res)
	}
	recs := logs.records(t, "message delivered")
	seen := map[string]bool{}
	for _, r := range recs {
		uid := path(r, "uid")
		if seen[uid] {
			t.Errorf("%s: two lines", uid)
		}
		seen[uid] = true
		if path(r, "copy.1.postmaster") == "true" {
			if path(r, "copy.2.target") != "" {
				t.Errorf("%v", r)
			}
			continue
		}
		if path(r, "copy.1.user") == "" || path(r, "copy.2.user") == "" || path(r, "copy.3.user") != "" {
			t.Errorf("%s: copies %v", uid, r["copy"])
		}
	}
	if len(seen) != len(ms) {
		t.Errorf("%d lines; want %d", len(seen), len(ms))
	}
}
