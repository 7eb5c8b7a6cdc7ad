//go:build pprof

package main

// Built with -tags pprof, every worker serves net/http/pprof on
// 127.0.0.1:(GATEWAY_PPROF_PORT + worker index), for profiling under load
// (BENCH_PPROF in docs/performance.md). Never in a
// default build.

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
	"runtime"
	"strconv"

	"github.com/switchboard/switchboard/gateway/internal/supervisor"
)

func init() {
	// GATEWAY_PPROF_MEMRATE=1 records every allocation in heap profiles,
	// for an exact account of what an idle socket holds.
	if r, err := strconv.Atoi(os.Getenv("GATEWAY_PPROF_MEMRATE")); err == nil && r > 0 {
		runtime.MemProfileRate = r
	}
	base, err := strconv.Atoi(os.Getenv("GATEWAY_PPROF_PORT"))
	idx, err2 := strconv.Atoi(os.Getenv(supervisor.WorkerEnv))
	if err != nil || err2 != nil || base <= 0 {
		return
	}
	go func() { _ = http.ListenAndServe("127.0.0.1:"+strconv.Itoa(base+idx), nil) }()
}
