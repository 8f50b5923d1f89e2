package alert

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/oauth"
	"github.com/popfetch/popfetch/fetch/oauthtest"
	"github.com/popfetch/popfetch/rcfile"
)

func TestRefreshExpiryWindow(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name   string
		issued time.Time
		life   time.Duration
		want   time.Duration
	}{
		{"90 days: 3 days", t0, 90 * day, 3 * day},
		{"12 days: 3 days", t0, 12 * day, 3 * day},
		{"Google testing mode, 7 days: a quarter", t0, 7 * day, 7 * day / 4},
		{"one hour: a quarter", t0, time.Hour, 15 * time.Minute},
		{"issue unknown: 3 days", time.Time{}, 7 * day, 3 * day},
		{"issued after the expiry: 3 days", t0.Add(8 * day), 7 * day, 3 * day},
	} {
		if got := RefreshExpiryWindow(tc.issued, t0.Add(tc.life)); got != tc.want {
			t.Errorf("%s: RefreshExpiryWindow = %v; want %v", tc.name, got, tc.want)
		}
	}
}

// TestEngineTokenExpiry: OAuth2Expiring is raised once when the known
// expiry comes within its window (however many ticks see it), cleared
// once by a token file that no longer says so, and never for an account
// not configured.
func TestEngineTokenExpiry(t *testing.T) {
	const day = 24 * time.Hour
	exp := t0.Add(7 * day) // issued t0: window 1.75 days
	renewed := t0.Add(13 * day)
	type in struct {
		at              time.Duration
		issued, expires time.Time
		account         string
	}
	for _, tc := range []struct {
		name  string
		steps []in
		want  []string
	}{
		{"not yet", []in{{at: 0, issued: t0, expires: exp}, {at: 5 * day, issued: t0, expires: exp}}, nil},
		{"raised once, cleared by a new sign-in", []in{
			{at: 5 * day, issued: t0, expires: exp},
			{at: 5*day + 6*time.Hour, issued: t0, expires: exp},
			{at: 6 * day, issued: t0, expires: exp},
			{at: 8 * day, issued: t0, expires: exp}, // expired: still the one alert
			{at: 8*day + time.Hour, issued: t0.Add(8*day + time.Hour), expires: renewed},
			{at: 9 * day, issued: t0.Add(8*day + time.Hour), expires: renewed},
		}, []string{"raised a/oauth2-expiring", "cleared a/oauth2-expiring"}},
		{"cleared when no expiry is known any more", []in{
			{at: 6 * day, issued: t0, expires: exp},
			{at: 6*day + time.Hour},
		}, []string{"raised a/oauth2-expiring", "cleared a/oauth2-expiring"}},
		{"no expiry: nothing", []in{{at: 0}, {at: 100 * day}}, nil},
		{"not configured: nothing", []in{{at: 6 * day, issued: t0, expires: exp, account: "other"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(nil)
			e.Resume(t0)
			e.Configure(t0, map[string]AccountConfig{"a": {After: 1000 * day}})
			var got []string
			for _, s := range tc.steps {
				acct := s.account
				if acct == "" {
					acct = "a"
				}
				for _, n := range e.TokenExpiry(t0.Add(s.at), acct, s.issued, s.expires) {
					got = append(got, string(n.Event)+" "+n.Account+"/"+string(n.Condition))
					if n.Event == Raised && !strings.Contains(n.Detail, "popfetch login a") {
						t.Errorf("raise detail %q does not say what to run", n.Detail)
					}
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("notices %q; want %q", got, tc.want)
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestAlerterRefreshTokenExpiring, with the fake identity provider and
// package fetch/oauth's real sign-in and token file: a refresh token that
// the provider limits to 7 days raises oauth2-expiring once its quarter
// of life is left, and `popfetch login` (a new sign-in) clears it at the
// next tick. No token or client secret appears in a notice, the log or
// the state file.
func TestAlerterRefreshTokenExpiring(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.RefreshTTL = 7 * 24 * time.Hour
	idp.AutoApprove = true
	idp.ClientSecret = "client-secret-4711"
	dir := t.TempDir()
	acct := &rcfile.Account{Name: "work", Interval: 5 * time.Minute, StateDir: dir, OAuth2: idp.Registration(rcfile.FlowDevice)}
	cfg := &rcfile.Config{Accounts: []*rcfile.Account{acct}, Alert: &rcfile.Alert{Command: []string{"/bin/true"}}}

	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(d time.Duration) { mu.Lock(); now = t0.Add(d); mu.Unlock() }
	login := func() {
		t.Helper()
		src, err := oauth.New(acct, oauth.Options{Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := src.Login(ctx, oauth.LoginIO{Out: io.Discard, In: strings.NewReader("")}); err != nil {
			t.Fatalf("Login = %v", err)
		}
	}
	login()

	var logs syncBuffer
	fs := &fakeSender{}
	a := New(Options{StateDir: dir, Host: "mx.example", Sender: fs, Now: clock, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	a.started = true // as Run does
	a.Configure(cfg, cfg.Accounts)
	var notices []Notice
	collect := func() {
		a.mu.Lock()
		for _, it := range a.queue {
			if it.Notice.Condition == OAuth2Expiring {
				notices = append(notices, it.Notice)
			}
		}
		a.queue = nil
		a.mu.Unlock()
	}
	for _, at := range []time.Duration{0, 5 * 24 * time.Hour, 5*24*time.Hour + 6*time.Hour, 5*24*time.Hour + 7*time.Hour} {
		set(at)
		a.Polled(Poll{Account: "work", At: clock()}) // healthy polls: only the token's expiry matters
		a.Tick()
		collect()
	}
	if len(notices) != 1 || notices[0].Event != Raised || !notices[0].Since.Equal(t0.Add(5*24*time.Hour+6*time.Hour)) {
		t.Fatalf("notices %+v; want one raise at day 5.25", notices)
	}
	if act := a.Active(); !slices.ContainsFunc(act, func(x Active) bool { return x.Condition == OAuth2Expiring }) {
		t.Fatalf("active %+v", act)
	}

	set(6 * 24 * time.Hour)
	login() // popfetch login: a new grant, 7 more days
	a.Tick()
	collect()
	if len(notices) != 2 || notices[1].Event != Cleared {
		t.Fatalf("after a new sign-in: notices %+v; want the raise and its recovery", notices)
	}
	for _, x := range a.Active() {
		if x.Condition == OAuth2Expiring {
			t.Errorf("still active after the sign-in: %+v", x)
		}
	}

	state, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, n := range notices {
		text.WriteString(Subject(n) + "\n" + Body(n, "mx.example") + "\n" + string(JSON(n, "mx.example")) + "\n")
	}
	for _, secret := range append(idp.Secrets(), idp.ClientSecret) {
		for what, s := range map[string]string{"notice": text.String(), "log": logs.String(), "state file": string(state)} {
			if strings.Contains(s, secret) {
				t.Errorf("%s holds the secret %q", what, secret)
			}
		}
	}
	if !strings.Contains(text.String(), "popfetch login work") {
		t.Errorf("the notice does not say what to run:\n%s", text.String())
	}
}
