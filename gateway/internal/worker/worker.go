// Package worker wires one gateway worker process: its listener, the
// WebSocket endpoint, the hub of local sockets, the forwarder to NATS and the
// Redis fan-out. Run serves until its context ends, then shuts down in order:
// stop accepting, finish handler requests in flight, close every socket with
// 1001, close NATS and Redis.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/connid"
	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/gateway/internal/hub"
	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/gateway/internal/ratelimit"
	"github.com/switchboard/switchboard/gateway/internal/web"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/readiness"
	"github.com/switchboard/switchboard/internal/redact"
	"github.com/switchboard/switchboard/proto"
)

// Worker is one worker process's server.
type Worker struct {
	cfg      config.Config
	index    int
	log      *zap.Logger
	verifier *auth.Verifier
	ids      *connid.Generator
	hub      *hub.Hub[*ws.Conn]
	upgrader websocket.Upgrader
	limits   ws.Limits
	wsLog    *zap.Logger // shared by every socket
	metrics  *metrics.Worker

	nc  *nats.Conn
	rdb *redis.Client
	fwd *forward.Forwarder
	sub *fanout.Subscriber

	// beforeDeliver, when set (by tests only), runs before each dispatch
	// is delivered, so a test can hold the fan-out behind the channel.
	beforeDeliver func()

	conns    sync.WaitGroup // sockets whose read loop runs
	started  atomic.Bool    // NATS and the Redis subscription have been up
	mu       sync.Mutex
	draining bool
	counts   socketCounts // sockets per worker and per user, for the caps
}

// New returns a Worker with the given 0-based index.
func New(cfg config.Config, index int, log *zap.Logger) *Worker {
	m := metrics.NewWorker()
	w := &Worker{
		cfg:      cfg,
		index:    index,
		log:      log,
		verifier: auth.NewVerifier(cfg.JWTSecret, cfg.JWTAudience),
		ids:      connid.New(),
		hub:      hub.New[*ws.Conn](),
		wsLog:    log.Named("ws"),
		metrics:  m,
		limits: ws.Limits{
			QueueLen: cfg.SendQueueLen, QueueBytes: cfg.SendQueueBytes, MaxInFlight: cfg.MaxInFlight,
			Rate: ratelimit.Policy{
				Rate: cfg.RateLimit, Burst: cfg.RateBurst, CloseAfter: cfg.RateCloseAfter, Window: 10 * time.Second,
				OnRefuse: m.RateLimited,
			},
			// Frames the socket answers itself count as envelopes too.
			Refused: func(event string, code proto.Code) { m.Envelope(event, code, 0) },
		},
	}
	w.upgrader = websocket.Upgrader{
		// ReadBufferSize 0: ws.Upgrade gives every socket a small read
		// buffer of its own (ws.ReadBufferSize). ws.Conn writes frames
		// itself from a shared pool; the pool here only serves gorilla's
		// handshake.
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     w.checkOrigin,
		Error:           upgradeError,
	}
	return w
}

// AdminHandler serves what the supervisor reads over the worker's private
// socket: GET /metrics (the worker's registry) and GET /readyz.
func (w *Worker) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", w.metrics.Handler())
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
		// Served before Run has connected: NATS and Redis are only looked
		// at once they exist.
		if !w.started.Load() {
			readiness.Write(rw, readiness.New("starting: waiting for NATS and Redis").OfWorker(w.index))
			return
		}
		w.serveReady(rw, r)
	})
	return mux
}

// Run serves on ln until ctx is done, then shuts down gracefully within the
// configured shutdown timeout. It returns after every goroutine it started
// has ended.
func (w *Worker) Run(ctx context.Context, ln net.Listener) error {
	if err := w.connect(ctx); err != nil {
		return err
	}
	defer w.rdb.Close()
	defer w.nc.Close()

	w.fwd = forward.New(w.nc, w.cfg.HandlerTimeout, w.log.Named("forward"))
	w.fwd.SetRecorder(w.metrics)
	natsLog := w.log.Named("nats")
	w.nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		w.fwd.Disconnected()
		if err != nil { // nil when the worker closes the connection itself
			natsLog.Error("nats disconnected", zap.Error(err))
		}
	})
	w.sub = fanout.New(w.rdb, countedHub{w.hub, w.metrics, w.beforeDeliver}, w.cfg.FanoutQueue, w.log.Named("fanout"))
	// While the fan-out lags, new envelopes are refused: each would add
	// dispatches to a backlog that, past the queue and Redis's output
	// buffer, ends with Redis cutting the subscription and losing them.
	w.fwd.SetOverloaded(w.sub.Lagging)
	w.fwd.SetMaxInFlight(w.cfg.WorkerInFlight)
	w.metrics.Watch(w.hub.Len, w.nc.IsConnected, w.sub.Live)
	w.metrics.WatchFanout(w.sub.Backlog, w.sub.Lagging, w.sub.Resubscriptions)

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = w.sub.Run(bg) }()
	go func() { defer wg.Done(); w.pingLoop(bg) }()
	// Sockets are accepted only once NATS is connected and the Redis
	// subscription is live (a socket accepted earlier would miss
	// dispatches); until then /socket answers 503 at once, so a client
	// retries and, through SO_REUSEPORT, likely reaches another worker.
	go func() {
		defer wg.Done()
		if w.waitDeps(bg) {
			w.started.Store(true)
		}
	}()
	srv := &http.Server{
		Handler:           w.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          zap.NewStdLog(w.log.Named("http")),
	}
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

// connect waits for NATS and Redis, retrying and logging each failure.
func (w *Worker) connect(ctx context.Context) error {
	log := w.log.Named("nats")
	var err error
	w.nc, err = nats.Connect(w.cfg.NATSURL,
		nats.Name("switchboard-gateway"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(-1), // fail requests at once while disconnected
		nats.ConnectHandler(func(*nats.Conn) { log.Info("nats connected") }),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
	)
	if err != nil {
		return err
	}
	opts, err := redis.ParseURL(w.cfg.RedisURL)
	if err != nil {
		w.nc.Close()
		return err
	}
	w.rdb = redis.NewClient(opts)
	// Redis is waited for by the subscriber, which retries by itself; NATS
	// by RetryOnFailedConnect. Log here once if either is not up yet.
	if !w.nc.IsConnected() {
		log.Warn("nats not reachable yet, retrying in the background", zap.String("url", redact.URL(w.cfg.NATSURL)))
	}
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
		natsUp, redisUp := w.nc.IsConnected(), w.sub.Live()
		if natsUp && redisUp {
			if time.Since(start) > time.Second {
				w.log.Info("dependencies up, serving", zap.Duration("waited", time.Since(start)))
			}
			return true
		}
		if time.Since(logged) >= 5*time.Second {
			logged = time.Now()
			w.log.Warn("waiting for dependencies before serving",
				zap.Bool("nats_connected", natsUp), zap.Bool("redis_subscribed", redisUp),
				zap.Duration("waited", time.Since(start)))
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

func (w *Worker) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /socket", web.AllowProbe(http.HandlerFunc(w.serveSocket)))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		writeJSON(rw, http.StatusOK, map[string]any{"status": "ok", "worker": w.index})
	})
	mux.HandleFunc("GET /readyz", w.serveReady)
	if w.cfg.Dev {
		mux.HandleFunc("GET /dev/token", w.serveDevToken)
	}
	web.Register(mux, w.cfg.Dev)
	return mux
}

// devTokenTTL is the lifetime of tokens minted by /dev/token.
const devTokenTTL = 24 * time.Hour

// serveDevToken mints a token for ?user= (dev mode only, PROTOCOL 1).
func (w *Worker) serveDevToken(rw http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" {
		writeError(rw, http.StatusBadRequest, proto.CodeBadRequest, "user is required: /dev/token?user=<id>")
		return
	}
	tok, err := auth.Mint(w.cfg.JWTSecret, user, devTokenTTL)
	if err != nil {
		writeError(rw, http.StatusInternalServerError, proto.CodeHandlerError, "cannot mint a token")
		return
	}
	rw.Header().Set("Cache-Control", "no-store")
	writeJSON(rw, http.StatusOK, map[string]any{"token": tok, "user": user, "expires_in": int(devTokenTTL.Seconds())})
}

func (w *Worker) serveReady(rw http.ResponseWriter, _ *http.Request) {
	var reasons []string
	if !w.started.Load() {
		reasons = append(reasons, "starting: waiting for NATS and Redis")
	}
	if !w.nc.IsConnected() {
		reasons = append(reasons, "nats not connected")
	}
	if !w.sub.Live() {
		reasons = append(reasons, "redis subscription not live")
	}
	readiness.Write(rw, readiness.New(reasons...).OfWorker(w.index))
}

func (w *Worker) serveSocket(rw http.ResponseWriter, r *http.Request) {
	// A plain GET (the JavaScript client's probe after a refused upgrade)
	// is answered the same way but not counted: it is not an upgrade, and
	// counting it would count a refusal twice, or a good token's probe as
	// a bad upgrade.
	upgrade := web.IsUpgrade(r)
	refused := func(reason string) {
		if upgrade {
			w.metrics.UpgradeRefused(reason)
		}
	}
	if !w.checkOrigin(r) {
		refused(metrics.RefusedOrigin)
		writeError(rw, http.StatusForbidden, proto.CodeForbiddenOrigin, "origin not allowed")
		return
	}
	user, err := w.verifier.Verify(auth.FromRequest(r))
	if err != nil {
		var ae *auth.Error
		msg := "unauthorized"
		if errors.As(err, &ae) {
			msg = ae.Message
		}
		w.log.Debug("upgrade refused", zap.String("reason", msg), zap.String("remote", r.RemoteAddr))
		refused(metrics.RefusedUnauthorized)
		writeError(rw, http.StatusUnauthorized, proto.CodeUnauthorized, msg)
		return
	}
	if !w.started.Load() {
		refused(metrics.RefusedUnavailable)
		writeError(rw, http.StatusServiceUnavailable, proto.CodeUnavailable, "gateway is starting: waiting for NATS and Redis, retry shortly")
		return
	}
	w.mu.Lock()
	draining := w.draining
	var capped *refusal
	if !draining {
		if capped = w.reserveSocket(user); capped == nil {
			w.conns.Add(1)
		}
	}
	w.mu.Unlock()
	if draining {
		refused(metrics.RefusedUnavailable)
		writeError(rw, http.StatusServiceUnavailable, proto.CodeUnavailable, "gateway is shutting down")
		return
	}
	if capped != nil {
		w.log.Debug("upgrade refused: socket limit", zap.String("user", user), zap.String("code", string(capped.err.Code)),
			zap.Int("status", capped.status))
		refused(capped.metric)
		writeError(rw, capped.status, capped.err.Code, capped.err.Message)
		return
	}
	up, err := ws.Upgrade(&w.upgrader, rw, r)
	if err != nil {
		w.releaseSocket(user)
		w.conns.Done()
		refused(metrics.RefusedUpgrade)
		// Answered already: by upgradeError before the hijack, or not at
		// all after it (gorilla closed the connection), so another answer
		// here would only log a superfluous WriteHeader or a write on a
		// hijacked connection.
		return
	}
	c := ws.NewConn(up, w.ids.Next(), user, &w.limits, w.wsLog)
	// "connected" is queued first and held; the socket is registered for
	// delivery; only then does ReadLoop let the writer run. So "connected"
	// is the first frame, and nothing dispatched after the client has seen
	// it is missed.
	c.Send(proto.AppendConnected(nil, user, c.ID(), w.index))
	w.hub.Add(c)
	w.metrics.ConnOpened()
	w.mu.Lock()
	if w.draining { // shutdown began during the upgrade and may not have seen c
		c.Close(websocket.CloseGoingAway, "gateway shutting down")
	}
	w.mu.Unlock()
	w.log.Info("socket opened", zap.String("user", user), zap.String("conn", c.ID()))
	// Reading goes on in its own goroutine so this handler returns and
	// net/http releases its per-request state.
	go w.readSocket(c)
}

func (w *Worker) readSocket(c *ws.Conn) {
	defer w.conns.Done()
	c.ReadLoop(w.frameHandler(), w.cfg.MaxFrame)
	w.socketClosed(c)
}

// socketClosed releases and logs an ended socket. It is not part of
// readSocket, whose stack frame every idle socket keeps, because its log
// fields would make that frame several times larger.
//
//go:noinline
func (w *Worker) socketClosed(c *ws.Conn) {
	w.hub.Remove(c)
	w.releaseSocket(c.User())
	code, reason := c.CloseCode()
	why := w.metrics.ConnClosed(code, reason)
	w.log.Info("socket closed", zap.String("user", c.User()), zap.String("conn", c.ID()),
		zap.Int("code", code), zap.String("reason", reason), zap.String("close", why),
		zap.Duration("duration", time.Since(c.Opened())))
}

// countedHub delivers dispatches to the hub and counts them.
type countedHub struct {
	hub     *hub.Hub[*ws.Conn]
	metrics *metrics.Worker
	before  func() // Worker.beforeDeliver
}

func (h countedHub) Deliver(d *proto.Dispatch) int {
	if h.before != nil {
		h.before()
	}
	sent, dropped := h.hub.DeliverCounted(d)
	h.metrics.Delivered(sent, dropped)
	return sent
}

// checkOrigin applies GATEWAY_ALLOWED_ORIGINS (PROTOCOL section 1).
func (w *Worker) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(w.cfg.AllowedOrigins) == 0 {
		if w.cfg.Dev {
			return true
		}
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	for _, o := range w.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// pingSlots is how many parts the ping period is cut into: each socket is
// pinged in its own slot, by a hash of its id, so each is pinged exactly
// every PingPeriod while a tick wakes only 1/pingSlots of them. Pinging
// every socket at once started a writer goroutine per socket at the same
// moment: at 10,000 idle sockets that burst alone added ~4 KB of resident
// memory per socket.
const pingSlots = 100

func (w *Worker) pingLoop(ctx context.Context) {
	t := time.NewTicker(ws.PingPeriod / pingSlots)
	defer t.Stop()
	slot := uint32(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			slot = (slot + 1) % pingSlots
			w.hub.Each(func(c *ws.Conn) {
				if pingSlot(c.ID()) == slot {
					c.Ping()
				}
			})
		}
	}
}

// pingSlot returns the ping slot of a connection id (FNV-1a).
func pingSlot(id string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return h % pingSlots
}

// shutdown stops accepting, lets handler requests in flight finish, then
// closes every socket with 1001 and waits for them, all within the deadline.
func (w *Worker) shutdown(srv *http.Server) {
	deadline := time.Now().Add(w.cfg.ShutdownTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	w.log.Info("worker shutting down", zap.Int("sockets", w.hub.Len()))
	w.mu.Lock()
	w.draining = true
	w.mu.Unlock()
	_ = srv.Shutdown(ctx) // stops accepting; sockets are hijacked, so not waited for
	if err := w.fwd.Shutdown(ctx); err != nil {
		w.log.Warn("handler requests still in flight at the deadline", zap.Error(err))
	}
	w.hub.Each(func(c *ws.Conn) { c.Close(websocket.CloseGoingAway, "gateway shutting down") })
	done := make(chan struct{})
	go func() { w.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		w.log.Warn("sockets still open at the shutdown deadline", zap.Int("sockets", w.hub.Len()))
	}
	w.log.Info("worker stopped")
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}

func writeError(rw http.ResponseWriter, status int, code proto.Code, msg string) {
	writeJSON(rw, status, map[string]any{"error": proto.Error{Code: code, Message: msg}})
}

// upgradeError is the Upgrader's answer to a request it cannot upgrade: the
// contract's JSON error, like the refusals checked before it. The
// JavaScript client's probe, a plain GET with a good token, ends here with
// 400 bad_request.
func upgradeError(rw http.ResponseWriter, _ *http.Request, status int, reason error) {
	code := proto.CodeBadRequest
	switch {
	case status == http.StatusForbidden:
		code = proto.CodeForbiddenOrigin
	case status >= http.StatusInternalServerError:
		code = proto.CodeUnavailable
	}
	rw.Header().Set("Sec-WebSocket-Version", "13") // as gorilla's own answer, for a client of another version
	writeError(rw, status, code, reason.Error())
}
