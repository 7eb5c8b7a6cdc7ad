package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/internal/config"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// app is realMain running in the background.
type app struct {
	base   string // http://host:port of the health server
	logs   *observer.ObservedLogs
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startApp(t *testing.T, natsPort, redisPort int, tune ...func(*config.Config)) *app {
	t.Helper()
	return startFamilies(t, handlers.Families(), natsPort, redisPort, tune...)
}

// startFamilies is startApp serving families.
func startFamilies(t *testing.T, families []handlers.Family, natsPort, redisPort int, tune ...func(*config.Config)) *app {
	t.Helper()
	cfg := config.Default()
	cfg.NATSURL = "nats://127.0.0.1:" + strconv.Itoa(natsPort)
	cfg.RedisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort)
	cfg.Addr = "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	cfg.ShutdownTimeout = 5 * time.Second
	for _, fn := range tune {
		fn(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	a := &app{base: "http://" + cfg.Addr, logs: logs, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.err = realMain(ctx, cfg, zap.New(core), families)
	}()
	t.Cleanup(func() {
		cancel()
		<-a.done
	})
	return a
}

// stop cancels realMain's context, as SIGTERM does, and returns its error.
func (a *app) stop(t *testing.T) error {
	t.Helper()
	a.cancel()
	select {
	case <-a.done:
		return a.err
	case <-time.After(30 * time.Second):
		t.Fatal("realMain did not return")
		return nil
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get returns the status and decoded JSON body of GET path; status 0 means
// the server did not answer.
func (a *app) get(path string) (int, map[string]any) {
	resp, err := httpClient.Get(a.base + path)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return resp.StatusCode, m
}

// await polls GET path until it returns want and, unless reason is "", the
// body's reasons name reason.
func (a *app) await(t *testing.T, path string, want int, reason string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var code int
	var body map[string]any
	for time.Now().Before(deadline) {
		code, body = a.get(path)
		if code == want && (reason == "" || hasReason(body, reason)) {
			return
		}
		select {
		case <-tick.C:
		case <-a.done:
			t.Fatalf("realMain returned early: %v", a.err)
		}
	}
	t.Fatalf("GET %s = %d %v, want %d %q", path, code, body, want, reason)
}

// hasReason reports whether a readiness body's reasons name want.
func hasReason(body map[string]any, want string) bool {
	reasons, _ := body["reasons"].([]any)
	return slices.Contains(reasons, any(want))
}

func request(t *testing.T, nc *nats.Conn, req proto.Request) *proto.Error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, proto.Subject(req.Event), proto.AppendRequest(nil, &req))
	if err != nil {
		t.Fatalf("request %s: %v", req.Event, err)
	}
	return proto.DecodeReply(msg.Data)
}

func TestServesEndToEnd(t *testing.T) {
	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	a := startApp(t, ns.Port, rs.Port)
	a.await(t, "/readyz", http.StatusOK, "")
	// The readiness shape both services share.
	if code, body := a.get("/readyz"); code != http.StatusOK || body["status"] != "ready" || len(body) != 2 ||
		body["reasons"] == nil || len(body["reasons"].([]any)) != 0 {
		t.Fatalf("/readyz = %d %v, want 200 {\"status\":\"ready\",\"reasons\":[]}", code, body)
	}
	if code, body := a.get("/healthz"); code != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("/healthz = %d %v", code, body)
	}

	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	ps := rdb.Subscribe(context.Background(), proto.Channel)
	defer ps.Close()
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}

	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	if got := request(t, nc, proto.Request{Event: "sendMessage", Args: json.RawMessage(`{"to":"bob","text":"hi"}`), User: "alice", Conn: "c1", Ref: "r1"}); got != nil {
		t.Fatalf("sendMessage: %+v", got)
	}
	for _, want := range []struct{ event, user string }{{"message", "bob"}, {"message_sent", "alice"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		msg, err := ps.ReceiveMessage(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		d, err := proto.DecodeDispatch([]byte(msg.Payload))
		if err != nil {
			t.Fatal(err)
		}
		if d.Event != want.event || len(d.Users) != 1 || d.Users[0] != want.user {
			t.Fatalf("dispatch %s, want %s to %s", msg.Payload, want.event, want.user)
		}
	}

	for _, tt := range []struct {
		req  proto.Request
		want proto.Code
	}{
		{proto.Request{Event: "postUpdated", Args: json.RawMessage(`{"post":1}`), User: "alice"}, proto.CodeBadRequest},
		{proto.Request{Event: "nope", User: "alice"}, proto.CodeUnknownEvent},
	} {
		if got := request(t, nc, tt.req); got == nil || got.Code != tt.want {
			t.Fatalf("%s: %+v, want %s", tt.req.Event, got, tt.want)
		}
	}

	if err := a.stop(t); err != nil {
		t.Fatalf("realMain: %v", err)
	}
	if a.logs.FilterMessage("drained").Len() != 1 {
		t.Fatal("no drain on shutdown")
	}
}

func TestWaitsForDependencies(t *testing.T) {
	natsPort, redisPort := testkit.FreePort(t), testkit.FreePort(t)
	a := startApp(t, natsPort, redisPort)

	a.await(t, "/healthz", http.StatusOK, "")
	a.await(t, "/readyz", http.StatusServiceUnavailable, "nats not connected")
	// Every reason at once, not the first only.
	if code, body := a.get("/readyz"); code != http.StatusServiceUnavailable || body["status"] != "unavailable" ||
		!hasReason(body, "nats not connected") || !hasReason(body, "redis not answering") || !hasReason(body, "not subscribed yet") {
		t.Fatalf("/readyz = %d %v, want 503 unavailable naming NATS, Redis and the subscription", code, body)
	}
	awaitLog(t, a, "waiting for NATS")

	testkit.StartNATSOn(t, natsPort)
	a.await(t, "/readyz", http.StatusServiceUnavailable, "redis not answering")
	awaitLog(t, a, "waiting for Redis")

	rs := testkit.StartRedisOn(t, redisPort)
	a.await(t, "/readyz", http.StatusOK, "")

	rs.Stop()
	a.await(t, "/readyz", http.StatusServiceUnavailable, "redis not answering")

	if err := a.stop(t); err != nil {
		t.Fatalf("realMain: %v", err)
	}
}

// TestWaitRefusesRedisDatabaseItLacks: a Redis reached only once
// handlers-svc is waiting for it, which refuses REDIS_URL's database, ends
// the start with an error naming REDIS_URL instead of a wait forever.
func TestWaitRefusesRedisDatabaseItLacks(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	cfg := config.Default()
	cfg.NATSURL = n.URL()
	cfg.RedisURL = "redis://" + rd.Addr() + "/99"
	cfg.Addr = "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	done := make(chan error, 1)
	go func() { done <- realMain(context.Background(), cfg, zap.NewNop(), handlers.Families()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "REDIS_URL: database 99") {
			t.Errorf("realMain = %v, want an error naming REDIS_URL and database 99", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("realMain still waiting for a Redis that refuses its database")
	}
}

func TestStopsWhileWaiting(t *testing.T) {
	a := startApp(t, testkit.FreePort(t), testkit.FreePort(t))
	a.await(t, "/readyz", http.StatusServiceUnavailable, "nats not connected")
	if err := a.stop(t); err != nil {
		t.Fatalf("realMain: %v, want a clean exit", err)
	}
}

func awaitLog(t *testing.T, a *app, msg string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for a.logs.FilterMessage(msg).Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %q log", msg)
		}
		<-tick.C
	}
}

// TestHistoryWindowZeroTurnsRecordingOff: HISTORY_WINDOW=0 is recording
// off, which a zero dispatch.Options.Window is not (it is the default
// window); any other window is passed as it is.
func TestHistoryWindowZeroTurnsRecordingOff(t *testing.T) {
	cfg := config.Default()
	cfg.HistoryWindow = 0
	if got := dispatchOptions(cfg).Window; got != dispatch.NoHistory {
		t.Fatalf("HISTORY_WINDOW=0: Window %s, want NoHistory", got)
	}
	cfg.HistoryWindow = 5 * time.Second
	if got := dispatchOptions(cfg).Window; got != 5*time.Second {
		t.Fatalf("HISTORY_WINDOW=5s: Window %s, want 5s", got)
	}
}
