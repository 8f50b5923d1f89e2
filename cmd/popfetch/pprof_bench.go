//go:build popfetch_pprof

package main

// Profiling for the daemon benchmarks (daemon_bench_test.go, which builds
// popfetch with -tags popfetch_pprof): the net/http/pprof handlers on the
// loopback address in POPFETCH_PPROF_LISTEN. Never part of a normal build.

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("POPFETCH_PPROF_LISTEN"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
