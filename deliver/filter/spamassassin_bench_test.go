package filter

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchFilter passes b.N copies of raw through f with conc messages in
// flight, and reports messages per second.
func benchFilter(b *testing.B, f Filter, raw string, want Action) {
	for _, conc := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			env, m := sampleEnv(b, raw)
			steps := []Step{{Filter: f, Timeout: time.Minute}}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range conc {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						res, err := Run(context.Background(), steps, env, m, nil)
						if err != nil || res.Action != want {
							b.Errorf("got %v %v %+v", err, res.Action, res.Verdicts)
							return
						}
						res.Close()
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkSpamc: clean messages through spamc -x -X as a command filter
// and the private spamd (--max-children=5).
func BenchmarkSpamc(b *testing.B) {
	d := startSpamd(b)
	f, err := NewCommand("spamassassin", spamcArgv(d.addr), CommandOptions{TempExitCodes: spamcTempCodes})
	if err != nil {
		b.Fatal(err)
	}
	benchFilter(b, f, sampleMessage, Accept)
	logScanTime(b, d)
}

var scanTimeRE = regexp.MustCompile(`scantime=([0-9.]+),`)

// logScanTime logs spamd's own mean scan time (its log's scantime=),
// to tell SpamAssassin's time from the plumbing's.
func logScanTime(b *testing.B, d *daemon) {
	log, err := os.ReadFile(d.log)
	if err != nil {
		return
	}
	var sum float64
	ms := scanTimeRE.FindAllSubmatch(log, -1)
	for _, m := range ms {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		sum += v
	}
	if len(ms) > 0 {
		b.Logf("spamd: %d scans so far, mean scantime %.3fs", len(ms), sum/float64(len(ms)))
	}
}

// BenchmarkSpamassMilter: clean messages through spamass-milter and the
// same spamd.
func BenchmarkSpamassMilter(b *testing.B) {
	sd := startSpamd(b)
	d := startSpamassMilter(b, sd.addr, "--")
	benchMilter(b, d.addr, sampleMessage, Accept)
	logScanTime(b, sd)
}
