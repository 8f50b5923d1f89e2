package oauth

import (
	"math"
	"testing"
	"time"

	"github.com/popfetch/popfetch/rcfile"
	"golang.org/x/oauth2"
)

// TestRefreshExpiryStored: a refresh_token_expires_in in the sign-in's
// token response is stored as the refresh token's expiry, kept across
// refreshes that say nothing about it, replaced (with a new start) when
// a rotation brings a new refresh token and its own, and dropped for a
// rotated token whose end the provider does not give. A provider that
// sends none stores none.
func TestRefreshExpiryStored(t *testing.T) {
	const ttl = 7 * 24 * time.Hour
	for _, tc := range []struct {
		name   string
		ttl    time.Duration
		rotate bool
	}{
		{"noExpiry", 0, false},
		{"kept", ttl, false},
		{"rotated", ttl, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := startIdP(t)
			idp.RefreshTTL, idp.Rotate = tc.ttl, tc.rotate
			a := account(t, idp, rcfile.FlowDevice)
			login := time.Now()
			now := login
			src := newSource(t, a, Options{Now: func() time.Time { return now }})
			deviceLogin(t, idp, src)
			info, err := src.Info()
			if err != nil {
				t.Fatal(err)
			}
			if tc.ttl == 0 {
				if !info.RefreshExpiry.IsZero() || !info.RefreshIssued.IsZero() {
					t.Errorf("no refresh_token_expires_in: stored expiry %v, issued %v", info.RefreshExpiry, info.RefreshIssued)
				}
			} else if d := info.RefreshExpiry.Sub(login.Add(ttl)); d > 0 || d < -5*time.Second || !info.RefreshIssued.Equal(login) {
				t.Errorf("after login: expiry %v (%v from login+ttl), issued %v; want login+%v, %v", info.RefreshExpiry, d, info.RefreshIssued, ttl, login)
			}
			// Two days on, a refresh.
			now = login.Add(48 * time.Hour)
			idp.ExpireAccess()
			mustToken(t, idp, src, true)
			after, err := src.Info()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.ttl == 0:
				if !after.RefreshExpiry.IsZero() {
					t.Errorf("refresh made up an expiry: %v", after.RefreshExpiry)
				}
			case !tc.rotate:
				if !after.RefreshExpiry.Equal(info.RefreshExpiry) || !after.RefreshIssued.Equal(info.RefreshIssued) {
					t.Errorf("refresh without refresh_token_expires_in: expiry %v issued %v; want kept %v %v", after.RefreshExpiry, after.RefreshIssued, info.RefreshExpiry, info.RefreshIssued)
				}
			default:
				// The fake's grant ends ttl after the sign-in (real time); the
				// rotated token says so in seconds left, from the refresh.
				if after.RefreshExpiry.Before(now.Add(ttl-10*time.Second)) || !after.RefreshIssued.Equal(now) {
					t.Errorf("rotation: expiry %v issued %v; want about %v, %v", after.RefreshExpiry, after.RefreshIssued, now.Add(ttl), now)
				}
			}
			// A new Source (another process) reads the same.
			again, err := ReadInfo(TokenPath(a.StateDir, a.Name))
			if err != nil || !again.RefreshExpiry.Equal(after.RefreshExpiry) {
				t.Errorf("ReadInfo = %+v, %v", again, err)
			}
		})
	}
}

// TestRefreshExpiryRotatedWithout: a rotation that brings a new refresh
// token but no refresh_token_expires_in leaves no expiry: the old
// token's end says nothing of the new one.
func TestRefreshExpiryRotatedWithout(t *testing.T) {
	idp := startIdP(t)
	idp.RefreshTTL, idp.Rotate = 7*24*time.Hour, true
	a := account(t, idp, rcfile.FlowDevice)
	src := newSource(t, a, Options{})
	deviceLogin(t, idp, src)
	if info, _ := src.Info(); info.RefreshExpiry.IsZero() {
		t.Fatal("no expiry stored at the sign-in")
	}
	idp.RefreshTTL = 0 // the grant keeps its end; new responses do not say it
	idp.ExpireAccess()
	mustToken(t, idp, src, true)
	if info, err := src.Info(); err != nil || !info.RefreshExpiry.IsZero() || !info.RefreshIssued.IsZero() {
		t.Errorf("after a rotation without refresh_token_expires_in: %+v, %v; want no expiry", info, err)
	}
}

func TestRefreshExpiryParse(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name string
		raw  any
		want time.Duration // 0 = none
	}{
		{"json", float64(604799), 604799 * time.Second},
		{"string", " 3600 ", time.Hour},
		{"fraction", 1.5, 1500 * time.Millisecond},
		{"zero", float64(0), 0},
		{"negative", float64(-5), 0},
		{"huge", 1e300, 0},
		{"nan", math.NaN(), 0},
		{"inf", math.Inf(1), 0},
		{"text", "soon", 0},
		{"bool", true, 0},
		{"absent", nil, 0},
	} {
		tok := (&oauth2.Token{AccessToken: "a"}).WithExtra(map[string]any{"refresh_token_expires_in": tc.raw})
		got := refreshExpiry(tok, now)
		var want time.Time
		if tc.want != 0 {
			want = now.Add(tc.want)
		}
		if !got.Equal(want) {
			t.Errorf("%s: refreshExpiry(%v) = %v; want %v", tc.name, tc.raw, got, want)
		}
	}
}

// FuzzRefreshExpiry: whatever a provider sends, the expiry is none or
// within (now, now+maxRefreshLife].
func FuzzRefreshExpiry(f *testing.F) {
	for _, s := range []string{"604799", "3600", "-1", "1e308", "NaN", "0x10", "", "1.5", "+Inf"} {
		f.Add(s)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, s string) {
		tok := (&oauth2.Token{}).WithExtra(map[string]any{"refresh_token_expires_in": s})
		got := refreshExpiry(tok, now)
		if !got.IsZero() && (!got.After(now) || got.After(now.Add(maxRefreshLife))) {
			t.Fatalf("refreshExpiry(%q) = %v", s, got)
		}
	})
}
