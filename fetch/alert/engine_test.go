package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// step is one input to the engine at t0+at.
type step struct {
	at     time.Duration
	poll   *Poll // Account defaults to "a"
	tick   bool
	reload *bool
	diags  []string
	conf   map[string]AccountConfig
	// restart: persist the state as JSON, and go on with a new engine
	// restored from it (a daemon restart).
	restart bool
	repeat  int           // do the step this many more times, every
	every   time.Duration // this long apart
}

var (
	errNet  = errors.New("dial tcp: connection refused")
	errAuth = errors.New("-ERR [AUTH] invalid credentials")
	yes, no = true, false
)

func ok() *Poll                  { return &Poll{LoggedIn: true, Messages: 3} }
func fail() *Poll                { return &Poll{Err: errNet} }
func held() *Poll                { return &Poll{Err: errAuth, Held: true} }
func polled(f func(*Poll)) *Poll { p := ok(); f(p); return p }

func TestEngine(t *testing.T) {
	def := map[string]AccountConfig{"a": {After: time.Hour}}
	keep := map[string]AccountConfig{"a": {After: time.Hour, Keep: true, MaxMessages: 100, MaxBytes: 1 << 20}}
	tests := []struct {
		name  string
		conf  map[string]AccountConfig
		steps []step
		want  []string // "raised a/auth-hold", "cleared a/auth-hold", "suppressed a/x"
	}{
		{"healthy polls raise nothing", def,
			[]step{{poll: ok(), repeat: 100, every: 5 * time.Minute}, {tick: true, at: 9 * time.Hour}}, nil},
		{"auth hold raised once, cleared once", def, []step{
			{poll: ok()},
			{at: time.Minute, poll: held()},
			{at: 2 * time.Minute, tick: true, repeat: 20, every: time.Minute},
			{at: 30 * time.Minute, poll: held(), repeat: 10, every: time.Minute},
			{at: 3 * time.Hour, tick: true},
			{at: 4 * time.Hour, poll: ok(), repeat: 10, every: 5 * time.Minute},
		}, []string{"raised a/auth-hold", "cleared a/auth-hold"}},
		{"failing only after `after`, then cleared", def, []step{
			{poll: fail(), repeat: 11, every: 5 * time.Minute}, // 55m: not yet
			{at: 59 * time.Minute, tick: true},
			{at: 60 * time.Minute, poll: fail()},
			{at: 61 * time.Minute, tick: true, repeat: 100, every: time.Minute},
			{at: 3 * time.Hour, poll: fail(), repeat: 10, every: 5 * time.Minute},
			{at: 5 * time.Hour, poll: ok()},
		}, []string{"raised a/failing", "cleared a/failing"}},
		{"a short failure alerts nobody", def, []step{
			{poll: fail(), repeat: 5, every: 5 * time.Minute},
			{at: 30 * time.Minute, poll: ok(), repeat: 18, every: 5 * time.Minute},
			{at: 2 * time.Hour, tick: true},
		}, nil},
		{"failing raised by the timer alone", def, []step{
			{poll: fail()},
			{at: 61 * time.Minute, tick: true},
		}, []string{"raised a/failing"}},
		{"delivery failing with messages waiting", def, []step{
			{poll: polled(func(p *Poll) { p.Failed, p.Messages = 2, 7 }), repeat: 20, every: 5 * time.Minute},
			{at: 2 * time.Hour, poll: ok()},
		}, []string{"raised a/delivery-failing", "cleared a/delivery-failing"}},
		{"dele refused raised at once, cleared once", def, []step{
			{poll: polled(func(p *Poll) { p.Undeletable = 4 }), repeat: 30, every: 5 * time.Minute},
			{at: 3 * time.Hour, poll: ok(), repeat: 3, every: 5 * time.Minute},
		}, []string{"raised a/dele-refused", "cleared a/dele-refused"}},
		{"oauth2 refresh failure, not also an auth hold", def, []step{
			{poll: &Poll{Err: errAuth, Held: true, OAuth2: true}, repeat: 3, every: time.Minute},
			{at: 2 * time.Hour, tick: true},
			{at: 3 * time.Hour, poll: ok()},
		}, []string{"raised a/oauth2-refresh", "cleared a/oauth2-refresh"}},
		{"no successful poll: nothing polled at all", def, []step{
			{poll: ok()},
			{at: 59 * time.Minute, tick: true},
			{at: 60 * time.Minute, tick: true, repeat: 100, every: time.Minute},
			{at: 3 * time.Hour, poll: ok()},
		}, []string{"raised a/no-success", "cleared a/no-success"}},
		{"no success is not raised beside failing or a hold", def, []step{
			{poll: held()},
			{at: 5 * time.Hour, tick: true},
		}, []string{"raised a/auth-hold"}},
		{"keep-mode mailbox beyond its thresholds", keep, []step{
			{poll: polled(func(p *Poll) { p.Messages = 100 })},
			{at: 5 * time.Minute, poll: polled(func(p *Poll) { p.Messages = 101 }), repeat: 10, every: 5 * time.Minute},
			{at: time.Hour, poll: polled(func(p *Poll) { p.Messages, p.MailboxBytes = 50, 2<<20 })},
			{at: 2 * time.Hour, poll: polled(func(p *Poll) { p.Messages, p.MailboxBytes = 50, 1<<20 })},
		}, []string{"raised a/mailbox-full", "cleared a/mailbox-full"}},
		{"mailbox thresholds only apply with keep", map[string]AccountConfig{"a": {After: time.Hour, MaxMessages: 1}}, []step{
			{poll: polled(func(p *Poll) { p.Messages = 500 })},
		}, nil},
		{"rejected reload once, cleared by the next accepted one", def, []step{
			{reload: &no, diags: []string{"x.hcl:3:1: error: bad"}},
			{at: time.Minute, reload: &no, diags: []string{"x.hcl:4:1: error: worse"}},
			{at: 2 * time.Minute, poll: ok()},
			{at: 3 * time.Minute, reload: &yes},
			{at: 4 * time.Minute, reload: &yes},
		}, []string{"raised /reload-rejected", "cleared /reload-rejected"}},
		{"restart keeps the active set: no second raise", def, []step{
			{poll: held()},
			{at: time.Minute, restart: true},
			{at: 2 * time.Minute, poll: held(), repeat: 5, every: time.Minute},
			{at: time.Hour, restart: true},
			{at: 2 * time.Hour, poll: ok()},
			{at: 3 * time.Hour, restart: true},
			{at: 4 * time.Hour, poll: ok()},
		}, []string{"raised a/auth-hold", "cleared a/auth-hold"}},
		{"flapping within RenotifyAfter is silent, and so is its clear", def, []step{
			{poll: held()},
			{at: time.Minute, poll: ok()},
			{at: 2 * time.Minute, poll: held()},
			{at: 3 * time.Minute, poll: ok()},
			{at: 2 * time.Hour, poll: held()},
			{at: 3 * time.Hour, poll: ok()},
		}, []string{"raised a/auth-hold", "cleared a/auth-hold", "suppressed a/auth-hold", "raised a/auth-hold", "cleared a/auth-hold"}},
		{"a removed account's conditions clear", def, []step{
			{poll: held()},
			{at: time.Minute, conf: map[string]AccountConfig{"b": {After: time.Hour}}},
			{at: 2 * time.Minute, poll: held()}, // a late result of the removed account
		}, []string{"raised a/auth-hold", "cleared a/auth-hold"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(nil)
			var got []string
			record := func(ns []Notice) {
				for _, n := range ns {
					ev := string(n.Event)
					if n.Suppressed {
						ev = "suppressed"
					}
					got = append(got, ev+" "+n.Account+"/"+string(n.Condition))
					if n.Event == Cleared && n.Since.IsZero() {
						t.Errorf("cleared notice without Since: %+v", n)
					}
				}
			}
			record(e.Configure(t0, tc.conf))
			for _, s := range tc.steps {
				for i := 0; i <= s.repeat; i++ {
					now := t0.Add(s.at + time.Duration(i)*s.every)
					switch {
					case s.restart:
						b, err := json.Marshal(e.State())
						if err != nil {
							t.Fatal(err)
						}
						var st State
						if err := json.Unmarshal(b, &st); err != nil {
							t.Fatal(err)
						}
						e = NewEngine(nil)
						e.Restore(st)
						record(e.Configure(now, tc.conf))
					case s.conf != nil:
						record(e.Configure(now, s.conf))
					case s.poll != nil:
						p := *s.poll
						if p.Account == "" {
							p.Account = "a"
						}
						p.At = now
						record(e.Poll(p))
					case s.tick:
						record(e.Tick(now))
					case s.reload != nil:
						record(e.Reload(now, *s.reload, s.diags))
					}
				}
			}
			if strings.Join(got, "; ") != strings.Join(tc.want, "; ") {
				t.Errorf("notices:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestEngineRateLimit: an outage that hits many accounts at once sends
// at most MaxPerHour raise notices an hour; the others are active but
// silent, and only the sent ones get a recovery notice.
func TestEngineRateLimit(t *testing.T) {
	e := NewEngine(nil)
	conf := map[string]AccountConfig{}
	for i := range 50 {
		conf[fmt.Sprintf("acct%02d", i)] = AccountConfig{After: time.Hour}
	}
	e.Configure(t0, conf)
	var raised, suppressed, cleared int
	count := func(ns []Notice) {
		for _, n := range ns {
			switch {
			case n.Suppressed:
				suppressed++
			case n.Event == Raised:
				raised++
			default:
				cleared++
			}
		}
	}
	for name := range conf {
		count(e.Poll(Poll{Account: name, At: t0.Add(time.Minute), Err: errAuth, Held: true}))
	}
	if raised != MaxPerHour || suppressed != 50-MaxPerHour {
		t.Fatalf("raised %d, suppressed %d; want %d and %d", raised, suppressed, MaxPerHour, 50-MaxPerHour)
	}
	if n := len(e.Active()); n != 50 {
		t.Errorf("%d active, want 50 (suppressed ones are active too)", n)
	}
	for name := range conf {
		count(e.Poll(Poll{Account: name, At: t0.Add(2 * time.Minute)}))
	}
	if cleared != MaxPerHour {
		t.Errorf("cleared %d, want %d", cleared, MaxPerHour)
	}
	// An hour later the budget is back.
	raised = 0
	count(e.Poll(Poll{Account: "acct00", At: t0.Add(3 * time.Hour), Err: errAuth, Held: true}))
	if raised != 1 {
		t.Errorf("after an hour: raised %d, want 1", raised)
	}
}

// TestEngineNoSuccessAfterRestart: the time an account was last polled
// successfully survives a restart, so an account that the daemon stopped
// polling is noticed across restarts too.
func TestEngineStatePersists(t *testing.T) {
	e := NewEngine(nil)
	conf := map[string]AccountConfig{"a": {After: time.Hour}}
	e.Configure(t0, conf)
	e.Poll(Poll{Account: "a", At: t0, Err: errNet})
	b, _ := json.Marshal(e.State())
	e2 := NewEngine(nil)
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	e2.Restore(st)
	e2.Configure(t0.Add(time.Minute), conf)
	ns := e2.Tick(t0.Add(time.Hour))
	if len(ns) != 1 || ns[0].Condition != Failing {
		t.Fatalf("after restart, Tick = %+v; want failing (since before the restart)", ns)
	}
}

// TestEngineResumeGrace: after a stop longer than after, the first Tick
// of the new daemon does not raise no-success before its polls had a
// chance; if none succeeds within ResumeGrace, it does.
func TestEngineResumeGrace(t *testing.T) {
	conf := map[string]AccountConfig{"a": {After: time.Hour}}
	for _, succeed := range []bool{true, false} {
		e := NewEngine(nil)
		e.Configure(t0, conf)
		e.Poll(Poll{Account: "a", At: t0})
		back := t0.Add(24 * time.Hour)
		e.Resume(back)
		e.Configure(back, conf)
		if ns := e.Tick(back); len(ns) != 0 {
			t.Fatalf("Tick at the start = %+v; want nothing", ns)
		}
		if succeed {
			e.Poll(Poll{Account: "a", At: back.Add(time.Minute)})
		}
		ns := e.Tick(back.Add(ResumeGrace))
		if got := len(ns) == 1 && ns[0].Condition == NoSuccess; got == succeed {
			t.Errorf("succeed=%v: Tick after the grace = %+v", succeed, ns)
		}
	}
}

// TestEngineReloadLatestDiagnostics: rejected reloads raise the
// condition once, but its detail (what `popfetch status` shows) is the
// latest rejection's, and the recovery notice quotes the latest too.
func TestEngineReloadLatestDiagnostics(t *testing.T) {
	e := NewEngine(nil)
	steps := []struct {
		ok          bool
		diags       []string
		wantNotices int
		wantDetail  string // of the active condition; "" = none active
	}{
		{false, []string{"rc:3: first", "rc:4: second"}, 1, "rc:3: first\nrc:4: second"},
		{false, []string{"rc:9: third"}, 0, "rc:9: third"},
		{false, []string{"rc:10: fourth"}, 0, "rc:10: fourth"},
		{true, nil, 1, ""},
	}
	var last []Notice
	for i, s := range steps {
		last = e.Reload(t0.Add(time.Duration(i)*time.Minute), s.ok, s.diags)
		if len(last) != s.wantNotices {
			t.Fatalf("step %d: %d notices %+v, want %d", i, len(last), last, s.wantNotices)
		}
		act := e.Active()
		switch {
		case s.wantDetail == "" && len(act) != 0:
			t.Errorf("step %d: active %+v, want none", i, act)
		case s.wantDetail != "" && (len(act) != 1 || act[0].Detail != s.wantDetail):
			t.Errorf("step %d: active %+v, want detail %q", i, act, s.wantDetail)
		}
	}
	if d := last[0].Detail; last[0].Event != Cleared || !strings.Contains(d, "rc:10: fourth") || strings.Contains(d, "first") {
		t.Errorf("recovery notice %+v: want the latest diagnostics only", last[0])
	}
}
