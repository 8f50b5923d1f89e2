package interop

import (
	"flag"
	"os"
	"testing"
)

// TestMain runs up to 8 subtests at once unless -test.parallel is given:
// the default (GOMAXPROCS) suits CPU-bound tests, but these mostly wait
// on server processes (a popa3d poll of a dozen messages, one command at a
// time, takes about a second of wall time and little CPU), and on a 2-CPU
// machine two at a time made the suite take about twice as long.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "8")
	}
	os.Exit(m.Run())
}
