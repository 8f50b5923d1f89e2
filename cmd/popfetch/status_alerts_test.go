package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/daemon"
)

// TestStatusAlerts: `popfetch status` says after the last reload which
// alerts are active: the
// account ("(daemon)" for the daemon's own), the condition and since
// when, with control characters from an error made harmless.
func TestStatusAlerts(t *testing.T) {
	now := time.Date(2026, 12, 5, 1, 42, 51, 0, time.Local)
	var out bytes.Buffer
	writeStatusAt(&out, daemon.Status{}, now)
	if !strings.Contains(out.String(), "last reload: none since the start\nalerts active: none\n\n") {
		t.Errorf("without alerts:\n%s", out.String())
	}
	out.Reset()
	writeStatusAt(&out, daemon.Status{Alerts: []daemon.ActiveAlert{
		{Condition: "reload-rejected", Since: now.Add(-time.Minute), Detail: "rc.hcl:3:1: error: bad\nrc.hcl:4:1: error: worse"},
		{Account: "erin", Condition: "auth-hold", Since: now.Add(-12 * time.Second), Detail: "-ERR [AUTH] \x1b[31mno"},
	}}, now)
	got := out.String()
	for _, want := range []string{
		"alerts active: 2\n",
		"(daemon)  reload-rejected  since 2026-12-05 01:41:51 (1m0s ago)  rc.hcl:3:1: error: bad\n",
		"erin      auth-hold        since 2026-12-05 01:42:39 (12s ago)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\x1b") || strings.Contains(got, "worse") {
		t.Errorf("status shows a control character or more than the first line of a detail:\n%q", got)
	}
}

// TestStatusAlertsKeepTable: the alerts above the accounts table do not
// confuse a reader of the table (such as the daemon tests' statusRows,
// which takes the first row starting with ACCOUNT as its header).
func TestStatusAlertsKeepTable(t *testing.T) {
	var out bytes.Buffer
	writeStatusAt(&out, daemon.Status{
		Accounts: []daemon.AccountStatus{{Name: "erin", State: daemon.StateAuthHold}},
		Alerts:   []daemon.ActiveAlert{{Account: "erin", Condition: "auth-hold", Since: time.Now()}},
	}, time.Now())
	lines := strings.Split(out.String(), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "ACCOUNT") {
			if !strings.HasPrefix(l, "ACCOUNT  STATE") || i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "erin") {
				t.Errorf("the first ACCOUNT header is not the accounts table's:\n%s", out.String())
			}
			return
		}
	}
	t.Errorf("no accounts table:\n%s", out.String())
}
