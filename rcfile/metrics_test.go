package rcfile

import (
	"fmt"
	"strings"
	"testing"
)

func TestCheckMetricsListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"127.0.0.1:9469", true},
		{"[::1]:9469", true},
		{"localhost:9469", true},
		{":9469", true},
		{"/run/popfetch/metrics.sock", true},
		{"", false},
		{"9469", false},
		{"localhost", false},
		{"127.0.0.1:http", false},
		{"127.0.0.1:70000", false},
		{"metrics.sock", false},
		{"/run/../x", false},
		{"/", false},
		{"a b:1", false},
	} {
		if err := CheckMetricsListen(tc.in); (err == nil) != tc.ok {
			t.Errorf("CheckMetricsListen(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func FuzzCheckMetricsListen(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9469", "/run/x.sock", "[::1]:1", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = CheckMetricsListen(s) // must not panic
	})
}

// TestMetricsListenParse: the value reaches Config, and a bad one is an
// error at the attribute's file:line:col.
func TestMetricsListenParse(t *testing.T) {
	t.Parallel()
	cfg, diags := parseOne(t, "\nmetrics_listen = \"127.0.0.1:9469\"\n"+fmt.Sprintf(minimal, ""))
	if diags.HasErrors() || cfg.MetricsListen != "127.0.0.1:9469" {
		t.Fatalf("MetricsListen = %q: %s", cfg.MetricsListen, render(t, diags))
	}
	cfg, diags = parseOne(t, fmt.Sprintf(minimal, ""))
	if diags.HasErrors() || cfg.MetricsListen != "" {
		t.Fatalf("default MetricsListen = %q, want off", cfg.MetricsListen)
	}
	for _, tt := range []struct{ value, want string }{
		{`"9469"`, `/etc/popfetch/test.hcl:2:1: error: Invalid metrics_listen`},
		{`"metrics.sock"`, `/etc/popfetch/test.hcl:2:1: error: Invalid metrics_listen`},
		{`""`, `must not be empty`},
	} {
		_, diags := parseOne(t, "\nmetrics_listen = "+tt.value+"\n"+fmt.Sprintf(minimal, ""))
		if out := string(render(t, diags)); !diags.HasErrors() || !strings.Contains(out, tt.want) {
			t.Errorf("metrics_listen = %s:\n%s\nwant %q", tt.value, out, tt.want)
		}
	}
}
