package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/gateway/internal/supervisor"
	"github.com/switchboard/switchboard/internal/readiness"
)

// TestSupervisorReadyz: the supervisor's /readyz has the shape of every
// /readyz, lists each worker's own body, and names in its reasons each
// worker that is not ready, including one that does not answer at all.
func TestSupervisorReadyz(t *testing.T) {
	dir := t.TempDir()
	answers := []readiness.Body{
		readiness.New().OfWorker(0),
		readiness.New("nats not connected", "redis subscription not live").OfWorker(1),
		// worker 2 serves nothing
	}
	for i, b := range answers {
		stop, err := serveWorkerMetrics(dir, i, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			readiness.Write(w, b)
		}), zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	tests := []struct {
		name    string
		workers int
		want    readiness.Body
	}{
		{"all ready", 1, readiness.Body{Status: readiness.StatusReady, Reasons: []string{},
			Workers: []readiness.Body{answers[0]}}},
		{"some not", 3, readiness.Body{Status: readiness.StatusUnavailable,
			Reasons: []string{"worker 1: nats not connected", "worker 1: redis subscription not live", "worker 2: worker not answering"},
			Workers: []readiness.Body{answers[0], answers[1], readiness.New("worker not answering").OfWorker(2)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agg := metrics.NewAggregator(dir, tt.workers)
			defer agg.Close()
			rec := httptest.NewRecorder()
			serveReady(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil), agg)
			var got readiness.Body
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if rec.Code != tt.want.Code() || !reflect.DeepEqual(got, tt.want) {
				w, _ := json.Marshal(tt.want)
				t.Fatalf("/readyz = %d %s, want %d %s", rec.Code, rec.Body, tt.want.Code(), w)
			}
		})
	}
}

// TestSupervisorHealthz: the supervisor's /healthz is 200 while no worker
// is hung, and 503 naming each hung worker, its pid and its silence while
// one is (a worker the watchdog kills, until it is gone).
func TestSupervisorHealthz(t *testing.T) {
	tests := []struct {
		name string
		hung []supervisor.Hung
		code int
		want map[string]any
	}{
		{"none hung", nil, http.StatusOK, map[string]any{"status": "ok", "role": "supervisor"}},
		{"worker 1 hung", []supervisor.Hung{{Worker: 1, Pid: 4242, Silent: 10500 * time.Millisecond}}, http.StatusServiceUnavailable,
			map[string]any{"status": "hung", "role": "supervisor",
				"hung": []any{map[string]any{"worker": 1.0, "pid": 4242.0, "silent": "10.5s"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			serveHealth(rec, tt.hung)
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if rec.Code != tt.code || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("/healthz = %d %s, want %d %v", rec.Code, rec.Body, tt.code, tt.want)
			}
		})
	}
}
