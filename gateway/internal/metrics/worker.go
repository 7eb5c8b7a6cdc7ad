package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

const namespace = "switchboard_gateway"

// Event label values that are not event names; an event name cannot start
// with "_", so they never collide with one.
const (
	// EventInvalid labels frames that were not a valid envelope.
	EventInvalid = "_invalid"
	// EventOther labels events no handler has confirmed yet, and events
	// beyond MaxEvents.
	EventOther = "_other"
)

// MaxEvents caps the distinct event names one worker labels series with.
// A name becomes a label only once a run of its handler in handlers-svc
// has answered it with something other than unknown_event or unavailable
// (a reply handlers-svc gave before running anything, such as to an
// idempotency key another request used, is marked proto.UnrunHeader), so
// clients cannot grow the set by inventing names; the cap holds even if
// handlers do.
const MaxEvents = 128

// Results of an envelope: "ok", or the wire error code sent to the client.
// Codes outside this set (a handler may invent its own) count as "other".
var results = [...]string{
	"ok",
	string(proto.CodeBadRequest),
	string(proto.CodeUnknownEvent),
	string(proto.CodeUnavailable),
	string(proto.CodeTimeout),
	string(proto.CodeHandlerError),
	string(proto.CodeRateLimited), // refused by the socket's rate limit, never forwarded
	string(proto.CodeForbidden),
	"other",
}

func resultIndex(code proto.Code) int {
	if code == "" {
		return 0
	}
	for i := 1; i < len(results)-1; i++ {
		if results[i] == string(code) {
			return i
		}
	}
	return len(results) - 1
}

// Close reasons, the values of the reason label of
// switchboard_gateway_connections_closed_total.
const (
	ReasonClient        = "client"          // the client sent a close frame
	ReasonLost          = "lost"            // the connection ended without a close frame
	ReasonPingTimeout   = "ping_timeout"    // no pong within the pong wait
	ReasonSlowConsumer  = "slow_consumer"   // outgoing queue overflowed (1008)
	ReasonRateLimited   = "rate_limited"    // kept sending over its rate limit (1008)
	ReasonTooBig        = "message_too_big" // 1009
	ReasonInvalidUTF8   = "invalid_utf8"    // 1007
	ReasonShutdown      = "shutdown"        // the worker stopped (1001)
	ReasonWriteFailed   = "write_failed"    // a write to the network failed
	ReasonInternalError = "internal_error"  // a bug in the socket's code (1011)
	ReasonTokenExpired  = "token_expired"   // its token expired (4001)
	// A backend's disconnect (docs/protocol.md section 7): for good
	// (4003), or asking the client to reconnect (4002).
	ReasonDisconnected       = "disconnected"
	ReasonReconnectRequested = "reconnect_requested"
	ReasonOther              = "other"
)

// ReasonWorkerLost is the reason of the disconnect a worker announces for
// each socket of the dead worker it replaces (docs/protocol.md section
// 3); not a label of switchboard_gateway_connections_closed_total, since
// the dead worker counted none of those closes.
const ReasonWorkerLost = "worker_lost"

var closeReasons = [...]string{
	ReasonClient, ReasonLost, ReasonPingTimeout, ReasonSlowConsumer, ReasonRateLimited, ReasonTooBig,
	ReasonInvalidUTF8, ReasonShutdown, ReasonWriteFailed, ReasonInternalError, ReasonTokenExpired,
	ReasonDisconnected, ReasonReconnectRequested, ReasonOther,
}

// CloseReason maps who closed a socket, and the code and reason it was
// closed with, to the bounded reason label. A close by the client or the
// network is counted as such whatever its code; the gateway's own closes
// by their code and reason, since a backend's disconnect chooses its
// reason text and may choose the words the gateway uses for the others.
func CloseReason(by ws.Closer, code int, reason string) string {
	switch by {
	case ws.ByClient:
		return ReasonClient
	case ws.ByNetwork:
		return ReasonLost
	case ws.ByNone:
		return ReasonOther
	}
	switch {
	case code == proto.CloseDisconnected:
		// Before the reasons below: a backend's reason may read as one.
		return ReasonDisconnected
	case code == proto.CloseReconnect:
		return ReasonReconnectRequested
	case reason == "ping timeout":
		return ReasonPingTimeout
	case reason == "write failed":
		return ReasonWriteFailed
	case code == proto.ClosePolicy && reason == proto.ReasonSlowConsumer:
		return ReasonSlowConsumer
	case code == proto.ClosePolicy && reason == proto.ReasonRateLimited:
		return ReasonRateLimited
	case code == proto.CloseMessageTooBig:
		return ReasonTooBig
	case code == proto.CloseInvalidData:
		return ReasonInvalidUTF8
	case code == proto.CloseGoingAway:
		return ReasonShutdown
	case code == proto.CloseInternalError:
		return ReasonInternalError
	case code == proto.CloseTokenExpired:
		return ReasonTokenExpired
	}
	return ReasonOther
}

// Reasons an upgrade is refused, the values of the reason label of
// switchboard_gateway_upgrades_refused_total.
const (
	RefusedUnauthorized = "unauthorized"
	RefusedOrigin       = "forbidden_origin"
	RefusedUnavailable  = "unavailable"          // starting or shutting down
	RefusedUpgrade      = "bad_upgrade"          // not a valid WebSocket handshake
	RefusedUserCap      = "too_many_connections" // GATEWAY_MAX_CONNS_PER_USER
	RefusedWorkerFull   = "worker_full"          // GATEWAY_MAX_CONNS
	RefusedIPRate       = "ip_rate_limited"      // GATEWAY_IP_UPGRADE_RATE
	RefusedRevoked      = "token_revoked"        // a backend's disconnect with revoke (401)
)

var refusedReasons = [...]string{RefusedUnauthorized, RefusedOrigin, RefusedUnavailable, RefusedUpgrade, RefusedUserCap, RefusedWorkerFull, RefusedIPRate, RefusedRevoked}

// Reasons an envelope is refused as overload, the values of the reason label
// of switchboard_gateway_overload_refusals_total (forward.ShedFanout and
// forward.ShedInFlight).
var shedReasons = [...]string{"fanout_lagging", "requests_in_flight"}

// eventSeries are one event label's series, resolved once.
type eventSeries struct {
	results [len(results)]prometheus.Counter
}

// Worker is one worker process's registry and its instruments.
type Worker struct {
	reg *prometheus.Registry

	opened     prometheus.Counter
	closed     map[string]prometheus.Counter
	slowCloses prometheus.Counter
	refused    map[string]prometheus.Counter
	previous   prometheus.Counter
	dispatches prometheus.Counter
	unrouted   prometheus.Counter
	discarded  prometheus.Counter
	restored   prometheus.Histogram
	deliveries prometheus.Counter
	dropped    prometheus.Counter
	limited    prometheus.Counter
	pingsIgn   prometheus.Counter
	shed       map[string]prometheus.Counter

	// pendingClosed counts connections closed by admission.PendingCap.
	pendingClosed prometheus.Counter
	// presenceFailed counts presence lease writes that failed.
	presenceFailed prometheus.Counter

	envelopes *prometheus.CounterVec
	// rtt has no event label: a histogram is 15 series, times MaxEvents
	// and workers would be tens of thousands per gateway. handlers-svc
	// times each event (switchboard_handlers_request_duration_seconds).
	rtt prometheus.Histogram
	// events maps confirmed event names to their series. It is copied on
	// write (at most MaxEvents times), so the hot path reads it with one
	// atomic load and no lock.
	events  atomic.Pointer[map[string]*eventSeries]
	mu      sync.Mutex // serializes writers of events
	invalid *eventSeries
	other   *eventSeries

	rec  recovery
	life lifecycle
}

// NewWorker returns a worker registry with the Go and process collectors
// and every switchboard_gateway_* series of a worker, at zero.
func NewWorker() *Worker {
	m := &Worker{
		reg:     prometheus.NewRegistry(),
		closed:  make(map[string]prometheus.Counter, len(closeReasons)),
		refused: make(map[string]prometheus.Counter, len(refusedReasons)),
	}
	m.events.Store(&map[string]*eventSeries{})
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{m.reg}
	m.opened = f.counter("connections_opened_total", "WebSockets accepted.")
	closed := f.counterVec("connections_closed_total", "WebSockets ended, by reason.", "reason")
	for _, r := range closeReasons {
		m.closed[r] = closed.WithLabelValues(r)
	}
	m.slowCloses = f.counter("slow_consumer_closes_total", "WebSockets closed with 1008 because their outgoing queue overflowed.")
	refused := f.counterVec("upgrades_refused_total", "WebSocket upgrades refused, by reason.", "reason")
	for _, r := range refusedReasons {
		m.refused[r] = refused.WithLabelValues(r)
	}
	m.previous = f.counter("auth_previous_secret_total",
		"WebSocket upgrades whose token was signed with GATEWAY_JWT_PREVIOUS_SECRET, the secret being rotated out: once it stops growing, no client holds such a token any more.")
	m.dispatches = f.counter("dispatches_total", "Dispatches received from the Redis channel.")
	m.unrouted = f.counter("dispatches_unrouted_total", "Dispatches received from Redis that had no local recipient on this worker: the cost of shared fan-out (in per_user mode, mostly dispatches to users whose last socket here closed within the linger).")
	m.discarded = f.counter("frames_discarded_total", "Frames of any kind queued to sockets (live events, counted in deliveries_total, replayed events, replies, connected, resync and heartbeat frames) and dropped unsent when the socket was closed: as a slow consumer, when a write failed (frames cut off included), or behind the close of a frame over the limit or a protocol error; recoverable events among them are recovered when the client resumes.")
	m.restored = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "redis_subscription_down_seconds",
		Help:    "How long the Redis subscription was down (lost or stalled) before it was re-established and the gap filled from the streams.",
		Buckets: []float64{.1, .25, .5, 1, 2, 5, 10, 30, 60},
	})
	m.reg.MustRegister(m.restored)
	m.deliveries = f.counter("deliveries_total", "Event frames queued to local sockets.")
	m.dropped = f.counter("deliveries_dropped_total", "Event frames not queued because the socket was closing or its queue was full.")
	m.limited = f.counter("rate_limited_total", "Client frames refused because the socket was over its rate limit (answered rate_limited, or closed with 1008 when persistent).")
	m.pingsIgn = f.counter("pings_ignored_total", "Client pings left unanswered because the socket was over its ping allowance (GATEWAY_PING_RATE, GATEWAY_PING_BURST); the socket stays open.")
	shed := f.counterVec("overload_refusals_total",
		"Client envelopes refused unforwarded with unavailable because the worker was overloaded, by reason: fanout_lagging or requests_in_flight (also counted in envelopes_received_total as unavailable).",
		"reason")
	m.shed = make(map[string]prometheus.Counter, len(shedReasons))
	for _, r := range shedReasons {
		m.shed[r] = shed.WithLabelValues(r)
	}
	m.pendingClosed = f.counter("pending_connections_closed_total",
		"Connections closed before they sent a request's headers because their address had more than GATEWAY_IP_PENDING such connections (slowloris).")
	m.presenceFailed = f.counter("presence_write_failures_total",
		"Presence leases whose write to Redis failed (refused, or not answered within 2 s), one per socket: its lease written at its connect or at a refresh (every third of GATEWAY_PRESENCE_TTL), or removed at its close; the writes a batch that failed as a whole left undone count too. The next refresh writes every lease again and every removal that failed, until its lease expires within the TTL.")
	m.envelopes = f.counterVec("envelopes_received_total",
		"Client envelopes, by event and result (ok or the error code sent). Events not yet confirmed by a handler count as _other, frames that are not envelopes as _invalid.",
		"event", "result")
	m.rtt = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "handler_duration_seconds",
		Help: "Round trip of handler requests that got a reply, from NATS request to reply, all events " +
			"(switchboard_handlers_request_duration_seconds has the time in the handler by event).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	m.reg.MustRegister(m.rtt)
	m.invalid = m.series(EventInvalid)
	m.other = m.series(EventOther)
	m.rec = newRecovery(f)
	m.life = newLifecycle(f)
	return m
}

type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gaugeFunc(name, help string, fn func() float64) {
	f.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, fn))
}

func (m *Worker) series(event string) *eventSeries {
	s := &eventSeries{}
	for i, r := range results {
		s.results[i] = m.envelopes.WithLabelValues(event, r)
	}
	return s
}

// Gatherer returns the registry.
func (m *Worker) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Worker) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Watch registers the gauges read at scrape time: open sockets, whether
// NATS is connected and whether the Redis subscription is live. Call it
// once.
func (m *Worker) Watch(open func() int, natsConnected, redisSubscribed func() bool) {
	f := factory{m.reg}
	f.gaugeFunc("connections_open", "WebSockets open now.", func() float64 { return float64(open()) })
	f.gaugeFunc("nats_connected", "1 while the worker's NATS connection is up.", func() float64 { return bit(natsConnected()) })
	f.gaugeFunc("redis_subscribed", "1 while the worker's Redis subscription to the dispatch channel is live.",
		func() float64 { return bit(redisSubscribed()) })
}

// WatchPresence registers the gauge of the presence leases the worker
// holds, read at scrape time from leases (presence.Leases.Len). Call it
// once, with presence on.
func (m *Worker) WatchPresence(leases func() int) {
	factory{m.reg}.gaugeFunc("presence_leases",
		"Sockets of this worker whose presence lease it holds in Redis (written, or queued to be) and refreshes every third of GATEWAY_PRESENCE_TTL, until they close; with presence on.",
		func() float64 { return float64(leases()) })
}

// Fanout is what WatchFanout reads from the Redis fan-out at scrape time.
type Fanout interface {
	Backlog() int
	Lagging() bool
	Resubscriptions() uint64
	Malformed() uint64
	Reserved() uint64
	Unrecorded() uint64
	Stalls() uint64
	BacklogBytes() int64
	DroppedAtExit() uint64
	UserChannels() int
}

// WatchFanout registers what is read from the Redis fan-out at scrape time:
// its backlog, whether it is lagging (new envelopes are refused meanwhile),
// how often its subscription was restored after a loss, and the
// dispatches it dropped. Call it once.
func (m *Worker) WatchFanout(fo Fanout) {
	backlog, lagging, resubscriptions := fo.Backlog, fo.Lagging, fo.Resubscriptions
	f := factory{m.reg}
	f.gaugeFunc("fanout_backlog", "Dispatches read from Redis and not yet delivered to local sockets.",
		func() float64 { return float64(backlog()) })
	f.gaugeFunc("fanout_lagging", "1 while the fan-out is behind the dispatch channel and new envelopes are refused with unavailable.",
		func() float64 { return bit(lagging()) })
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "redis_resubscriptions_total",
		Help: "Times the Redis subscription was restored after it was lost (Redis restarted, or cut a lagging subscriber); what was published meanwhile is filled from the recovery streams.",
	}, func() float64 { return float64(resubscriptions()) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "dispatches_malformed_total",
		Help: "Dispatches from Redis dropped because they did not decode (logged).",
	}, func() float64 { return float64(fo.Malformed()) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "dispatches_reserved_total",
		Help: "Dispatches from Redis dropped because they named one of the gateway's own events: connected, ack, error, resync (logged).",
	}, func() float64 { return float64(fo.Reserved()) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "dispatches_unrecorded_total",
		Help: "Dispatches to users and broadcasts that came without a position while recovery is on: a handlers-svc with HISTORY_WINDOW=0 (logged once); delivered as transient, in no stream.",
	}, func() float64 { return float64(fo.Unrecorded()) }))
	f.gaugeFunc("fanout_backlog_bytes", "Bytes of the dispatches read from Redis and not yet delivered (bounded by GATEWAY_FANOUT_QUEUE_BYTES).",
		func() float64 { return float64(fo.BacklogBytes()) })
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "fanout_dropped_at_exit_total",
		Help: "Dispatches read from Redis and never delivered because the worker stopped (logged; their sockets resume elsewhere).",
	}, func() float64 { return float64(fo.DroppedAtExit()) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "redis_subscription_stalls_total",
		Help: "Times the Redis subscription stopped delivering while its connection stayed up (no probe came back for " + seconds(fanout.StallAfter) + "), and was re-established.",
	}, func() float64 { return float64(fo.Stalls()) }))
	f.gaugeFunc("fanout_user_channels", "User channels this worker is subscribed to (FANOUT_MODE=per_user): users it holds a socket of, and those whose last socket closed less than GATEWAY_FANOUT_LINGER ago; 0 in shared mode.",
		func() float64 { return float64(fo.UserChannels()) })
}

// seconds writes d for a person: "1.5 s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " s"
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ConnOpened counts an accepted socket.
func (m *Worker) ConnOpened() { m.opened.Inc() }

// ConnClosed counts a socket closed by by with code and reason (see
// CloseReason) and returns the reason label it was counted under.
func (m *Worker) ConnClosed(by ws.Closer, code int, reason string) string {
	r := CloseReason(by, code, reason)
	m.closed[r].Inc()
	if r == ReasonSlowConsumer {
		m.slowCloses.Inc()
	}
	return r
}

// UpgradeRefused counts a refused upgrade; reason is one of the Refused
// constants.
func (m *Worker) UpgradeRefused(reason string) {
	if c, ok := m.refused[reason]; ok {
		c.Inc()
	}
}

// PreviousSecret counts an upgrade whose token the previous JWT secret
// verified.
func (m *Worker) PreviousSecret() { m.previous.Inc() }

// Delivered counts one dispatch from Redis, the frames it queued to local
// sockets and those it could not queue; one that reached no local socket
// at all is also counted as unrouted.
func (m *Worker) Delivered(sent, dropped int) {
	m.dispatches.Inc()
	if sent == 0 && dropped == 0 {
		m.unrouted.Inc()
	}
	if sent > 0 {
		m.deliveries.Add(float64(sent))
	}
	if dropped > 0 {
		m.dropped.Add(float64(dropped))
	}
}

// Discarded counts frames queued to a socket (and counted as delivered)
// that were dropped when it was closed, as a slow consumer, by a failed
// write (those it cut off or had not reached too, and those queued behind
// it), or behind gorilla's close of a frame over the limit or a protocol
// error.
func (m *Worker) Discarded(frames int) { m.discarded.Add(float64(frames)) }

// SubscriptionRestored records how long the Redis subscription was down.
func (m *Worker) SubscriptionRestored(down time.Duration) { m.restored.Observe(down.Seconds()) }

// Shed counts an envelope refused because the worker was overloaded, for
// reason (one of shedReasons; others are not counted).
func (m *Worker) Shed(reason string) {
	if c, ok := m.shed[reason]; ok {
		c.Inc()
	}
}

// PendingClosed counts a connection closed while it had not sent its
// request headers, to make room under GATEWAY_IP_PENDING.
func (m *Worker) PendingClosed() { m.pendingClosed.Inc() }

// PresenceWriteFailed counts n presence leases whose write or removal
// failed (presence.Recorder).
func (m *Worker) PresenceWriteFailed(n int) { m.presenceFailed.Add(float64(n)) }

// RateLimited counts a frame refused by the socket's rate limit.
func (m *Worker) RateLimited() { m.limited.Inc() }

// PingIgnored counts a client's ping left unanswered, over its socket's
// ping allowance.
func (m *Worker) PingIgnored() { m.pingsIgn.Inc() }

// Envelope records how one client frame ended, whether the forwarder or
// the socket's read loop (rate limit, binary frame) answered it: event is
// "" when the frame was not a valid envelope; code is "" when it succeeded, else the error
// code sent to the client; rtt, when positive, is the round trip of the
// handler's reply; handled says that reply came from a run of the event's
// handler. Such a reply other than unknown_event and unavailable confirms
// that the event has a handler, and from then on the event is its own
// label value.
func (m *Worker) Envelope(event string, code proto.Code, rtt time.Duration, handled bool) {
	s := m.lookup(event, handled && code != proto.CodeUnknownEvent && code != proto.CodeUnavailable)
	s.results[resultIndex(code)].Inc()
	if rtt > 0 {
		m.rtt.Observe(rtt.Seconds())
	}
}

func (m *Worker) lookup(event string, confirmed bool) *eventSeries {
	if event == "" {
		return m.invalid
	}
	events := *m.events.Load()
	if s := events[event]; s != nil {
		return s
	}
	if !confirmed || len(events) >= MaxEvents || !proto.ValidEventName(event) {
		return m.other
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	events = *m.events.Load()
	if s := events[event]; s != nil {
		return s
	}
	if len(events) >= MaxEvents {
		return m.other
	}
	next := make(map[string]*eventSeries, len(events)+1)
	for k, v := range events {
		next[k] = v
	}
	// The map keeps its own copy: event may alias a frame's buffer.
	event = strings.Clone(event)
	s := m.series(event)
	next[event] = s
	m.events.Store(&next)
	return s
}
