package metrics

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// The go_* families: the Go runtime's state, under the names, types and
// help texts of the Prometheus Go client's default Go collector, so that
// dashboards built for Go programs work unchanged.
var (
	famGoGC         = &family{"go_gc_duration_seconds", "summary", "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles."}
	famGoGOGC       = &family{"go_gc_gogc_percent", "gauge", "Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent."}
	famGoMemLimit   = &family{"go_gc_gomemlimit_bytes", "gauge", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes."}
	famGoGoroutines = &family{"go_goroutines", "gauge", "Number of goroutines that currently exist."}
	famGoInfo       = &family{"go_info", "gauge", "Information about the Go environment."}
	famGoMaxProcs   = &family{"go_sched_gomaxprocs_threads", "gauge", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads."}
	famGoThreads    = &family{"go_threads", "gauge", "Number of OS threads created."}
)

// memstat is one go_memstats_* family and the runtime.MemStats field it
// shows.
type memstat struct {
	f *family
	v func(*runtime.MemStats) float64
}

var memstats = []memstat{
	{&family{"go_memstats_alloc_bytes", "gauge", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.Alloc) }},
	{&family{"go_memstats_alloc_bytes_total", "counter", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.TotalAlloc) }},
	{&family{"go_memstats_buck_hash_sys_bytes", "gauge", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.BuckHashSys) }},
	{&family{"go_memstats_frees_total", "counter", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects."},
		func(s *runtime.MemStats) float64 { return float64(s.Frees) }},
	{&family{"go_memstats_gc_sys_bytes", "gauge", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.GCSys) }},
	{&family{"go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.HeapAlloc) }},
	{&family{"go_memstats_heap_idle_bytes", "gauge", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.HeapIdle) }},
	{&family{"go_memstats_heap_inuse_bytes", "gauge", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes"},
		func(s *runtime.MemStats) float64 { return float64(s.HeapInuse) }},
	{&family{"go_memstats_heap_objects", "gauge", "Number of currently allocated objects. Equals to /gc/heap/objects:objects."},
		func(s *runtime.MemStats) float64 { return float64(s.HeapObjects) }},
	{&family{"go_memstats_heap_released_bytes", "gauge", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.HeapReleased) }},
	{&family{"go_memstats_heap_sys_bytes", "gauge", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.HeapSys) }},
	{&family{"go_memstats_last_gc_time_seconds", "gauge", "Number of seconds since 1970 of last garbage collection."},
		func(s *runtime.MemStats) float64 { return float64(s.LastGC) / 1e9 }},
	{&family{"go_memstats_mallocs_total", "counter", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects."},
		func(s *runtime.MemStats) float64 { return float64(s.Mallocs) }},
	{&family{"go_memstats_mcache_inuse_bytes", "gauge", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.MCacheInuse) }},
	{&family{"go_memstats_mcache_sys_bytes", "gauge", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.MCacheSys) }},
	{&family{"go_memstats_mspan_inuse_bytes", "gauge", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.MSpanInuse) }},
	{&family{"go_memstats_mspan_sys_bytes", "gauge", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.MSpanSys) }},
	{&family{"go_memstats_next_gc_bytes", "gauge", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.NextGC) }},
	{&family{"go_memstats_other_sys_bytes", "gauge", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.OtherSys) }},
	{&family{"go_memstats_stack_inuse_bytes", "gauge", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.StackInuse) }},
	{&family{"go_memstats_stack_sys_bytes", "gauge", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes."},
		func(s *runtime.MemStats) float64 { return float64(s.StackSys) }},
	{&family{"go_memstats_sys_bytes", "gauge", "Number of bytes obtained from system. Equals to /memory/classes/total:byte."},
		func(s *runtime.MemStats) float64 { return float64(s.Sys) }},
}

// gcQuantiles are the quantiles of go_gc_duration_seconds: the minimum,
// the quartiles and the maximum of the recent pauses debug.ReadGCStats
// keeps.
var gcQuantiles = []string{"0", "0.25", "0.5", "0.75", "1"}

// writeGo appends the go_* families.
func writeGo(e *expo) {
	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, len(gcQuantiles))
	debug.ReadGCStats(&gc)
	for i, q := range gcQuantiles {
		e.add(famGoGC, "", gc.PauseQuantiles[i].Seconds(), "quantile", q)
	}
	e.add(famGoGC, "_sum", gc.PauseTotal.Seconds())
	e.add(famGoGC, "_count", float64(gc.NumGC))

	samples := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}, {Name: "/sched/gomaxprocs:threads"}}
	rtmetrics.Read(samples)
	if v, ok := sampleValue(samples[0]); ok {
		e.add(famGoGOGC, "", v)
	}
	if v, ok := sampleValue(samples[1]); ok {
		e.add(famGoMemLimit, "", v)
	}
	e.add(famGoGoroutines, "", float64(runtime.NumGoroutine()))
	e.add(famGoInfo, "", 1, "version", runtime.Version())

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for _, m := range memstats {
		e.add(m.f, "", m.v(&ms))
	}
	if v, ok := sampleValue(samples[2]); ok {
		e.add(famGoMaxProcs, "", v)
	}
	n, _ := runtime.ThreadCreateProfile(nil)
	e.add(famGoThreads, "", float64(n))
}

// sampleValue is a runtime/metrics sample as a number; false where this
// Go release does not have it.
func sampleValue(s rtmetrics.Sample) (float64, bool) {
	switch s.Value.Kind() {
	case rtmetrics.KindUint64:
		return float64(s.Value.Uint64()), true
	case rtmetrics.KindFloat64:
		return s.Value.Float64(), true
	}
	return 0, false
}
