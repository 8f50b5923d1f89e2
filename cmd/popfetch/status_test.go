package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/daemon"
)

// TestWriteStatus: the table of `popfetch status` shows the daemon's
// generation, one row per account with its state and the last poll's
// error (escaped: it quotes the server), and says so when the server
// refuses to delete delivered mail.
func TestWriteStatus(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		st      daemon.Status
		want    []string
		notWant []string
	}{{
		// What TestControlRoundTrip (fetch/daemon) gets from a daemon
		// with one good and one failing account.
		name: "round trip",
		st: daemon.Status{Started: t0, Generation: 1, LoadedAt: t0, ConfigPath: "/etc/popfetch.hcl", Accounts: []daemon.AccountStatus{
			{Name: "a", Server: "pop.example", State: daemon.StateIdle, NextPoll: t0.Add(time.Hour),
				Last: &fetch.PollSummary{Account: "a", Start: t0, New: 3, Delivered: 3, Deleted: 3}, Totals: daemon.Totals{Polls: 2, Delivered: 6}},
			{Name: "bad", Server: "pop.example", State: daemon.StateBackoff, Failures: 1, NextPoll: t0.Add(time.Minute),
				Last: &fetch.PollSummary{Account: "bad", Start: t0, Err: "account bad: mailbox in use: [IN-USE] locked"}, Totals: daemon.Totals{Polls: 2, Failures: 2}},
		}},
		want: []string{"generation 1", "ACCOUNT", "\na ", "\nbad ", "backoff", "[IN-USE] locked"},
	}, {
		// What TestDaemonRetryRefusedDele (fetch/daemon) gets.
		name: "undeletable",
		st: daemon.Status{Generation: 3, Accounts: []daemon.AccountStatus{
			{Name: "a", State: daemon.StateIdle, Last: &fetch.PollSummary{Account: "a", Undeletable: 1}},
		}},
		want: []string{"generation 3", "server refuses DELE of 1 delivered messages"},
	}, {
		name: "polling and held",
		st: daemon.Status{Generation: 1, Accounts: []daemon.AccountStatus{
			{Name: "p", State: daemon.StatePolling},
			{Name: "h", State: daemon.StateAuthHold},
		}},
		want: []string{"(polling)", "held: fix the account, then SIGHUP or `popfetch now`", "never"},
	}, {
		name: "control characters from the server",
		st: daemon.Status{Generation: 1, Accounts: []daemon.AccountStatus{
			{Name: "a", State: daemon.StateBackoff, Last: &fetch.PollSummary{Err: "-ERR \x1b[31mred\r\nX"}},
		}},
		want:    []string{`-ERR \x1b[31mred\x0d\x0aX`},
		notWant: []string{"\x1b", "\r"},
	}, {
		name: "shard",
		st: daemon.Status{Generation: 1, Shard: &daemon.ShardStatus{Shard: "1/3", Owned: 1, Accounts: 3}, Accounts: []daemon.AccountStatus{
			{Name: "a", State: daemon.StateIdle},
		}},
		want: []string{"shard 1/3: 1 of the 3 accounts in the rc file; the others belong to other shards"},
	}, {
		name: "reload rejected",
		st: daemon.Status{Generation: 2, LastReload: &daemon.ReloadStatus{At: t0, Diagnostics: []string{
			"/etc/popfetch.hcl:3:7: error: Missing newline after argument", "/etc/popfetch.hcl:9:1: error: \x1b]0;owned\a",
		}}},
		want: []string{"last reload: 2026-11-25 12:00:00 reload rejected; generation 2 stays in effect",
			"\n  /etc/popfetch.hcl:3:7: error: Missing newline after argument\n", `/etc/popfetch.hcl:9:1: error: \x1b]0;owned\x07`},
		notWant: []string{"\x1b", "\a"},
	}, {
		name: "reload applied",
		st:   daemon.Status{Generation: 2, LastReload: &daemon.ReloadStatus{At: t0, OK: true}},
		want: []string{"last reload: 2026-11-25 12:00:00 applied"},
	}, {
		name: "no reload",
		st:   daemon.Status{Generation: 1},
		want: []string{"last reload: none since the start"},
	}, {
		name: "last success",
		st: daemon.Status{Generation: 1, Accounts: []daemon.AccountStatus{
			{Name: "a", State: daemon.StateBackoff, LastSuccess: t0.Add(-time.Hour), Last: &fetch.PollSummary{Start: t0, Err: "refused"}},
			{Name: "b", State: daemon.StateBackoff, Last: &fetch.PollSummary{Start: t0, Err: "refused"}},
		}},
		want: []string{"LAST SUCCESS", "\na        backoff  2026-11-25 12:00:00  2026-11-25 11:00:00  0s", "\nb        backoff  2026-11-25 12:00:00  never                0s"},
	}, {
		name:    "no shard",
		st:      daemon.Status{Generation: 1, Accounts: []daemon.AccountStatus{{Name: "a", State: daemon.StateIdle}}},
		notWant: []string{"shard"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			writeStatus(&out, tt.st)
			for _, want := range tt.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("writeStatus output lacks %q:\n%s", want, out.String())
				}
			}
			for _, bad := range tt.notWant {
				if strings.Contains(out.String(), bad) {
					t.Errorf("writeStatus output has %q:\n%s", bad, out.String())
				}
			}
		})
	}
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"plain", 10, "plain"},
		{"a\x00b\x7f", 10, `a\x00b\x7f`},
		{"abcdef", 3, "abc…"},
		{"\ufffd", 5, `\xfffd`},
	}
	for _, tt := range tests {
		if got := printable(tt.in, tt.n); got != tt.want {
			t.Errorf("printable(%q, %d) = %q; want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// TestWriteStatusDirectory: `popfetch status` shows each account's user
// directory: the copy in use and its age, an outage with the copy still
// in use until its grace ends, and an outage with no copy, when mail
// waits on the server; the error is escaped.
func TestWriteStatusDirectory(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 4, 19, 35, 0, 0, time.UTC)
	now := t0.Add(3 * time.Minute)
	url := "ldaps://dc.example.com"
	tests := []struct {
		name string
		d    *fetch.DirectoryState
		want string
	}{
		{"loaded", &fetch.DirectoryState{Source: "ldap", URL: url, Users: 42, Addresses: 97, Groups: 3, LoadedAt: t0},
			"a: directory ldap ldaps://dc.example.com: 42 users, 97 addresses, 3 groups, loaded 2026-12-04 19:35:00 (3m0s ago)\n"},
		{"stale", &fetch.DirectoryState{Source: "ldap", URL: url, Users: 42, Addresses: 97, LoadedAt: t0, Stale: true,
			GraceUntil: t0.Add(24 * time.Hour), LastError: "connection refused", LastErrorAt: now, FailingSince: t0.Add(time.Minute)},
			"a: directory ldap ldaps://dc.example.com UNAVAILABLE since 2026-12-04 19:36:00 (connection refused); using the copy loaded 2026-12-04 19:35:00 (42 users, 97 addresses), grace until 2026-12-05 19:35:00\n"},
		{"no good copy", &fetch.DirectoryState{Source: "ldap", URL: url, LastError: "bind: \x1b[31m invalid", LastErrorAt: now, FailingSince: t0},
			"a: directory ldap ldaps://dc.example.com UNAVAILABLE since 2026-12-04 19:35:00 (bind: \\x1b[31m invalid); no good copy: mail waits on the server\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			writeStatusAt(&out, daemon.Status{Accounts: []daemon.AccountStatus{{Name: "a", State: daemon.StateIdle, Directory: tt.d}, {Name: "plain"}}}, now)
			if !strings.HasSuffix(out.String(), "\n"+tt.want) {
				t.Errorf("status output does not end with\n%q:\n%s", tt.want, out.String())
			}
			if strings.Contains(out.String(), "plain: directory") {
				t.Errorf("an account without a directory shows one:\n%s", out.String())
			}
		})
	}
}
