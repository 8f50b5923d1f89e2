// Package metrics serves the daemon's /metrics (the Prometheus text
// exposition format, version 0.0.4) and /healthz.
//
// Every per-account series has the single label "account": the account
// names come from the rc file, so the number of series is bounded by the
// configured accounts. UIDs, addresses and error texts never become
// labels. The series are built at scrape time from the daemon's Status
// and the counters Observe keeps, and only for the accounts Status lists,
// so an account removed by a reload loses its series at the next scrape.
//
// The exposition is written by hand (expo.go) rather than through the
// Prometheus client library: every series here is a snapshot taken at
// scrape time, which is all the text format needs, and the library's
// package initialisation (a default registry with its collectors, the
// protobuf descriptors) cost every popfetch process, `popfetch fetch`
// included, several MiB of resident memory. The Go runtime's go_* and
// the process's process_* series keep the names, types and help texts
// that library's default collectors used.
//
// github.com/VictoriaMetrics/metrics (v1.45.0), the small alternative,
// was tried and does not fit: it has no help texts (with its metadata on,
// every family gets an empty "# HELP name", which `promtool check
// metrics` rejects; with it off, no "# TYPE" either, so every family is
// untyped), and its WriteProcessMetrics writes other go_* and process_*
// families than the ones dashboards expect (no go_sched_gomaxprocs_threads,
// go_gc_gogc_percent, go_gc_gomemlimit_bytes, process_open_fds,
// process_max_fds, process_network_*; process_io_*_total typed as gauges,
// go_cgo_calls_count and go_gc_forced_count as counters without _total).
package metrics

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/alert"
	"github.com/popfetch/popfetch/fetch/daemon"
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

// sortedResults is results in the order the exposition lists them.
var sortedResults = func() []string {
	s := append([]string(nil), results...)
	sort.Strings(s)
	return s
}()

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
	postmaster, kept, givenUp            uint64
	bytes                                uint64
	durCount                             uint64
	durSum                               float64
	durBuckets                           []uint64 // per bucket, not cumulative
	lastSuccess                          time.Time
	// mailboxBytes is the maildrop's size at the last successful poll's
	// login; a failed poll may have broken off before the listing.
	mailboxBytes int64
}

// Metrics collects the daemon's metrics. The zero value is not usable;
// use New.
type Metrics struct {
	src     Source
	version string

	// inFlight counts the deliveries running now (see InFlight).
	inFlight atomic.Int64

	mu       sync.Mutex
	accts    map[string]*counts
	reloadOK bool
	reloadAt time.Time
}

// New returns the metrics of src. version is popfetch's version for
// popfetch_build_info. The config src runs with counts as loaded
// successfully now.
func New(src Source, version string) *Metrics {
	return &Metrics{src: src, version: version, accts: map[string]*counts{}, reloadOK: true, reloadAt: time.Now()}
}

// InFlight is the gauge of deliveries running now, for
// fetch.Poller.Deliveries: the poll adds one as a message's delivery
// begins and takes it away when it ends.
func (m *Metrics) InFlight() *atomic.Int64 { return &m.inFlight }

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
	c.postmaster += uint64(max(r.Postmaster, 0))
	c.kept += uint64(max(r.Kept, 0))
	c.givenUp += uint64(max(r.GivenUp, 0))
	c.bytes += uint64(max(r.Bytes, 0))
	sec := r.Elapsed.Seconds()
	c.durCount++
	c.durSum += sec
	if i := sort.SearchFloat64s(durationBuckets, sec); i < len(durationBuckets) {
		c.durBuckets[i]++
	}
	if r.Err == nil {
		c.mailboxBytes = max(r.MailboxBytes, 0)
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
	mux.HandleFunc("GET /metrics", m.serveMetrics)
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

var (
	famAlerts     = &family{"popfetch_alerts_active", "gauge", "1 while the alert condition is active for the account, else 0; account=\"\" is the daemon itself (reload-rejected)."}
	famPolls      = &family{"popfetch_polls_total", "counter", "Polls that ended, by result."}
	famNew        = &family{"popfetch_messages_new_total", "counter", "Messages new to the journal and selected for retrieval."}
	famDelivered  = &family{"popfetch_messages_delivered_total", "counter", "Messages delivered durably (including to the postmaster)."}
	famPostmaster = &family{"popfetch_messages_postmaster_total", "counter", "Delivered messages of which at least one copy went to the postmaster (unroutable, or refused permanently by a target)."}
	famKept       = &family{"popfetch_messages_kept_total", "counter", "Delivered messages left on the server on purpose (keep, or not yet due under delete_after)."}
	famGivenUp    = &family{"popfetch_messages_given_up_total", "counter", "Messages popfetch stopped trying to retrieve; they stay on the server and are skipped from then on."}
	famBytes      = &family{"popfetch_bytes_fetched_total", "counter", "Bytes of the messages retrieved, as read from the server after dot-unstuffing."}
	famMboxBytes  = &family{"popfetch_mailbox_bytes", "gauge", "Size of the maildrop on the server (the sum of the LIST sizes) at the last successful poll's login."}
	famInFlight   = &family{"popfetch_deliveries_in_flight", "gauge", "Messages being delivered right now, across all accounts."}
	famDeleted    = &family{"popfetch_messages_deleted_total", "counter", "Messages deleted on the server (DELE answered +OK)."}
	famSkipped    = &family{"popfetch_messages_skipped_total", "counter", "Messages left on the server by a size limit or fetch_limit."}
	famFailed     = &family{"popfetch_messages_failed_total", "counter", "Deliveries that failed; the message stays on the server for the next poll."}
	famDuration   = &family{"popfetch_poll_duration_seconds", "histogram", "Duration of the polls that ended."}
	famLastOK     = &family{"popfetch_last_success_timestamp_seconds", "gauge", "When the last successful poll ended (Unix time); absent until one has."}
	famFailures   = &family{"popfetch_consecutive_failures", "gauge", "Consecutive temporary failures of the account's polls."}
	famHold       = &family{"popfetch_auth_hold", "gauge", "1 while the account is held after an authentication failure, else 0."}
	famOnServer   = &family{"popfetch_messages_on_server", "gauge", "Messages on the server at the last poll's login."}
	famUndeletab  = &family{"popfetch_messages_undeletable", "gauge", "Delivered messages the server keeps refusing to delete, at the last poll."}
	famGeneration = &family{"popfetch_config_generation", "gauge", "Generation of the configuration in effect (1 at start, +1 per applied reload)."}
	famReloadOK   = &family{"popfetch_config_last_reload_success", "gauge", "1 if the last load or reload of the rc file was applied, 0 if it was rejected."}
	famReloadAt   = &family{"popfetch_config_last_reload_timestamp_seconds", "gauge", "When the rc file was last loaded or a reload attempted (Unix time)."}
	famBuild      = &family{"popfetch_build_info", "gauge", "Always 1; the labels name popfetch's version and the Go version it was built with."}
)

// acctSnap is what one scrape shows of one account, copied under the
// lock so that the exposition is written (to a client that may be slow)
// without holding it.
type acctSnap struct {
	st daemon.AccountStatus
	c  counts
}

// snapshot copies what a scrape shows, and forgets the counters of
// accounts that are no longer configured.
func (m *Metrics) snapshot() (st daemon.Status, reloadOK bool, reloadAt time.Time, accts []acctSnap) {
	st = m.src.Status()
	m.mu.Lock()
	defer m.mu.Unlock()
	accts = make([]acctSnap, 0, len(st.Accounts))
	seen := make(map[string]bool, len(st.Accounts))
	for _, as := range st.Accounts {
		seen[as.Name] = true
		a := acctSnap{st: as}
		if cn := m.accts[as.Name]; cn != nil {
			a.c = *cn
			a.c.polls = make(map[string]uint64, len(cn.polls))
			for k, v := range cn.polls {
				a.c.polls[k] = v
			}
			a.c.durBuckets = append([]uint64(nil), cn.durBuckets...)
		} else {
			a.c.durBuckets = make([]uint64, len(durationBuckets))
		}
		accts = append(accts, a)
	}
	// Counters of accounts a reload removed go with them; an account
	// added back starts from zero, which Prometheus reads as a reset.
	for name := range m.accts {
		if !seen[name] {
			delete(m.accts, name)
		}
	}
	sort.Slice(accts, func(i, j int) bool { return accts[i].st.Name < accts[j].st.Name })
	return st, m.reloadOK, m.reloadAt, accts
}

// serveMetrics writes the exposition, gzipped where the client accepts
// it (as Prometheus does).
func (m *Metrics) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var out io.Writer = w
	if acceptsGzip(r.Header.Values("Accept-Encoding")) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Add("Vary", "Accept-Encoding")
		gz := gzip.NewWriter(w)
		defer gz.Close()
		out = gz
	}
	e := newExpo(out)
	writeGo(e)
	m.write(e)
	writeProcess(e)
	e.flush() // a write error is the client's: it went away
}

// write appends popfetch's own families, in name order and each
// family's series in label order, as the Prometheus client sorted them.
func (m *Metrics) write(e *expo) {
	st, reloadOK, reloadAt, accts := m.snapshot()
	perAccount := func(f *family, v func(a *acctSnap) (float64, bool)) {
		for i := range accts {
			if x, ok := v(&accts[i]); ok {
				e.add(f, "", x, "account", accts[i].st.Name)
			}
		}
	}
	always := func(v uint64) (float64, bool) { return float64(v), true }
	writeAlerts(e, st, accts)
	perAccount(famHold, func(a *acctSnap) (float64, bool) { return b2f(a.st.State == daemon.StateAuthHold), true })
	e.add(famBuild, "", 1, "goversion", runtime.Version(), "version", m.version)
	perAccount(famBytes, func(a *acctSnap) (float64, bool) { return always(a.c.bytes) })
	e.add(famGeneration, "", float64(st.Generation))
	e.add(famReloadOK, "", b2f(reloadOK))
	e.add(famReloadAt, "", unixSeconds(reloadAt))
	perAccount(famFailures, func(a *acctSnap) (float64, bool) { return float64(a.st.Failures), true })
	e.add(famInFlight, "", float64(max(m.inFlight.Load(), 0)))
	perAccount(famLastOK, func(a *acctSnap) (float64, bool) {
		return unixSeconds(a.c.lastSuccess), !a.c.lastSuccess.IsZero()
	})
	perAccount(famMboxBytes, func(a *acctSnap) (float64, bool) {
		return float64(a.c.mailboxBytes), !a.c.lastSuccess.IsZero()
	})
	perAccount(famDeleted, func(a *acctSnap) (float64, bool) { return always(a.c.deleted) })
	perAccount(famDelivered, func(a *acctSnap) (float64, bool) { return always(a.c.delivered) })
	perAccount(famFailed, func(a *acctSnap) (float64, bool) { return always(a.c.failed) })
	perAccount(famGivenUp, func(a *acctSnap) (float64, bool) { return always(a.c.givenUp) })
	perAccount(famKept, func(a *acctSnap) (float64, bool) { return always(a.c.kept) })
	perAccount(famNew, func(a *acctSnap) (float64, bool) { return always(a.c.newMsgs) })
	perAccount(famOnServer, func(a *acctSnap) (float64, bool) {
		if a.st.Last == nil {
			return 0, false
		}
		return float64(a.st.Last.Messages), true
	})
	perAccount(famPostmaster, func(a *acctSnap) (float64, bool) { return always(a.c.postmaster) })
	perAccount(famSkipped, func(a *acctSnap) (float64, bool) { return always(a.c.skipped) })
	perAccount(famUndeletab, func(a *acctSnap) (float64, bool) {
		if a.st.Last == nil {
			return 0, false
		}
		return float64(a.st.Last.Undeletable), true
	})
	for _, a := range accts {
		var n uint64
		for i, ub := range durationBuckets {
			n += a.c.durBuckets[i]
			e.add(famDuration, "_bucket", float64(n), "account", a.st.Name, "le", formatFloat(ub))
		}
		e.add(famDuration, "_bucket", float64(a.c.durCount), "account", a.st.Name, "le", "+Inf")
		e.add(famDuration, "_sum", a.c.durSum, "account", a.st.Name)
		e.add(famDuration, "_count", float64(a.c.durCount), "account", a.st.Name)
	}
	for _, a := range accts {
		for _, r := range sortedResults {
			e.add(famPolls, "", float64(a.c.polls[r]), "account", a.st.Name, "result", r)
		}
	}
}

// writeAlerts writes popfetch_alerts_active: one series per account and
// per-account condition, and one for the daemon's own (account="",
// reload-rejected), 0 or 1, so that a rule can compare with 0 and an
// alert that clears is not just a series that vanishes. The labels come
// from the configured accounts and the engine's fixed Conditions only:
// an active alert of another account or condition is not a label.
func writeAlerts(e *expo, st daemon.Status, accts []acctSnap) {
	active := make(map[alert.Key]bool, len(st.Alerts))
	for _, a := range st.Alerts {
		active[alert.Key{Account: a.Account, Condition: alert.Condition(a.Condition)}] = true
	}
	conds := make([]string, 0, len(alert.Conditions))
	for _, c := range alert.Conditions {
		if c != alert.ReloadRejected {
			conds = append(conds, string(c))
		}
	}
	sort.Strings(conds)
	e.add(famAlerts, "", b2f(active[alert.Key{Condition: alert.ReloadRejected}]), "account", "", "condition", string(alert.ReloadRejected))
	for _, a := range accts {
		for _, c := range conds {
			e.add(famAlerts, "", b2f(active[alert.Key{Account: a.st.Name, Condition: alert.Condition(c)}]), "account", a.st.Name, "condition", c)
		}
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// acceptsGzip reports whether Accept-Encoding values (RFC 9110, section
// 12.5.3) accept gzip: a "gzip" or "*" coding whose weight is not 0.
// An explicit gzip entry wins over "*".
func acceptsGzip(values []string) bool {
	star := false
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(item, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" && coding != "*" {
				continue
			}
			ok := !zeroWeight(params)
			if coding == "*" {
				star = ok
				continue
			}
			return ok
		}
	}
	return star
}

// zeroWeight reports whether the parameters of an Accept-Encoding item
// give it the weight 0 ("q=0", "q=0.0", "q=0.000").
func zeroWeight(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "0" || strings.HasPrefix(v, "0.") && strings.Trim(v[2:], "0") == "" {
			return true
		}
	}
	return false
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
