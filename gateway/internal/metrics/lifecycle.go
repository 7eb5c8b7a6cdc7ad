package metrics

import "github.com/prometheus/client_golang/prometheus"

// Types of a lifecycle message, the values of the type label of
// switchboard_gateway_lifecycle_published_total and
// switchboard_gateway_lifecycle_publish_errors_total (proto.Lifecycle).
var lifecycleTypes = [...]string{"connect", "disconnect"}

// lifecycle are the instruments of the lifecycle hooks (docs/protocol.md
// section 3).
type lifecycle struct {
	published map[string]prometheus.Counter
	failed    map[string]prometheus.Counter
	lost      prometheus.Counter
}

func newLifecycle(f factory) lifecycle {
	l := lifecycle{
		published: make(map[string]prometheus.Counter, len(lifecycleTypes)),
		failed:    make(map[string]prometheus.Counter, len(lifecycleTypes)),
	}
	published := f.counterVec("lifecycle_published_total",
		"Lifecycle messages (a socket's connect or disconnect) handed to NATS, by type; at most once: one handed over may still be lost with the connection.",
		"type")
	failed := f.counterVec("lifecycle_publish_errors_total",
		"Lifecycle messages not published, by type: NATS refused them (connection closed, or down with no buffer), or the worker's queue of them was full (NATS stalled); the hook was not told.",
		"type")
	l.lost = f.counter("lifecycle_lost_disconnects_total",
		"Disconnects a worker published, as its predecessor's replacement, for the sockets of that worker, which died (killed or crashed) with their connects announced; reason worker_lost, code 1006. Counted in switchboard_gateway_lifecycle_published_total{type=\"disconnect\"} too.")
	for _, t := range lifecycleTypes {
		l.published[t] = published.WithLabelValues(t)
		l.failed[t] = failed.WithLabelValues(t)
	}
	return l
}

// LifecyclePublished counts a lifecycle message of type typ handed to
// NATS, or refused by it when err is not nil.
func (m *Worker) LifecyclePublished(typ string, err error) {
	c := m.life.published
	if err != nil {
		c = m.life.failed
	}
	if n, ok := c[typ]; ok {
		n.Inc()
	}
}

// LifecycleLost counts a disconnect published for a socket of the dead
// worker this one replaced.
func (m *Worker) LifecycleLost() { m.life.lost.Inc() }
