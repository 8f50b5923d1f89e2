package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Every duration in a JSON log is seconds in a float (elapsed, age,
// retry_in, and one inside a group alike); a text log keeps the human
// unit.
func TestLogDurations(t *testing.T) {
	for _, tc := range []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{"json", func(t *testing.T, out string) {
			var r map[string]any
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%q: %v", out, err)
			}
			g, _ := r["copy"].(map[string]any)
			if r["elapsed"] != 1.5 || r["retry_in"] != 7200.0 || g == nil || g["age"] != 0.25 || r["n"] != 3.0 {
				t.Errorf("JSON record %s; want elapsed 1.5, retry_in 7200, copy.age 0.25 (seconds), n 3", out)
			}
		}},
		{"text", func(t *testing.T, out string) {
			for _, want := range []string{" elapsed=1.5s ", " retry_in=2h0m0s ", " copy.age=250ms ", " n=3"} {
				if !strings.Contains(out, want) {
					t.Errorf("text line %q lacks %q", out, want)
				}
			}
		}},
	} {
		var errb bytes.Buffer
		g := &globals{stderr: &errb, logFormat: tc.format}
		g.logger(slog.LevelInfo).Info("poll done", "elapsed", 1500*time.Millisecond, "retry_in", 2*time.Hour,
			slog.Group("copy", "age", 250*time.Millisecond), "n", 3)
		tc.check(t, strings.TrimSpace(errb.String()))
	}
}
