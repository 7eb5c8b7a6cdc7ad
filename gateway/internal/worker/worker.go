// Package worker wires one gateway worker process: its listener, the
// admission of sockets, the hub of local sockets, the forwarder to NATS, the
// Redis fan-out, the pinger and the presence leases. Run serves until its context ends, then
// shuts down in order: stop accepting, close each socket with 1001 once
// its own handler requests in flight are answered (one with none at once),
// close what is left at the deadline, flush the sockets' disconnects to
// NATS, close NATS and Redis.
//
// Files by job: worker.go builds and runs the parts, routes.go the HTTP
// routes, sockets.go the life of one socket, lifecycle.go the connect and
// disconnect messages for handlers-svc's hooks, pinger.go the pings,
// shutdown.go the ordered stop.
package worker

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/admission"
	"github.com/switchboard/switchboard/gateway/internal/announced"
	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/connid"
	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/gateway/internal/hub"
	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/gateway/internal/presence"
	"github.com/switchboard/switchboard/gateway/internal/ratelimit"
	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/gateway/internal/revoke"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/httpserver"
	"github.com/switchboard/switchboard/internal/logevery"
	"github.com/switchboard/switchboard/internal/natsconn"
	"github.com/switchboard/switchboard/internal/redact"
	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// Worker is one worker process's server.
type Worker struct {
	cfg     config.Config
	index   int
	log     *zap.Logger
	adm     *admission.Admission
	ids     *connid.Generator
	hub     *hub.Hub[*resume.Socket]
	pings   pinger[*ws.Conn]
	limits  ws.Limits
	wsLog   *zap.Logger // shared by every socket
	metrics *metrics.Worker
	revoked *revoke.List // tokens revoked by a backend's disconnect
	life    *lifecycle   // publishes each socket's connect and disconnect

	nc  *nats.Conn
	rdb redis.UniversalClient
	fwd *forward.Forwarder
	sub *fanout.Subscriber
	res *resume.Resumer
	// leases records the presence of the local sockets in Redis; nil
	// when GATEWAY_PRESENCE_TTL is 0.
	leases *presence.Leases

	wrapDelivery func(fanout.Deliverer) fanout.Deliverer // nil = none; see WithDelivery

	// link is nc's state as its handlers last reported it: what
	// /readyz, the metrics and the forwarder read, never waiting for nc's
	// lock, which a write blocked on a stalled link holds.
	link natsconn.State

	// waiting is what waitDeps last saw down at start-up (waitNATS,
	// waitRedis, waitRevoked), for /readyz until the worker serves: NATS
	// and Redis until it has looked. Read without w.nc and w.sub, which the admin handler may not
	// touch before Run has connected.
	waiting atomic.Uint32
}

// The dependencies a starting worker waits for, as bits of Worker.waiting.
const (
	waitNATS uint32 = 1 << iota
	waitRedis
	waitRevoked // subscribed, but the first load of sb:revoked has not succeeded
)

// Option changes how New builds a Worker.
type Option func(*Worker)

// WithDelivery has the fan-out deliver each dispatch through wrap(next)
// instead of next, the worker's own delivery to its sockets (counted in
// its metrics): a Deliverer of wrap's can observe, hold or drop dispatches
// before they reach the sockets.
func WithDelivery(wrap func(next fanout.Deliverer) fanout.Deliverer) Option {
	return func(w *Worker) { w.wrapDelivery = wrap }
}

// WithAnnounced has the worker record, through rec, the sockets whose
// connect the lifecycle hooks were told, for the supervisor (package
// announced), and announce the disconnects of orphans, the sockets of
// the dead worker it replaces, once it serves. It takes effect with the
// hooks on; the worker closes rec when Run returns.
func WithAnnounced(rec *announced.Writer, orphans []announced.Orphan) Option {
	return func(w *Worker) {
		if w.life.on() {
			w.life.rec, w.life.orphans = rec, orphans
		}
	}
}

// New returns a Worker with the given 0-based index.
func New(cfg config.Config, index int, log *zap.Logger, opts ...Option) *Worker {
	m := metrics.NewWorker()
	var hubOpts []hub.Option
	if cfg.HistoryWindow > 0 {
		hubOpts = append(hubOpts, hub.WithPositions())
	}
	h := hub.New[*resume.Socket](hubOpts...)
	w := &Worker{
		cfg:     cfg,
		index:   index,
		log:     log,
		ids:     connid.New(),
		hub:     h,
		wsLog:   log.Named("ws"),
		metrics: m,
		limits: ws.Limits{
			QueueLen: cfg.SendQueueLen, QueueBytes: cfg.SendQueueBytes, Discarded: m.Discarded,
			PingRate: cfg.PingRate, PingBurst: cfg.PingBurst, PingsIgnored: m.PingIgnored,
			OverheadRate: overheadRate(cfg), OverheadBurst: overheadBurst(cfg),
		},
	}
	w.waiting.Store(waitNATS | waitRedis)
	w.life = newLifecycle(w)
	w.revoked = revoke.New(nil, cfg.RevokeTTL, log.Named("revoke")) // its client is set once connected
	w.revoked.OnMissed(w.closeRevoked)
	w.adm = admission.New(admission.Config{
		JWTSecret: cfg.JWTSecret, JWTPreviousSecret: cfg.JWTPreviousSecret, JWTAudience: cfg.JWTAudience, JWTLeeway: cfg.JWTLeeway,
		AllowedOrigins: cfg.AllowedOrigins, Dev: cfg.Dev,
		MaxConns: cfg.MaxConns, MaxConnsPerUser: cfg.MaxConnsPerUser,
		IPUpgradeRate: cfg.IPUpgradeRate, IPUpgradeBurst: cfg.IPUpgradeBurst,
		Starting: w.startingReason, Revoked: w.revoked.Revoked,
	}, h, m, log)
	for _, o := range opts {
		o(w)
	}
	return w
}

// Probe takes and releases, one after the other, the locks that every
// socket's upgrade, delivery and ping take (the hub's, the pinger's, the
// admission's), and so returns at once unless one of them is never
// released. The watchdog heartbeat waits for it before each beat
// (supervisor.Beat): a worker deadlocked on one of them stops beating and
// is killed and restarted, where a goroutine of its own, always runnable,
// would beat on. Safe from any goroutine, before and during Run.
func (w *Worker) Probe() {
	w.hub.Probe()
	w.pings.probe()
	w.adm.Probe()
}

// Run serves on ln until ctx is done, then shuts down gracefully within the
// configured shutdown timeout. It returns after every goroutine it started
// has ended.
func (w *Worker) Run(ctx context.Context, ln net.Listener) error {
	w.warnFaults()
	if err := w.connect(ctx); err != nil {
		return err
	}
	defer w.rdb.Close()
	defer w.nc.Close()
	w.revoked.SetClient(w.rdb)

	w.res = resume.New(w.rdb, resume.Config{
		Enabled:    w.cfg.HistoryWindow > 0,
		MaxReplay:  w.cfg.MaxReplay,
		HeldFrames: heldFrames,
		HeldBytes:  heldBytes,
		Readers:    resumeReaders,
		// A replay must fit in the socket's send queue.
		QueueFrames: w.cfg.SendQueueLen,
		QueueBytes:  w.cfg.SendQueueBytes,
	}, w.metrics, w.log.Named("resume"))
	var deliver fanout.Deliverer = countedHub{w.hub, w.metrics}
	if w.wrapDelivery != nil {
		deliver = w.wrapDelivery(deliver)
	}
	// After every (re)subscription, what was published while nothing
	// listened is filled from the streams.
	subOpts := []fanout.Option{
		// And the revoked tokens are loaded again: what was revoked
		// while nothing listened is in sb:revoked.
		fanout.OnSubscribed(func() { w.res.RequestSweep(); w.revoked.RequestLoad() }), fanout.OnRestored(w.metrics.SubscriptionRestored),
		fanout.QueueBytes(w.cfg.FanoutQueueBytes),
		fanout.OnDisconnect(w.disconnect),
	}
	if w.cfg.HistoryWindow > 0 {
		// A publisher that records nothing is counted and logged.
		subOpts = append(subOpts, fanout.Recorded())
	}
	if w.cfg.Fanout() == proto.FanoutPerUser {
		// A user's channel is subscribed while the worker holds a socket
		// of the user (sockets.go), and for the linger after.
		subOpts = append(subOpts, fanout.PerUser(w.cfg.FanoutLinger))
	}
	w.sub = fanout.New(w.rdb, deliver, w.cfg.FanoutQueue, w.log.Named("fanout"), subOpts...)
	w.fwd = forward.New(natsRequester{w.nc, &w.link}, forward.Config{
		Timeout:     w.cfg.HandlerTimeout,
		MaxInFlight: w.cfg.MaxInFlight,
		Rate: ratelimit.Policy{
			Rate: w.cfg.RateLimit, Burst: w.cfg.RateBurst, CloseAfter: w.cfg.RateCloseAfter, Window: 10 * time.Second,
			OnRefuse: w.metrics.RateLimited,
		},
		UserRate:            w.cfg.UserRateLimit,
		UserBurst:           w.cfg.UserRateBurst,
		UserWait:            w.cfg.UserRateWait,
		WorkerInFlight:      w.cfg.WorkerInFlight,
		WorkerInFlightBytes: w.cfg.WorkerInFlightBytes,
		// While the fan-out lags, new envelopes are refused: each would add
		// dispatches to a backlog that, past the queue and Redis's output
		// buffer, ends with Redis cutting the subscription and losing them.
		Overloaded: w.sub.Lagging,
		Recorder:   w.metrics,
	}, w.log.Named("forward"))
	natsLog := w.log.Named("nats")
	// Replaces connect's handler, which recorded the state only: the
	// forwarder exists now.
	w.nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		w.link.Down()
		w.fwd.Disconnected()
		if err != nil { // nil when the worker closes the connection itself
			natsLog.Error("nats disconnected", zap.Error(err))
		}
	})
	w.metrics.Watch(w.hub.Len, w.link.Connected, w.sub.Live)
	w.metrics.WatchFanout(w.sub)
	if w.cfg.PresenceTTL > 0 {
		w.leases = presence.New(w.rdb, w.cfg.PresenceTTL, w.metrics, w.log.Named("presence"))
		w.metrics.WatchPresence(w.leases.Len)
	}

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if w.leases != nil {
		// Stopped with the others, once shutdown has closed the sockets:
		// it removes the leases of any still open.
		wg.Add(1)
		go func() { defer wg.Done(); w.leases.Run(bg) }()
	}
	if w.life.on() {
		// Stopped once shutdown has flushed the sockets' disconnects.
		wg.Add(1)
		go func() { defer wg.Done(); w.life.run(bg) }()
		if w.life.rec != nil {
			defer w.life.rec.Close()
		}
		if n := len(w.life.orphans); n > 0 {
			w.log.Info("announcing the disconnects of the sockets of the worker this one replaces, once serving", zap.Int("orphans", n))
		}
	}
	wg.Add(5)
	go func() { defer wg.Done(); w.revoked.Run(bg) }()
	go func() { defer wg.Done(); w.res.Run(bg, w.hub.Snapshot) }()
	go func() { defer wg.Done(); _ = w.sub.Run(bg) }()
	go func() { defer wg.Done(); w.pings.run(bg, w.cfg.PingInterval) }()
	// Sockets are accepted only once NATS is connected and the Redis
	// subscription is live (a socket accepted earlier would miss
	// dispatches); until then /socket answers 503 at once, so a client
	// retries and, through SO_REUSEPORT, likely reaches another worker.
	go func() {
		defer wg.Done()
		if w.waitDeps(bg) {
			w.adm.Open()
			w.life.serve()
		}
	}()
	srv := httpserver.New(w.routes(), w.log.Named("http"))
	srv.ConnState = admission.NewPendingCap(w.cfg.IPPending, w.metrics.PendingClosed).ConnState
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	w.log.Info("worker serving", zap.String("addr", ln.Addr().String()))

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		w.log.Error("serve failed", zap.Error(err))
	}
	w.shutdown(srv)
	stopBG()
	wg.Wait()
	return err
}

// natsLogEvery is how often, at most, failed attempts to reach NATS are
// logged after the first.
const natsLogEvery = 30 * time.Second

// connect waits for NATS and Redis, retrying and logging failures.
func (w *Worker) connect(ctx context.Context) error {
	log := w.log.Named("nats")
	var err error
	// Failed attempts are logged with their error: until the first
	// connection, the first at once and then every 30 s (NATS is retried
	// every 250 ms), and the server's refusals of the credentials likewise,
	// which nothing else would explain. Such a refusal is
	// retried too: by default nats.go closes the connection for good after
	// two, and the worker would never serve again once the credentials are
	// put right (a password rotated in the wrong order).
	var connected atomic.Bool
	waiting := logevery.New(log, "nats not reachable yet, retrying in the background", natsLogEvery)
	refused := logevery.New(log, "nats refuses the credentials, retrying", natsLogEvery)
	// A stalled link (no RST, nothing passes) is noticed within 2 to 3 s
	// and the connection made anew: natsconn.StallOptions says how.
	natsOpts := append(natsconn.Options(),
		nats.Name("switchboard-gateway"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(-1), // fail requests at once while disconnected
		nats.IgnoreAuthErrorAbort(),
		// Each handler keeps w.link, in the order nats.go queued them
		// (natsconn.State.Up says why it looks at nc).
		// With several servers in NATS_URL, which one: as handlers-svc logs it.
		nats.ConnectHandler(func(nc *nats.Conn) {
			w.link.Up(nc)
			connected.Store(true)
			log.Info("nats connected", zap.String("server", redact.URL(nc.ConnectedUrl())))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			w.link.Up(nc)
			connected.Store(true)
			refused.Reset()
			log.Info("nats reconnected", zap.String("server", redact.URL(nc.ConnectedUrl())))
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if !connected.Load() {
				waiting.Failed(err, zap.String("url", redact.URL(w.cfg.NATSURL)))
			}
		}),
		// Without a handler of its own nats.go prints async errors as plain
		// text on stderr, among the JSON lines; a refusal of the
		// credentials comes here on every attempt.
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			if sub == nil && (errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked)) {
				refused.Failed(err)
				return
			}
			fields := []zap.Field{zap.Error(err)}
			if subject, ok := w.link.Refused(err); ok {
				// Not ready until a connect subscribes anew (/readyz
				// names the subject): one is made in a few seconds, in
				// case a reload of NATS mended the permission.
				w.link.RetryRefused(nc)
				fields = append(fields, zap.String("subject", subject))
			} else if sub != nil {
				fields = append(fields, zap.String("subject", sub.Subject))
			}
			log.Error("nats async error", fields...)
		}),
		// Until Run replaces it, once the forwarder exists.
		nats.DisconnectErrHandler(func(*nats.Conn, error) { w.link.Down() }),
		nats.ClosedHandler(func(*nats.Conn) { w.link.Down() }),
	)
	// User and password, a token, or TLS come in NATS_URL (nats://u:p@h,
	// tls://h); a credentials file (JWT and NKey) in NATS_CREDS.
	if w.cfg.NATSCreds != "" {
		natsOpts = append(natsOpts, nats.UserCredentials(w.cfg.NATSCreds))
	}
	w.nc, err = nats.Connect(w.cfg.NATSURL, natsOpts...)
	if err != nil {
		return err
	}
	// The reply inbox now, not at the first request: NATS's refusal of it
	// (a subscribe permission that leaves out _INBOX.>) then has /readyz
	// 503 before a request is lost to it. Made while NATS is still
	// away, it is sent once NATS is reached.
	if err := natsconn.SubscribeReplies(w.nc); err != nil {
		log.Warn("the reply inbox will be subscribed at the first request", zap.Error(err))
	}
	// The recovery streams are tied to the run of the Redis server that
	// holds them: every new connection records it first. REDIS_URL may
	// name a Redis Cluster.
	w.rdb, err = redisconn.New(w.cfg.RedisURL, redisconn.Tuning{OnConnect: streams.OnConnect})
	if err != nil {
		w.nc.Close()
		return err
	}
	// Redis is waited for by the subscriber, which retries by itself; NATS
	// by RetryOnFailedConnect, logged by the handlers above.
	return nil
}

// waitDeps waits until NATS is connected and the Redis subscription is
// live, logging what it waits for every few seconds; it reports false if ctx
// ended first.
func (w *Worker) waitDeps(ctx context.Context) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	start, logged := time.Now(), time.Now()
	for {
		// The revoked tokens are loaded once before any socket is let in.
		natsUp, subscribed, loaded := w.link.Connected(), w.sub.Live(), w.revoked.Loaded()
		redisUp := subscribed && loaded
		var down uint32
		if !natsUp {
			down |= waitNATS
		}
		switch {
		case !subscribed:
			down |= waitRedis
		case !loaded:
			down |= waitRevoked
		}
		w.waiting.Store(down)
		if natsUp && redisUp {
			if time.Since(start) > time.Second {
				w.log.Info("dependencies up, serving", zap.Duration("waited", time.Since(start)))
			}
			return true
		}
		if time.Since(logged) >= 5*time.Second {
			logged = time.Now()
			w.log.Warn("waiting for dependencies before serving",
				zap.Bool("nats_connected", natsUp), zap.Bool("redis_subscribed", subscribed),
				zap.Bool("revoked_loaded", loaded),
				zap.Duration("waited", time.Since(start)))
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// Bounds of what a socket holds while it reads a stream (resume.Config),
// and how many sockets are read for at once to fill gaps.
const (
	heldFrames    = 1000
	heldBytes     = 1 << 20
	resumeReaders = 16
)

// natsRequester is nc as the forwarder uses it: whether it is connected
// comes from the worker's link state, not from nc.IsConnected, which would
// hold each envelope for as long as a write blocked on a stalled link
// holds nc's lock.
type natsRequester struct {
	*nats.Conn
	link *natsconn.State
}

func (r natsRequester) IsConnected() bool { return r.link.Connected() }

// countedHub delivers dispatches to the hub and counts them.
type countedHub struct {
	hub     *hub.Hub[*resume.Socket]
	metrics *metrics.Worker
}

func (h countedHub) Deliver(d *proto.Dispatch) int {
	sent, dropped := h.hub.DeliverCounted(d)
	h.metrics.Delivered(sent, dropped)
	return sent
}

// maxFrameOverhead is the most bytes of a client frame that are not
// payload: a 2-byte header, an 8-byte length and the 4-byte mask.
const maxFrameOverhead = 14

// overheadRate is each socket's allowance of overhead (ws.Limits): the
// default, or more when the frame and ping allowances let a client send
// more headers than that (overheadPerFrame for each message and ping a
// second they allow), and none when
// GATEWAY_RATE_LIMIT or GATEWAY_PING_RATE is 0 (unlimited): the operator
// then bounds no frames, so tiny ones are not bounded either.
func overheadRate(cfg config.Config) float64 {
	if cfg.RateLimit == 0 || cfg.PingRate == 0 {
		return 0
	}
	return max(ws.DefaultOverheadRate, overheadPerFrame*(cfg.RateLimit+cfg.PingRate))
}

// overheadBurst is overheadRate's burst, likewise from the burst
// allowances.
func overheadBurst(cfg config.Config) float64 {
	return max(ws.DefaultOverheadBurst, overheadPerFrame*(cfg.RateBurst+cfg.PingBurst))
}

// overheadPerFrame is the overhead allowed for each frame or ping the
// allowances admit: many times a frame's own, for messages sent in
// fragments.
const overheadPerFrame = 16 * maxFrameOverhead
