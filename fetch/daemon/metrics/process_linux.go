package metrics

import (
	"os"
	"syscall"
)

// writeProcess appends the process_* families (in name order, as the
// rest of the exposition) read from /proc/self and the resource limits.
func writeProcess(e *expo) {
	var stat procStat
	statOK := false
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		stat, err = parseStat(b)
		statOK = err == nil
	}
	if statOK {
		e.add(famProcCPU, "", float64(stat.utime+stat.stime)/userHZ)
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		e.add(famProcMaxFDs, "", float64(lim.Cur))
	}
	if b, err := os.ReadFile("/proc/self/net/netstat"); err == nil {
		if in, out, ok := parseNetstat(b); ok {
			e.add(famProcNetIn, "", float64(in))
			e.add(famProcNetOut, "", float64(out))
		}
	}
	if d, err := os.Open("/proc/self/fd"); err == nil {
		names, err := d.Readdirnames(-1)
		d.Close()
		if err == nil {
			e.add(famProcOpenFDs, "", float64(len(names)))
		}
	}
	if statOK {
		e.add(famProcRSS, "", float64(stat.rss)*float64(os.Getpagesize()))
		if b, err := os.ReadFile("/proc/stat"); err == nil {
			if boot, ok := parseBootTime(b); ok {
				e.add(famProcStart, "", float64(boot)+float64(stat.starttime)/userHZ)
			}
		}
		e.add(famProcVSize, "", float64(stat.vsize))
	}
	if syscall.Getrlimit(syscall.RLIMIT_AS, &lim) == nil {
		e.add(famProcVSizeMax, "", float64(lim.Cur))
	}
}
