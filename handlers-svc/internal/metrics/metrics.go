// Package metrics is handlers-svc's Prometheus instrumentation: handler
// latency and results by event, the state of its NATS and Redis
// connections, and the standard Go and process collectors, served on
// HANDLERS_ADDR at GET /metrics. It is safe for concurrent use.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/middleware"
)

const namespace = "switchboard_handlers"

// Metrics is the registry of one handlers-svc process.
type Metrics struct {
	reg      *prometheus.Registry
	requests *middleware.Metrics
	families prometheus.Gatherers // what the handler families registered
	expired  prometheus.Counter
	replayed prometheus.Counter
	hooks    *prometheus.CounterVec
}

// New returns a registry whose event label takes the registered event
// names (and middleware.EventOther), every series present at zero.
func New(events []string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = middleware.NewMetrics(m.reg, namespace, events)
	m.expired = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_expired_total",
		Help: "Requests dropped unrun because the gateway's deadline (Switchboard-Deadline) had passed: their clients were told timeout.",
	})
	m.replayed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_replayed_total",
		Help: "Requests with an idempotency key (idem) answered from the record of an earlier one with the same key, the handler not run again: emits a client sent again after losing its socket.",
	})
	m.hooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "lifecycle_hooks_total",
		Help: "Lifecycle hooks run (a socket's connect or disconnect), by type and result: ok, error, panic, or overloaded (no handler slot within HANDLERS_TIMEOUT: the message's hooks not run).",
	}, []string{"type", "result"})
	for _, typ := range []string{"connect", "disconnect"} {
		for _, r := range []string{"ok", "error", "panic", "overloaded"} {
			m.hooks.WithLabelValues(typ, r)
		}
	}
	m.reg.MustRegister(m.expired, m.replayed, m.hooks)
	return m
}

// Hooked counts a lifecycle hook of type typ (connect or disconnect)
// with its result (natserve.HookOK and the others).
func (m *Metrics) Hooked(typ, result string) { m.hooks.WithLabelValues(typ, result).Inc() }

// Include serves what g gathers on /metrics too: the handler families'
// own collectors, registered at start-up.
func (m *Metrics) Include(g prometheus.Gatherer) { m.families = append(m.families, g) }

// Expired counts a request dropped unrun because its deadline had passed.
func (m *Metrics) Expired(string) { m.expired.Inc() }

// Replayed counts a request answered from its idempotency record.
func (m *Metrics) Replayed(string) { m.replayed.Inc() }

// Watch registers gauges read at scrape time: whether NATS is connected,
// whether Redis answers (the caller's record, sending no command), and
// whether the process is ready to serve (NATS, Redis and the
// subscription).
func (m *Metrics) Watch(natsConnected, redisConnected, ready func() bool) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "nats_connected", Help: "1 while the NATS connection is up.",
		}, func() float64 { return bit(natsConnected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "redis_connected", Help: "1 while Redis answered the last probe (every second, not at scrape time).",
		}, func() float64 { return bit(redisConnected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ready", Help: "1 while /readyz answers 200: NATS connected, Redis answering, subscribed.",
		}, func() float64 { return bit(ready()) }),
	)
}

// CountUnheard registers a counter read at scrape time from unheard: the
// dispatches published that no subscriber received.
func (m *Metrics) CountUnheard(unheard func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "dispatches_unheard_total",
		Help: "Publishes of dispatches on the shared channel that no gateway worker was subscribed to (a dispatch to many users may be several): no socket got them at the time (recorded ones wait in their streams for a resume).",
	}, func() float64 { return float64(unheard()) }))
}

// CountReplays registers a counter read at scrape time from replays: the
// dispatch API's answers replayed from an idempotency record.
func (m *Metrics) CountReplays(replays func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "dispatch_api_replays_total",
		Help: "Dispatch API requests answered from the record of an earlier one with the same Idempotency-Key, delivering nothing again.",
	}, func() float64 { return float64(replays()) }))
}

// WatchAPIInFlight registers a gauge read at scrape time from inFlight:
// the dispatch API's calls running, each holding one of its
// httpapi.MaxInFlight places (beyond them a call is refused 503).
func (m *Metrics) WatchAPIInFlight(inFlight func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "dispatch_api_in_flight",
		Help: "Dispatch API calls running now, body read included; at 256 the next is refused 503 (busy).",
	}, func() float64 { return float64(inFlight()) }))
}

// CountPreviousKey registers a counter read at scrape time from uses: the
// dispatch API's requests let in by HANDLERS_API_KEY_PREVIOUS.
func (m *Metrics) CountPreviousKey(uses func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "dispatch_api_previous_key_total",
		Help: "Dispatch API requests let in by HANDLERS_API_KEY_PREVIOUS, the key being rotated out: once it stops growing, no caller uses that key any more.",
	}, func() float64 { return float64(uses()) }))
}

// CountSharedWorkers registers a gauge read at scrape time from shared:
// the gateway workers found in shared mode while this instance publishes
// per user (0 in shared mode, where every worker reads everything).
func (m *Metrics) CountSharedWorkers(shared func() int64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "fanout_shared_workers",
		Help: "Gateway workers subscribed in FANOUT_MODE=shared while this instance publishes per user: their sockets get no dispatch to their users.",
	}, func() float64 { return float64(shared()) }))
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(append(prometheus.Gatherers{m.reg}, m.families...), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Middleware counts and times every request (middleware.Metrics); put it
// outermost, so a panic turned into handler_error by Recover is counted as
// one.
func (m *Metrics) Middleware(next event.Handler) event.Handler { return m.requests.Middleware(next) }
