package main

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/readiness"
)

// readyPingLimit bounds the Redis ping of one /readyz request.
const readyPingLimit = time.Second

// health serves GET /healthz (the process is up) and GET /readyz (it can
// serve events: subscribed, NATS connected, Redis answering, not stopping),
// whose body is the readiness package's.
type health struct {
	nc       *nats.Conn
	rdb      redis.UniversalClient
	serving  <-chan struct{} // closed once the NATS subscription exists
	stopping atomic.Bool
	mux      *http.ServeMux
}

func newHealth(nc *nats.Conn, rdb redis.UniversalClient, serving <-chan struct{}) *health {
	h := &health{nc: nc, rdb: rdb, serving: serving, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /healthz", h.healthz)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	return h
}

func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *health) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
}

func (h *health) readyz(w http.ResponseWriter, r *http.Request) {
	readiness.Write(w, readiness.New(h.notReady(r.Context())...))
}

// notReady returns every reason the service cannot serve events; none
// when it can.
func (h *health) notReady(ctx context.Context) []string {
	var reasons []string
	if h.stopping.Load() {
		reasons = append(reasons, "shutting down")
	}
	if !h.nc.IsConnected() {
		reasons = append(reasons, "nats not connected")
	}
	if !h.redisUp(ctx) {
		reasons = append(reasons, "redis not answering")
	}
	select {
	case <-h.serving:
	default:
		reasons = append(reasons, "not subscribed yet")
	}
	return reasons
}

// redisUp reports whether Redis answers a PING within readyPingLimit.
func (h *health) redisUp(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, readyPingLimit)
	defer cancel()
	return h.rdb.Ping(ctx).Err() == nil
}
