package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/gateway/internal/supervisor"
)

// adminShutdownTimeout bounds the stop of the metrics servers.
const adminShutdownTimeout = 2 * time.Second

// serveAdmin binds the supervisor's admin address and serves GET /metrics
// (its own series and every worker's, each labelled worker="N"),
// GET /healthz (the supervisor is alive) and GET /readyz (every worker is
// ready) until stop is called.
func serveAdmin(addr string, agg *metrics.Aggregator, sup *supervisor.Supervisor, log *zap.Logger) (stop func(), err error) {
	if err := agg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "switchboard_gateway_worker_restarts_total",
		Help: "Worker processes the supervisor restarted after they exited.",
	}, func() float64 { return float64(sup.Restarts()) })); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", agg.Handler())
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{"status":"ok","role":"supervisor"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) { serveReady(rw, r, agg) })
	log.Info("metrics listening", zap.String("addr", ln.Addr().String()))
	return serveHTTP(ln, mux, log), nil
}

// workerReady is one worker's answer in the supervisor's /readyz.
type workerReady struct {
	Worker  int      `json:"worker"`
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons,omitempty"`
}

// serveReady answers 200 when every worker's /readyz does, else 503, with
// each worker's state: unlike the public port's /readyz, which one worker
// answers, this covers them all.
func serveReady(rw http.ResponseWriter, r *http.Request, agg *metrics.Aggregator) {
	states := make([]workerReady, agg.Workers())
	var wg sync.WaitGroup
	for i := range states {
		wg.Add(1)
		go func() {
			defer wg.Done()
			states[i] = askReady(r.Context(), agg, i)
		}()
	}
	wg.Wait()
	status, code := "ready", http.StatusOK
	for _, s := range states {
		if !s.Ready {
			status, code = "unavailable", http.StatusServiceUnavailable
		}
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(code)
	_ = json.NewEncoder(rw).Encode(map[string]any{"status": status, "workers": states})
}

func askReady(ctx context.Context, agg *metrics.Aggregator, index int) workerReady {
	st := workerReady{Worker: index}
	resp, err := agg.Get(ctx, index, "/readyz")
	if err != nil {
		st.Reasons = []string{"worker not answering"}
		return st
	}
	defer resp.Body.Close()
	var body struct {
		Reasons []string `json:"reasons"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body)
	st.Ready, st.Reasons = resp.StatusCode == http.StatusOK, body.Reasons
	return st
}

// serveWorkerMetrics serves a worker's admin handler (metrics, readiness)
// on its private unix socket in dir, where the supervisor reads it, until
// stop is called.
func serveWorkerMetrics(dir string, index int, h http.Handler, log *zap.Logger) (stop func(), err error) {
	path := metrics.SocketPath(dir, index)
	_ = os.Remove(path) // left by a predecessor that crashed
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("worker metrics socket: %w", err)
	}
	return serveHTTP(ln, h, log), nil
}

func serveHTTP(ln net.Listener, h http.Handler, log *zap.Logger) (stop func()) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", zap.Error(err))
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminShutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
}
