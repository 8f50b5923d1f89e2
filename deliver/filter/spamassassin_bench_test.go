package filter

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/popfetch/popfetch/deliver/filter/filtertest"
)

// BenchmarkSpamc: clean messages through spamc -x -X as a command filter
// and the private spamd (--max-children=5).
func BenchmarkSpamc(b *testing.B) {
	d := filtertest.Spamd(b)
	f, err := NewCommand("spamassassin", spamcArgv(d.Addr), CommandOptions{TempExitCodes: spamcTempCodes})
	if err != nil {
		b.Fatal(err)
	}
	benchFilter(b, f, sampleMessage, Accept)
	logScanTime(b, d)
}

var scanTimeRE = regexp.MustCompile(`scantime=([0-9.]+),`)

// logScanTime logs spamd's own mean scan time (its log's scantime=),
// to tell SpamAssassin's time from the plumbing's.
func logScanTime(b *testing.B, d *filtertest.Daemon) {
	log, err := os.ReadFile(d.Log)
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
	sd := filtertest.Spamd(b)
	d := filtertest.SpamassMilter(b, sd.Addr, "--")
	benchMilter(b, d.Addr, sampleMessage, Accept)
	logScanTime(b, sd)
}
