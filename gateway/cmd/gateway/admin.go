package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/gateway/internal/supervisor"
	"github.com/switchboard/switchboard/internal/httpjson"
	"github.com/switchboard/switchboard/internal/httpserver"
	"github.com/switchboard/switchboard/internal/readiness"
)

// adminShutdownTimeout bounds the stop of the metrics servers.
const adminShutdownTimeout = 2 * time.Second

// serveAdmin binds the supervisor's admin address and serves GET /metrics
// (its own series and every worker's, each labelled worker="N"),
// GET /healthz (the supervisor is alive and no worker is hung) and
// GET /readyz (every worker is ready) until stop is called.
func serveAdmin(addr string, agg *metrics.Aggregator, sup *supervisor.Supervisor, log *zap.Logger) (stop func(), err error) {
	if err := agg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "switchboard_gateway_worker_restarts_total",
		Help: "Worker processes the supervisor restarted after they exited.",
	}, func() float64 { return float64(sup.Restarts()) })); err != nil {
		return nil, err
	}
	if err := agg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "switchboard_gateway_worker_hangs_total",
		Help: "Worker processes the supervisor's watchdog killed because they stopped sending heartbeats (GATEWAY_WORKER_HANG_TIMEOUT); each is restarted, and counted in switchboard_gateway_worker_restarts_total too.",
	}, func() float64 { return float64(sup.Hangs()) })); err != nil {
		return nil, err
	}
	if err := agg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "switchboard_gateway_worker_orphans_total",
		Help: "Sockets of workers that died (killed or crashed) with their connects announced to the lifecycle hooks and not their disconnects, handed to the replacement worker to announce (reason worker_lost).",
	}, func() float64 { return float64(sup.Orphans()) })); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_METRICS_ADDR %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", agg.Handler())
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { serveHealth(rw, sup.Hung()) })
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) { serveReady(rw, r, agg) })
	log.Info("metrics listening", zap.String("addr", ln.Addr().String()))
	return serveHTTP(ln, mux, log), nil
}

// serveHealth answers the supervisor's /healthz: 200 while no worker is
// hung, else 503 naming the hung workers (each with "silent", how long it
// has sent no heartbeat). A hung worker is one the watchdog kills; it is
// 503 from the moment the worker has been silent for the hang timeout
// until its process is gone (moments, unless SIGKILL cannot end it).
func serveHealth(rw http.ResponseWriter, hung []supervisor.Hung) {
	if len(hung) == 0 {
		httpjson.Write(rw, http.StatusOK, map[string]any{"status": "ok", "role": "supervisor"})
		return
	}
	workers := make([]map[string]any, len(hung))
	for i, h := range hung {
		workers[i] = map[string]any{"worker": h.Worker, "pid": h.Pid, "silent": h.Silent.Round(time.Millisecond).String()}
	}
	httpjson.Write(rw, http.StatusServiceUnavailable, map[string]any{"status": "hung", "role": "supervisor", "hung": workers})
}

// serveReady answers 200 when every worker's /readyz does, else 503 naming
// the workers that are not ready; "workers" holds each worker's own body.
// Unlike the public port's /readyz, which one worker answers, this covers
// them all.
func serveReady(rw http.ResponseWriter, r *http.Request, agg *metrics.Aggregator) {
	workers := make([]readiness.Body, agg.Workers())
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			workers[i] = askReady(r.Context(), agg, i)
		}()
	}
	wg.Wait()
	var reasons []string
	for i, w := range workers {
		for _, why := range w.Reasons {
			reasons = append(reasons, fmt.Sprintf("worker %d: %s", i, why))
		}
	}
	body := readiness.New(reasons...)
	body.Workers = workers
	readiness.Write(rw, body)
}

// askReady returns worker index's readiness, as its /readyz says.
func askReady(ctx context.Context, agg *metrics.Aggregator, index int) readiness.Body {
	resp, err := agg.Get(ctx, index, "/readyz")
	if err != nil {
		return readiness.New("worker not answering").OfWorker(index)
	}
	defer resp.Body.Close()
	return readiness.Read(resp).OfWorker(index)
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
	srv := httpserver.New(h, log)
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
