package interop

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/internal/logsafe"
	"github.com/popfetch/popfetch/internal/testutil"
)

// The audit trail and the poll's counters against real servers: one audit
// line per message, naming a copy that is in the Maildir and what the
// server did; the counters match what the server held and served.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := c.start(t)
			msgs := messages(1, 9)
			s.Put(t, msgs...)
			a := account(t, s)
			var buf testutil.SyncBuffer
			p := &fetch.Poller{Log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: logsafe.Seconds}))}
			res := p.Poll(context.Background(), a)
			s.WaitIdle(t)
			if res.Err != nil || res.Delivered != len(msgs) || res.Deleted != len(msgs) || res.Kept != 0 || res.Postmaster != 0 || res.GivenUp != 0 {
				t.Fatalf("Poll = %+v", res)
			}
			if res.Bytes <= 0 || res.MailboxBytes <= 0 {
				t.Errorf("Bytes %d, MailboxBytes %d", res.Bytes, res.MailboxBytes)
			}
			if res.Bytes != res.MailboxBytes {
				t.Logf("Bytes %d, MailboxBytes %d", res.Bytes, res.MailboxBytes)
			}
			uids := map[string]bool{}
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				var r map[string]any
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				switch r["msg"] {
				case "message delivered":
				case "poll done":
					if _, ok := r["elapsed"].(float64); !ok {
						t.Errorf("elapsed %v is not float seconds", r["elapsed"])
					}
					continue
				default:
					continue
				}
				uid, _ := r["uid"].(string)
				if uids[uid] {
					t.Errorf("uid %s: two audit lines", uid)
				}
				uids[uid] = true
				cp, _ := r["copy"].(map[string]any)
				one, _ := cp["1"].(map[string]any)
				dest, _ := one["dest"].(string)
				if one["target"] != "maildir" || !strings.HasPrefix(dest, "new/") {
					t.Errorf("audit line %v", r)
				} else if _, err := os.Stat(filepath.Join(a.Deliver.Maildir, dest)); err != nil {
					t.Errorf("audit line names %s: %v", dest, err)
				}
				if r["on_server"] != "deleted" || !strings.HasPrefix(r["message_id"].(string), "interop-") || r["from"] != "sender@example.net" {
					t.Errorf("audit line %v", r)
				}
			}
			if len(uids) != len(msgs) {
				t.Errorf("%d audit lines; want %d", len(uids), len(msgs))
			}
			if n := s.Count(t); n != 0 {
				t.Errorf("server holds %d", n)
			}
		})
	}
}
