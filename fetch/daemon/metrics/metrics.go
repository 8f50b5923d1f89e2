// Package metrics serves the daemon's /metrics (the Prometheus text
// exposition format) and /healthz. It is the only package that imports
// the Prometheus client library.
//
// Every per-account series has the single label "account": the account
// names come from the rc file, so the number of series is bounded by the
// configured accounts. UIDs, addresses and error texts never become
// labels. The series are built at scrape time from the daemon's Status
// and the counters Observe keeps, and only for the accounts Status lists,
// so an account removed by a reload loses its series at the next scrape.
package metrics

import (
	"errors"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Source is what the metrics read from the scheduler (*daemon.Daemon).
type Source interface {
	Status() daemon.Status
	Running() bool
}

// Poll results, the values of popfetch_polls_total's "result" label: a
// small fixed set.
const (
	ResultOK           = "ok"
	ResultFailed       = "failed"        // a temporary failure (network, TLS, protocol, server busy, ...)
	ResultAuthFailed   = "auth_failed"   // [AUTH]: the account is held until the operator acts
	ResultLoginRefused = "login_refused" // login refused without [AUTH]: long backoff
	ResultLocked       = "locked"        // another popfetch process held the mailbox
)

var results = []string{ResultOK, ResultFailed, ResultAuthFailed, ResultLoginRefused, ResultLocked}

// durationBuckets (seconds) span an idle poll (well under a second) to a
// session cut at its time limit (30 minutes and more).
var durationBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800}

// Classify maps a poll's error to its result label.
func Classify(err error) string {
	switch {
	case err == nil:
		return ResultOK
	case errors.Is(err, fetch.ErrAuth):
		return ResultAuthFailed
	case errors.Is(err, fetch.ErrLoginRefused):
		return ResultLoginRefused
	case errors.Is(err, fetch.ErrLocked):
		return ResultLocked
	}
	return ResultFailed
}

type counts struct {
	polls                                map[string]uint64
	newMsgs, delivered, deleted, skipped uint64
	failed                               uint64
	durCount                             uint64
	durSum                               float64
	durBuckets                           []uint64 // per bucket, not cumulative
	lastSuccess                          time.Time
}

// Metrics collects the daemon's metrics. The zero value is not usable;
// use New.
type Metrics struct {
	src     Source
	version string
	reg     *prometheus.Registry

	mu       sync.Mutex
	accts    map[string]*counts
	reloadOK bool
	reloadAt time.Time
}

// New returns the metrics of src. version is popfetch's version for
// popfetch_build_info. The config src runs with counts as loaded
// successfully now.
func New(src Source, version string) *Metrics {
	m := &Metrics{src: src, version: version, accts: map[string]*counts{}, reloadOK: true, reloadAt: time.Now()}
	m.reg = prometheus.NewRegistry()
	m.reg.MustRegister((*collector)(m), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe counts one finished poll; it is called with every Result the
// daemon's PollFunc returns. A poll that never started is not a poll.
func (m *Metrics) Observe(r fetch.Result) {
	if r.NotStarted || r.Account == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.accts[r.Account]
	if c == nil {
		c = &counts{polls: map[string]uint64{}, durBuckets: make([]uint64, len(durationBuckets))}
		m.accts[r.Account] = c
	}
	c.polls[Classify(r.Err)]++
	c.newMsgs += uint64(max(r.New, 0))
	c.delivered += uint64(max(r.Delivered, 0))
	c.deleted += uint64(max(r.Deleted, 0))
	c.skipped += uint64(max(r.Skipped, 0))
	c.failed += uint64(max(r.Failed, 0))
	sec := r.Elapsed.Seconds()
	c.durCount++
	c.durSum += sec
	if i := sort.SearchFloat64s(durationBuckets, sec); i < len(durationBuckets) {
		c.durBuckets[i]++
	}
	if r.Err == nil {
		c.lastSuccess = r.Start.Add(r.Elapsed)
		if r.Start.IsZero() {
			c.lastSuccess = time.Now()
		}
	}
}

// Reloaded records the outcome of a reload of the rc file.
func (m *Metrics) Reloaded(ok bool, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reloadOK, m.reloadAt = ok, at
}

// Handler serves /metrics and /healthz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !m.src.Running() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not running\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descPolls      = desc("popfetch_polls_total", "Polls that ended, by result.", "account", "result")
	descNew        = desc("popfetch_messages_new_total", "Messages new to the journal and selected for retrieval.", "account")
	descDelivered  = desc("popfetch_messages_delivered_total", "Messages delivered durably (including to the postmaster).", "account")
	descDeleted    = desc("popfetch_messages_deleted_total", "Messages deleted on the server (DELE answered +OK).", "account")
	descSkipped    = desc("popfetch_messages_skipped_total", "Messages left on the server by a size limit or fetch_limit.", "account")
	descFailed     = desc("popfetch_messages_failed_total", "Deliveries that failed; the message stays on the server for the next poll.", "account")
	descDuration   = desc("popfetch_poll_duration_seconds", "Duration of the polls that ended.", "account")
	descLastOK     = desc("popfetch_last_success_timestamp_seconds", "When the last successful poll ended (Unix time); absent until one has.", "account")
	descFailures   = desc("popfetch_consecutive_failures", "Consecutive temporary failures of the account's polls.", "account")
	descHold       = desc("popfetch_auth_hold", "1 while the account is held after an authentication failure, else 0.", "account")
	descOnServer   = desc("popfetch_messages_on_server", "Messages on the server at the last poll's login.", "account")
	descUndeletab  = desc("popfetch_messages_undeletable", "Delivered messages the server keeps refusing to delete, at the last poll.", "account")
	descGeneration = desc("popfetch_config_generation", "Generation of the configuration in effect (1 at start, +1 per applied reload).")
	descReloadOK   = desc("popfetch_config_last_reload_success", "1 if the last load or reload of the rc file was applied, 0 if it was rejected.")
	descReloadAt   = desc("popfetch_config_last_reload_timestamp_seconds", "When the rc file was last loaded or a reload attempted (Unix time).")
	descBuild      = desc("popfetch_build_info", "Always 1; the labels name popfetch's version and the Go version it was built with.", "version", "goversion")
)

// collector builds the series at scrape time.
type collector Metrics

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPolls, descNew, descDelivered, descDeleted, descSkipped, descFailed,
		descDuration, descLastOK, descFailures, descHold, descOnServer, descUndeletab,
		descGeneration, descReloadOK, descReloadAt, descBuild} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	st := m.src.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	gauge(descGeneration, float64(st.Generation))
	gauge(descReloadOK, b2f(m.reloadOK))
	gauge(descReloadAt, float64(m.reloadAt.UnixNano())/1e9)
	gauge(descBuild, 1, m.version, runtime.Version())

	seen := make(map[string]bool, len(st.Accounts))
	for _, as := range st.Accounts {
		name := as.Name
		seen[name] = true
		cn := m.accts[name]
		if cn == nil {
			cn = &counts{polls: map[string]uint64{}, durBuckets: make([]uint64, len(durationBuckets))}
		}
		for _, r := range results {
			counter(descPolls, cn.polls[r], name, r)
		}
		counter(descNew, cn.newMsgs, name)
		counter(descDelivered, cn.delivered, name)
		counter(descDeleted, cn.deleted, name)
		counter(descSkipped, cn.skipped, name)
		counter(descFailed, cn.failed, name)
		cum := make(map[float64]uint64, len(durationBuckets))
		var n uint64
		for i, ub := range durationBuckets {
			n += cn.durBuckets[i]
			cum[ub] = n
		}
		ch <- prometheus.MustNewConstHistogram(descDuration, cn.durCount, cn.durSum, cum, name)
		if !cn.lastSuccess.IsZero() {
			gauge(descLastOK, float64(cn.lastSuccess.UnixNano())/1e9, name)
		}
		gauge(descFailures, float64(as.Failures), name)
		gauge(descHold, b2f(as.State == daemon.StateAuthHold), name)
		if as.Last != nil {
			gauge(descOnServer, float64(as.Last.Messages), name)
			gauge(descUndeletab, float64(as.Last.Undeletable), name)
		}
	}
	// Counters of accounts a reload removed go with them; an account
	// added back starts from zero, which Prometheus reads as a reset.
	for name := range m.accts {
		if !seen[name] {
			delete(m.accts, name)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
