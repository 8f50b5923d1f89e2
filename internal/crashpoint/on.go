//go:build crashtest

package crashpoint

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

var (
	step  string
	at    int64
	count atomic.Int64
)

func init() {
	s, n, ok := strings.Cut(os.Getenv("POPFETCH_CRASH_AT"), ":")
	if !ok {
		return
	}
	if v, err := strconv.ParseInt(n, 10, 64); err == nil && v > 0 {
		step, at = s, v
	}
}

// Hit kills the process with SIGKILL the Nth time step is reached.
func Hit(s string) {
	if s != step || count.Add(1) != at {
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not caught: nothing after this runs
}
