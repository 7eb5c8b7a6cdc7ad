//go:build pprof

package service

// Built with -tags pprof, handlers-svc serves net/http/pprof on
// HANDLERS_PPROF_ADDR (say 127.0.0.1:27989), for profiling under load
// (BENCH_PPROF in docs/performance.md). Never in a default
// build.

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

func init() {
	addr := os.Getenv("HANDLERS_PPROF_ADDR")
	if addr == "" {
		return
	}
	go func() { _ = http.ListenAndServe(addr, nil) }()
}
