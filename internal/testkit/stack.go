package testkit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testjwt"
	"github.com/switchboard/switchboard/proto"
)

// Secret is the JWT secret of stacks started by StartStack, long enough
// for a gateway outside dev mode (32 bytes at least).
const Secret = "testkit-secret-of-at-least-32-bytes"

// DevSecret is the gateway's public dev secret, the only one a gateway in
// dev mode accepts: the secret of a stack whose environment sets
// GATEWAY_DEV=1.
const DevSecret = "switchboard-dev-secret-do-not-use-in-production"

// StackOptions tune StartStack.
type StackOptions struct {
	Workers     int      // gateway workers (default 2)
	Env         []string // extra gateway environment, KEY=VALUE (NATS_URL and REDIS_URL here win over the stack's)
	HandlersEnv []string // extra handlers-svc environment, likewise
	// HandlersBin, when set, is run in handlers-svc's place: a team's own
	// build of it (package service), with the same environment.
	HandlersBin string
	// NATS and Redis, when set, are the servers to use (started with
	// credentials, say); by default the stack starts its own.
	NATS  *NATS
	Redis *Redis
	// RedisCluster, when set, is the Redis Cluster to use instead of Redis
	// (REDIS_URL in the cluster form).
	RedisCluster *RedisCluster
	// Plain runs binaries built without the race detector (PlainBinaries).
	Plain bool
	// Unready has StartGateway wait only until the gateway's admin
	// address answers /readyz, ready or not: for a gateway the test
	// expects never to be ready.
	Unready bool
}

// Stack is a whole switchboard: real Redis, real NATS, handlers-svc and a
// gateway, each its real binary.
type Stack struct {
	t     testing.TB
	Redis *Redis // on a Redis Cluster, the master of the broadcast stream's slot
	NATS  *NATS  // on a NATS cluster, its first server
	// RedisCluster and NATSCluster are the clusters the stack runs on, in
	// the E2E_REDIS=cluster and E2E_NATS=cluster set-ups; nil otherwise.
	RedisCluster *RedisCluster
	NATSCluster  []*NATS
	Handlers     *Proc
	Gateway      *Proc
	Addr         string // gateway host:port
	MetricsAddr  string // the gateway supervisor's /metrics host:port
	HandlersAddr string
	Workers      int
	Secret       string // the gateway's JWT secret: Secret, or DevSecret in dev mode
	gatewayBin   string
	handlersBin  string
	opts         StackOptions
}

// FanoutModeEnv names the environment variable that sets the FANOUT_MODE
// of every stack StartStack starts (both services), unless the test sets
// one itself: CI runs the end-to-end suites once as they are (shared) and
// once with E2E_FANOUT_MODE=per_user.
const FanoutModeEnv = "E2E_FANOUT_MODE"

// FanoutMode returns the FANOUT_MODE stacks start with by default:
// $E2E_FANOUT_MODE, or "" (the services' default, shared).
func FanoutMode() string { return os.Getenv(FanoutModeEnv) }

// RedisModeEnv and NATSModeEnv name the environment variables that, set
// to "cluster", have StartStack run every stack whose test brings no
// server of its own on a 3-master Redis Cluster (REDIS_URL in the cluster
// form) and a 3-node NATS cluster (NATS_URL listing the nodes): CI's third
// set-up of the end-to-end suites (make e2e-cluster).
const (
	RedisModeEnv = "E2E_REDIS"
	NATSModeEnv  = "E2E_NATS"
)

// RedisClusterMode reports whether stacks run on a Redis Cluster
// ($E2E_REDIS=cluster).
func RedisClusterMode() bool { return os.Getenv(RedisModeEnv) == "cluster" }

// NATSClusterMode reports whether stacks run on a NATS cluster
// ($E2E_NATS=cluster).
func NATSClusterMode() bool { return os.Getenv(NATSModeEnv) == "cluster" }

// SkipOnRedisCluster skips t in the Redis Cluster set-up, saying why: for
// the few tests that act on "the" Redis server.
func SkipOnRedisCluster(t testing.TB, why string) {
	t.Helper()
	if RedisClusterMode() {
		t.Skipf("%s=cluster: %s", RedisModeEnv, why)
	}
}

// RedisURL returns the REDIS_URL of the stack's Redis or Redis Cluster.
func (s *Stack) RedisURL() string {
	if s.RedisCluster != nil {
		return s.RedisCluster.URL()
	}
	return s.Redis.URL()
}

// NATSURL returns the NATS_URL of the stack's NATS server or cluster.
func (s *Stack) NATSURL() string {
	if s.NATSCluster != nil {
		return ClusterURL(s.NATSCluster)
	}
	return s.NATS.URL()
}

// StartStack starts everything and waits until every worker is ready
// (StackOptions.Unready: until the gateway answers).
func StartStack(t testing.TB, opts StackOptions) *Stack {
	t.Helper()
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	if mode := FanoutMode(); mode != "" {
		// First, so that a FANOUT_MODE of the test's own wins (the last
		// of a repeated variable is the one a process sees).
		opts.Env = append([]string{"FANOUT_MODE=" + mode}, opts.Env...)
		opts.HandlersEnv = append([]string{"FANOUT_MODE=" + mode}, opts.HandlersEnv...)
	}
	gw, hs := Binaries(t)
	if opts.Plain {
		gw, hs = PlainBinaries(t)
	}
	s := &Stack{
		t:            t,
		Redis:        opts.Redis,
		NATS:         opts.NATS,
		Addr:         fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		MetricsAddr:  fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		HandlersAddr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Workers:      opts.Workers,
		Secret:       Secret,
		gatewayBin:   gw,
		handlersBin:  cmp.Or(opts.HandlersBin, hs),
		opts:         opts,
	}
	s.RedisCluster = opts.RedisCluster
	if s.Redis == nil && s.RedisCluster == nil && RedisClusterMode() {
		s.RedisCluster = StartRedisCluster(t, 3)
	}
	if s.RedisCluster != nil && s.Redis == nil {
		s.Redis = s.RedisCluster.NodeOf(proto.BroadcastMetaKey)
	}
	if s.Redis == nil {
		s.Redis = StartRedis(t)
	}
	if s.NATS == nil && NATSClusterMode() {
		s.NATSCluster = StartNATSCluster(t, 3)
		s.NATS = s.NATSCluster[0]
	}
	if s.NATS == nil {
		s.NATS = StartNATS(t)
	}
	if slices.Contains(opts.Env, "GATEWAY_DEV=1") {
		s.Secret = DevSecret
	}
	s.StartHandlers()
	s.StartGateway()
	return s
}

// StartHandlers starts handlers-svc and waits until it is ready.
func (s *Stack) StartHandlers() {
	s.t.Helper()
	s.Handlers = StartProc(s.t, "handlers-svc", s.handlersBin, append([]string{
		"NATS_URL=" + s.NATSURL(), "REDIS_URL=" + s.RedisURL(),
		"HANDLERS_ADDR=" + s.HandlersAddr, "LOG_LEVEL=debug",
	}, s.opts.HandlersEnv...))
	Eventually(s.t, 20*time.Second, "handlers-svc is ready", func() bool {
		return httpStatus("http://"+s.HandlersAddr+"/readyz") == http.StatusOK
	})
}

// StopHandlers stops handlers-svc with SIGTERM and waits for it.
func (s *Stack) StopHandlers() {
	s.t.Helper()
	s.Handlers.Signal(syscall.SIGTERM)
	if err := s.Handlers.Wait(20 * time.Second); err != nil {
		s.t.Errorf("handlers-svc exit: %v", err)
	}
}

// StartGateway starts the gateway supervisor and waits until every worker
// answers /readyz with 200 (with Unready, until it answers at all).
func (s *Stack) StartGateway() {
	s.t.Helper()
	env := append([]string{
		"GATEWAY_ADDR=" + s.Addr, "GATEWAY_WORKERS=" + strconv.Itoa(s.Workers),
		"GATEWAY_JWT_SECRET=" + s.Secret, "NATS_URL=" + s.NATSURL(), "REDIS_URL=" + s.RedisURL(),
		"LOG_LEVEL=debug", "GATEWAY_SHUTDOWN_TIMEOUT=5s", "GATEWAY_METRICS_ADDR=" + s.MetricsAddr,
		// Tests read a counter right after what it counts; the cache
		// (a second by default) would hand them the read before.
		"GATEWAY_METRICS_CACHE=0s",
	}, s.opts.Env...)
	s.Gateway = StartProc(s.t, "gateway", s.gatewayBin, env)
	if s.opts.Unready {
		Eventually(s.t, 30*time.Second, "the gateway's admin address answers", func() bool {
			return httpStatus("http://"+s.MetricsAddr+"/readyz") != 0
		})
		return
	}
	s.WaitReady()
}

// WaitReady waits until every worker has answered /readyz with 200.
func (s *Stack) WaitReady() {
	s.t.Helper()
	ready := map[int]bool{}
	Eventually(s.t, 30*time.Second, "every gateway worker is ready", func() bool {
		if w, ok := readyWorker("http://" + s.Addr + "/readyz"); ok {
			ready[w] = true
		}
		return len(ready) == s.Workers
	})
}

// WaitAllReady waits until the gateway's admin address answers /readyz
// with 200, which it does once every worker of this gateway is ready. Unlike
// WaitReady it tells this gateway from another one on the same client port
// (SO_REUSEPORT), whose workers may answer there.
func (s *Stack) WaitAllReady() {
	s.t.Helper()
	Eventually(s.t, 30*time.Second, "every worker of the gateway on "+s.MetricsAddr+" is ready", func() bool {
		return httpStatus("http://"+s.MetricsAddr+"/readyz") == http.StatusOK
	})
}

// Metrics reads and parses the gateway's /metrics: every worker's series,
// labelled worker="N", and the supervisor's. It fails the test if the page
// cannot be read.
func (s *Stack) Metrics() Samples {
	s.t.Helper()
	return MustReadMetrics(s.t, "http://"+s.MetricsAddr+"/metrics")
}

// HandlersMetrics reads and parses handlers-svc's /metrics.
func (s *Stack) HandlersMetrics() Samples {
	s.t.Helper()
	return MustReadMetrics(s.t, "http://"+s.HandlersAddr+"/metrics")
}

// Token returns a valid token for user.
func (s *Stack) Token(user string) string {
	tok, err := testjwt.Mint(s.Secret, user, time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// URL returns the WebSocket URL of the gateway.
func (s *Stack) URL() string { return "ws://" + s.Addr + "/socket" }

// Dial connects user and waits for its connected frame.
func (s *Stack) Dial(user string) *Client {
	s.t.Helper()
	return Dial(s.t, s.URL(), s.Token(user))
}

// DialOn connects user until a socket lands on worker, closing the sockets
// that land elsewhere.
func (s *Stack) DialOn(user string, worker int) *Client {
	s.t.Helper()
	for range 200 {
		c := s.Dial(user)
		if c.Worker == worker {
			return c
		}
		c.Close()
	}
	s.t.Fatalf("no socket of %s landed on worker %d in 200 tries", user, worker)
	return nil
}

// WorkerPids maps worker index to pid for the gateway's live workers.
func (s *Stack) WorkerPids() map[int]int {
	out := map[int]int{}
	for _, pid := range s.Gateway.Children() {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "SWITCHBOARD_WORKER_INDEX="); ok {
				if n, err := strconv.Atoi(v); err == nil {
					out[n] = pid
				}
			}
		}
	}
	return out
}

var plainHTTP = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func httpStatus(url string) int {
	resp, err := plainHTTP.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func readyWorker(url string) (int, bool) {
	resp, err := plainHTTP.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var body struct {
		Worker int `json:"worker"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return 0, false
	}
	return body.Worker, true
}
