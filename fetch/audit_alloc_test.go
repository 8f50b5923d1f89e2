package fetch

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/rcfile"
)

// TestAuditedBuildsNothingUnlogged: popfetch fetch logs at WARN, so the
// audit line (INFO) of each message is never written; building it anyway
// cost a dozen allocations per message. With INFO enabled the line is
// still written, its fields as before.
func TestAuditedBuildsNothingUnlogged(t *testing.T) {
	copies := []Copy{{Receipt: deliver.Receipt{Kind: "maildir", Dest: "new/1.x,S=10"}},
		{User: "joe", Rcpt: "joe@example.net", Postmaster: true, Reason: "no route", Receipt: deliver.Receipt{Kind: "mda"}}}
	for _, tc := range []struct {
		name      string
		level     slog.Level
		maxAllocs float64
		want      []string // in the line written; none when nothing is
	}{
		{name: "warn", level: slog.LevelWarn, maxAllocs: 0},
		{name: "info", level: slog.LevelInfo, maxAllocs: -1, want: []string{
			"uid=u1", "msgnum=1", "message_id=m@example.net", "copy.1.target=maildir", `copy.1.dest="new/1.x,S=10"`,
			"copy.2.user=joe", "copy.2.rcpt=joe@example.net", "copy.2.postmaster=true", "copy.2.target=mda",
			`copy.2.reason="no route"`, "filter.1.name=rspamd", "filter.1.action=reject", "filter.1.reply=554", "on_server=kept"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			s := &session{a: &rcfile.Account{}, res: &Result{},
				log: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: tc.level}))}
			e := entry{Num: 1, UID: "u1"}
			a := &audit{e: e, size: 10, messageID: "m@example.net", from: "a@example.net", copies: copies,
				filters: []FilterVerdict{{Filter: "rspamd", Action: "reject", Reply: "554"}}}
			if tc.maxAllocs >= 0 {
				s.pending = map[int]*audit{}
				got := testing.AllocsPerRun(100, func() {
					s.pending[1] = a
					s.audited(e, onServerKept)
				})
				if got > tc.maxAllocs {
					t.Errorf("audited allocates %.0f times per message with INFO off, want none", got)
				}
				if out.Len() != 0 {
					t.Errorf("wrote %q with INFO off", out.String())
				}
				return
			}
			s.pending = map[int]*audit{1: a}
			s.audited(e, onServerKept)
			line := out.String()
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("audit line %q lacks %q", line, w)
				}
			}
			if s.res.Kept != 1 {
				t.Errorf("Kept = %d, want 1", s.res.Kept)
			}
		})
	}
}

// TestNewAuditReadsHeaderOnlyWhenLogged: the Message-ID and sender of
// the audit line are read from the header only when the line will be
// written; otherwise newAudit is the audit alone (1 allocation).
func TestNewAuditReadsHeaderOnlyWhenLogged(t *testing.T) {
	m := &deliver.Message{UID: "u1", Raw: []byte("From: Ann <ann@example.net>\r\nMessage-ID: <m1@example.net>\r\nSubject: x\r\n\r\nbody\r\n")}
	e := entry{Num: 1, UID: "u1"}
	for _, tc := range []struct {
		logged    bool
		maxAllocs float64
		wantID    string
	}{
		{logged: false, maxAllocs: 1},
		{logged: true, maxAllocs: -1, wantID: "m1@example.net"},
	} {
		a := newAudit(e, m, nil, tc.logged)
		if !strings.Contains(a.messageID, tc.wantID) || tc.wantID == "" && a.messageID != "" {
			t.Errorf("logged=%v: message ID %q, want %q", tc.logged, a.messageID, tc.wantID)
		}
		if tc.logged && a.from == "" || !tc.logged && a.from != "" {
			t.Errorf("logged=%v: from %q", tc.logged, a.from)
		}
		if a.size != m.Size() {
			t.Errorf("size %d, want %d", a.size, m.Size())
		}
		if tc.maxAllocs >= 0 {
			if got := testing.AllocsPerRun(100, func() { newAudit(e, m, nil, tc.logged) }); got > tc.maxAllocs {
				t.Errorf("logged=%v: %.0f allocations, want at most %.0f", tc.logged, got, tc.maxAllocs)
			}
		}
	}
}
