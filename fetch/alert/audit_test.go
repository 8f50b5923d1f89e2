package alert

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/rcfile"
)

// kinds lists ns as "raised a/x", "cleared a/x", "suppressed a/x".
func kinds(ns []Notice) []string {
	var out []string
	for _, n := range ns {
		ev := string(n.Event)
		if n.Suppressed {
			ev = "suppressed"
		}
		out = append(out, ev+" "+n.Account+"/"+string(n.Condition))
	}
	return out
}

// TestEngineFlapThenStays: a condition that comes back within
// RenotifyAfter of its recovery notice is silent at first, but if it
// stays, its raise goes out once RenotifyAfter has passed: the person
// who read "RESOLVED" must not believe that forever.
func TestEngineFlapThenStays(t *testing.T) {
	e := NewEngine(nil)
	e.Configure(t0, map[string]AccountConfig{"a": {After: time.Hour}})
	var got []string
	p := func(at time.Duration, err error, held bool) {
		got = append(got, kinds(e.Poll(Poll{Account: "a", At: t0.Add(at), Err: err, Held: held}))...)
	}
	p(0, errAuth, true)
	p(time.Minute, nil, false)
	p(2*time.Minute, errAuth, true)
	for m := 3; m < 240; m++ {
		got = append(got, kinds(e.Tick(t0.Add(time.Duration(m)*time.Minute)))...)
	}
	p(4*time.Hour, nil, false)
	want := []string{"raised a/auth-hold", "cleared a/auth-hold", "suppressed a/auth-hold", "raised a/auth-hold", "cleared a/auth-hold"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("notices:\n got %q\nwant %q", got, want)
	}
}

// TestEngineRateLimitDefers: a raise the hourly limit held back goes
// out once the budget allows, if the condition is still active; the
// limit delays notices, it does not drop them.
func TestEngineRateLimitDefers(t *testing.T) {
	e := NewEngine(nil)
	conf := map[string]AccountConfig{}
	for i := range 30 {
		conf[fmt.Sprintf("acct%02d", i)] = AccountConfig{After: time.Hour}
	}
	e.Configure(t0, conf)
	raised := 0
	count := func(ns []Notice) {
		for _, n := range ns {
			if n.Event == Raised && !n.Suppressed {
				raised++
			}
		}
	}
	for name := range conf {
		count(e.Poll(Poll{Account: name, At: t0, Err: errAuth, Held: true}))
	}
	for m := 1; m < 59; m++ {
		count(e.Tick(t0.Add(time.Duration(m) * time.Minute)))
	}
	if raised != MaxPerHour {
		t.Fatalf("within the hour: raised %d, want %d", raised, MaxPerHour)
	}
	for m := 59; m < 130; m++ {
		count(e.Tick(t0.Add(time.Duration(m) * time.Minute)))
	}
	if raised != 30 {
		t.Errorf("after the hour: raised %d, want all 30", raised)
	}
}

// TestEngineClockBack: a state file written while the clock was wrong
// (in the future) must not silence alerts until the clock gets there.
func TestEngineClockBack(t *testing.T) {
	future := t0.Add(365 * 24 * time.Hour)
	st := State{Accounts: map[string]*accountState{}, LastRaise: map[string]time.Time{"a/auth-hold": future}}
	for range MaxPerHour {
		st.Sent = append(st.Sent, future)
	}
	for _, k := range []string{"a", "b"} {
		e := NewEngine(nil)
		e.Restore(st)
		e.Configure(t0, map[string]AccountConfig{k: {After: time.Hour}})
		if got := kinds(e.Poll(Poll{Account: k, At: t0, Err: errAuth, Held: true})); len(got) != 1 || got[0] != "raised "+k+"/auth-hold" {
			t.Errorf("account %s: %q; want it raised", k, got)
		}
	}
	// The times of an account too: a failure that began "next year"
	// still alerts after `after`, counted from now.
	e := NewEngine(nil)
	e.Restore(State{Accounts: map[string]*accountState{"a": {LastOK: future, FailingSince: future, LastErr: "x"}}})
	e.Configure(t0, map[string]AccountConfig{"a": {After: time.Hour}})
	e.Poll(Poll{Account: "a", At: t0, Err: errNet})
	if got := kinds(e.Tick(t0.Add(61 * time.Minute))); len(got) != 1 || got[0] != "raised a/failing" {
		t.Errorf("failing since the future: %q", got)
	}
	e = NewEngine(nil)
	e.Restore(State{Accounts: map[string]*accountState{"a": {LastOK: future}}})
	e.Configure(t0, map[string]AccountConfig{"a": {After: time.Hour}})
	e.Tick(t0) // as Alerter.Run does at the start
	if got := kinds(e.Tick(t0.Add(61 * time.Minute))); len(got) != 1 || got[0] != "raised a/no-success" {
		t.Errorf("last success in the future: %q", got)
	}
}

// TestEngineRestoreUnknown: a state file condition this version does not
// know (a downgrade, a hand edit) or a per-account condition without an
// account can never clear: it is dropped at Restore instead of staying
// in `popfetch status` forever.
func TestEngineRestoreUnknown(t *testing.T) {
	e := NewEngine(nil)
	e.Restore(State{Active: []Active{
		{Account: "a", Condition: "oauth2-expiry-from-the-future", Since: t0, Notified: true},
		{Account: "", Condition: AuthHold, Since: t0, Notified: true},
		{Account: "a", Condition: AuthHold, Since: t0, Notified: true},
	}})
	e.Configure(t0, map[string]AccountConfig{"a": {After: time.Hour}})
	if act := e.Active(); len(act) != 1 || act[0].Condition != AuthHold || act[0].Account != "a" {
		t.Errorf("active %+v; want only a/auth-hold", act)
	}
}

// TestEngineDetailBounded: a rejected reload with thousands of
// diagnostics (or a huge server reply) makes a notice of bounded size.
func TestEngineDetailBounded(t *testing.T) {
	e := NewEngine(nil)
	var diags []string
	for i := range 10000 {
		diags = append(diags, fmt.Sprintf("rc:%d:1: error: Unsupported argument; An argument named \"x%d\" is not expected here.", i, i))
	}
	ns := e.Reload(t0, false, diags)
	if len(ns) != 1 || len(ns[0].Detail) > maxDetail+len("…") || !strings.HasPrefix(ns[0].Detail, diags[0]+"\n") {
		t.Fatalf("detail of %d bytes", len(ns[0].Detail))
	}
	raw, err := Compose(ns[0], "mx.example", "")
	if err != nil || len(raw) > 2*maxDetail+8192 {
		t.Errorf("message of %d bytes, %v", len(raw), err)
	}
}

// TestBodyEscapes: what came from outside (a server's reply in an error)
// reaches the message body with its control characters escaped: no
// terminal escape, NUL or bare CR in an 8bit text part.
func TestBodyEscapes(t *testing.T) {
	for _, ev := range []Event{Raised, Cleared} {
		n := Notice{ID: "x", Event: ev, Account: "work", Condition: Failing, Since: t0, At: t0.Add(time.Hour),
			Detail: "-ERR \x1b[2J\x1b]0;pwned\x07 gone\x00 \xff\u202e"}
		raw, err := Compose(n, "mx.example", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"\x1b", "\x00", "\x07", "\xff", "\u202e"} {
			if strings.Contains(string(raw), bad) {
				t.Errorf("%s: message holds %q:\n%q", ev, bad, raw)
			}
		}
		if !strings.Contains(string(raw), `\x1b[2J`) {
			t.Errorf("%s: the escaped text is missing:\n%s", ev, raw)
		}
	}
}

// TestAlerterRemovedAccountOwnBlock: an account with its own alert block
// is removed while its condition is active: the recovery notice goes to
// the targets that got the raise, not nowhere.
func TestAlerterRemovedAccountOwnBlock(t *testing.T) {
	dir := t.TempDir()
	fs := &fakeSender{}
	a := New(Options{StateDir: dir, Sender: fs, Now: func() time.Time { return t0 }})
	a.started = true
	acct := &rcfile.Account{Name: "work", Interval: 5 * time.Minute}
	cfg := &rcfile.Config{Accounts: []*rcfile.Account{acct},
		AccountAlerts: map[string]*rcfile.Alert{"work": {Command: []string{"/bin/true"}}}}
	a.Configure(cfg, cfg.Accounts)
	a.Polled(Poll{Account: "work", At: t0, Err: errAuth, Held: true})
	a.sendDue(context.Background())
	a.Configure(&rcfile.Config{}, nil)
	a.sendDue(context.Background())
	want := []string{"command raised auth-hold", "command cleared auth-hold"}
	if got := fs.got(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("sent %q\nwant %q", got, want)
	}
	if a.Pending() != 0 {
		t.Errorf("%d pending", a.Pending())
	}
}

// TestAlerterBrokenTargetOnce: a target that fails (a command that hangs
// until CommandTimeout) is tried once per round, not once per queued
// notice: the notices for the working target go out without waiting
// behind every one of them.
func TestAlerterBrokenTargetOnce(t *testing.T) {
	dir := t.TempDir()
	fs := &fakeSender{fail: map[string]int{"command": 1000}}
	now := t0
	a := New(Options{StateDir: dir, Sender: fs, Now: func() time.Time { return now }})
	a.started = true
	cfg := &rcfile.Config{Alert: &rcfile.Alert{Maildir: dir + "/alerts", Command: []string{"/bin/true"}}}
	for i := range 5 {
		cfg.Accounts = append(cfg.Accounts, &rcfile.Account{Name: fmt.Sprintf("a%d", i), Interval: 5 * time.Minute})
	}
	a.Configure(cfg, cfg.Accounts)
	for _, ac := range cfg.Accounts {
		a.Polled(Poll{Account: ac.Name, At: t0, Err: errAuth, Held: true})
	}
	a.sendDue(context.Background())
	if left := fs.fail["command"]; left != 999 {
		t.Errorf("the broken command was tried %d times in one round, want 1", 1000-left)
	}
	if got := fs.got(); len(got) != 5 {
		t.Errorf("sent %q; want the 5 maildir notices", got)
	}
	// Each retry round tries it once more, and the notices stay queued.
	now = now.Add(retryMax)
	a.sendDue(context.Background())
	if left := fs.fail["command"]; left != 998 {
		t.Errorf("second round: tried %d times in all, want 2", 1000-left)
	}
	if a.Pending() != 5 {
		t.Errorf("%d pending, want 5", a.Pending())
	}
}

// TestRunCommandStderrBounded: a command that writes megabytes to stderr
// before it fails does not make the daemon hold them: only the start is
// kept, for the error's first line.
func TestRunCommandStderrBounded(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := runCommand(context.Background(), []string{"/bin/sh", "-c", "echo first >&2; head -c 67108864 /dev/zero | tr '\\0' x >&2; exit 1"}, nil)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "first") {
		t.Errorf("err = %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Errorf("allocated %d MB for the command's stderr", grew>>20)
	}
}

// TestEngineDeliveryWaitingKeep: in keep mode the maildrop holds the
// delivered messages too; the delivery-failing notice counts the ones
// that wait for delivery, not the whole mailbox (nor, without keep, the
// one delivered and deleted in that poll).
func TestEngineDeliveryWaitingKeep(t *testing.T) {
	for _, keep := range []bool{false, true} {
		e := NewEngine(nil)
		e.Configure(t0, map[string]AccountConfig{"a": {After: time.Hour, Keep: keep}})
		var ns []Notice
		for m := 0; m <= 60; m += 5 {
			msgs := 500
			if !keep {
				msgs = 3
			}
			ns = append(ns, e.Poll(Poll{Account: "a", At: t0.Add(time.Duration(m) * time.Minute), LoggedIn: true,
				Messages: msgs, New: 3, Delivered: 1, Failed: 2})...)
		}
		want := "2 message(s) wait on the server"
		if len(ns) != 1 || !strings.Contains(ns[0].Detail, want) {
			t.Errorf("keep=%v: %+v; want %q", keep, ns, want)
		}
	}
}

// TestRunCommandEnvironment: the alert command gets the MDA's minimal
// environment, not popfetch's: a password_env password (or LD_PRELOAD)
// in the daemon's environment does not reach a notification script.
func TestRunCommandEnvironment(t *testing.T) {
	t.Setenv("POPFETCH_ALERT_TEST_PASSWORD", "Zq9x-Hunter2-SECRET")
	t.Setenv("HOME", "/home/popfetch-test")
	out := filepath.Join(t.TempDir(), "env")
	if err := runCommand(context.Background(), []string{"/bin/sh", "-c", `env > "$1"`, "sh", out}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "Hunter2") || !strings.Contains(string(b), "HOME=/home/popfetch-test") || !strings.Contains(string(b), "PATH=") {
		t.Errorf("the command's environment:\n%s", b)
	}
}

// TestStateFileUntrusted: alerts.json is read like popfetch's other
// state files (trust.ReadTrusted): one that another user can write is
// not believed, and a FIFO planted in its place does not hang the start.
func TestStateFileUntrusted(t *testing.T) {
	valid := `{"engine":{"active":[{"account":"work","condition":"auth-hold","since":"2026-01-02T03:04:05Z","notified":true}]}}`
	for _, tc := range []struct {
		name string
		make func(path string) error
	}{
		{"world-writable", func(path string) error {
			if err := os.WriteFile(path, []byte(valid), 0o600); err != nil {
				return err
			}
			return os.Chmod(path, 0o666)
		}},
		{"fifo", func(path string) error { return syscall.Mkfifo(path, 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tc.make(filepath.Join(dir, StateFile)); err != nil {
				t.Fatal(err)
			}
			done := make(chan *Alerter, 1)
			go func() {
				done <- New(Options{StateDir: dir, Sender: &fakeSender{}, Now: func() time.Time { return t0 }})
			}()
			select {
			case a := <-done:
				if act := a.Active(); len(act) != 0 {
					t.Errorf("believed the file: active %+v", act)
				}
			case <-time.After(3 * time.Second):
				// Unblock the reader so the test can end.
				if f, err := os.OpenFile(filepath.Join(dir, StateFile), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
				t.Fatal("New hangs on the state file")
			}
		})
	}
}

type panicSender struct{ calls int }

func (p *panicSender) Send(context.Context, Notice, *rcfile.Alert, string) error {
	p.calls++
	panic("bug in a target")
}

// TestAlerterSenderPanics: a panic while sending a notice (a bug in a
// target) is that notice's failure, retried like any other: it must
// not take the daemon down, which would then crash again on the same
// queued notice at every start and never poll.
func TestAlerterSenderPanics(t *testing.T) {
	dir := t.TempDir()
	ps := &panicSender{}
	a := New(Options{StateDir: dir, Sender: ps, Now: func() time.Time { return t0 }})
	a.started = true
	cfg, owned := testConfig(dir)
	a.Configure(cfg, owned)
	a.Polled(Poll{Account: "work", At: t0, Err: errAuth, Held: true})
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("sendDue panicked: %v", r)
			}
		}()
		a.sendDue(context.Background())
	}()
	if ps.calls == 0 || a.Pending() != 2 {
		t.Errorf("%d calls, %d pending; want the notices kept for a retry", ps.calls, a.Pending())
	}
}

// TestAlerterOrder: a recovery notice never reaches a target before the
// raise notice that target has not yet got (the raise waiting for a
// retry): "RESOLVED" then "ALERT" reads as trouble that is still there.
func TestAlerterOrder(t *testing.T) {
	dir := t.TempDir()
	fs := &fakeSender{fail: map[string]int{"maildir": 1}}
	now := t0
	a := New(Options{StateDir: dir, Sender: fs, Now: func() time.Time { return now }})
	a.started = true
	cfg := &rcfile.Config{Alert: &rcfile.Alert{Maildir: dir + "/alerts"},
		Accounts: []*rcfile.Account{{Name: "work", Interval: 5 * time.Minute}}}
	a.Configure(cfg, cfg.Accounts)
	a.Polled(Poll{Account: "work", At: now, Err: errAuth, Held: true})
	a.sendDue(context.Background()) // the raise fails: retried in retryMin
	now = now.Add(time.Second)
	a.Polled(Poll{Account: "work", At: now})
	if wait := a.sendDue(context.Background()); wait < retryMin-2*time.Second {
		t.Errorf("sendDue wants to run again in %v, before the raise is due", wait)
	}
	now = now.Add(retryMin)
	a.sendDue(context.Background())
	want := []string{"maildir raised auth-hold", "maildir cleared auth-hold"}
	if got := fs.got(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("sent %q\nwant %q", got, want)
	}
}

// TestStateFileUnwritable: a state directory that cannot be written
// (full, read-only, gone) neither stops the Alerter nor fills the log:
// notices still go out, the error is logged once (not at every tick),
// and the file is written again once it can be.
func TestStateFileUnwritable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var logs bytes.Buffer
	fs := &fakeSender{}
	a := New(Options{StateDir: dir, Sender: fs, Now: func() time.Time { return t0 },
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	a.started = true
	cfg, owned := testConfig(t.TempDir())
	a.Configure(cfg, owned)
	a.Polled(Poll{Account: "work", At: t0, Err: errAuth, Held: true})
	for range 20 {
		a.Polled(Poll{Account: "work", At: t0, Err: errAuth, Held: true})
		a.Tick()
	}
	a.sendDue(context.Background())
	if n := len(fs.got()); n != 2 {
		t.Errorf("%d notices sent, want 2", n)
	}
	if n := strings.Count(logs.String(), "cannot write the state file"); n != 1 {
		t.Errorf("the error logged %d times, want once:\n%s", n, logs.String())
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	a.Polled(Poll{Account: "work", At: t0, Err: errAuth, Held: true})
	a.Tick()
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err != nil {
		t.Errorf("not written once possible: %v", err)
	}
}

// TestEngineDeferredAfterStart: a held-back raise remembered across a
// restart waits ResumeGrace, like no-success: the first polls may show
// that the condition ended while the daemon was stopped.
func TestEngineDeferredAfterStart(t *testing.T) {
	e := NewEngine(nil)
	e.Restore(State{Active: []Active{{Account: "a", Condition: AuthHold, Since: t0.Add(-3 * time.Hour)}},
		LastRaise: map[string]time.Time{"a/auth-hold": t0.Add(-2 * time.Hour)}})
	e.Resume(t0)
	e.Configure(t0, map[string]AccountConfig{"a": {After: time.Hour}})
	var got []string
	got = append(got, kinds(e.Tick(t0))...)
	got = append(got, kinds(e.Poll(Poll{Account: "a", At: t0.Add(time.Minute)}))...)
	got = append(got, kinds(e.Tick(t0.Add(ResumeGrace)))...)
	if len(got) != 0 {
		t.Errorf("notices %q; want none", got)
	}
}

// TestEngineNoSuccessSlowAccount: an `after` shorter than an account's
// interval (after = "1h" for every account, one of them polled daily)
// does not make every healthy pause between two polls a no-success
// alert; one poll missed is still noticed.
func TestEngineNoSuccessSlowAccount(t *testing.T) {
	e := NewEngine(nil)
	e.Configure(t0, map[string]AccountConfig{"a": {After: time.Hour, Interval: 24 * time.Hour}})
	var got []string
	for d := 0; d < 3; d++ {
		day := t0.Add(time.Duration(d) * 24 * time.Hour)
		got = append(got, kinds(e.Poll(Poll{Account: "a", At: day}))...)
		for m := 10; m < 24*60; m += 10 {
			got = append(got, kinds(e.Tick(day.Add(time.Duration(m)*time.Minute)))...)
		}
	}
	if len(got) != 0 {
		t.Fatalf("healthy daily polls: %q", got)
	}
	got = kinds(e.Tick(t0.Add(4 * 24 * time.Hour)))
	if len(got) != 1 || got[0] != "raised a/no-success" {
		t.Errorf("a missed daily poll: %q", got)
	}
}
