package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/alert"
	"github.com/popfetch/popfetch/fetch/daemon"
	"github.com/popfetch/popfetch/internal/testutil"
)

type fakeSource struct {
	mu      sync.Mutex
	st      daemon.Status
	running bool
}

func (f *fakeSource) Status() daemon.Status { f.mu.Lock(); defer f.mu.Unlock(); return f.st }
func (f *fakeSource) Running() bool         { f.mu.Lock(); defer f.mu.Unlock(); return f.running }

func scrape(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

// samples returns the exposition's sample lines (no comments) as a set.
func samples(text string) map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			m[l] = true
		}
	}
	return m
}

func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	src := &fakeSource{running: true, st: daemon.Status{Generation: 3, Accounts: []daemon.AccountStatus{
		{Name: "a", State: daemon.StateIdle, Last: &fetch.PollSummary{Messages: 7, Undeletable: 1}},
		{Name: "b", State: daemon.StateAuthHold},
		{Name: "c", State: daemon.StateBackoff, Failures: 4},
	}}}
	m := New(src, "v1.2.3")
	end := time.Unix(1700000000, 0)
	m.Observe(fetch.Result{Account: "a", Start: end.Add(-2 * time.Second), Elapsed: 2 * time.Second,
		Messages: 7, New: 3, Delivered: 2, Deleted: 2, Skipped: 1, Failed: 1})
	m.Observe(fetch.Result{Account: "a", Elapsed: 40 * time.Second, Err: errors.New("dial tcp: secret-uid-4711 user@example.com")})
	m.Observe(fetch.Result{Account: "b", Elapsed: time.Millisecond, Err: fmt.Errorf("login: %w", fetch.ErrAuth)})
	m.Observe(fetch.Result{Account: "c", Err: fetch.ErrLocked})
	m.Observe(fetch.Result{Account: "c", Err: fmt.Errorf("x: %w", fetch.ErrLoginRefused)})
	m.Observe(fetch.Result{Account: "c", NotStarted: true}) // not a poll
	m.Reloaded(false, time.Unix(1700000100, 0))

	code, text := scrape(t, m.Handler(), "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	got := samples(text)
	for _, want := range []string{
		`popfetch_polls_total{account="a",result="ok"} 1`,
		`popfetch_polls_total{account="a",result="failed"} 1`,
		`popfetch_polls_total{account="b",result="auth_failed"} 1`,
		`popfetch_polls_total{account="b",result="ok"} 0`,
		`popfetch_polls_total{account="c",result="locked"} 1`,
		`popfetch_polls_total{account="c",result="login_refused"} 1`,
		`popfetch_polls_total{account="c",result="failed"} 0`,
		`popfetch_messages_new_total{account="a"} 3`,
		`popfetch_messages_delivered_total{account="a"} 2`,
		`popfetch_messages_deleted_total{account="a"} 2`,
		`popfetch_messages_skipped_total{account="a"} 1`,
		`popfetch_messages_failed_total{account="a"} 1`,
		`popfetch_poll_duration_seconds_count{account="a"} 2`,
		`popfetch_poll_duration_seconds_sum{account="a"} 42`,
		`popfetch_poll_duration_seconds_bucket{account="a",le="2.5"} 1`,
		`popfetch_poll_duration_seconds_bucket{account="a",le="60"} 2`,
		`popfetch_poll_duration_seconds_bucket{account="a",le="+Inf"} 2`,
		`popfetch_last_success_timestamp_seconds{account="a"} 1.7e+09`,
		`popfetch_consecutive_failures{account="c"} 4`,
		`popfetch_auth_hold{account="b"} 1`,
		`popfetch_auth_hold{account="a"} 0`,
		`popfetch_messages_on_server{account="a"} 7`,
		`popfetch_messages_undeletable{account="a"} 1`,
		`popfetch_config_generation 3`,
		`popfetch_config_last_reload_success 0`,
		`popfetch_config_last_reload_timestamp_seconds 1.7000001e+09`,
	} {
		if !got[want] {
			t.Errorf("missing %s", want)
		}
	}
	if !strings.Contains(text, `popfetch_build_info{goversion="go`) || !strings.Contains(text, `version="v1.2.3"} 1`) {
		t.Errorf("no build info in\n%s", text)
	}
	for _, leak := range []string{"secret-uid", "example.com", "dial tcp"} {
		if strings.Contains(text, leak) {
			t.Errorf("exposition contains %q", leak)
		}
	}
	if strings.Contains(text, `popfetch_last_success_timestamp_seconds{account="b"}`) {
		t.Error("last success for an account that never succeeded")
	}
	testutil.PromtoolCheck(t, text)

	// A reload removes account a: its series go, its counters too.
	src.mu.Lock()
	src.st.Accounts = src.st.Accounts[1:]
	src.mu.Unlock()
	_, text = scrape(t, m.Handler(), "/metrics")
	if strings.Contains(text, `account="a"`) {
		t.Errorf("removed account still exported:\n%s", text)
	}
	src.mu.Lock()
	src.st.Accounts = append(src.st.Accounts, daemon.AccountStatus{Name: "a"})
	src.mu.Unlock()
	_, text = scrape(t, m.Handler(), "/metrics")
	if !samples(text)[`popfetch_messages_delivered_total{account="a"} 0`] {
		t.Errorf("re-added account does not start from zero:\n%s", text)
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	h := New(src, "v").Handler()
	if code, _ := scrape(t, h, "/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("not running: /healthz = %d, want 503", code)
	}
	src.mu.Lock()
	src.running = true
	src.mu.Unlock()
	if code, body := scrape(t, h, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("running: /healthz = %d %q", code, body)
	}
	if code, _ := scrape(t, h, "/other"); code != 404 {
		t.Errorf("/other = %d", code)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ResultOK},
		{errors.New("x"), ResultFailed},
		{fmt.Errorf("a: %w", fetch.ErrAuth), ResultAuthFailed},
		{fmt.Errorf("a: %w", fetch.ErrLoginRefused), ResultLoginRefused},
		{fetch.ErrLocked, ResultLocked},
		{fetch.ErrTLS, ResultFailed},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func get(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServerMoves: Set listens, moves between a TCP port and a unix
// socket (0660, removed when closed) and stops.
func TestServerMoves(t *testing.T) {
	t.Parallel()
	s := NewServer(New(&fakeSource{running: true}, "v").Handler(), nil)
	defer s.Close()
	if err := s.Set("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	tcp := s.Addr().String()
	if code := get(t, http.DefaultClient, "http://"+tcp+"/healthz"); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	sock := filepath.Join(t.TempDir(), "m.sock")
	if err := s.Set(sock); err != nil {
		t.Fatal(err)
	}
	if stillServes("http://" + tcp + "/metrics") {
		t.Error("the old TCP listener still serves metrics after the move")
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if p := fi.Mode().Perm(); p&^0o660 != 0 {
		t.Errorf("socket mode %o, want 0660 or tighter", p)
	}
	uc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	if code := get(t, uc, "http://popfetch/metrics"); code != 200 {
		t.Errorf("metrics over the socket = %d", code)
	}
	uc.CloseIdleConnections()
	if err := s.Set(""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket not removed: %v", err)
	}
	// A regular file at the path is not replaced.
	if err := os.WriteFile(sock, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(sock); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Set over a regular file: %v", err)
	}
}

// stillServes reports whether url answers with popfetch's metrics. (A
// bare dial is not proof: once the port is free, another process may
// take it, or a dial may connect to itself.)
func stillServes(url string) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), "popfetch_")
}

// TestResultCounters: the counters a poll's Result carries besides the
// ones above are summed per account (postmaster, kept, given up, bytes),
// popfetch_mailbox_bytes is the maildrop's size at the last successful
// poll (a failed one keeps it, absent until one succeeded), and
// popfetch_deliveries_in_flight shows InFlight.
func TestResultCounters(t *testing.T) {
	t.Parallel()
	src := &fakeSource{running: true, st: daemon.Status{Generation: 1, Accounts: []daemon.AccountStatus{
		{Name: "a"}, {Name: "b"},
	}}}
	m := New(src, "v")
	m.Observe(fetch.Result{Account: "a", Delivered: 5, Postmaster: 2, Kept: 3, GivenUp: 1, Bytes: 4096, MailboxBytes: 10000})
	m.Observe(fetch.Result{Account: "a", Delivered: 1, Postmaster: 1, Kept: 1, Bytes: 1 << 40, MailboxBytes: 1 << 33})
	m.Observe(fetch.Result{Account: "a", MailboxBytes: 7, Err: errors.New("connection reset")})
	m.Observe(fetch.Result{Account: "b", GivenUp: 2, Err: errors.New("timeout")})
	m.InFlight().Add(3)

	_, text := scrape(t, m.Handler(), "/metrics")
	got := samples(text)
	for _, tc := range []struct {
		sample string
		want   bool
	}{
		{`popfetch_messages_postmaster_total{account="a"} 3`, true},
		{`popfetch_messages_kept_total{account="a"} 4`, true},
		{`popfetch_messages_given_up_total{account="a"} 1`, true},
		{`popfetch_bytes_fetched_total{account="a"} 1.099511631872e+12`, true},
		{`popfetch_mailbox_bytes{account="a"} 8.589934592e+09`, true},
		{`popfetch_messages_postmaster_total{account="b"} 0`, true},
		{`popfetch_messages_kept_total{account="b"} 0`, true},
		{`popfetch_messages_given_up_total{account="b"} 2`, true},
		{`popfetch_bytes_fetched_total{account="b"} 0`, true},
		{`popfetch_deliveries_in_flight 3`, true},
	} {
		if got[tc.sample] != tc.want {
			t.Errorf("%s: present %v, want %v", tc.sample, got[tc.sample], tc.want)
		}
	}
	if strings.Contains(text, `popfetch_mailbox_bytes{account="b"}`) {
		t.Error("mailbox size of an account that never polled successfully")
	}
	for _, f := range []string{"popfetch_messages_postmaster_total counter", "popfetch_messages_kept_total counter",
		"popfetch_messages_given_up_total counter", "popfetch_bytes_fetched_total counter",
		"popfetch_mailbox_bytes gauge", "popfetch_deliveries_in_flight gauge"} {
		if !strings.Contains(text, "\n# TYPE "+f+"\n") {
			t.Errorf("no # TYPE %s", f)
		}
	}
	testutil.PromtoolCheck(t, text)

	m.InFlight().Add(-3)
	_, text = scrape(t, m.Handler(), "/metrics")
	if !samples(text)[`popfetch_deliveries_in_flight 0`] {
		t.Errorf("in flight after the deliveries ended:\n%s", text)
	}
}

// TestMetricsAlerts: popfetch_alerts_active is 1 for each active
// condition, 0 for every other condition of every configured account and
// for the daemon's reload-rejected, and makes no label of an account or
// condition outside the configured accounts and the engine's fixed set.
func TestMetricsAlerts(t *testing.T) {
	t.Parallel()
	src := &fakeSource{running: true, st: daemon.Status{Generation: 1,
		Accounts: []daemon.AccountStatus{{Name: "a"}, {Name: "b", State: daemon.StateAuthHold}},
		Alerts: []daemon.ActiveAlert{
			{Condition: "reload-rejected", Detail: "rc:3: secret-diagnostic"},
			{Account: "b", Condition: "auth-hold", Detail: "-ERR [AUTH] secret-reply"},
			{Account: "b", Condition: "no-success"},
			{Account: "gone", Condition: "failing"},              // not configured: no label
			{Account: "a", Condition: "made-up-by-a-state-file"}, // not a condition: no label
		}}}
	m := New(src, "v")
	_, text := scrape(t, m.Handler(), "/metrics")
	got := samples(text)
	n := 0
	for l := range got {
		if strings.HasPrefix(l, "popfetch_alerts_active{") {
			n++
		}
	}
	perAccount := len(alert.Conditions) - 1 // all but reload-rejected
	if want := 1 + 2*perAccount; n != want {
		t.Errorf("%d popfetch_alerts_active series, want %d:\n%s", n, want, text)
	}
	for _, want := range []string{
		`popfetch_alerts_active{account="",condition="reload-rejected"} 1`,
		`popfetch_alerts_active{account="b",condition="auth-hold"} 1`,
		`popfetch_alerts_active{account="b",condition="no-success"} 1`,
		`popfetch_alerts_active{account="b",condition="failing"} 0`,
		`popfetch_alerts_active{account="a",condition="auth-hold"} 0`,
		`popfetch_alerts_active{account="a",condition="mailbox-full"} 0`,
	} {
		if !got[want] {
			t.Errorf("missing %s", want)
		}
	}
	for _, leak := range []string{"gone", "made-up", "secret"} {
		if strings.Contains(text, leak) {
			t.Errorf("exposition contains %q", leak)
		}
	}
	testutil.PromtoolCheck(t, text)

	// Cleared: every series stays, at 0.
	src.mu.Lock()
	src.st.Alerts = nil
	src.mu.Unlock()
	_, text = scrape(t, m.Handler(), "/metrics")
	got = samples(text)
	for _, want := range []string{
		`popfetch_alerts_active{account="",condition="reload-rejected"} 0`,
		`popfetch_alerts_active{account="b",condition="auth-hold"} 0`,
	} {
		if !got[want] {
			t.Errorf("after clearing: missing %s", want)
		}
	}
}
