package main

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// readyPingLimit bounds the Redis ping of one /readyz request.
const readyPingLimit = time.Second

// health serves GET /healthz (the process is up) and GET /readyz (it can
// serve events: subscribed, NATS connected, Redis answering, not stopping).
type health struct {
	nc       *nats.Conn
	rdb      *redis.Client
	serving  <-chan struct{} // closed once the NATS subscription exists
	stopping atomic.Bool
	mux      *http.ServeMux
}

func newHealth(nc *nats.Conn, rdb *redis.Client, serving <-chan struct{}) *health {
	h := &health{nc: nc, rdb: rdb, serving: serving, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /healthz", h.healthz)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	return h
}

func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type status struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

func (h *health) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, status{Status: "ok"})
}

func (h *health) readyz(w http.ResponseWriter, r *http.Request) {
	if reason := h.notReady(r.Context()); reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, status{Status: "unavailable", Reason: reason})
		return
	}
	writeJSON(w, http.StatusOK, status{Status: "ok"})
}

// notReady returns why the service cannot serve events, or "".
func (h *health) notReady(ctx context.Context) string {
	if h.stopping.Load() {
		return "shutting down"
	}
	if !h.nc.IsConnected() {
		return "nats not connected"
	}
	if !h.redisUp(ctx) {
		return "redis not answering"
	}
	select {
	case <-h.serving:
	default:
		return "not subscribed yet"
	}
	return ""
}

// redisUp reports whether Redis answers a PING within readyPingLimit.
func (h *health) redisUp(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, readyPingLimit)
	defer cancel()
	return h.rdb.Ping(ctx).Err() == nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
