// Package config holds the gateway's one Config: defaults in code, read from
// the environment and from flags of the same names (docs/protocol.md section 1).
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/logging"
	"github.com/switchboard/switchboard/internal/serverurl"
	"github.com/switchboard/switchboard/proto"
)

// DevSecret is the JWT secret used in dev mode when GATEWAY_JWT_SECRET is not
// set. It is public: never run dev mode where tokens matter.
const DevSecret = "switchboard-dev-secret-do-not-use-in-production"

// Config is everything one gateway process (supervisor or worker) needs.
type Config struct {
	Addr                string        // GATEWAY_ADDR: client WebSocket + HTTP address
	Workers             int           // GATEWAY_WORKERS: worker processes
	JWTSecret           string        // GATEWAY_JWT_SECRET: HS256 secret
	JWTAudience         string        // GATEWAY_JWT_AUDIENCE: required "aud" when set
	NATSURL             string        // NATS_URL
	RedisURL            string        // REDIS_URL
	MaxFrame            int64         // GATEWAY_MAX_FRAME: max client message in bytes
	HandlerTimeout      time.Duration // GATEWAY_HANDLER_TIMEOUT
	AllowedOrigins      []string      // GATEWAY_ALLOWED_ORIGINS; nil = own host only ("*" = any)
	Dev                 bool          // GATEWAY_DEV
	LogLevel            string        // LOG_LEVEL
	SendQueueLen        int           // GATEWAY_SEND_QUEUE: max frames queued per socket
	SendQueueBytes      int           // GATEWAY_SEND_QUEUE_BYTES: max bytes queued per socket
	MaxInFlight         int           // GATEWAY_MAX_INFLIGHT: handler requests in flight per socket
	FanoutQueue         int           // GATEWAY_FANOUT_QUEUE: dispatches read from Redis and not yet delivered, per worker
	FanoutQueueBytes    int64         // GATEWAY_FANOUT_QUEUE_BYTES: bytes of those, per worker
	WorkerInFlight      int           // GATEWAY_WORKER_INFLIGHT: handler requests in flight per worker; 0 = no limit
	RateLimit           float64       // GATEWAY_RATE_LIMIT: envelopes per second per socket; 0 = unlimited
	RateBurst           float64       // GATEWAY_RATE_BURST: envelopes a socket may send at once
	RateCloseAfter      int           // GATEWAY_RATE_CLOSE_AFTER: refusals within 10s that close the socket; 0 = never
	UserRateLimit       float64       // GATEWAY_USER_RATE_LIMIT: envelopes per second a user's sockets on a worker share; 0 = unlimited
	UserRateBurst       int           // GATEWAY_USER_RATE_BURST: envelopes a user's sockets may send at once
	WorkerInFlightBytes int64         // GATEWAY_WORKER_INFLIGHT_BYTES: bytes of args in flight per worker; 0 = no limit
	ShutdownTimeout     time.Duration // GATEWAY_SHUTDOWN_TIMEOUT: graceful stop deadline
	MetricsAddr         string        // GATEWAY_METRICS_ADDR: the supervisor's /metrics; "" (set as "off") = none
	MaxConns            int           // GATEWAY_MAX_CONNS: sockets per worker; 0 = unlimited
	MaxConnsPerUser     int           // GATEWAY_MAX_CONNS_PER_USER: sockets of one user per worker; 0 = unlimited
	HistoryWindow       time.Duration // HISTORY_WINDOW: recovery on (> 0) or off (0); handlers-svc keeps the events
	MaxReplay           int           // GATEWAY_MAX_REPLAY: most events replayed on one resume

	// Set by the supervisor in each worker's environment; not settings, so
	// neither flags nor in Environ.
	WorkerIndex int    // SWITCHBOARD_WORKER_INDEX: this process is worker N; -1 = the supervisor
	MetricsDir  string // SWITCHBOARD_METRICS_DIR: where a worker serves its metrics socket; "" = none
	GCTune      bool   // SWITCHBOARD_GC_TUNE=1: the worker sets its GC percent by its load (gctune)

	// Faults are the end-to-end tests' fault injections, read from the
	// environment only; empty unless the gateway is built with -tags
	// faultinject (faults_faultinject.go).
	Faults Faults
}

// The environment the supervisor hands each worker, besides Environ.
const (
	// WorkerIndexEnv tells a gateway process it is worker number N.
	WorkerIndexEnv = "SWITCHBOARD_WORKER_INDEX"
	// MetricsDirEnv names the private directory of the workers' metrics
	// sockets; empty when metrics are off.
	MetricsDirEnv = "SWITCHBOARD_METRICS_DIR"
	// GCTuneEnv tells a worker to set its own GC percent by its load; the
	// supervisor sets it when the operator did not set GOGC.
	GCTuneEnv = "SWITCHBOARD_GC_TUNE"
)

// Default returns the configuration with every default of the contract.
func Default() Config {
	return Config{
		Addr:                ":7999",
		Workers:             runtime.NumCPU(),
		NATSURL:             "nats://127.0.0.1:4222",
		RedisURL:            "redis://127.0.0.1:6379/0",
		MaxFrame:            65536,
		HandlerTimeout:      5 * time.Second,
		LogLevel:            "info",
		SendQueueLen:        1024,
		SendQueueBytes:      1 << 20,
		MaxInFlight:         64,
		FanoutQueue:         32768,
		FanoutQueueBytes:    64 << 20,
		WorkerInFlight:      8192,
		RateLimit:           50,
		RateBurst:           100,
		RateCloseAfter:      50,
		UserRateLimit:       100,
		UserRateBurst:       200,
		WorkerInFlightBytes: 64 << 20,
		ShutdownTimeout:     10 * time.Second,
		MaxConns:            50000,
		MaxConnsPerUser:     64,
		HistoryWindow:       proto.DefaultHistoryWindow,
		MaxReplay:           1000,
		// Next to the client port, and away from 9090 (Prometheus itself)
		// and the 9100-9999 range its exporters have allocated.
		MetricsAddr: ":7998",
		WorkerIndex: -1,
	}
}

// Load returns Default overridden by the environment (through getenv) and
// then by flags in args, validated. Each setting's flag is its environment
// name in lower case with dashes: GATEWAY_ADDR is -gateway-addr.
func Load(args []string, getenv func(string) string) (Config, error) {
	c, err := Parse(args, getenv)
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Parse is Load without Validate, for commands that need only some
// settings (such as the addresses "gateway health" dials) and must work
// where the others are not set. It fails only on a value that does not
// parse.
func Parse(args []string, getenv func(string) string) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var origins string
	vars := c.settings(&origins)
	for _, v := range vars {
		if s := getenv(v.env); s != "" {
			if err := v.value.Set(s); err != nil {
				return c, fmt.Errorf("%s=%q: %w", v.env, s, err)
			}
		}
		fs.Var(v.value, FlagName(v.env), "same as $"+v.env)
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if origins != "" {
		for _, o := range strings.Split(origins, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.AllowedOrigins = append(c.AllowedOrigins, o)
			}
		}
	}
	if c.JWTSecret == "" && c.Dev {
		c.JWTSecret = DevSecret
	}
	if s := getenv(WorkerIndexEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return c, fmt.Errorf("%s=%q: want a worker number", WorkerIndexEnv, s)
		}
		c.WorkerIndex = n
	}
	c.MetricsDir = getenv(MetricsDirEnv)
	c.GCTune = getenv(GCTuneEnv) == "1"
	c.Faults = loadFaults(getenv)
	return c, nil
}

// Environ returns every setting of a loaded Config as KEY=value. The
// supervisor hands its settings to workers this way rather than as flags,
// so a secret given as a flag does not show on every worker's command line.
func (c Config) Environ() []string {
	origins := strings.Join(c.AllowedOrigins, ",")
	vars := c.settings(&origins)
	env := make([]string, 0, len(vars))
	for _, v := range vars {
		env = append(env, v.env+"="+v.value.String())
	}
	return env
}

type setting struct {
	env   string
	value flag.Value
}

// settings lists every setting with the field it sets; origins stands in
// for AllowedOrigins, which is parsed from it.
func (c *Config) settings(origins *string) []setting {
	return []setting{
		{"GATEWAY_ADDR", (*stringValue)(&c.Addr)},
		{"GATEWAY_WORKERS", (*intValue)(&c.Workers)},
		{"GATEWAY_JWT_SECRET", (*stringValue)(&c.JWTSecret)},
		{"GATEWAY_JWT_AUDIENCE", (*stringValue)(&c.JWTAudience)},
		{"NATS_URL", (*stringValue)(&c.NATSURL)},
		{"REDIS_URL", (*stringValue)(&c.RedisURL)},
		{"GATEWAY_MAX_FRAME", (*int64Value)(&c.MaxFrame)},
		{"GATEWAY_HANDLER_TIMEOUT", (*durationValue)(&c.HandlerTimeout)},
		{"GATEWAY_ALLOWED_ORIGINS", (*stringValue)(origins)},
		{"GATEWAY_DEV", (*boolValue)(&c.Dev)},
		{"LOG_LEVEL", (*stringValue)(&c.LogLevel)},
		{"GATEWAY_SEND_QUEUE", (*intValue)(&c.SendQueueLen)},
		{"GATEWAY_SEND_QUEUE_BYTES", (*intValue)(&c.SendQueueBytes)},
		{"GATEWAY_MAX_INFLIGHT", (*intValue)(&c.MaxInFlight)},
		{"GATEWAY_FANOUT_QUEUE", (*intValue)(&c.FanoutQueue)},
		{"GATEWAY_FANOUT_QUEUE_BYTES", (*int64Value)(&c.FanoutQueueBytes)},
		{"GATEWAY_WORKER_INFLIGHT", (*intValue)(&c.WorkerInFlight)},
		{"GATEWAY_RATE_LIMIT", (*float64Value)(&c.RateLimit)},
		{"GATEWAY_RATE_BURST", (*float64Value)(&c.RateBurst)},
		{"GATEWAY_RATE_CLOSE_AFTER", (*intValue)(&c.RateCloseAfter)},
		{"GATEWAY_USER_RATE_LIMIT", (*float64Value)(&c.UserRateLimit)},
		{"GATEWAY_USER_RATE_BURST", (*intValue)(&c.UserRateBurst)},
		{"GATEWAY_WORKER_INFLIGHT_BYTES", (*int64Value)(&c.WorkerInFlightBytes)},
		{"GATEWAY_SHUTDOWN_TIMEOUT", (*durationValue)(&c.ShutdownTimeout)},
		{"GATEWAY_METRICS_ADDR", (*offValue)(&c.MetricsAddr)},
		{"GATEWAY_MAX_CONNS", (*intValue)(&c.MaxConns)},
		{"GATEWAY_MAX_CONNS_PER_USER", (*intValue)(&c.MaxConnsPerUser)},
		{"HISTORY_WINDOW", (*durationValue)(&c.HistoryWindow)},
		{"GATEWAY_MAX_REPLAY", (*intValue)(&c.MaxReplay)},
	}
}

// FlagName returns the flag that mirrors an environment variable.
func FlagName(env string) string { return strings.ReplaceAll(strings.ToLower(env), "_", "-") }

// Validate reports every setting that cannot work, joined into one error.
func (c Config) Validate() error {
	var errs []error
	if c.JWTSecret == "" {
		errs = append(errs, errors.New("GATEWAY_JWT_SECRET is required (or set GATEWAY_DEV=1 for the dev secret)"))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("GATEWAY_WORKERS must be at least 1, got %d", c.Workers))
	}
	if err := serverurl.NATS(c.NATSURL); err != nil {
		errs = append(errs, fmt.Errorf("NATS_URL: %w", err))
	}
	if err := serverurl.Redis(c.RedisURL); err != nil {
		errs = append(errs, fmt.Errorf("REDIS_URL: %w", err))
	}
	if c.MaxFrame < 64 {
		errs = append(errs, fmt.Errorf("GATEWAY_MAX_FRAME must be at least 64 bytes, got %d", c.MaxFrame))
	}
	if c.HandlerTimeout <= 0 {
		errs = append(errs, fmt.Errorf("GATEWAY_HANDLER_TIMEOUT must be positive, got %s", c.HandlerTimeout))
	}
	if c.SendQueueLen < 1 || c.SendQueueBytes < 1 {
		errs = append(errs, errors.New("GATEWAY_SEND_QUEUE and GATEWAY_SEND_QUEUE_BYTES must be positive"))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, errors.New("GATEWAY_MAX_INFLIGHT must be positive"))
	}
	if c.WorkerInFlight < 0 {
		errs = append(errs, errors.New("GATEWAY_WORKER_INFLIGHT must not be negative"))
	}
	if c.FanoutQueueBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("GATEWAY_FANOUT_QUEUE_BYTES must be at least 65536, got %d", c.FanoutQueueBytes))
	}
	if c.FanoutQueue < 64 {
		errs = append(errs, fmt.Errorf("GATEWAY_FANOUT_QUEUE must be at least 64, got %d", c.FanoutQueue))
	}
	if !(c.RateLimit >= 0) || math.IsInf(c.RateLimit, 0) || c.RateCloseAfter < 0 ||
		(c.RateLimit > 0 && (!(c.RateBurst >= 1) || math.IsInf(c.RateBurst, 0))) { // !(x >= n) also refuses NaN
		errs = append(errs, errors.New("GATEWAY_RATE_LIMIT and GATEWAY_RATE_CLOSE_AFTER must not be negative, and GATEWAY_RATE_BURST must be at least 1"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("GATEWAY_SHUTDOWN_TIMEOUT must be positive"))
	}
	if !(c.UserRateLimit >= 0) || math.IsInf(c.UserRateLimit, 0) || (c.UserRateLimit > 0 && c.UserRateBurst < 1) {
		errs = append(errs, errors.New("GATEWAY_USER_RATE_LIMIT must not be negative, and GATEWAY_USER_RATE_BURST must be at least 1"))
	}
	if c.WorkerInFlightBytes < 0 {
		errs = append(errs, errors.New("GATEWAY_WORKER_INFLIGHT_BYTES must not be negative (0 = no limit)"))
	}
	if c.MaxConns < 0 || c.MaxConnsPerUser < 0 {
		errs = append(errs, errors.New("GATEWAY_MAX_CONNS and GATEWAY_MAX_CONNS_PER_USER must not be negative (0 = unlimited)"))
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL: %w", err))
	}
	if err := proto.CheckHistoryWindow(c.HistoryWindow); err != nil {
		errs = append(errs, fmt.Errorf("HISTORY_WINDOW: %w", err))
	}
	if c.MaxReplay < 1 {
		errs = append(errs, fmt.Errorf("GATEWAY_MAX_REPLAY must be at least 1, got %d", c.MaxReplay))
	}
	return errors.Join(errs...)
}

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

// offValue is an address that "off" (or an empty flag) turns off: an empty
// environment variable means unset, so it cannot.
type offValue string

func (v *offValue) Set(s string) error {
	if s == "off" {
		s = ""
	}
	*v = offValue(s)
	return nil
}

func (v *offValue) String() string {
	if *v == "" {
		return "off"
	}
	return string(*v)
}

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	*v = intValue(n)
	return err
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type int64Value int64

func (v *int64Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	*v = int64Value(n)
	return err
}
func (v *int64Value) String() string { return strconv.FormatInt(int64(*v), 10) }

type float64Value float64

func (v *float64Value) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	*v = float64Value(f)
	return err
}
func (v *float64Value) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 64) }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	*v = boolValue(b)
	return err
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	*v = durationValue(d)
	return err
}
func (v *durationValue) String() string { return time.Duration(*v).String() }
