package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/daemon"
)

// TestStatusAlerts: `popfetch status` ends with the alerts active, the
// account ("(daemon)" for the daemon's own), the condition and since
// when, with control characters from an error made harmless.
func TestStatusAlerts(t *testing.T) {
	now := time.Date(2026, 12, 5, 1, 42, 51, 0, time.Local)
	var out bytes.Buffer
	writeStatusAt(&out, daemon.Status{}, now)
	if !strings.HasSuffix(out.String(), "\nalerts active: none\n") {
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
		"(daemon)  reload-rejected  2026-12-05 01:41:51 (1m0s ago)  rc.hcl:3:1: error: bad\n",
		"erin      auth-hold        2026-12-05 01:42:39 (12s ago)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\x1b") || strings.Contains(got, "worse") {
		t.Errorf("status shows a control character or more than the first line of a detail:\n%q", got)
	}
}
