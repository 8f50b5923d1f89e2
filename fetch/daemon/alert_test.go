package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/alert"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

type nopSender struct{}

func (nopSender) Send(context.Context, alert.Notice, *rcfile.Alert, string) error { return nil }

func alertsOf(s Status) string {
	out := ""
	for _, a := range s.Alerts {
		out += a.Account + "/" + a.Condition + " "
	}
	return out
}

// TestDaemonFeedsAlerts: the daemon tells the alert engine each poll
// with the hold state after it, and each reload's outcome; Status lists
// what is active. An account held over several polls is one alert, and
// a poll that succeeds clears it.
func TestDaemonFeedsAlerts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &testutil.SyncBuffer{}
		al := alert.New(alert.Options{StateDir: t.TempDir(), Sender: nopSender{}, Log: slog.New(slog.NewTextHandler(logs, nil))})
		h := newHarnessAlerts(t, config(acct("a", "pop.example", time.Minute)), nil, al)
		h.start()
		errAuth := fmt.Errorf("pass: %w: -ERR [AUTH] invalid credentials", fetch.ErrAuth)
		h.nextFor("a").ret(fetch.Result{Err: errAuth})
		h.waitIdleOrBackoff("a")
		if got := alertsOf(h.d.Status()); got != "a/auth-hold " {
			t.Fatalf("alerts after the auth failure: %q", got)
		}
		for range 3 {
			done := make(chan struct{})
			go func() { h.d.PollNow(context.Background(), []string{"a"}); close(done) }()
			h.nextFor("a").ret(fetch.Result{Err: errAuth})
			<-done
		}
		h.d.RecordReload(time.Now(), false, []string{"rc:1:1: error: bad"})
		if got := alertsOf(h.d.Status()); got != "/reload-rejected a/auth-hold " {
			t.Fatalf("alerts after a rejected reload: %q", got)
		}
		h.d.RecordReload(time.Now(), true, nil)
		fixed := acct("a", "pop.example", time.Minute)
		fixed.Password.Inline = "fixed"
		h.d.Reload(config(fixed))
		h.succeedsWith("a", "fixed")
		if got := alertsOf(h.d.Status()); got != "" {
			t.Fatalf("alerts after the fix: %q", got)
		}
		if n := strings.Count(logs.String(), `msg="alert raised"`); n != 2 {
			t.Errorf("%d alerts raised; want 2 (the hold and the reload):\n%s", n, logs)
		}
		if n := strings.Count(logs.String(), `msg="alert cleared"`); n != 2 {
			t.Errorf("%d alerts cleared; want 2:\n%s", n, logs)
		}
	})
}
