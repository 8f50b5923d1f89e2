package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/daemon"
	"github.com/popfetch/popfetch/fetch/daemon/metrics"
	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/internal/testutil"
)

// metricValue returns the value of the sample line that starts with
// series (name and labels exactly as exposed), and whether it is there.
func metricValue(text, series string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func httpGet(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// TestMetricsEndToEnd runs `popfetch run` with metrics_listen against a
// real dovecot, scrapes /metrics over HTTP after a poll that fetched
// three messages (and one that failed authentication), validates it with
// promtool and checks the counters; /healthz answers 200. A reload moves
// the endpoint to a unix socket and drops the removed account's series;
// the socket is removed when the daemon stops.
func TestMetricsEndToEnd(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	alice := srv.AddUser(t, "alice", "pw")
	srv.AddUser(t, "bob", "right")
	alice.Put(t, seqMsg("m", 1, 2), seqMsg("m", 2, 3), seqMsg("m", 3, 4))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	maildir := filepath.Join(dir, "mail")
	rc := filepath.Join(dir, "popfetch.hcl")
	accts := []rcAccount{
		{name: "alice", port: srv.PlainPort, user: "alice", pass: "pw", maildir: maildir, extra: []string{`interval = "24h"`}},
		{name: "bob", port: srv.PlainPort, user: "bob", pass: "wrong", maildir: filepath.Join(dir, "bob"), extra: []string{`interval = "24h"`}},
	}
	writeFile(t, rc, rcText(state, []string{`metrics_listen = "` + addr + `"`}, accts...))
	d := startDaemon(t, rc)

	daemonCLI(t, rc, "now") // bob's failure makes it exit non-zero
	waitMaildir(t, maildir, 3, 10*time.Second)

	code, body := httpGet(t, http.DefaultClient, "http://"+addr+"/healthz")
	if code != 200 {
		t.Errorf("/healthz = %d %q, want 200", code, body)
	}
	code, text := httpGet(t, http.DefaultClient, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	testutil.PromtoolCheck(t, text)
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{`popfetch_messages_new_total{account="alice"}`, 3},
		{`popfetch_messages_delivered_total{account="alice"}`, 3},
		{`popfetch_messages_deleted_total{account="alice"}`, 3},
		{`popfetch_messages_failed_total{account="alice"}`, 0},
		{`popfetch_messages_on_server{account="alice"}`, -1}, // 3, or 0 if a scheduled poll came after
		{`popfetch_polls_total{account="alice",result="failed"}`, 0},
		{`popfetch_consecutive_failures{account="alice"}`, 0},
		{`popfetch_auth_hold{account="alice"}`, 0},
		{`popfetch_auth_hold{account="bob"}`, 1},
		{`popfetch_messages_delivered_total{account="bob"}`, 0},
		{`popfetch_config_generation`, 1},
		{`popfetch_config_last_reload_success`, 1},
		{`popfetch_deliveries_in_flight`, 0},
		{`popfetch_messages_postmaster_total{account="alice"}`, 0},
		{`popfetch_messages_given_up_total{account="alice"}`, 0},
		{`popfetch_mailbox_bytes{account="alice"}`, -1}, // 3 messages' size, or 0 after a later poll
		{`popfetch_bytes_fetched_total{account="alice"}`, -1},
		{`popfetch_messages_kept_total{account="alice"}`, -1},
		{`popfetch_mailbox_bytes{account="bob"}`, -2}, // never logged in: absent
	} {
		if tc.want == -2 {
			if _, ok := metricValue(text, tc.series); ok {
				t.Errorf("%s is present, want absent", tc.series)
			}
			continue
		}
		v, ok := metricValue(text, tc.series)
		if !ok || tc.want >= 0 && v != tc.want {
			t.Errorf("%s = %v (present %v), want %v", tc.series, v, ok, tc.want)
		}
	}
	if v, _ := metricValue(text, `popfetch_polls_total{account="alice",result="ok"}`); v < 1 {
		t.Errorf("alice's ok polls = %v, want ≥ 1", v)
	}
	if v, _ := metricValue(text, `popfetch_polls_total{account="bob",result="auth_failed"}`); v < 1 {
		t.Errorf("bob's auth_failed polls = %v, want ≥ 1", v)
	}
	if v, ok := metricValue(text, `popfetch_last_success_timestamp_seconds{account="alice"}`); !ok || time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("alice's last success = %v (present %v), want about now", v, ok)
	}
	if _, ok := metricValue(text, `popfetch_last_success_timestamp_seconds{account="bob"}`); ok {
		t.Error("bob never succeeded but has a last success")
	}
	if v, _ := metricValue(text, `popfetch_poll_duration_seconds_count{account="alice"}`); v < 1 {
		t.Errorf("alice's poll duration count = %v", v)
	}
	for _, leak := range []string{"wrong", "Authentication failed", "127.0.0.1"} {
		if strings.Contains(text, leak) {
			t.Errorf("the exposition contains %q", leak)
		}
	}

	// Reload: bob removed, the endpoint moved to a unix socket.
	sock := filepath.Join(dir, "metrics.sock")
	writeFile(t, rc, rcText(state, []string{`metrics_listen = "` + sock + `"`}, accts[0]))
	waitFor(t, 10*time.Second, "the reload", func() bool { return len(d.log.lines("rc file reloaded")) > 0 })
	if stillServes("http://" + addr + "/metrics") {
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
	if code, _ := httpGet(t, uc, "http://popfetch/healthz"); code != 200 {
		t.Errorf("/healthz over the socket = %d", code)
	}
	_, text = httpGet(t, uc, "http://popfetch/metrics")
	uc.CloseIdleConnections()
	testutil.PromtoolCheck(t, text)
	if strings.Contains(text, `account="bob"`) {
		t.Errorf("the removed account's series remain:\n%s", text)
	}
	if v, _ := metricValue(text, `popfetch_messages_delivered_total{account="alice"}`); v != 3 {
		t.Errorf("alice's delivered after the reload = %v, want 3", v)
	}
	if v, _ := metricValue(text, `popfetch_config_generation`); v != 2 {
		t.Errorf("generation after the reload = %v, want 2", v)
	}

	// A rejected reload shows as 0; the configuration stays at 2.
	writeFile(t, rc, "this is not HCL {\n")
	waitFor(t, 10*time.Second, "the rejected reload", func() bool { return len(d.log.lines("rc file has errors")) > 0 })
	_, text = httpGet(t, uc, "http://popfetch/metrics")
	uc.CloseIdleConnections()
	if v, ok := metricValue(text, `popfetch_config_last_reload_success`); !ok || v != 0 {
		t.Errorf("last reload success after a broken rc file = %v (present %v), want 0", v, ok)
	}
	if v, _ := metricValue(text, `popfetch_config_generation`); v != 2 {
		t.Errorf("generation after a rejected reload = %v, want 2", v)
	}

	d.signal(t, syscall.SIGTERM)
	d.waitExit(t, 20*time.Second, "SIGTERM")
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the metrics socket is left behind: %v", err)
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

// TestMetricsListenBusy: at start, a metrics_listen that cannot be bound
// is a fatal error that names it, before any poll.
func TestMetricsListenBusy(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	rc := filepath.Join(dir, "popfetch.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), []string{`metrics_listen = "` + ln.Addr().String() + `"`},
		rcAccount{name: "a", port: 1, user: "a", pass: "pw", maildir: filepath.Join(dir, "mail")}))
	r := daemonCLI(t, rc, "run")
	if r.code != exitFail || !strings.Contains(r.stderr, "metrics_listen "+ln.Addr().String()) {
		t.Errorf("run with a busy metrics_listen: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "daemon started") {
		t.Errorf("the daemon started anyway:\n%s", r.stderr)
	}
}

type metricsSource struct{ st daemon.Status }

func (s metricsSource) Status() daemon.Status { return s.st }
func (s metricsSource) Running() bool         { return true }

// exposedFamilies scrapes m: the popfetch_* families by name with their
// types, and the exposition.
func exposedFamilies(m *metrics.Metrics) (map[string]string, string) {
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	exposed := map[string]string{}
	for _, x := range regexp.MustCompile(`(?m)^# TYPE (popfetch_\w+) (\w+)$`).FindAllStringSubmatch(rec.Body.String(), -1) {
		exposed[x[1]] = x[2]
	}
	return exposed, rec.Body.String()
}

// TestManListsEveryMetric: popfetch(1)'s METRICS section lists every
// popfetch_* family /metrics exposes, with its type, and nothing else.
func TestManListsEveryMetric(t *testing.T) {
	t.Parallel()
	m := metrics.New(metricsSource{daemon.Status{Generation: 1, Accounts: []daemon.AccountStatus{
		{Name: "a", Last: &fetch.PollSummary{Messages: 1}},
	}}}, "v")
	m.Observe(fetch.Result{Account: "a", Start: time.Now(), Messages: 1, MailboxBytes: 10})
	exposed, text := exposedFamilies(m)
	b, err := os.ReadFile("../../man/popfetch.1")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, _ := strings.Cut(string(b), "\n.SH METRICS\n")
	sec, _, _ = strings.Cut(sec, "\n.SH ")
	listed := map[string]string{}
	for _, x := range regexp.MustCompile(`(?m)^\.BR (popfetch_\w+) " \((\w+)`).FindAllStringSubmatch(sec, -1) {
		listed[x[1]] = x[2]
	}
	if len(exposed) < 10 {
		t.Fatalf("only %d popfetch_* families exposed:\n%s", len(exposed), text)
	}
	for name, typ := range exposed {
		if listed[name] != typ {
			t.Errorf("popfetch(1) METRICS lists %s as %q, /metrics exposes it as %s", name, listed[name], typ)
		}
	}
	for name := range listed {
		if _, ok := exposed[name]; !ok {
			t.Errorf("popfetch(1) METRICS lists %s, which /metrics does not expose", name)
		}
	}
}

// TestReadmePromQL: the PromQL in README.md's "Metrics and health" (one
// expression a line, # comments) names only metrics /metrics exposes,
// and each expression parses (`promtool check rules`).
func TestReadmePromQL(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n### Metrics and health\n")
	if !ok {
		t.Fatal(`README.md has no section "Metrics and health"`)
	}
	if i := regexp.MustCompile("\n##+ ").FindStringIndex(sec); i != nil {
		sec = sec[:i[0]]
	}
	m := metrics.New(metricsSource{daemon.Status{Accounts: []daemon.AccountStatus{{Name: "a"}}}}, "v")
	m.Observe(fetch.Result{Account: "a", Start: time.Now()})
	exposed, _ := exposedFamilies(m)
	var exprs []string
	for _, block := range regexp.MustCompile("(?s)```promql\n(.*?)```").FindAllStringSubmatch(sec, -1) {
		for _, l := range strings.Split(block[1], "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				exprs = append(exprs, l)
			}
		}
	}
	if len(exprs) < 3 {
		t.Fatalf("%d PromQL expressions in the section; want the examples", len(exprs))
	}
	var rules strings.Builder
	rules.WriteString("groups:\n- name: readme\n  rules:\n")
	for i, e := range exprs {
		for _, name := range regexp.MustCompile(`popfetch_\w+`).FindAllString(e, -1) {
			if _, ok := exposed[name]; !ok {
				t.Errorf("README PromQL %q names %s, which /metrics does not expose", e, name)
			}
		}
		fmt.Fprintf(&rules, "  - alert: readme%d\n    expr: %q\n", i, e)
	}
	path, err := exec.LookPath("promtool")
	if err != nil {
		testutil.Unavailable(t, "promtool not installed (Debian package prometheus)")
		return
	}
	f := filepath.Join(t.TempDir(), "rules.yml")
	writeFile(t, f, rules.String())
	if out, err := exec.Command(path, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the README's PromQL: %v\n%s\n%s", err, out, rules.String())
	}
}
