package service

import (
	"io"
	"net/http"
	"sync/atomic"

	"github.com/switchboard/switchboard/internal/natsconn"
	"github.com/switchboard/switchboard/internal/readiness"
)

// health serves GET /healthz (the process is up) and GET /readyz (it can
// serve events: subscribed, NATS connected, Redis answering, not stopping),
// whose body is the readiness package's. Whether Redis answers is the last
// outcome of the Redis probe (probeRedis, every redisProbeEvery), which
// /readyz and the /metrics scrape read: neither sends a command of its
// own, so no caller of them adds load to Redis, and all three agree.
type health struct {
	link     *natsconn.State // NATS's state: never waits for nc's lock, which a stalled write holds
	serving  <-chan struct{} // closed once the NATS subscription exists
	stopping atomic.Bool
	redisOK  atomic.Bool // Redis answered the last probe
	mux      *http.ServeMux
}

func newHealth(link *natsconn.State, serving <-chan struct{}) *health {
	h := &health{link: link, serving: serving, mux: http.NewServeMux()}
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

func (h *health) readyz(w http.ResponseWriter, _ *http.Request) {
	readiness.Write(w, readiness.New(h.notReady()...))
}

// notReady returns every reason the service cannot serve events; none
// when it can.
func (h *health) notReady() []string {
	var reasons []string
	if h.stopping.Load() {
		reasons = append(reasons, "shutting down")
	}
	if !h.link.Connected() {
		reasons = append(reasons, "nats not connected")
	}
	reasons = append(reasons, h.link.RefusalReasons()...)
	if !h.redisOK.Load() {
		reasons = append(reasons, "redis not answering")
	}
	select {
	case <-h.serving:
	default:
		reasons = append(reasons, "not subscribed yet")
	}
	return reasons
}
