package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest/fault"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/logsafe"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// auditLogs captures a poll's log in text and in JSON at once.
type auditLogs struct{ text, json testutil.SyncBuffer }

func (l *auditLogs) logger() *slog.Logger {
	o := &slog.HandlerOptions{Level: slog.LevelInfo}
	// The JSON handler as popfetch sets it up (cmd/popfetch).
	j := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: logsafe.Seconds}
	return slog.New(fanout{slog.NewTextHandler(&l.text, o), slog.NewJSONHandler(&l.json, j)})
}

// records returns the JSON records whose msg is msg.
func (l *auditLogs) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.json.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("JSON log line %q: %v", line, err)
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// textLines returns the text lines whose msg is msg.
func (l *auditLogs) textLines(msg string) []string {
	var out []string
	for _, line := range strings.Split(l.text.String(), "\n") {
		if strings.Contains(line, "msg=\""+msg+"\"") || strings.Contains(line, "msg="+msg+" ") {
			out = append(out, line)
		}
	}
	return out
}

// fanout is a slog.Handler that hands each record to several handlers.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool { return f[0].Enabled(ctx, l) }
func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range f {
		if err := h.Handle(ctx, r.Clone()); err != nil {
			return err
		}
	}
	return nil
}
func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}
func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}

// path returns the value at a dotted key path of a JSON record ("" when
// absent): the same path the text handler prints as the key.
func path(r map[string]any, key string) string {
	var v any = r
	for _, k := range strings.Split(key, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[k]
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// The audit line of a message delivered into a Maildir says where its
// copy is, what the server did with it, and who sent it, identically in
// text and JSON; a header value with ESC, CR and other control bytes
// never reaches the log as it is.
func TestAuditLineMaildir(t *testing.T) {
	hostile := pop3test.Message{UID: "uid-evil", Data: []byte("Return-Path: <>\r\nFrom: \x1b]0;owned\x07Mallory \x1b[2J<m@evil.example>\rX\r\n" +
		"To: b@example.com\r\nMessage-ID: <id\x1b[31m\r@evil\u202e.example>\r\nSubject: x\r\n\r\nbody\r\n")}
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{msg(1), hostile}})
	a := testAccount(t, srv)
	var logs auditLogs
	p := poller(nil)
	p.Log = logs.logger()
	res := p.Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 2 || res.Deleted != 2 {
		t.Fatalf("Poll = %+v", res)
	}
	for _, out := range []string{logs.text.String(), logs.json.String()} {
		if i := strings.IndexFunc(out, func(r rune) bool { return r == 0x1b || r == '\r' || r == 0x07 || r == '\u202e' }); i >= 0 {
			t.Errorf("a control character reached the log at %d: %q", i, out[max(0, i-40):min(len(out), i+40)])
		}
	}
	lines := logs.textLines("message delivered")
	recs := logs.records(t, "message delivered")
	if len(lines) != 2 || len(recs) != 2 {
		t.Fatalf("audit lines: text %q, JSON %v; want one per message", lines, recs)
	}
	want := []map[string]string{
		{"uid": "uid-0001", "message_id": "1@example.com", "from": "a@example.com", "size": fmt.Sprint(len(msg(1).Data)),
			"copy.1.target": "maildir", "on_server": "deleted", "account": "test"},
		{"uid": "uid-evil", "message_id": `<id\x1b[31m\r@evil\u202e.example>`, "from": `\x1b]0;owned\x07Mallory \x1b[2J<m@evil.example>\rX`,
			"copy.1.target": "maildir", "on_server": "deleted"},
	}
	// The lines come as the DELEs are answered, in the order the
	// concurrent deliveries ended.
	if path(recs[0], "uid") != "uid-0001" {
		recs[0], recs[1] = recs[1], recs[0]
		lines[0], lines[1] = lines[1], lines[0]
	}
	for i, w := range want {
		for k, v := range w {
			if got := path(recs[i], k); got != v {
				t.Errorf("JSON record %d: %s = %q; want %q", i, k, got, v)
			}
			// The text line has the same key; its value may be
			// quoted (strconv.Quote doubles the backslashes).
			if !strings.Contains(lines[i], " "+k+"="+v) && !strings.Contains(lines[i], " "+k+"="+fmt.Sprintf("%q", v)) {
				t.Errorf("text line %d has no %s=%q: %s", i, k, v, lines[i])
			}
		}
		dest := path(recs[i], "copy.1.dest")
		if !strings.HasPrefix(dest, "new/") || !strings.Contains(lines[i], " copy.1.dest="+dest) && !strings.Contains(lines[i], fmt.Sprintf(" copy.1.dest=%q", dest)) {
			t.Errorf("copy.1.dest = %q (text %s); want new/NAME", dest, lines[i])
		}
		if _, err := os.Stat(filepath.Join(a.Deliver.Maildir, dest)); err != nil {
			t.Errorf("the audit line names %s, which is not in the Maildir: %v", dest, err)
		}
	}
	// The summary counts the bytes retrieved.
	if want := int64(len(msg(1).Data) + len(hostile.Data)); res.Bytes != want {
		t.Errorf("Bytes = %d; want %d", res.Bytes, want)
	}
}

// What the server did with a delivered message is in its audit line:
// deleted, kept (keep), or dele_refused; and log_messages = false leaves
// the line out while the counters stay.
func TestAuditLineServerOutcome(t *testing.T) {
	for _, tc := range []struct {
		name     string
		keep     bool
		quiet    bool
		faults   []pop3test.Fault
		want     []string // on_server per message; nil: no audit line
		kept     int
		deleted  int
		leftover int
	}{
		{name: "deleted", want: []string{"deleted", "deleted"}, deleted: 2},
		{name: "kept", keep: true, want: []string{"kept", "kept"}, kept: 2, leftover: 2},
		{name: "refused", faults: []pop3test.Fault{{Cmd: "DELE", N: 1, Action: pop3test.Reply, Reply: "-ERR [SYS/TEMP] later"}},
			want: []string{"dele_refused", "deleted"}, deleted: 1, leftover: 1},
		{name: "quiet", quiet: true, keep: true, kept: 2, leftover: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2), Faults: tc.faults})
			a := testAccount(t, srv)
			a.Keep, a.QuietMessages = tc.keep, tc.quiet
			var logs auditLogs
			p := poller(nil)
			p.Log = logs.logger()
			res := p.Poll(context.Background(), a)
			if res.Err != nil || res.Delivered != 2 || res.Kept != tc.kept || res.Deleted != tc.deleted {
				t.Fatalf("Poll = %+v; want 2 delivered, %d kept, %d deleted", res, tc.kept, tc.deleted)
			}
			if n := len(srv.Messages()); n != tc.leftover {
				t.Errorf("%d messages left on the server; want %d", n, tc.leftover)
			}
			recs := logs.records(t, "message delivered")
			if len(recs) != len(tc.want) {
				t.Fatalf("%d audit lines; want %d:\n%s", len(recs), len(tc.want), logs.text.String())
			}
			// Deliveries run concurrently: the lines, and the DELEs,
			// come in any order.
			var got, uids []string
			for _, r := range recs {
				got = append(got, path(r, "on_server"))
				uids = append(uids, path(r, "uid"))
			}
			slices.Sort(got)
			slices.Sort(uids)
			if !slices.Equal(got, slices.Sorted(slices.Values(tc.want))) || len(got) > 0 && !slices.Equal(uids, []string{"uid-0001", "uid-0002"}) {
				t.Errorf("audit lines of %v: on_server %v; want %v", uids, got, tc.want)
			}
			sum := logs.records(t, "poll done")
			if len(sum) != 1 || path(sum[0], "kept") != fmt.Sprint(tc.kept) || path(sum[0], "deleted") != fmt.Sprint(tc.deleted) {
				t.Errorf("poll done %v; want kept=%d deleted=%d", sum, tc.kept, tc.deleted)
			}
		})
	}
}

// A message whose only copy went to the postmaster (the MDA refused it
// permanently) counts in Postmaster as well as Delivered, and its audit
// line says the postmaster has it, and why.
func TestAuditLinePostmaster(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2)})
	a := testAccount(t, srv)
	dir := t.TempDir()
	refuse := filepath.Join(dir, "refuse")
	if err := os.WriteFile(refuse, []byte("#!/bin/sh\ncat >/dev/null\necho 'no such user' >&2\nexit 67\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a.Deliver = rcfile.Destination{MDA: []string{refuse}, MDATempExitCodes: []int{75}}
	a.Postmaster = &rcfile.Destination{Maildir: filepath.Join(dir, "postmaster")}
	var logs auditLogs
	p := poller(nil)
	p.Log = logs.logger()
	res := p.Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 2 || res.Postmaster != 2 || res.Deleted != 2 {
		t.Fatalf("Poll = %+v; want 2 delivered, both to the postmaster", res)
	}
	recs := logs.records(t, "message delivered")
	if len(recs) != 2 {
		t.Fatalf("audit lines %v", recs)
	}
	r := recs[0]
	if path(r, "copy.1.postmaster") != "true" || path(r, "copy.1.target") != "maildir" || !strings.HasPrefix(path(r, "copy.1.dest"), "new/") ||
		!strings.Contains(path(r, "copy.1.reason"), "67") {
		t.Errorf("audit line %v; want the postmaster's Maildir copy and the MDA's exit status as the reason", r)
	}
	if sum := logs.records(t, "poll done"); len(sum) != 1 || path(sum[0], "postmaster") != "2" || path(sum[0], "delivered") != "2" {
		t.Errorf("poll done %v; want postmaster=2 delivered=2", sum)
	}
	if !bytes.Contains([]byte(logs.text.String()), []byte("copy.1.postmaster=true")) {
		t.Errorf("text log:\n%s", logs.text.String())
	}
}

// A multidrop message that failed for one user part-way names, in its
// Error line, the copies made before the failure; the retry's audit line
// has every user, those served by the first poll with a note.
func TestAuditLineMultidropResume(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: alice@example.com, bob@example.com\nMessage-ID: <1@x>"),
	}})
	a := testAccount(t, srv)
	users := fault.New()
	users.Temporary("bob", "mailbox busy")
	var logs auditLogs
	if res := mdPoller(t, users, fault.New(), nil, logs.logger()).Poll(context.Background(), a); res.Failed != 1 || res.Delivered != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	failed := logs.records(t, "delivery failed; message stays on the server and is retried next poll")
	if len(failed) != 1 || path(failed[0], "copy.1.user") != "alice" || path(failed[0], "copy.1.rcpt") != "alice@example.com" || path(failed[0], "copy.2.user") != "" {
		t.Fatalf("failure lines %v; want one naming alice's copy only", failed)
	}
	if n := len(logs.records(t, "message delivered")); n != 0 {
		t.Errorf("%d audit lines for a message not delivered", n)
	}
	users.Fail("bob", nil)
	logs = auditLogs{}
	if res := mdPoller(t, users, fault.New(), nil, logs.logger()).Poll(context.Background(), a); res.Delivered != 1 || res.Deleted != 1 {
		t.Fatalf("retry Poll = %+v", res)
	}
	recs := logs.records(t, "message delivered")
	if len(recs) != 1 {
		t.Fatalf("audit lines %v", recs)
	}
	r := recs[0]
	if path(r, "copy.1.user") != "alice" || path(r, "copy.1.note") != noteEarlier || path(r, "copy.2.user") != "bob" || path(r, "copy.2.note") != "" || path(r, "on_server") != "deleted" {
		t.Errorf("audit line %v; want alice (an earlier poll) and bob", r)
	}
}

// A message delivered and recorded by a poll that ended before its DELE
// (here: a keep poll, then keep turned off) is deleted by the next poll,
// which gives it a line of its own: the poll that delivered it wrote
// none that says it left the server, and after a kill none at all.
func TestAuditLineDeletedLater(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs(2)})
	a := testAccount(t, srv)
	a.Keep = true
	p := poller(nil)
	if res := p.Poll(context.Background(), a); res.Err != nil || res.Kept != 2 {
		t.Fatalf("first poll = %+v; want 2 kept", res)
	}
	a.Keep = false
	var logs auditLogs
	p.Log = logs.logger()
	if res := p.Poll(context.Background(), a); res.Err != nil || res.Deleted != 2 || res.Delivered != 0 {
		t.Fatalf("second poll = %+v; want 2 deleted, none delivered", res)
	}
	recs := logs.records(t, "message deleted")
	if len(recs) != 2 {
		t.Fatalf("%d \"message deleted\" lines; want 2:\n%s", len(recs), logs.text.String())
	}
	for _, r := range recs {
		if path(r, "on_server") != "deleted" || path(r, "note") != noteEarlier || path(r, "uid") == "" {
			t.Errorf("line %v; want uid, on_server=deleted and the earlier-poll note", r)
		}
	}
	if n := len(logs.records(t, "message delivered")); n != 0 {
		t.Errorf("%d \"message delivered\" lines for messages delivered before; want 0", n)
	}
}
