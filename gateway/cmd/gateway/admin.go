package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/gateway/internal/supervisor"
)

// adminShutdownTimeout bounds the stop of the metrics servers.
const adminShutdownTimeout = 2 * time.Second

// serveAdmin binds the supervisor's admin address and serves GET /metrics
// (its own series and every worker's, each labelled worker="N") and
// GET /healthz (the supervisor is alive) until stop is called.
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
	log.Info("metrics listening", zap.String("addr", ln.Addr().String()))
	return serveHTTP(ln, mux, log), nil
}

// serveWorkerMetrics serves a worker's registry on its private unix socket
// in dir, where the supervisor reads it, until stop is called.
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
