package metrics

import (
	"bytes"
	"errors"
	"strconv"
)

// The process_* families: the process's own resources, under the names,
// types and help texts of the Prometheus Go client's process collector.
// Each is left out where the system does not tell it (no /proc).
var (
	famProcCPU      = &family{"process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."}
	famProcMaxFDs   = &family{"process_max_fds", "gauge", "Maximum number of open file descriptors."}
	famProcNetIn    = &family{"process_network_receive_bytes_total", "counter", "Number of bytes received by the process over the network."}
	famProcNetOut   = &family{"process_network_transmit_bytes_total", "counter", "Number of bytes sent by the process over the network."}
	famProcOpenFDs  = &family{"process_open_fds", "gauge", "Number of open file descriptors."}
	famProcRSS      = &family{"process_resident_memory_bytes", "gauge", "Resident memory size in bytes."}
	famProcStart    = &family{"process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds."}
	famProcVSize    = &family{"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes."}
	famProcVSizeMax = &family{"process_virtual_memory_max_bytes", "gauge", "Maximum amount of virtual memory available in bytes."}
)

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, see
// proc(5)): 100 on every Linux architecture Go supports.
const userHZ = 100

// procStat is what the process metrics read from /proc/PID/stat.
type procStat struct {
	utime, stime uint64 // CPU time, in 1/userHZ seconds
	starttime    uint64 // since boot, in 1/userHZ seconds
	vsize        uint64 // bytes
	rss          uint64 // pages
}

var errStat = errors.New("malformed /proc/PID/stat")

// parseStat parses /proc/PID/stat (proc(5)). The command name, field 2,
// is in parentheses and may hold anything, spaces and parentheses
// included, so the fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errStat
	}
	// f[0] is field 3 (state), so field n is f[n-3].
	f := bytes.Fields(b[i+1:])
	if len(f) < 24-3+1 {
		return procStat{}, errStat
	}
	var s procStat
	for _, x := range []struct {
		field int
		dst   *uint64
	}{{14, &s.utime}, {15, &s.stime}, {22, &s.starttime}, {23, &s.vsize}, {24, &s.rss}} {
		v, err := strconv.ParseUint(string(f[x.field-3]), 10, 64)
		if err != nil {
			return procStat{}, errStat
		}
		*x.dst = v
	}
	return s, nil
}

// parseBootTime returns the "btime" of /proc/stat: when the system
// booted, in Unix seconds.
func parseBootTime(b []byte) (uint64, bool) {
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// parseNetstat returns InOctets and OutOctets of the "IpExt:" lines of
// /proc/PID/net/netstat: a line of names, then a line of values. (They
// count the network namespace's traffic, which is what the Prometheus
// client reports under these names.)
func parseNetstat(b []byte) (in, out uint64, ok bool) {
	var names [][]byte
	for line := range bytes.Lines(b) {
		rest, found := bytes.CutPrefix(line, []byte("IpExt:"))
		if !found {
			continue
		}
		if names == nil {
			names = bytes.Fields(rest)
			continue
		}
		vals := bytes.Fields(rest)
		if len(vals) != len(names) {
			return 0, 0, false
		}
		var gotIn, gotOut bool
		for i, n := range names {
			var dst *uint64
			switch string(n) {
			case "InOctets":
				dst, gotIn = &in, true
			case "OutOctets":
				dst, gotOut = &out, true
			default:
				continue
			}
			v, err := strconv.ParseUint(string(vals[i]), 10, 64)
			if err != nil {
				return 0, 0, false
			}
			*dst = v
		}
		return in, out, gotIn && gotOut
	}
	return 0, 0, false
}
