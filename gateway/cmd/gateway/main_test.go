package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/gateway/internal/config"
)

// TestWorkerRuntimeEnv: the supervisor sets what the operator did not, and
// an operator's GOGC turns the workers' own GC tuning off.
func TestWorkerRuntimeEnv(t *testing.T) {
	procs := "GOMAXPROCS=3" // 6 cores, 2 workers
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
		// The operator's GOMAXPROCS is in the cores: it is the gateway's.
		{"GOMAXPROCS set", map[string]string{"GOMAXPROCS": "6"}, []string{procs, "GOGC=50", tune}},
		{"both set", map[string]string{"GOGC": "off", "GOMAXPROCS": "6"}, []string{procs, noTune}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := workerRuntimeEnv(2, 6, func(k string) string { return tt.set[k] })
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestHealthAddr: "gateway health" asks the admin address, or a worker
// when that is off, and needs no secret.
func TestHealthAddr(t *testing.T) {
	tests := []struct {
		name          string
		metrics, addr string
		want          string
	}{
		{"defaults", "", "", "127.0.0.1:7998"},
		{"admin address", "127.0.0.1:9300", ":8000", "127.0.0.1:9300"},
		{"admin off", "off", ":8000", ":8000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GATEWAY_JWT_SECRET", "")
			t.Setenv("GATEWAY_METRICS_ADDR", tt.metrics)
			t.Setenv("GATEWAY_ADDR", tt.addr)
			got, err := healthAddr()
			if err != nil || got != tt.want {
				t.Fatalf("healthAddr = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestTokenSignsWithTheCurrentSecret: during a rotation "gateway token"
// signs with GATEWAY_JWT_SECRET, never the previous secret, which the
// gateway accepts only to verify.
func TestTokenSignsWithTheCurrentSecret(t *testing.T) {
	const current, previous = "current-secret-of-at-least-32-bytes", "previous-secret-of-at-least-32-bytes"
	t.Setenv("GATEWAY_DEV", "")
	t.Setenv("GATEWAY_JWT_SECRET", current)
	t.Setenv("GATEWAY_JWT_PREVIOUS_SECRET", previous)
	var out strings.Builder
	if err := mintToken([]string{"alice"}, &out); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	c, err := auth.NewVerifier(current, "").Verify(tok)
	if err != nil || c.User != "alice" {
		t.Fatalf("the current secret: Verify = %+v, %v; want alice", c, err)
	}
	if _, err := auth.NewVerifier(previous, "").Verify(tok); err != auth.ErrBadSignature {
		t.Fatalf("the previous secret: Verify error %v, want %v", err, auth.ErrBadSignature)
	}
}

// TestLoopbackOnly: dev mode warns unless its address is loopback only.
func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		":7999": false, "0.0.0.0:7999": false, "[::]:7999": false, "192.168.1.4:7999": false,
		"127.0.0.1:7999": true, "127.0.0.2:7999": true, "[::1]:7999": true, "localhost:7999": true,
		"nonsense": false,
	} {
		if got := loopbackOnly(addr); got != want {
			t.Errorf("loopbackOnly(%q) = %v, want %v", addr, got, want)
		}
	}
}
