package middleware

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// EventOther labels requests for events without a handler, so clients
// cannot add label values by inventing names. An event name cannot start
// with "_".
const EventOther = "_other"

// results are the values of the result label: "ok" or a wire error code;
// codes outside the set count as "other".
var results = [...]string{
	"ok", string(proto.CodeBadRequest), string(proto.CodeUnknownEvent), string(proto.CodeUnavailable),
	string(proto.CodeTimeout), string(proto.CodeHandlerError), string(proto.CodeRateLimited), string(proto.CodeForbidden), "other",
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

// Metrics counts and times requests in Prometheus: NAMESPACE_requests_total
// by event and result ("ok" or the wire error code) and
// NAMESPACE_request_duration_seconds by event. handlers-svc serves its
// every request through one (namespace switchboard_handlers); a team puts
// another on a group of its own, with its own namespace. It is safe for
// concurrent use.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	events   map[string]*series // read-only once built
	other    *series
}

// NewMetrics registers the two metrics on reg, whose event label takes the
// given event names (and EventOther for any other), every series present
// at zero. It panics if reg has them already, as MustRegister does.
func NewMetrics(reg prometheus.Registerer, namespace string, events []string) *Metrics {
	m := &Metrics{events: make(map[string]*series, len(events))}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_total",
		Help: "Requests served, by event and result (ok or the error code replied).",
	}, []string{"event", "result"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "request_duration_seconds",
		Help:    "Time a request spent in the handler, middleware included, by event.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"event"})
	reg.MustRegister(m.requests, m.duration)
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
