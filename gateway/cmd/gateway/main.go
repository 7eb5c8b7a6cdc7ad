// Command gateway is switchboard's edge process. Run plainly it is the
// supervisor: it binds GATEWAY_ADDR and keeps GATEWAY_WORKERS worker
// processes (copies of itself) serving WebSockets on it. "gateway token USER"
// prints a token for USER signed with the configured secret;
// "gateway health [-ready]" checks a running gateway's /healthz (or /readyz),
// for container health checks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/announced"
	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/gctune"
	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/gateway/internal/supervisor"
	"github.com/switchboard/switchboard/gateway/internal/worker"
	"github.com/switchboard/switchboard/internal/logging"
	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/internal/redislog"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	hurry := make(chan struct{})
	go func() {
		// After the first signal a second one stops the supervisor's
		// workers at once (SIGKILL), as handlers-svc stops at once: a
		// person pressing Ctrl-C again does not wait out the drain. A
		// worker keeps ignoring it: in a terminal it gets the Ctrl-C and
		// then the supervisor's SIGTERM, one stop.
		<-ctx.Done()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
		<-again
		close(hurry)
	}()
	code := run(ctx, hurry, os.Args[1:])
	stop()
	os.Exit(code)
}

// run is the process; it returns the exit status. The subcommands, token
// and health, are tools for a person or a container probe and say what
// went wrong in plain text. Otherwise every line on stderr is JSON, down
// to why the gateway refuses to start (a missing secret, a bad setting or
// flag).
func run(ctx context.Context, hurry <-chan struct{}, args []string) int {
	if len(args) > 0 && (args[0] == "token" || args[0] == "health") {
		var err error
		if args[0] == "token" {
			err = mintToken(args[1:], os.Stdout)
		} else {
			err = health(ctx, args[1:], os.Stdout)
		}
		switch {
		case errors.Is(err, flag.ErrHelp): // -h: a person asked
			fmt.Fprintln(os.Stderr, err)
		case err != nil:
			fmt.Fprintf(os.Stderr, "gateway %s: %v\n", args[0], err)
			return 1
		}
		return 0
	}
	cfg, err := config.Load(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		config.Usage(os.Stderr)
		return 0
	}
	var log *zap.Logger
	if err == nil {
		log, err = logging.New(cfg.LogLevel)
	}
	if err != nil {
		logging.Refuse("gateway", err)
		return 1
	}
	// Every line names its component, under "gateway" as handlers-svc's
	// are under "handlers-svc": "gateway" itself, "gateway.ws", ...
	log = log.Named("gateway")
	defer func() { _ = log.Sync() }()
	// The supervisor, before any worker starts: a REDIS_URL Redis refuses
	// (a database it does not have) is a configuration error that every
	// worker would retry forever. A Redis that cannot be reached is waited
	// for by the workers, as before.
	if cfg.WorkerIndex < 0 {
		// go-redis's own line on a failed dial goes to zap, not as plain
		// text among the JSON lines (workers set theirs in realMain).
		redis.SetLogger(redislog.New(log.Named("go-redis")))
		if err := redisconn.Check(ctx, cfg.RedisURL, redisCheckLimit); err != nil {
			logging.Refuse("gateway", err)
			return 1
		}
	}
	if err := realMain(ctx, hurry, cfg, log); err != nil {
		log.Error("gateway failed", zap.Error(err))
		return 1
	}
	return 0
}

// redisCheckLimit bounds the supervisor's one round trip to Redis at
// start (redisconn.Check): what a Redis that does not answer costs the
// start.
const redisCheckLimit = 2 * time.Second

// realMain runs this process as configured, a worker or the supervisor,
// until ctx is done; a supervisor stopping kills its workers when hurry
// is closed.
func realMain(ctx context.Context, hurry <-chan struct{}, cfg config.Config, log *zap.Logger) error {
	if cfg.WorkerIndex >= 0 {
		wlog := log.With(zap.Int("worker", cfg.WorkerIndex), zap.Int("pid", os.Getpid()))
		// go-redis logs through a process-wide logger (dial failures of its
		// pool, on every retry while Redis is down). The fan-out logs an
		// outage once itself, so go-redis's lines go to zap at debug level.
		redis.SetLogger(redislog.New(wlog.Named("go-redis")))
		return runWorker(ctx, cfg, wlog)
	}
	if cfg.Dev {
		log.Warn("dev mode: GET /dev/token mints tokens for clients on this machine, any Origin is allowed, and the JWT secret is the public dev secret")
		if !loopbackOnly(cfg.Addr) {
			// The contract's default, :7999, holds in dev mode too.
			log.Warn("dev mode is reachable from other machines: anyone who reaches it can sign a token for any user with the public dev secret; GATEWAY_ADDR=127.0.0.1:7999 keeps it on this machine",
				zap.String("addr", cfg.Addr))
		}
	}
	if cfg.JWTPreviousSecret != "" {
		// Never the secret, nor a digest of it: that it is set, and where
		// from, is what the operator checks.
		log.Info("previous JWT secret set: tokens of either secret are accepted, new ones are signed with GATEWAY_JWT_SECRET; "+
			"unset GATEWAY_JWT_PREVIOUS_SECRET once switchboard_gateway_auth_previous_secret_total has stopped growing for the longest token lifetime",
			zap.Bool("previous_secret_from_file", cfg.JWTPreviousSecretFile != ""))
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var agg *metrics.Aggregator
	dir := "" // set explicitly even when empty: workers must not inherit one
	if cfg.MetricsAddr != "" {
		// Each worker serves its metrics on a unix socket in a private
		// directory; the supervisor merges them on its own /metrics.
		if dir, err = metrics.MakeDir(""); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		agg = metrics.NewAggregator(dir, cfg.Workers)
		agg.CacheFor(cfg.MetricsCache)
		defer agg.Close()
	}
	env := append(cfg.Environ(), config.MetricsDirEnv+"="+dir)
	env = append(env, workerRuntimeEnv(cfg.Workers, config.Cores(), os.Getenv)...)
	sup := supervisor.New(supervisor.Config{
		Addr:        cfg.Addr,
		Workers:     cfg.Workers,
		StopTimeout: cfg.ShutdownTimeout + 5*time.Second,
		Hurry:       hurry,
		HangTimeout: cfg.WorkerHangTimeout,
		Announced:   announcedMax(cfg),
	}, supervisor.ExecStart(exe, nil, env), log.Named("supervisor"))
	if agg != nil {
		stop, err := serveAdmin(cfg.MetricsAddr, agg, sup, log.Named("metrics"))
		if err != nil {
			return err
		}
		defer stop()
	}
	return sup.Run(ctx)
}

// announcedMax is how many sockets of each worker, announced to the
// lifecycle hooks and not disconnected, the supervisor keeps to hand to a
// replacement should the worker die (supervisor.Config.Announced): a
// worker's cap of sockets and its queue of lifecycle messages, or a
// million without a cap; 0 with the hooks off.
func announcedMax(cfg config.Config) int {
	switch {
	case !cfg.LifecycleHooks:
		return 0
	case cfg.MaxConns > 0:
		return cfg.MaxConns + worker.LifecycleQueue
	default:
		return 1 << 20
	}
}

// workerRuntimeEnv tunes the Go runtime of each worker:
//
//   - GOMAXPROCS is the gateway's cores (config.Cores: the operator's
//     GOMAXPROCS counts for the whole gateway) divided among the workers,
//     at least 1: the workers already use every core between them, and
//     each running as many threads as there are cores only added scheduler
//     spinning and thread hand-offs on a busy machine.
//   - GOGC is 50 while the worker is quiet and 100 while it is busy
//     (gctune): most of a worker's heap is long-lived socket state, which
//     the default of 100 lets the heap double on top of, in resident memory
//     per idle socket, while under load 50 made the collector run twice as
//     often, which showed in the latency tail. The worker starts at 50 and
//     tunes itself (SWITCHBOARD_GC_TUNE); an operator's GOGC turns that off.
func workerRuntimeEnv(workers, cores int, getenv func(string) string) []string {
	env := []string{"GOMAXPROCS=" + strconv.Itoa(max(1, cores/max(workers, 1)))}
	// Always set, so that a value inherited from the supervisor's own
	// environment cannot tune against the operator's GOGC.
	if getenv("GOGC") == "" {
		env = append(env, "GOGC=50", config.GCTuneEnv+"=1")
	} else {
		env = append(env, config.GCTuneEnv+"=0")
	}
	return env
}

func runWorker(ctx context.Context, cfg config.Config, log *zap.Logger) error {
	// Stop, as on SIGTERM, should the supervisor die.
	ctx, cancel := supervisor.StopWithParent(ctx)
	defer cancel()
	f := os.NewFile(supervisor.ListenerFD, "listener")
	if f == nil {
		return errors.New("worker started without a listener on fd 3")
	}
	ln, err := net.FileListener(f)
	_ = f.Close()
	if err != nil {
		return fmt.Errorf("worker listener: %w", err)
	}
	if cfg.GCTune {
		go gctune.Run(ctx, time.Second, log.Named("gc"))
	}
	var opts []worker.Option
	if cfg.AnnounceFD > 0 {
		opt, err := announcedFiles(cfg, log)
		if err != nil {
			_ = ln.Close()
			return err
		}
		opts = append(opts, opt)
	}
	w := worker.New(cfg, cfg.WorkerIndex, log, opts...)
	if cfg.WatchdogBeat > 0 {
		// First thing, before waiting for NATS and Redis: a worker that
		// waits is not hung. And on until the worker returns, not only
		// until ctx ends: a graceful stop may take GATEWAY_SHUTDOWN_TIMEOUT,
		// and a worker stopping is not hung either. Each beat waits for
		// w.Probe, so a deadlock on the worker's central locks stops them.
		stop, err := supervisor.Beat(context.WithoutCancel(ctx), cfg.WatchdogBeat, w.Probe)
		if err != nil {
			_ = ln.Close()
			return err
		}
		defer stop()
	}
	if cfg.MetricsDir != "" {
		stop, err := serveWorkerMetrics(cfg.MetricsDir, cfg.WorkerIndex, w.AdminHandler(), log.Named("metrics"))
		if err != nil {
			_ = ln.Close()
			return err
		}
		defer stop()
	}
	return w.Run(ctx, ln)
}

// announcedFiles opens the worker's announce pipe and reads the orphans
// its supervisor handed it, if any (package announced): at most as many
// as the supervisor keeps. An orphans file it cannot read whole is logged
// and what was read of it announced.
func announcedFiles(cfg config.Config, log *zap.Logger) (worker.Option, error) {
	rec, err := announced.NewWriter(cfg.AnnounceFD, announced.DefaultMaxPending)
	if err != nil {
		return nil, err
	}
	var orphans []announced.Orphan
	if cfg.OrphansFD > 0 {
		f := os.NewFile(uintptr(cfg.OrphansFD), "orphans")
		if f == nil {
			_ = rec.Close()
			return nil, fmt.Errorf("orphans fd %d: not a file", cfg.OrphansFD)
		}
		orphans, err = announced.ReadOrphans(f, max(announcedMax(cfg), 1))
		_ = f.Close()
		if err != nil {
			log.Error("the dead worker's sockets were not all read: the disconnects of the rest are not announced",
				zap.Int("orphans", len(orphans)), zap.Error(err))
		}
	}
	return worker.WithAnnounced(rec, orphans), nil
}

// tokenUsage is the synopsis of "gateway token".
const tokenUsage = "usage: gateway token [-ttl 24h] USER"

// mintToken prints a token: gateway token [-ttl 24h] USER. Asked for help
// (-h), it returns the usage as an error matching flag.ErrHelp, as
// healthcheck.Run does, for run to print and exit 0.
func mintToken(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the token (positive: every token expires)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			b.WriteString(tokenUsage + "\n")
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return helpText(strings.TrimSuffix(b.String(), "\n"))
		}
		return fmt.Errorf("%w; %s", err, tokenUsage)
	}
	if *ttl <= 0 {
		// The gateway refuses a token without exp: one that never expired
		// could never be revoked.
		return fmt.Errorf("-ttl must be positive, got %s: every token expires", *ttl)
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		return errors.New(tokenUsage)
	}
	cfg, err := config.Load(nil, os.Getenv) // the secret, or the dev secret in dev mode
	if err != nil {
		return err
	}
	tok, err := auth.Mint(cfg.JWTSecret, fs.Arg(0), *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// helpText is a subcommand's answer to -h: its usage, matching flag.ErrHelp.
type helpText string

func (h helpText) Error() string { return string(h) }

// Is makes errors.Is(h, flag.ErrHelp) true.
func (h helpText) Is(target error) bool { return target == flag.ErrHelp }

// loopbackOnly reports whether addr (host:port) listens on a loopback
// address only: not on every interface (no host) nor on another one.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
