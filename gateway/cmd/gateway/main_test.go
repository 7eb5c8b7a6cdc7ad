package main

import (
	"runtime"
	"slices"
	"strconv"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/config"
)

// TestWorkerRuntimeEnv: the supervisor sets what the operator did not, and
// an operator's GOGC turns the workers' own GC tuning off.
func TestWorkerRuntimeEnv(t *testing.T) {
	procs := "GOMAXPROCS=" + strconv.Itoa(max(1, runtime.NumCPU()/2))
	tune, noTune := config.GCTuneEnv+"=1", config.GCTuneEnv+"=0"
	tests := []struct {
		name string
		set  map[string]string
		want []string
	}{
		{"nothing set", nil, []string{procs, "GOGC=50", tune}},
		{"GOGC set", map[string]string{"GOGC": "200"}, []string{procs, noTune}},
		// An inherited SWITCHBOARD_GC_TUNE=1 must not override GOGC.
		{"GOGC set, tuning inherited", map[string]string{"GOGC": "200", config.GCTuneEnv: "1"}, []string{procs, noTune}},
		{"GOMAXPROCS set", map[string]string{"GOMAXPROCS": "4"}, []string{"GOGC=50", tune}},
		{"both set", map[string]string{"GOGC": "off", "GOMAXPROCS": "1"}, []string{noTune}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := workerRuntimeEnv(2, func(k string) string { return tt.set[k] })
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
