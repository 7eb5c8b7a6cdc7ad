package testkit

import (
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
	// NATS and Redis, when set, are the servers to use (started with
	// credentials, say); by default the stack starts its own.
	NATS  *NATS
	Redis *Redis
	// Plain runs binaries built without the race detector (PlainBinaries).
	Plain bool
}

// Stack is a whole switchboard: real Redis, real NATS, handlers-svc and a
// gateway, each its real binary.
type Stack struct {
	t            testing.TB
	Redis        *Redis
	NATS         *NATS
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

// StartStack starts everything and waits until every worker is ready.
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
		handlersBin:  hs,
		opts:         opts,
	}
	if s.Redis == nil {
		s.Redis = StartRedis(t)
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
		"NATS_URL=" + s.NATS.URL(), "REDIS_URL=" + s.Redis.URL(),
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
// answers /readyz with 200.
func (s *Stack) StartGateway() {
	s.t.Helper()
	env := append([]string{
		"GATEWAY_ADDR=" + s.Addr, "GATEWAY_WORKERS=" + strconv.Itoa(s.Workers),
		"GATEWAY_JWT_SECRET=" + s.Secret, "NATS_URL=" + s.NATS.URL(), "REDIS_URL=" + s.Redis.URL(),
		"LOG_LEVEL=debug", "GATEWAY_SHUTDOWN_TIMEOUT=5s", "GATEWAY_METRICS_ADDR=" + s.MetricsAddr,
		// Tests read a counter right after what it counts; the cache
		// (a second by default) would hand them the read before.
		"GATEWAY_METRICS_CACHE=0s",
	}, s.opts.Env...)
	s.Gateway = StartProc(s.t, "gateway", s.gatewayBin, env)
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
