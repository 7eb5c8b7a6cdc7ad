// Package metrics is handlers-svc's Prometheus instrumentation: handler
// latency and results by event, the state of its NATS and Redis
// connections, and the standard Go and process collectors, served on
// HANDLERS_ADDR at GET /metrics. It is safe for concurrent use.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

const namespace = "switchboard_handlers"

// EventOther labels requests for events without a handler, so clients
// cannot add label values by inventing names. An event name cannot start
// with "_".
const EventOther = "_other"

// results are the values of the result label: "ok" or a wire error code;
// codes outside the set count as "other".
var results = [...]string{
	"ok", string(proto.CodeBadRequest), string(proto.CodeUnknownEvent), string(proto.CodeUnavailable),
	string(proto.CodeTimeout), string(proto.CodeHandlerError), "other",
}

func resultIndex(code string) int {
	for i, r := range results[:len(results)-1] {
		if r == code {
			return i
		}
	}
	return len(results) - 1
}

type series struct {
	results  [len(results)]prometheus.Counter
	duration prometheus.Observer
}

// Metrics is the registry of one handlers-svc process.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	events   map[string]*series // read-only once built
	other    *series
	expired  prometheus.Counter
}

// New returns a registry whose event label takes the registered event
// names (and EventOther), every series present at zero.
func New(events []string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), events: make(map[string]*series, len(events))}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_total",
		Help: "Requests served, by event and result (ok or the error code replied).",
	}, []string{"event", "result"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "request_duration_seconds",
		Help:    "Time a request spent in the handler, middleware included, by event.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"event"})
	m.expired = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_expired_total",
		Help: "Requests dropped unrun because the gateway's deadline (Switchboard-Deadline) had passed: their clients were told timeout.",
	})
	m.reg.MustRegister(m.requests, m.duration, m.expired)
	for _, e := range events {
		m.events[e] = m.series(e)
	}
	m.other = m.series(EventOther)
	return m
}

func (m *Metrics) series(event string) *series {
	s := &series{duration: m.duration.WithLabelValues(event)}
	for i, r := range results {
		s.results[i] = m.requests.WithLabelValues(event, r)
	}
	return s
}

// Expired counts a request dropped unrun because its deadline had passed.
func (m *Metrics) Expired(string) { m.expired.Inc() }

// Watch registers gauges read at scrape time: whether NATS is connected,
// whether Redis answers, and whether the process is ready to serve (NATS,
// Redis and the subscription).
func (m *Metrics) Watch(natsConnected, redisConnected, ready func() bool) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "nats_connected", Help: "1 while the NATS connection is up.",
		}, func() float64 { return bit(natsConnected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "redis_connected", Help: "1 while Redis answers a PING (sent at scrape time).",
		}, func() float64 { return bit(redisConnected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ready", Help: "1 while /readyz answers 200: NATS connected, Redis answering, subscribed.",
		}, func() float64 { return bit(ready()) }),
	)
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Middleware counts and times every request; put it outermost, so a
// panic turned into handler_error by Recover is counted as one.
func (m *Metrics) Middleware(next event.Handler) event.Handler {
	return event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
		start := time.Now()
		err := next.ServeEvent(ctx, r)
		s := m.events[r.Event]
		if s == nil {
			s = m.other
		}
		code := "ok"
		if err != nil {
			code = string(event.WireError(err).Code)
		}
		s.results[resultIndex(code)].Inc()
		s.duration.Observe(time.Since(start).Seconds())
		return err
	})
}
