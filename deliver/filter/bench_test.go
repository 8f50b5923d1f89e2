package filter

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/filter/filtertest"
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

// benchMilter is benchFilter through the milter at addr.
func benchMilter(b *testing.B, addr, raw string, want Action) {
	f, err := NewMilter("bench", "inet:"+addr, MilterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	benchFilter(b, f, raw, want)
}

// BenchmarkRspamd: clean messages through the private rspamd.
func BenchmarkRspamd(b *testing.B) {
	d := filtertest.Rspamd(b)
	benchMilter(b, d.Addr, sampleMessage, Accept)
	if log, err := os.ReadFile(d.Log); err == nil {
		lines := strings.Split(string(log), "\n")
		for _, l := range lines[max(0, len(lines)-400):] {
			if strings.Contains(l, "task_write_log") || strings.Contains(l, "time: ") {
				b.Log(l) // rspamd's own timing of a scan
				break
			}
		}
	}
}

// BenchmarkClamav: messages with an attachment through the private
// clamav-milter and clamd.
func BenchmarkClamav(b *testing.B) {
	d := filtertest.Clam(b)
	benchMilter(b, d.Addr, eicarMessage(), Reject)
}
