// Package config holds the gateway's one Config: defaults in code, read from
// the environment and from flags of the same names (docs/protocol.md section 1).
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/httpserver"
	"github.com/switchboard/switchboard/internal/logging"
	"github.com/switchboard/switchboard/internal/serverurl"
	"github.com/switchboard/switchboard/proto"
)

// DevSecret is the JWT secret of dev mode, the only one it accepts. It is
// public, so it is refused outside dev mode: a gateway that accepted it
// would accept tokens anyone can mint.
const DevSecret = "switchboard-dev-secret-do-not-use-in-production"

// MinSecretLen is the shortest JWT secret accepted outside dev mode: 32
// bytes, the size of the HS256 output, as RFC 7518 section 3.2 asks. A
// shorter secret can be guessed offline from any one token.
const MinSecretLen = 32

// Config is everything one gateway process (supervisor or worker) needs.
type Config struct {
	Addr                string        // GATEWAY_ADDR: client WebSocket + HTTP address
	Workers             int           // GATEWAY_WORKERS: worker processes
	JWTSecret           string        // GATEWAY_JWT_SECRET: HS256 secret (Load reads it from JWTSecretFile when that is set)
	JWTAudience         string        // GATEWAY_JWT_AUDIENCE: required "aud" when set
	JWTLeeway           time.Duration // GATEWAY_JWT_LEEWAY: the clock skew allowed on exp and nbf
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
	PingRate            float64       // GATEWAY_PING_RATE: client pings per second per socket that are answered; 0 = all
	PingBurst           float64       // GATEWAY_PING_BURST: client pings a socket may have answered at once
	PingInterval        time.Duration // GATEWAY_PING_INTERVAL: how often the gateway pings each socket (and sends heartbeat frames)
	UserRateLimit       float64       // GATEWAY_USER_RATE_LIMIT: envelopes per second a user's sockets on a worker share; 0 = unlimited
	UserRateBurst       int           // GATEWAY_USER_RATE_BURST: envelopes a user's sockets may send at once
	UserRateWait        time.Duration // GATEWAY_USER_RATE_WAIT: how long a socket's reader waits for its user's allowance before refusing; 0 = refuse at once
	WorkerInFlightBytes int64         // GATEWAY_WORKER_INFLIGHT_BYTES: bytes of args in flight per worker; 0 = no limit
	ShutdownTimeout     time.Duration // GATEWAY_SHUTDOWN_TIMEOUT: graceful stop deadline
	WorkerHangTimeout   time.Duration // GATEWAY_WORKER_HANG_TIMEOUT: a worker silent this long is killed and restarted; 0 = no watchdog
	MetricsAddr         string        // GATEWAY_METRICS_ADDR: the supervisor's /metrics; "" (set as "off") = none
	MaxConns            int           // GATEWAY_MAX_CONNS: sockets per worker; 0 = unlimited
	MaxConnsPerUser     int           // GATEWAY_MAX_CONNS_PER_USER: sockets of one user per worker; 0 = unlimited
	HistoryWindow       time.Duration // HISTORY_WINDOW: recovery on (> 0) or off (0); handlers-svc keeps the events
	MaxReplay           int           // GATEWAY_MAX_REPLAY: most events replayed on one resume
	FanoutMode          string        // FANOUT_MODE: shared or per_user (Fanout returns it parsed)
	FanoutLinger        time.Duration // GATEWAY_FANOUT_LINGER: per_user, how long a user's channel outlives the user's last local socket
	RevokeTTL           time.Duration // GATEWAY_REVOKE_TTL: how long a token revocation is honoured; the longest token lifetime
	PresenceTTL         time.Duration // GATEWAY_PRESENCE_TTL: the lease of a socket's presence in Redis, refreshed every third of it; 0 = no presence
	LifecycleHooks      bool          // GATEWAY_LIFECYCLE_HOOKS: publish each socket's connect and disconnect on NATS (docs/protocol.md section 3)

	// Security settings (docs/security.md).
	JWTSecretFile  string         // GATEWAY_JWT_SECRET_FILE: a file holding the secret, instead of GATEWAY_JWT_SECRET
	DevTokenNets   []netip.Prefix // GATEWAY_DEV_TOKEN_NETS: networks besides loopback whose clients /dev/token answers
	MetricsCache   time.Duration  // GATEWAY_METRICS_CACHE: how long the admin /metrics reuses one read of the workers
	IPPending      int            // GATEWAY_IP_PENDING: connections of one address without request headers, per worker; 0 = no cap
	IPUpgradeRate  float64        // GATEWAY_IP_UPGRADE_RATE: requests for /socket per second per address, per worker; 0 = no limit
	IPUpgradeBurst int            // GATEWAY_IP_UPGRADE_BURST: requests for /socket one address may make at once
	NATSCreds      string         // NATS_CREDS: a NATS credentials file (user JWT and NKey seed); "" = none

	// JWTPreviousSecret is GATEWAY_JWT_PREVIOUS_SECRET: during a rotation,
	// the secret being replaced, still accepted to verify tokens (never
	// to sign them); "" = none. Load reads it from JWTPreviousSecretFile
	// (GATEWAY_JWT_PREVIOUS_SECRET_FILE) when that is set.
	JWTPreviousSecret     string
	JWTPreviousSecretFile string

	// Set by the supervisor in each worker's environment; not settings, so
	// neither flags nor in Environ.
	WorkerIndex int    // SWITCHBOARD_WORKER_INDEX: this process is worker N; -1 = the supervisor
	MetricsDir  string // SWITCHBOARD_METRICS_DIR: where a worker serves its metrics socket; "" = none
	GCTune      bool   // SWITCHBOARD_GC_TUNE=1: the worker sets its GC percent by its load (gctune)
	// WatchdogBeat is SWITCHBOARD_WATCHDOG_BEAT: how often the worker
	// writes a heartbeat to the supervisor's watchdog; 0 = never.
	WatchdogBeat time.Duration
	// AnnounceFD and OrphansFD are a worker's descriptors of its announce
	// pipe and of its predecessor's orphans (AnnounceFDEnv,
	// OrphansFDEnv); 0 when it has none.
	AnnounceFD, OrphansFD int

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
	// WatchdogBeatEnv tells a worker how often to write a heartbeat to the
	// supervisor's watchdog; empty when the watchdog is off.
	WatchdogBeatEnv = "SWITCHBOARD_WATCHDOG_BEAT"
	// AnnounceFDEnv names the descriptor a worker records its announced
	// sockets on for the supervisor (package announced); empty when not.
	AnnounceFDEnv = "SWITCHBOARD_ANNOUNCE_FD"
	// OrphansFDEnv names the descriptor a worker reads its dead
	// predecessor's announced sockets from; empty when there are none.
	OrphansFDEnv = "SWITCHBOARD_ORPHANS_FD"
)

// Default returns the configuration with every default of the contract.
func Default() Config {
	return Config{
		Addr:                ":7999",
		Workers:             min(Cores(), MaxWorkers),
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
		PingRate:            2,
		PingBurst:           10,
		PingInterval:        25 * time.Second,
		JWTLeeway:           30 * time.Second,
		UserRateLimit:       50,
		UserRateBurst:       100,
		UserRateWait:        time.Second,
		WorkerInFlightBytes: 64 << 20,
		ShutdownTimeout:     10 * time.Second,
		WorkerHangTimeout:   10 * time.Second,
		MaxConns:            50000,
		MaxConnsPerUser:     64,
		HistoryWindow:       proto.DefaultHistoryWindow,
		MaxReplay:           1000,
		FanoutMode:          string(proto.FanoutShared),
		FanoutLinger:        5 * time.Second,
		RevokeTTL:           24 * time.Hour,
		PresenceTTL:         30 * time.Second,
		LifecycleHooks:      true,
		// Next to the client port, and away from 9090 (Prometheus itself)
		// and the 9100-9999 range its exporters have allocated. Loopback
		// only: the admin port has no authentication, so exposing it is a
		// decision (compose makes it, inside its own network).
		MetricsAddr: "127.0.0.1:7998",
		WorkerIndex: -1,

		// One read of the workers' metrics per second at most, however
		// often /metrics is scraped.
		MetricsCache: time.Second,
		// Per client address and worker: a slowloris client holds at most
		// 64 connections without headers (besides those of the last
		// half second), and one address may try 50 upgrades a second,
		// 200 at once (a NAT of many users reconnecting after a restart
		// spreads over a few seconds).
		IPPending:      64,
		IPUpgradeRate:  50,
		IPUpgradeBurst: 200,
	}
}

// Load returns Default overridden by the environment (through getenv) and
// then by flags in args, with the secret read from GATEWAY_JWT_SECRET_FILE
// when that is set (or the dev secret in dev mode when neither is), and the
// previous secret from GATEWAY_JWT_PREVIOUS_SECRET_FILE likewise,
// validated. Each setting's flag is its environment name in lower case with
// dashes: GATEWAY_ADDR is -gateway-addr.
func Load(args []string, getenv func(string) string) (Config, error) {
	c, err := Parse(args, getenv)
	if err != nil {
		return c, err
	}
	if err := c.resolveSecret(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// secretSetting is a secret given either in its variable or in a file
// named by a second one: the current JWT secret and the previous one.
type secretSetting struct {
	env, fileEnv string
	value        *string // the secret, where resolveSecret puts a file's
	file         string  // the file's path; "" = none
}

// secrets lists the JWT secrets that may be given as files.
func (c *Config) secrets() []secretSetting {
	return []secretSetting{
		{"GATEWAY_JWT_SECRET", "GATEWAY_JWT_SECRET_FILE", &c.JWTSecret, c.JWTSecretFile},
		{"GATEWAY_JWT_PREVIOUS_SECRET", "GATEWAY_JWT_PREVIOUS_SECRET_FILE", &c.JWTPreviousSecret, c.JWTPreviousSecretFile},
	}
}

// resolveSecret reads each secret file that is set into its secret, and
// gives dev mode its secret when none is set.
func (c *Config) resolveSecret() error {
	for _, s := range c.secrets() {
		if err := s.read(); err != nil {
			return err
		}
	}
	if c.JWTSecret == "" && c.Dev {
		c.JWTSecret = DevSecret
	}
	return nil
}

// read reads the secret's file, when one is set, into its value.
func (s secretSetting) read() error {
	if s.file == "" {
		return nil
	}
	if *s.value != "" {
		return fmt.Errorf("%s and %s are both set: set one", s.env, s.fileEnv)
	}
	b, err := os.ReadFile(s.file)
	if err != nil {
		return fmt.Errorf("%s: %w", s.fileEnv, err)
	}
	// A file written by echo or an editor ends with a line break that
	// is no part of the secret.
	*s.value = strings.TrimRight(string(b), "\r\n")
	if *s.value == "" {
		return fmt.Errorf("%s: %s is empty", s.fileEnv, s.file)
	}
	return nil
}

// Usage writes the flags, each with its environment variable and default,
// for -h: a person asked for it, so it is plain text, not a JSON line.
func Usage(w io.Writer) {
	c := Default()
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(w)
	var origins, devNets string
	for _, v := range c.settings(&origins, &devNets) {
		fs.Var(v.value, FlagName(v.env), "same as $"+v.env)
	}
	fmt.Fprintf(w, "usage: gateway [flags]     the supervisor, and its workers (docs/operations.md lists every setting)\n"+
		"       gateway token [-ttl 24h] USER\n"+
		"       gateway health [-ready] [URL]\n"+
		"Every setting is an environment variable, or the flag of the same name (a flag wins):\n")
	fs.PrintDefaults()
}

// Parse is Load without Validate, for commands that need only some
// settings (such as the addresses "gateway health" dials) and must work
// where the others are not set. It fails only on a value that does not
// parse.
func Parse(args []string, getenv func(string) string) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var origins, devNets string
	vars := c.settings(&origins, &devNets)
	for _, v := range vars {
		fs.Var(v.value, FlagName(v.env), "same as $"+v.env)
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		// The flag package stops at the first word that is not a flag:
		// dropped, it would take every flag after it along, and a boolean
		// given its value as a word ("-gateway-dev false") would mean the
		// opposite of what it says.
		return c, fmt.Errorf("unexpected arguments %q: a flag's value goes after = for on/off settings (-gateway-dev=false), and the subcommands are token and health", fs.Args())
	}
	// The environment goes to the settings no flag set: a flag wins,
	// also over a variable whose value would not parse.
	byFlag := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { byFlag[f.Name] = true })
	for _, v := range vars {
		s := getenv(v.env)
		if s == "" || byFlag[FlagName(v.env)] {
			continue
		}
		if err := v.value.Set(s); err != nil {
			return c, fmt.Errorf("%s=%q: %w", v.env, s, err)
		}
	}
	for _, o := range list(origins) {
		c.AllowedOrigins = append(c.AllowedOrigins, withoutDefaultPort(o))
	}
	for _, n := range list(devNets) {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return c, fmt.Errorf("GATEWAY_DEV_TOKEN_NETS: %q is not a network such as 172.16.0.0/12", n)
		}
		c.DevTokenNets = append(c.DevTokenNets, p.Masked())
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
	if s := getenv(WatchdogBeatEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("%s=%q: want a positive duration", WatchdogBeatEnv, s)
		}
		c.WatchdogBeat = d
	}
	for _, x := range []struct {
		env string
		fd  *int
	}{{AnnounceFDEnv, &c.AnnounceFD}, {OrphansFDEnv, &c.OrphansFD}} {
		if s := getenv(x.env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 3 {
				return c, fmt.Errorf("%s=%q: want a file descriptor", x.env, s)
			}
			*x.fd = n
		}
	}
	c.Faults = loadFaults(getenv)
	return c, nil
}

// list splits a comma-separated setting, dropping spaces and empty items;
// nil when there are none.
func list(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Environ returns every setting of a loaded Config as KEY=value. The
// supervisor hands its settings to workers this way rather than as flags,
// so a secret given as a flag does not show on every worker's command line.
// A secret read from GATEWAY_JWT_SECRET_FILE is not among them: the workers
// read the file themselves, and GATEWAY_JWT_SECRET is handed on empty
// (unset), so the secret is in no process's environment; the same goes for
// GATEWAY_JWT_PREVIOUS_SECRET_FILE.
func (c Config) Environ() []string {
	origins := strings.Join(c.AllowedOrigins, ",")
	nets := make([]string, len(c.DevTokenNets))
	for i, n := range c.DevTokenNets {
		nets[i] = n.String()
	}
	devNets := strings.Join(nets, ",")
	fromFile := map[string]bool{}
	for _, s := range c.secrets() {
		fromFile[s.env] = s.file != ""
	}
	vars := c.settings(&origins, &devNets)
	env := make([]string, 0, len(vars))
	for _, v := range vars {
		if fromFile[v.env] {
			env = append(env, v.env+"=")
			continue
		}
		env = append(env, v.env+"="+v.value.String())
	}
	return env
}

type setting struct {
	env   string
	value flag.Value
}

// settings lists every setting with the field it sets; origins and
// devNets stand in for AllowedOrigins and DevTokenNets, which are parsed
// from them.
func (c *Config) settings(origins, devNets *string) []setting {
	return []setting{
		{"GATEWAY_ADDR", (*stringValue)(&c.Addr)},
		{"GATEWAY_WORKERS", (*intValue)(&c.Workers)},
		{"GATEWAY_JWT_SECRET", (*stringValue)(&c.JWTSecret)},
		{"GATEWAY_JWT_SECRET_FILE", (*stringValue)(&c.JWTSecretFile)},
		{"GATEWAY_JWT_PREVIOUS_SECRET", (*stringValue)(&c.JWTPreviousSecret)},
		{"GATEWAY_JWT_PREVIOUS_SECRET_FILE", (*stringValue)(&c.JWTPreviousSecretFile)},
		{"GATEWAY_JWT_AUDIENCE", (*stringValue)(&c.JWTAudience)},
		{"GATEWAY_JWT_LEEWAY", (*durationValue)(&c.JWTLeeway)},
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
		{"GATEWAY_PING_RATE", (*float64Value)(&c.PingRate)},
		{"GATEWAY_PING_BURST", (*float64Value)(&c.PingBurst)},
		{"GATEWAY_PING_INTERVAL", (*durationValue)(&c.PingInterval)},
		{"GATEWAY_USER_RATE_LIMIT", (*float64Value)(&c.UserRateLimit)},
		{"GATEWAY_USER_RATE_BURST", (*intValue)(&c.UserRateBurst)},
		{"GATEWAY_USER_RATE_WAIT", (*durationValue)(&c.UserRateWait)},
		{"GATEWAY_WORKER_INFLIGHT_BYTES", (*int64Value)(&c.WorkerInFlightBytes)},
		{"GATEWAY_SHUTDOWN_TIMEOUT", (*durationValue)(&c.ShutdownTimeout)},
		{"GATEWAY_WORKER_HANG_TIMEOUT", (*durationValue)(&c.WorkerHangTimeout)},
		{"GATEWAY_METRICS_ADDR", (*offValue)(&c.MetricsAddr)},
		{"GATEWAY_MAX_CONNS", (*intValue)(&c.MaxConns)},
		{"GATEWAY_MAX_CONNS_PER_USER", (*intValue)(&c.MaxConnsPerUser)},
		{"HISTORY_WINDOW", (*durationValue)(&c.HistoryWindow)},
		{"GATEWAY_MAX_REPLAY", (*intValue)(&c.MaxReplay)},
		{"FANOUT_MODE", (*stringValue)(&c.FanoutMode)},
		{"GATEWAY_FANOUT_LINGER", (*durationValue)(&c.FanoutLinger)},
		{"GATEWAY_REVOKE_TTL", (*durationValue)(&c.RevokeTTL)},
		{"GATEWAY_PRESENCE_TTL", (*durationValue)(&c.PresenceTTL)},
		{"GATEWAY_LIFECYCLE_HOOKS", (*onOffValue)(&c.LifecycleHooks)},
		{"GATEWAY_DEV_TOKEN_NETS", (*stringValue)(devNets)},
		{"GATEWAY_METRICS_CACHE", (*durationValue)(&c.MetricsCache)},
		{"GATEWAY_IP_PENDING", (*intValue)(&c.IPPending)},
		{"GATEWAY_IP_UPGRADE_RATE", (*float64Value)(&c.IPUpgradeRate)},
		{"GATEWAY_IP_UPGRADE_BURST", (*intValue)(&c.IPUpgradeBurst)},
		{"NATS_CREDS", (*stringValue)(&c.NATSCreds)},
	}
}

// MinSendQueue is the smallest GATEWAY_SEND_QUEUE: a replay (or a gap
// filled) sends at least one event into an empty queue, and beside it
// the same read may send a resync of the socket's other stream, and a
// ping tick a ping and a heartbeat (package resume keeps
// resume.MarginFrames, 3, of the queue for them; its tests check the
// two agree). A smaller queue would close its socket for the gateway's
// own frames.
const MinSendQueue = 4

// Cores is the number of CPU cores this process may use, the default
// number of workers: the Go runtime's GOMAXPROCS, which is the host's
// logical CPUs (within the process's CPU affinity), fewer in a container
// with a CPU limit (rounded up, at least 2: Go's default since 1.25), or
// the operator's GOMAXPROCS. Counting the host's CPUs instead started 64
// workers in a pod limited to 2 CPUs on a 64-core node, each with its own
// connections, throttled together.
func Cores() int { return runtime.GOMAXPROCS(0) }

// MaxWorkers is the most GATEWAY_WORKERS: above the logical CPUs of a
// two-socket server (a few hundred), so one worker per core fits where a
// gateway runs (the default is capped at it too), while a typo such as
// 100000 is refused rather than starting that many processes, each with
// its own NATS connection and Redis subscriber (Redis takes 10000 clients
// by default). A fixed number, not a multiple of the CPUs, so that a
// setting valid on one host is valid on every host: in a container NumCPU
// counts the host's CPUs, not the quota.
const MaxWorkers = 1024

// MinSendQueueBytes is the smallest GATEWAY_SEND_QUEUE_BYTES: the largest
// frame of a dispatched event (proto.MaxEventFrame) with the gateway's own
// frames that may join it in the queue (a resync and a heartbeat, what
// package resume keeps free: resume.MarginBytes), and at least an ack with
// a handler's result (proto.MaxAckFrame). A socket's queue smaller than
// that could never take such an event, live or replayed: the socket would
// be closed as a slow consumer at every resume that replays it, and never
// recover.
const MinSendQueueBytes = max(proto.MaxEventFrame+proto.MaxResyncFrame+proto.MaxHeartbeatFrame, proto.MaxAckFrame)

// MaxFanoutLinger is the longest GATEWAY_FANOUT_LINGER: a channel kept
// longer only brings dispatches no local socket wants.
const MaxFanoutLinger = 10 * time.Minute

// MaxFanoutQueue bounds GATEWAY_FANOUT_QUEUE, so that a typo with extra
// zeros is refused rather than a worker that cannot make its queue (16
// bytes a slot, made at start) and is restarted for ever: 64 times the
// default, 32 MiB of slots.
const MaxFanoutQueue = 1 << 21

// Bounds of GATEWAY_PRESENCE_TTL when presence is on. Below 3 s a lease,
// refreshed every third of it, would lapse after one slow round trip to
// Redis (presence.MinTTL); above 10 min a dead worker's sockets would
// count as online for that long.
const (
	MinPresenceTTL = 3 * time.Second
	MaxPresenceTTL = 10 * time.Minute
)

// MaxJWTLeeway is the longest GATEWAY_JWT_LEEWAY: a token is a bearer
// credential, and clocks farther apart than this need fixing, not
// tolerating.
const MaxJWTLeeway = 5 * time.Minute

// Bounds of GATEWAY_PING_INTERVAL. A socket is closed after 60 s without
// a sign of life, so the gateway pings at least twice in that time; below
// 100 ms the pinger's ticks (a hundredth of the interval) would cost more
// than they are worth.
const (
	MinPingInterval = 100 * time.Millisecond
	MaxPingInterval = 30 * time.Second
)

// MinWorkerHangTimeout and MaxWorkerHangTimeout bound
// GATEWAY_WORKER_HANG_TIMEOUT: below a second, a stall of the whole
// machine (a VM paused, heavy steal) would pass for a hang; above ten
// minutes the watchdog would come too late to matter.
const (
	MinWorkerHangTimeout = time.Second
	MaxWorkerHangTimeout = 10 * time.Minute
)

// Fanout returns the fan-out mode of a validated Config.
func (c Config) Fanout() proto.FanoutMode {
	m, _ := proto.ParseFanoutMode(c.FanoutMode)
	return m
}

// FlagName returns the flag that mirrors an environment variable.
func FlagName(env string) string { return strings.ReplaceAll(strings.ToLower(env), "_", "-") }

// Validate reports every setting that cannot work, joined into one error.
func (c Config) Validate() error {
	var errs []error
	if err := c.validateSecret(); err != nil {
		errs = append(errs, err)
	}
	if c.Workers < 1 || c.Workers > MaxWorkers {
		errs = append(errs, fmt.Errorf("GATEWAY_WORKERS must be from 1 to %d, got %d", MaxWorkers, c.Workers))
	}
	if err := serverurl.NATS(c.NATSURL); err != nil {
		errs = append(errs, fmt.Errorf("NATS_URL: %w", err))
	}
	if err := serverurl.Redis(c.RedisURL); err != nil {
		errs = append(errs, fmt.Errorf("REDIS_URL: %w", err))
	}
	if err := httpserver.CheckAddr(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("GATEWAY_ADDR: %w", err))
	}
	if c.MetricsAddr != "" {
		if err := httpserver.CheckAddr(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("GATEWAY_METRICS_ADDR: %w (or off for none)", err))
		}
	}
	for _, o := range c.AllowedOrigins {
		if isOrigin(o) && !asciiHost(o) {
			errs = append(errs, fmt.Errorf("GATEWAY_ALLOWED_ORIGINS: %q: write the host in its ASCII form (xn--...), which is what browsers send in Origin", o))
			continue
		}
		if !isOrigin(o) {
			errs = append(errs, fmt.Errorf("GATEWAY_ALLOWED_ORIGINS: %q is not an origin such as https://app.example:8443 (a scheme and a host, no path, not even a final /), which no browser's Origin equals, or *", o))
		}
	}
	if c.MaxFrame < 64 {
		errs = append(errs, fmt.Errorf("GATEWAY_MAX_FRAME must be at least 64 bytes, got %d", c.MaxFrame))
	}
	if c.JWTAudience != strings.TrimSpace(c.JWTAudience) {
		// No token's "aud" would match, so every client would get 401.
		errs = append(errs, fmt.Errorf("GATEWAY_JWT_AUDIENCE must not start or end with white space, got %q", c.JWTAudience))
	}
	if c.JWTLeeway < 0 || c.JWTLeeway > MaxJWTLeeway {
		errs = append(errs, fmt.Errorf("GATEWAY_JWT_LEEWAY must be from 0 to %s, got %s", MaxJWTLeeway, c.JWTLeeway))
	}
	if c.HandlerTimeout <= 0 {
		errs = append(errs, fmt.Errorf("GATEWAY_HANDLER_TIMEOUT must be positive, got %s", c.HandlerTimeout))
	}
	if c.SendQueueLen < MinSendQueue {
		errs = append(errs, fmt.Errorf("GATEWAY_SEND_QUEUE must be at least %d frames, a part of a replay, a resync, a ping and a heartbeat, got %d",
			MinSendQueue, c.SendQueueLen))
	}
	if c.SendQueueBytes < MinSendQueueBytes {
		errs = append(errs, fmt.Errorf("GATEWAY_SEND_QUEUE_BYTES must be at least %d, the largest frame of a dispatched event with a resync and a heartbeat, got %d",
			MinSendQueueBytes, c.SendQueueBytes))
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
	if c.FanoutQueue < 64 || c.FanoutQueue > MaxFanoutQueue {
		errs = append(errs, fmt.Errorf("GATEWAY_FANOUT_QUEUE must be from 64 to %d, got %d", MaxFanoutQueue, c.FanoutQueue))
	}
	if !(c.RateLimit >= 0) || math.IsInf(c.RateLimit, 0) || c.RateCloseAfter < 0 ||
		(c.RateLimit > 0 && (!(c.RateBurst >= 1) || math.IsInf(c.RateBurst, 0))) { // !(x >= n) also refuses NaN
		errs = append(errs, fmt.Errorf("GATEWAY_RATE_LIMIT and GATEWAY_RATE_CLOSE_AFTER must not be negative, and GATEWAY_RATE_BURST must be at least 1, got %g, %d and %g",
			c.RateLimit, c.RateCloseAfter, c.RateBurst))
	}
	if !(c.PingRate >= 0) || math.IsInf(c.PingRate, 0) ||
		(c.PingRate > 0 && (!(c.PingBurst >= 1) || math.IsInf(c.PingBurst, 0))) {
		errs = append(errs, fmt.Errorf("GATEWAY_PING_RATE must not be negative (0 = answer every ping), and GATEWAY_PING_BURST must be at least 1, got %g and %g",
			c.PingRate, c.PingBurst))
	}
	if c.PingInterval < MinPingInterval || c.PingInterval > MaxPingInterval {
		errs = append(errs, fmt.Errorf("GATEWAY_PING_INTERVAL must be from %s to %s, got %s", MinPingInterval, MaxPingInterval, c.PingInterval))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("GATEWAY_SHUTDOWN_TIMEOUT must be positive"))
	}
	if c.WorkerHangTimeout != 0 && (c.WorkerHangTimeout < MinWorkerHangTimeout || c.WorkerHangTimeout > MaxWorkerHangTimeout) {
		errs = append(errs, fmt.Errorf("GATEWAY_WORKER_HANG_TIMEOUT must be 0 (no watchdog) or from %s to %s, got %s",
			MinWorkerHangTimeout, MaxWorkerHangTimeout, c.WorkerHangTimeout))
	}
	if !(c.UserRateLimit >= 0) || math.IsInf(c.UserRateLimit, 0) || (c.UserRateLimit > 0 && c.UserRateBurst < 1) {
		errs = append(errs, fmt.Errorf("GATEWAY_USER_RATE_LIMIT must not be negative, and GATEWAY_USER_RATE_BURST must be at least 1, got %g and %d",
			c.UserRateLimit, c.UserRateBurst))
	}
	if c.UserRateWait < 0 || c.UserRateWait > time.Minute {
		errs = append(errs, errors.New("GATEWAY_USER_RATE_WAIT must be 0 to 1m"))
	}
	if c.WorkerInFlightBytes < 0 {
		errs = append(errs, errors.New("GATEWAY_WORKER_INFLIGHT_BYTES must not be negative (0 = no limit)"))
	}
	if c.MaxConns < 0 || c.MaxConnsPerUser < 0 {
		errs = append(errs, fmt.Errorf("GATEWAY_MAX_CONNS and GATEWAY_MAX_CONNS_PER_USER must not be negative (0 = unlimited), got %d and %d",
			c.MaxConns, c.MaxConnsPerUser))
	}
	if c.NATSCreds != "" {
		if err := serverurl.NATSCreds(c.NATSCreds); err != nil {
			errs = append(errs, fmt.Errorf("NATS_CREDS: %w", err))
		}
	}
	if c.MetricsCache < 0 {
		errs = append(errs, errors.New("GATEWAY_METRICS_CACHE must not be negative"))
	}
	if c.IPPending < 0 || !(c.IPUpgradeRate >= 0) || math.IsInf(c.IPUpgradeRate, 0) ||
		(c.IPUpgradeRate > 0 && c.IPUpgradeBurst < 1) {
		errs = append(errs, fmt.Errorf("GATEWAY_IP_PENDING and GATEWAY_IP_UPGRADE_RATE must not be negative (0 = none), and GATEWAY_IP_UPGRADE_BURST must be at least 1, got %d, %g and %d",
			c.IPPending, c.IPUpgradeRate, c.IPUpgradeBurst))
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
	if _, err := proto.ParseFanoutMode(c.FanoutMode); err != nil {
		errs = append(errs, fmt.Errorf("FANOUT_MODE: %w", err))
	}
	if c.RevokeTTL <= 0 {
		errs = append(errs, fmt.Errorf("GATEWAY_REVOKE_TTL must be positive (the longest lifetime of your tokens), got %s", c.RevokeTTL))
	}
	if c.FanoutLinger < 0 || c.FanoutLinger > MaxFanoutLinger {
		errs = append(errs, fmt.Errorf("GATEWAY_FANOUT_LINGER must be from 0 to %s, got %s", MaxFanoutLinger, c.FanoutLinger))
	}
	if c.PresenceTTL != 0 && (c.PresenceTTL < MinPresenceTTL || c.PresenceTTL > MaxPresenceTTL) {
		errs = append(errs, fmt.Errorf("GATEWAY_PRESENCE_TTL must be 0 (presence off) or from %s to %s, got %s", MinPresenceTTL, MaxPresenceTTL, c.PresenceTTL))
	}
	return errors.Join(errs...)
}

// withoutDefaultPort returns origin o with its port as browsers write an
// Origin's: none for the scheme's default (https://app.example:443, or
// :0443, is https://app.example) or an empty one, else the number without
// leading zeros (:08443 is :8443). Compared letter for letter, the entry
// would match no browser. A port that is no port is left for the check
// to refuse.
func withoutDefaultPort(o string) string {
	u, err := url.Parse(o)
	if err != nil || !strings.Contains(u.Host, ":") || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return o
	}
	host := u.Hostname()
	if strings.Contains(host, "%") {
		return o // an IPv6 zone: left as written
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if u.Port() == "" {
		if strings.HasSuffix(u.Host, ":") {
			return u.Scheme + "://" + host
		}
		return o
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil || port < 1 || port > 65535 {
		return o
	}
	if scheme := strings.ToLower(u.Scheme); scheme == "https" && port == 443 || scheme == "http" && port == 80 {
		return u.Scheme + "://" + host
	}
	return u.Scheme + "://" + host + ":" + strconv.Itoa(port)
}

// asciiHost reports whether origin o's host, as browsers read it
// (percent-decoded), is ASCII: an Origin carries the xn-- form.
func asciiHost(o string) bool {
	u, err := url.Parse(o)
	if err != nil {
		return isASCII(o)
	}
	return isASCII(u.Host) && isASCII(o)
}

// isASCII reports whether s is ASCII.
func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isOrigin reports whether o can equal a browser's Origin header: *, null
// (what a sandboxed or file:// page sends), or scheme://host[:port] alone.
// An entry with a path (a copied address's final "/"), user info, a query
// or no scheme is refused at start: it would refuse every browser.
func isOrigin(o string) bool {
	if o == "*" || o == "null" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Port() != "" && !validPort(u.Port()) {
		return false
	}
	return u.Scheme != "" && u.Host != "" && u.Opaque == "" && u.User == nil &&
		u.Path == "" && u.RawQuery == "" && !u.ForceQuery && u.Fragment == "" && !strings.HasSuffix(o, "#")
}

// validPort reports whether p is a TCP port number, 1 to 65535.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && p[0] != '+'
}

// validateSecret checks the JWT secrets against the mode: dev mode takes
// the public dev secret only, and no previous secret, so /dev/token can
// never mint tokens that a production gateway with the same configuration
// would accept; outside dev mode the dev secret and short secrets are
// refused, as the previous secret as the current one.
func (c Config) validateSecret() error {
	switch {
	case c.Dev && c.JWTSecret != DevSecret:
		return errors.New("GATEWAY_DEV=1 accepts no secret but the public dev secret, since /dev/token mints tokens for anyone: " +
			"unset GATEWAY_JWT_SECRET and GATEWAY_JWT_SECRET_FILE, or turn dev mode off")
	case c.Dev && c.JWTPreviousSecret != "":
		return errors.New("GATEWAY_DEV=1 accepts no secret but the public dev secret, since /dev/token mints tokens for anyone: " +
			"unset GATEWAY_JWT_PREVIOUS_SECRET and GATEWAY_JWT_PREVIOUS_SECRET_FILE, or turn dev mode off")
	case c.Dev:
		return nil
	case c.JWTSecret == "":
		return errors.New("GATEWAY_JWT_SECRET (or GATEWAY_JWT_SECRET_FILE) is required (or set GATEWAY_DEV=1 for the dev secret)")
	}
	err := checkSecret("GATEWAY_JWT_SECRET", c.JWTSecret)
	if c.JWTPreviousSecret != "" {
		err = errors.Join(err, checkSecret("GATEWAY_JWT_PREVIOUS_SECRET", c.JWTPreviousSecret))
		if c.JWTPreviousSecret == c.JWTSecret {
			// A rotation half done: the new secret was set as the previous
			// one, or the current one was never changed.
			err = errors.Join(err, errors.New("GATEWAY_JWT_PREVIOUS_SECRET is the same as GATEWAY_JWT_SECRET: set the new secret as GATEWAY_JWT_SECRET and the one it replaces as the previous"))
		}
	}
	return err
}

// checkSecret refuses, outside dev mode, the public dev secret and a secret
// shorter than MinSecretLen, naming env; it never shows the secret.
func checkSecret(env, secret string) error {
	switch {
	case secret == DevSecret:
		return fmt.Errorf("%s is the public dev secret, which is refused outside dev mode: set a secret of your own", env)
	case len(secret) < MinSecretLen:
		return fmt.Errorf("%s must be at least %d bytes, got %d: e.g. openssl rand -base64 48", env, MinSecretLen, len(secret))
	}
	return nil
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
	if err != nil {
		return errors.New("want a whole number")
	}
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type int64Value int64

func (v *int64Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	*v = int64Value(n)
	if err != nil {
		return errors.New("want a whole number")
	}
	return nil
}
func (v *int64Value) String() string { return strconv.FormatInt(int64(*v), 10) }

type float64Value float64

func (v *float64Value) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	*v = float64Value(f)
	if err != nil {
		return errors.New("want a number")
	}
	return nil
}
func (v *float64Value) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 64) }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	*v = boolValue(b)
	if err != nil {
		return errors.New("want 1 or 0 (true or false)")
	}
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

// onOffValue is a boolean that also takes "on" and "off", for a setting
// that is on by default.
type onOffValue bool

func (v *onOffValue) Set(s string) error {
	switch s {
	case "on":
		*v = true
		return nil
	case "off":
		*v = false
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want on or off (1 or 0, true or false)")
	}
	*v = onOffValue(b)
	return nil
}
func (v *onOffValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *onOffValue) IsBoolFlag() bool { return true }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	*v = durationValue(d)
	if err != nil {
		return errors.New("want a duration such as 5s")
	}
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }
