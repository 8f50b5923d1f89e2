package metrics

import (
	"bytes"
	"compress/gzip"
	"io"
	"math"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/daemon"
	"github.com/popfetch/popfetch/internal/testutil"
)

func TestExpoEscapesAndFormats(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	e := newExpo(&b)
	f := &family{"x_total", "counter", "Help with a \\ backslash\nand a newline."}
	e.add(f, "", 1, "account", `a "quoted" \ name`+"\n")
	e.add(f, "", math.Inf(1), "account", "b")
	e.add(&family{"y", "gauge", "Y."}, "", math.NaN())
	e.add(&family{"z", "gauge", "Z."}, "", 1700000000.5)
	if err := e.flush(); err != nil {
		t.Fatal(err)
	}
	want := `# HELP x_total Help with a \\ backslash\nand a newline.
# TYPE x_total counter
x_total{account="a \"quoted\" \\ name\n"} 1
x_total{account="b"} +Inf
# HELP y Y.
# TYPE y gauge
y NaN
# HELP z Z.
# TYPE z gauge
z 1.7000000005e+09
`
	if b.String() != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", b.String(), want)
	}
	testutil.PromtoolCheck(t, b.String())
}

func TestFormatFloat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {3, "3"}, {42, "42"}, {0.25, "0.25"}, {1.7e9, "1.7e+09"}, {1e21, "1e+21"},
		{-2, "-2"}, {math.Inf(1), "+Inf"}, {math.Inf(-1), "-Inf"}, {math.NaN(), "NaN"},
		{float64(math.MaxUint64), "1.8446744073709552e+19"},
	} {
		if got := formatFloat(tc.v); got != tc.want {
			t.Errorf("formatFloat(%v) = %q, want %q", tc.v, got, tc.want)
		}
		if f, err := strconv.ParseFloat(formatFloat(tc.v), 64); err != nil || f != tc.v && !math.IsNaN(tc.v) {
			t.Errorf("formatFloat(%v) = %q does not read back (%v, %v)", tc.v, formatFloat(tc.v), f, err)
		}
	}
}

// families returns the family names and types the exposition declares,
// "name type" each, in order.
func families(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(l, "# TYPE "); ok {
			out = append(out, rest)
		}
	}
	return out
}

// TestRuntimeAndProcessFamilies pins the go_* and process_* families to
// the names and types the Prometheus Go client's default collectors
// exposed (what dashboards for Go programs expect), in name order, and
// checks that the values are this process's.
func TestRuntimeAndProcessFamilies(t *testing.T) {
	t.Parallel()
	src := &fakeSource{running: true, st: daemon.Status{Generation: 1, Accounts: []daemon.AccountStatus{{Name: "a"}}}}
	_, text := scrape(t, New(src, "v").Handler(), "/metrics")
	var got []string
	for _, f := range families(text) {
		if strings.HasPrefix(f, "go_") || strings.HasPrefix(f, "process_") {
			got = append(got, f)
		}
	}
	want := []string{
		"go_gc_duration_seconds summary", "go_gc_gogc_percent gauge", "go_gc_gomemlimit_bytes gauge",
		"go_goroutines gauge", "go_info gauge",
		"go_memstats_alloc_bytes gauge", "go_memstats_alloc_bytes_total counter",
		"go_memstats_buck_hash_sys_bytes gauge", "go_memstats_frees_total counter",
		"go_memstats_gc_sys_bytes gauge", "go_memstats_heap_alloc_bytes gauge",
		"go_memstats_heap_idle_bytes gauge", "go_memstats_heap_inuse_bytes gauge",
		"go_memstats_heap_objects gauge", "go_memstats_heap_released_bytes gauge",
		"go_memstats_heap_sys_bytes gauge", "go_memstats_last_gc_time_seconds gauge",
		"go_memstats_mallocs_total counter", "go_memstats_mcache_inuse_bytes gauge",
		"go_memstats_mcache_sys_bytes gauge", "go_memstats_mspan_inuse_bytes gauge",
		"go_memstats_mspan_sys_bytes gauge", "go_memstats_next_gc_bytes gauge",
		"go_memstats_other_sys_bytes gauge", "go_memstats_stack_inuse_bytes gauge",
		"go_memstats_stack_sys_bytes gauge", "go_memstats_sys_bytes gauge",
		"go_sched_gomaxprocs_threads gauge", "go_threads gauge",
	}
	if runtime.GOOS == "linux" {
		want = append(want,
			"process_cpu_seconds_total counter", "process_max_fds gauge",
			"process_network_receive_bytes_total counter", "process_network_transmit_bytes_total counter",
			"process_open_fds gauge", "process_resident_memory_bytes gauge", "process_start_time_seconds gauge",
			"process_virtual_memory_bytes gauge", "process_virtual_memory_max_bytes gauge")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("go_* and process_* families:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	all := families(text)
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Errorf("families out of order: %q before %q", all[i-1], all[i])
		}
	}
	if v, ok := metricLine(text, `go_info{version="`+runtime.Version()+`"}`); !ok || v != 1 {
		t.Errorf("go_info = %v, %v", v, ok)
	}
	if v, ok := metricLine(text, "go_sched_gomaxprocs_threads"); !ok || v != float64(runtime.GOMAXPROCS(0)) {
		t.Errorf("go_sched_gomaxprocs_threads = %v, %v; want %d", v, ok, runtime.GOMAXPROCS(0))
	}
	if v, ok := metricLine(text, "go_goroutines"); !ok || v < 1 {
		t.Errorf("go_goroutines = %v, %v", v, ok)
	}
	if runtime.GOOS != "linux" {
		return
	}
	if v, ok := metricLine(text, "process_resident_memory_bytes"); !ok || v < 1<<20 || v > 1<<40 {
		t.Errorf("process_resident_memory_bytes = %v, %v", v, ok)
	}
	if v, ok := metricLine(text, "process_open_fds"); !ok || v < 3 {
		t.Errorf("process_open_fds = %v, %v", v, ok)
	}
	fi, err := os.Stat("/proc/self")
	if err != nil {
		t.Fatal(err)
	}
	// /proc/self's own time is the process's start, to the second.
	if v, ok := metricLine(text, "process_start_time_seconds"); !ok || math.Abs(v-float64(fi.ModTime().Unix())) > 2 {
		t.Errorf("process_start_time_seconds = %v, %v; /proc/self is from %v", v, ok, fi.ModTime().Unix())
	}
}

// metricLine returns the value of the sample line that starts with
// series, and whether there is one.
func metricLine(text, series string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestMetricsGzip: a client that accepts gzip gets the exposition
// gzipped (as Prometheus asks for it), one that does not gets it plain.
func TestMetricsGzip(t *testing.T) {
	t.Parallel()
	h := New(&fakeSource{running: true}, "v").Handler()
	for _, tc := range []struct {
		accept string
		gzip   bool
	}{
		{"", false},
		{"gzip", true},
		{"identity, gzip;q=0.5", true},
		{"gzip;q=0", false},
		{"br", false},
		{"*", true},
		{"*;q=0, gzip", true},
	} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		if tc.accept != "" {
			req.Header.Set("Accept-Encoding", tc.accept)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		if ct := res.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
			t.Errorf("Accept-Encoding %q: Content-Type %q", tc.accept, ct)
		}
		body := io.Reader(res.Body)
		if gz := res.Header.Get("Content-Encoding") == "gzip"; gz != tc.gzip {
			t.Errorf("Accept-Encoding %q: gzipped %v, want %v", tc.accept, gz, tc.gzip)
			continue
		}
		if tc.gzip {
			zr, err := gzip.NewReader(res.Body)
			if err != nil {
				t.Fatalf("Accept-Encoding %q: %v", tc.accept, err)
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil || !strings.Contains(string(b), "\npopfetch_config_generation ") {
			t.Errorf("Accept-Encoding %q: body %q, %v", tc.accept, b, err)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{"gzip"}, true},
		{[]string{"GZIP"}, true},
		{[]string{"x-gzip"}, true},
		{[]string{"deflate", "gzip"}, true},
		{[]string{"gzip; q=0"}, false},
		{[]string{"gzip;q=0.000"}, false},
		{[]string{"gzip;q=0.001"}, true},
		{[]string{"gzip;Q=0"}, false},
		{[]string{"*"}, true},
		{[]string{"*;q=0"}, false},
		{[]string{"gzip;q=0, *"}, false},
		{[]string{"gzipx"}, false},
		{[]string{"identity"}, false},
	} {
		if got := acceptsGzip(tc.values); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tc.values, got, tc.want)
		}
	}
}

func FuzzAcceptsGzip(f *testing.F) {
	for _, s := range []string{"gzip", "gzip;q=0", "*;q=0.5, br", ";;=,", "q=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := acceptsGzip([]string{s})
		// Whatever the header, the answer does not depend on how it was
		// split over header lines at its commas.
		if parts := strings.Split(s, ","); len(parts) > 1 && acceptsGzip(parts) != got {
			t.Errorf("acceptsGzip(%q) = %v, split at commas = %v", s, got, !got)
		}
		if !strings.Contains(strings.ToLower(s), "gzip") && !strings.Contains(s, "*") && got {
			t.Errorf("acceptsGzip(%q) = true without gzip or *", s)
		}
	})
}
