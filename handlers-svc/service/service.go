// Package service runs handlers-svc: everything its command does around
// the handlers, for a backend team's own build with its own families.
// A team's main, in its own module, is one line:
//
//	func main() { service.Main(append(handlers.Families(), myapp.RegisterReactions)...) }
//
// The service takes requests from every gateway over a NATS queue
// subscription, runs the handlers its families register and dispatches
// their events through Redis (docs/protocol.md sections 3 to 5), with
// idempotent retries, the handler bound and HANDLERS_TIMEOUT.
//
// It reads its configuration from the environment and flags, as listed in
// docs/operations.md (the families read their own settings), logs JSON lines to stderr, serves GET /healthz,
// GET /readyz and GET /metrics (Prometheus, the families' collectors
// included) on HANDLERS_ADDR, and, with HANDLERS_API_KEY set, the dispatch
// API POST /v1/dispatch and POST /v1/disconnect (docs/protocol.md section
// 7) there too, and stops cleanly on SIGTERM or SIGINT: it drains the NATS
// subscription, lets running handlers finish, closes its connections and
// exits 0. "<command> health [-ready]" checks a running instance's
// /healthz (or /readyz), for container health checks.
package service

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/middleware"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/internal/config"
	"github.com/switchboard/switchboard/handlers-svc/internal/httpapi"
	"github.com/switchboard/switchboard/handlers-svc/internal/idem"
	"github.com/switchboard/switchboard/handlers-svc/internal/metrics"
	"github.com/switchboard/switchboard/handlers-svc/internal/modecheck"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/handlers-svc/presence"
	"github.com/switchboard/switchboard/internal/healthcheck"
	"github.com/switchboard/switchboard/internal/httpserver"
	"github.com/switchboard/switchboard/internal/logging"
	"github.com/switchboard/switchboard/internal/natsconn"
	"github.com/switchboard/switchboard/internal/redact"
	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/internal/redislog"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// httpShutdownTimeout bounds the health server's shutdown: the wait for
// the requests it has taken to finish, a dispatch API call the longest
// (httpapi.DefaultTimeout, then up to 2 s to record its outcome under its
// idempotency key), with a margin to write the answer.
const httpShutdownTimeout = httpapi.DefaultTimeout + 3*time.Second

// Bounds of one request on HANDLERS_ADDR, beyond package httpserver's
// (which bounds only the headers): without them a client that sends a
// request's headers and then its body slowly, or never, holds its
// connection and the goroutine serving it for good, even on /healthz and
// without the dispatch API's key (net/http reads what is left of a body
// before it writes the response).
const (
	// httpReadTimeout bounds reading a request, its body included, as on
	// every HTTP port: a dispatch API body is at most 1 MiB, seconds on
	// the slowest network a backend uses.
	httpReadTimeout = httpserver.ReadTimeout
	// httpWriteTimeout bounds a request from the end of its headers to
	// the end of its response: reading the body, a dispatch
	// (httpapi.DefaultTimeout) and writing the answer to a client that
	// does not read it.
	httpWriteTimeout = httpReadTimeout + httpapi.DefaultTimeout + 15*time.Second
)

// Main runs the service with families, the handler families it serves
// (handlers.Families() for the built-in ones), until SIGTERM or SIGINT,
// and exits the process: 0 after a clean stop, 2 when it refuses its
// configuration (a JSON line on stderr says why), 1 when it fails. Its
// first argument "health" checks a running instance instead, as
// "handlers-svc health [-ready]" does. Every instance in the queue group must serve the same
// families: a request goes to any one of them.
func Main(families ...handlers.Family) {
	if len(os.Args) > 1 && os.Args[1] == "health" {
		err := healthcheck.Run(context.Background(), "handlers-svc", os.Args[2:], os.Stdout, healthAddr)
		switch {
		case errors.Is(err, flag.ErrHelp): // -h: a person asked
			fmt.Fprintln(os.Stderr, err)
		case err != nil:
			fmt.Fprintf(os.Stderr, "handlers-svc health: %v\n", err)
			os.Exit(1)
		}
		return
	}
	// The flag package's own messages would be plain text among JSON
	// lines: they are written only for -h, which a person asked for.
	var usage bytes.Buffer
	cfg, err := config.Load(os.Args[1:], os.Getenv, &usage)
	if errors.Is(err, flag.ErrHelp) {
		_, _ = os.Stderr.Write(usage.Bytes())
		os.Exit(0)
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil {
		_, err = handlers.SenderConfig(os.Getenv)
	}
	var log *zap.Logger
	if err == nil {
		// Every failure is logged: they are per request, and rare.
		log, err = logging.New(cfg.LogLevel, logging.Unsampled())
	}
	if err != nil {
		// A refusal to start is a JSON line like every other.
		logging.Refuse("handlers-svc", fmt.Errorf("configuration: %w", err))
		os.Exit(2)
	}
	log = log.Named("handlers-svc")

	// go-redis logs through a process-wide logger; send it to zap once, here.
	redis.SetLogger(redislog.New(log.Named("go-redis")))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	// After the first signal, a second one stops the process at once.
	context.AfterFunc(ctx, stop)
	// A REDIS_URL Redis refuses (a database it does not have) is a
	// configuration error no retry mends: refused like one. A Redis that
	// cannot be reached is waited for, in realMain.
	if err := redisconn.Check(ctx, cfg.RedisURL, redisPingLimit); err != nil {
		stop()
		logging.Refuse("handlers-svc", fmt.Errorf("configuration: %w", err))
		os.Exit(2)
	}
	err = realMain(ctx, cfg, log, families)
	stop()
	if err != nil {
		log.Error("handlers-svc failed", zap.Error(err))
		_ = log.Sync()
		os.Exit(1)
	}
	log.Info("handlers-svc stopped")
	_ = log.Sync()
}

// realMain runs handlers-svc, serving families, until ctx is done, then
// shuts down in order: mark not ready, drain the NATS subscription and wait
// for running handlers, close NATS, run the families' stops, close Redis,
// stop the health server. It returns nil after a
// clean shutdown, also when ctx ends while still waiting for NATS or Redis.
func realMain(ctx context.Context, cfg config.Config, log *zap.Logger, families []handlers.Family) error {
	log.Info("starting",
		zap.String("nats_url", redact.URL(cfg.NATSURL)),
		zap.String("redis_url", redact.URL(cfg.RedisURL)),
		zap.String("addr", cfg.Addr),
		zap.Duration("timeout", cfg.Timeout),
		zap.Duration("history_window", cfg.HistoryWindow),
		zap.String("fanout_mode", string(cfg.Fanout())),
		zap.Bool("dispatch_api", cfg.APIKey != ""),
		// Whether a previous key is accepted, never the key.
		zap.Bool("dispatch_api_previous_key", cfg.APIKeyPrevious != ""),
		zap.Duration("shutdown_timeout", cfg.ShutdownTimeout))

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("HANDLERS_ADDR %s: %w", cfg.Addr, err)
	}
	var link natsconn.State // nc's state, for /readyz and the metrics
	nc, err := connectNATS(cfg.NATSURL, cfg.NATSCreds, &link, log.Named("nats"))
	if err != nil {
		_ = ln.Close()
		return err
	}
	// PUBLISH is not safe to repeat: a retry after a reply lost in transit
	// would deliver the events twice. go-redis checks pooled connections
	// before reuse, so a Redis restart does not need retries either. A
	// hung Redis must fail a dispatch by its handler's deadline, not only
	// by go-redis's own timeouts (5 s to read and to dial), or the handler
	// answers after the gateway has given up on it. The recovery streams
	// are tied to the run of the server that holds them: every new
	// connection records it first. REDIS_URL may name a Redis Cluster.
	rdb, err := redisconn.New(cfg.RedisURL, redisconn.Tuning{
		NoRetries: true, ContextTimeoutEnabled: true, OnConnect: streams.OnConnect})
	if err != nil {
		nc.Close()
		_ = ln.Close()
		return fmt.Errorf("redis url: %w", err)
	}

	mux := event.NewMux()
	evLog := log.Named("event")
	d, err := dispatch.NewChecked(rdb, dispatchOptions(cfg))
	if err != nil {
		nc.Close()
		_ = rdb.Close()
		_ = ln.Close()
		return err
	}
	d.LogOutages(log.Named("redis"))
	// Each family takes what it needs; what it opens it closes by onStop,
	// run once no handler runs any more.
	var stops []func()
	runStops := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		stops = nil
	}
	familyMetrics := prometheus.NewRegistry()
	online := presence.New(rdb) // for handlers and GET /v1/presence
	err = handlers.RegisterFamilies(ctx, mux, handlers.Deps{
		Dispatcher: d, Rooms: d, Presence: online, Redis: rdb, Log: log.Named("handlers"),
		Metrics: familyMetrics, Getenv: os.Getenv,
		OnStop: func(fn func()) { stops = append(stops, fn) },
	}, families...)
	if err != nil {
		runStops()
		nc.Close()
		_ = rdb.Close()
		_ = ln.Close()
		return fmt.Errorf("register handlers: %w", err)
	}
	// Registered first, so the metrics know every event name; outermost,
	// so a recovered panic is counted as the handler_error it becomes.
	reg := metrics.New(mux.Events())
	reg.Include(familyMetrics)
	reg.CountUnheard(d.Unheard)
	// Publishing per user, it watches for gateway workers left in shared
	// mode, whose sockets would get no user dispatch (package modecheck).
	modes := modecheck.New(rdb, log.Named("fanout"))
	reg.CountSharedWorkers(modes.Shared)
	mux.Use(reg.Middleware, middleware.Recover(evLog), middleware.Log(evLog))
	srv := natserve.New(nc, mux, log, natserve.Config{
		Timeout:         cfg.Timeout,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Expired:         reg.Expired,
		Idem:            idem.New(rdb, natserve.IdemTTL),
		Replayed:        reg.Replayed,
		// The families' hooks: without any, the lifecycle subjects are
		// not subscribed.
		OnConnect:    mux.ConnectHooks(),
		OnDisconnect: mux.DisconnectHooks(),
		Hooked:       reg.Hooked,
	})

	health := newHealth(&link, srv.Ready())
	reg.Watch(link.Connected, health.redisOK.Load, func() bool { return len(health.notReady()) == 0 })
	health.mux.Handle("GET /metrics", reg.Handler())
	var api *httpapi.API
	if cfg.APIKey != "" {
		api = httpapi.New(d, cfg.APIKey, log).Idempotent(rdb).AcceptPrevious(cfg.APIKeyPrevious).WithPresence(online)
		reg.CountReplays(api.Replays)
		reg.CountPreviousKey(api.PreviousKeyUses)
		reg.WatchAPIInFlight(api.InFlight)
		api.Register(health.mux)
	}
	httpSrv := httpserver.New(health, log.Named("http"))
	httpSrv.WriteTimeout = httpWriteTimeout
	var httpErr error
	httpDone := make(chan struct{}) // closed once Serve has returned httpErr
	go func() {
		defer close(httpDone)
		httpErr = httpSrv.Serve(ln)
	}()
	log.Info("health server listening", zap.String("addr", ln.Addr().String()))
	// Report not ready from the first moment of shutdown, through the drain.
	context.AfterFunc(ctx, func() { health.stopping.Store(true) })

	// Redis is probed from the start, for /readyz and the scrape; until
	// waitRedis has seen it answer, with a PING that logs nothing (the
	// wait logs), then with the dispatcher's probe, which logs outages.
	var redisReached atomic.Bool
	probeCtx, stopProbe := context.WithCancel(ctx)
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		probeRedis(probeCtx, func(ctx context.Context) error {
			if redisReached.Load() {
				return d.Probe(ctx)
			}
			return rdb.Ping(ctx).Err()
		}, health.redisOK.Store)
	}()

	var runErr error
	if err := waitNATS(ctx, nc, log.Named("nats")); err != nil {
		runErr = startupError(ctx, log, "NATS", err)
	} else if err := waitRedis(ctx, rdb, log.Named("redis")); err != nil {
		runErr = startupError(ctx, log, "Redis", err)
	} else {
		// Idle, no dispatch fails to tell that Redis is gone: the probe
		// does, in the dispatcher's log of outages, from now on.
		redisReached.Store(true)
		health.redisOK.Store(true) // it has just answered
		checkCtx, stopCheck := context.WithCancel(ctx)
		checked := make(chan struct{})
		go func() {
			defer close(checked)
			if cfg.Fanout() == proto.FanoutPerUser {
				modes.Run(checkCtx, modeCheckInterval)
			}
		}()
		runErr = serve(ctx, srv, httpDone)
		stopCheck()
		<-checked
	}
	stopProbe()
	<-probed

	// The ordered shutdown list. Not ready (also when start-up failed); the
	// subscription is drained and its replies flushed, so NATS can go; the
	// handlers have finished, so what the families opened can go. The
	// health server stops taking requests and finishes those it has: a
	// dispatch API call is served to its end, its idempotency key recorded
	// or freed, where one cut off by the API or Redis closing under it was
	// refused, or left its key reserved for IdempotencyTTL. A caller's
	// retry finds the listener closed and goes to another instance. Then
	// the API, whose late records of 504s' outcomes use rdb, and Redis.
	health.stopping.Store(true)
	nc.Close()
	if errors.Is(runErr, natserve.ErrHandlersRunning) {
		// A family's stop would close what they still use (its OnStop
		// promises "once no handler runs any more"); the process exit
		// takes it all.
		log.Error("families' stops skipped: handlers still run after their cancel", zap.Error(runErr))
	} else {
		runStops()
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		log.Warn("stop health server: requests still running lose the dispatch API and Redis", zap.Error(err))
	}
	<-httpDone
	if api != nil {
		api.Close()
	}
	if err := rdb.Close(); err != nil {
		log.Warn("close redis", zap.Error(err))
	}
	if !errors.Is(httpErr, http.ErrServerClosed) {
		runErr = errors.Join(runErr, fmt.Errorf("health server: %w", httpErr))
	}
	return runErr
}

// dispatchOptions returns the dispatcher's options for cfg:
// HISTORY_WINDOW=0 turns recording off, which a zero Options.Window does
// not (it is the default window).
func dispatchOptions(cfg config.Config) dispatch.Options {
	opts := dispatch.Options{Window: cfg.HistoryWindow, PerUser: cfg.Fanout() == proto.FanoutPerUser, RevokeTTL: cfg.RevokeTTL}
	if opts.Window == 0 {
		opts.Window = dispatch.NoHistory
	}
	return opts
}

// modeCheckInterval is how often a handlers-svc publishing per user
// checks that no gateway worker runs in shared mode.
const modeCheckInterval = 10 * time.Second

// startupError returns the error of waiting for a dependency, or nil when the
// wait ended because ctx did: a signal during start-up is a clean stop.
func startupError(ctx context.Context, log *zap.Logger, what string, err error) error {
	if ctx.Err() != nil {
		log.Info("stopped while waiting for " + what)
		return nil
	}
	return fmt.Errorf("wait for %s: %w", what, err)
}

// serve runs srv until ctx is done or the health server stops (its error is
// reported by the caller), and returns once srv has drained.
func serve(ctx context.Context, srv *natserve.Server, httpDone <-chan struct{}) error {
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	select {
	case err := <-done:
		return err
	case <-httpDone:
		stopRun()
		return <-done
	case <-ctx.Done():
		return <-done
	}
}
