package worker

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/internal/readiness"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	secret = "worker-test-secret-of-32-bytes-or-more"
	wait   = 10 * time.Second
)

func testConfig() config.Config {
	c := config.Default()
	c.JWTSecret = secret
	c.Workers = 1
	return c
}

func token(t *testing.T, user string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Mint(secret, user, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// running is a Worker serving on a real listener against real NATS and
// Redis.
type running struct {
	w      *Worker
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func startWorker(t *testing.T, cfg config.Config, index int) *running {
	t.Helper()
	return startWorkerWith(t, cfg, index, zap.NewNop())
}

// startWorkerWith is startWorker with the worker's logger and options.
func startWorkerWith(t *testing.T, cfg config.Config, index int, log *zap.Logger, opts ...Option) *running {
	t.Helper()
	r := launchWorker(t, cfg, index, log, opts...)
	testkit.Eventually(t, wait, "the worker is ready", func() bool {
		return status("http://"+r.addr+"/readyz") == http.StatusOK
	})
	return r
}

// launchWorker is startWorkerWith without the wait for the worker to be
// ready: for a worker the test expects not to be.
func launchWorker(t *testing.T, cfg config.Config, index int, log *zap.Logger, opts ...Option) *running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: New(cfg, index, log, opts...), addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.w.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(cfg.ShutdownTimeout + wait):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return r
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(wait + wait):
		t.Fatal("Run did not return after its context was cancelled")
		return nil
	}
}

var plain = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func status(url string) int {
	resp, err := plain.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRun is a whole worker against real NATS and Redis: connected frame,
// a handler round trip, a dispatch, and 1001 on shutdown.
func TestRun(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	reqs := make(chan proto.Request, 10)
	answerOK(t, n.URL(), func(req proto.Request) { reqs <- req })
	pub := publisher(t, rd.URL())

	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.MaxConnsPerUser = 3
	core, logs := observer.New(zap.InfoLevel)
	r := startWorkerWith(t, cfg, 3, zap.New(core))
	url := "ws://" + r.addr + "/socket"

	a1 := testkit.Dial(t, url, token(t, "alice", time.Hour))
	a2 := testkit.Dial(t, url, token(t, "alice", time.Hour))
	b := testkit.Dial(t, url, token(t, "bob", time.Hour))
	for _, c := range []*testkit.Client{a1, a2, b} {
		if c.Worker != 3 || c.Conn == "" {
			t.Errorf("%s: connected frame says worker %d conn %q, want worker 3 and a conn id", c.User, c.Worker, c.Conn)
		}
	}
	if a1.User != "alice" || b.User != "bob" {
		t.Errorf("connected frames name %q and %q, want alice and bob", a1.User, b.User)
	}
	if a1.Conn == a2.Conn {
		t.Errorf("two sockets share the conn id %q", a1.Conn)
	}
	testkit.Eventually(t, wait, "three sockets in the hub", func() bool { return r.w.hub.Len() == 3 })
	if n := r.w.pings.listed(); n != 3 {
		t.Errorf("the pinger lists %d sockets, want 3", n)
	}

	// Handler round trip: the request names the socket's user and conn.
	a2.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "r1")
	if f := a2.ExpectRef(wait, "r1"); f.Event != proto.EventAck || f.ID != "alice" {
		t.Errorf("reply = %+v, want an ack for alice", f)
	}
	if req := <-reqs; req.User != "alice" || req.Conn != a2.Conn || req.Event != "sendMessage" {
		t.Errorf("request = %+v, want sendMessage from alice on %s", req, a2.Conn)
	}

	// A plain GET with a good token, the JavaScript client's probe, passes
	// every check and is no upgrade: 400 with the contract's JSON body,
	// and its place under the socket caps is given back.
	resp, err := plain.Get("http://" + r.addr + "/socket?token=" + token(t, "alice", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var probe struct{ Error proto.Error }
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(body, &probe) != nil || probe.Error.Code != proto.CodeBadRequest || probe.Error.Message == "" {
		t.Errorf("plain GET of /socket: %d %q %s, want 400 application/json with error code %s",
			resp.StatusCode, resp.Header.Get("Content-Type"), body, proto.CodeBadRequest)
	}
	// An upgrade gorilla refuses after the hijack (data sent before the
	// handshake ended) gets no answer but the closed connection.
	raw, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = raw.Write([]byte("GET /socket?token=" + token(t, "alice", time.Hour) + " HTTP/1.1\r\nHost: gw\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\ntoo early"))
	_ = raw.SetReadDeadline(time.Now().Add(wait))
	if got, err := io.ReadAll(raw); err != nil || len(got) != 0 {
		t.Errorf("upgrade with data before the handshake ended: read %q, %v; want the connection closed unanswered", got, err)
	}
	raw.Close()
	// Counted once its place is given back.
	testkit.Eventually(t, wait, "the refused upgrade counted", func() bool {
		return metric(r.w, `switchboard_gateway_upgrades_refused_total{reason="bad_upgrade"}`) == "1"
	})
	// Neither refusal kept a place: alice, with two sockets open, may open
	// a third (GATEWAY_MAX_CONNS_PER_USER is 3), and not a fourth.
	a3 := testkit.Dial(t, url, token(t, "alice", time.Hour))
	if _, resp, err := testkit.TryDial(t, url, token(t, "alice", time.Hour)); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("alice's fourth socket: %v, want 429", err)
	}
	a3.CloseNormally()
	testkit.Eventually(t, wait, "alice's third socket gone from the hub", func() bool { return r.w.hub.Len() == 3 })

	// Dispatch over Redis to every socket of alice, and to bob's by conn.
	d := proto.Dispatch{Event: "message", Args: json.RawMessage(`{"text":"hi"}`), Users: []string{"alice", "alice"}, Conns: []string{b.Conn, a1.Conn}}
	if err := pub.Publish(context.Background(), proto.Channel, proto.AppendDispatch(nil, &d)).Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testkit.Client{a1, a2, b} {
		f := c.ExpectEvent(wait, "message")
		if f.ID != c.User || string(f.Args) != `{"text":"hi"}` {
			t.Errorf("%s got %+v", c.User, f)
		}
	}

	// Shutdown closes every socket with 1001 and Run returns.
	if err := r.stop(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	for _, c := range []*testkit.Client{a1, a2, b} {
		if code := testkit.CloseCode(c.WaitClosed(wait)); code != proto.CloseGoingAway {
			t.Errorf("%s's socket closed with %d, want 1001", c.User, code)
		}
		// Nothing was delivered twice.
		for _, f := range c.Frames() {
			if f.Event == "message" {
				t.Errorf("%s got a second message frame: %+v", c.User, f)
			}
		}
	}
	if r.w.hub.Len() != 0 {
		t.Errorf("%d sockets left in the hub after Run returned", r.w.hub.Len())
	}
	if n := r.w.pings.listed(); n != 0 {
		t.Errorf("%d sockets left in the pinger's lists after Run returned", n)
	}
	// Neither refused upgrade was answered twice.
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "superfluous") || strings.Contains(e.Message, "hijacked") {
			t.Errorf("net/http logged %q", e.Message)
		}
	}
}

// TestReadyz follows /readyz as Redis goes away and comes back.
func TestReadyz(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.ShutdownTimeout = 5 * time.Second
	r := startWorker(t, cfg, 0)
	ready := "http://" + r.addr + "/readyz"
	rd.Stop()
	testkit.Eventually(t, wait, "/readyz answers 503 with Redis down", func() bool { return status(ready) == http.StatusServiceUnavailable })
	rd.Start()
	testkit.Eventually(t, wait, "/readyz answers 200 with Redis back", func() bool { return status(ready) == http.StatusOK })
	n.Stop()
	testkit.Eventually(t, wait, "/readyz answers 503 with NATS down", func() bool { return status(ready) == http.StatusServiceUnavailable })
}

// TestRunWaitsForNATS checks that a worker accepts no socket until NATS is
// connected (section 1: wait for NATS and Redis at start-up): it refuses
// upgrades with 503 unavailable meanwhile, and answers /healthz. And that a
// socket whose NATS goes away later stays open and gets unavailable at once.
func TestRunWaitsForNATS(t *testing.T) {
	rd := testkit.StartRedis(t)
	n := testkit.StartNATS(t)
	n.Stop()
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.ShutdownTimeout = 5 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := New(cfg, 0, zap.NewNop())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, ln) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(cfg.ShutdownTimeout + wait):
			t.Error("Run did not return")
		}
	}()
	base := "http://" + ln.Addr().String()
	testkit.Eventually(t, wait, "/healthz answers while waiting", func() bool { return status(base+"/healthz") == http.StatusOK })
	if got := status(base + "/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before NATS was reachable = %d, want 503", got)
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/socket?token="+token(t, "alice", time.Hour), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade before NATS was reachable: %v %v, want HTTP 503", err, resp)
	}
	var body struct{ Error proto.Error }
	if json.NewDecoder(resp.Body).Decode(&body); body.Error.Code != proto.CodeUnavailable {
		t.Fatalf("503 body code %q, want unavailable", body.Error.Code)
	}
	n.Start()
	testkit.Eventually(t, wait, "the worker serves once NATS is up", func() bool { return status(base+"/readyz") == http.StatusOK })

	c := testkit.Dial(t, "ws://"+ln.Addr().String()+"/socket", token(t, "alice", time.Hour))
	n.Stop()
	testkit.Eventually(t, wait, "/readyz answers 503 with NATS down", func() bool { return status(base+"/readyz") == http.StatusServiceUnavailable })
	start := time.Now()
	c.Send("sendMessage", nil, "r1")
	f := c.ExpectRef(wait, "r1")
	var e proto.Error
	_ = json.Unmarshal(f.Args, &e)
	if f.Event != proto.EventError || e.Code != proto.CodeUnavailable {
		t.Errorf("reply without NATS = %+v, want unavailable", f)
	}
	if took := time.Since(start); took >= cfg.HandlerTimeout {
		t.Errorf("unavailable took %s, as long as the handler timeout", took)
	}
}

// handlerRequests stands in for handlers-svc on the NATS server at url:
// it answers nothing, and hands on every request the worker forwards,
// holding up to n; the test answers them with Respond.
func handlerRequests(t *testing.T, url string, n int) <-chan *nats.Msg {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	asked := make(chan *nats.Msg, n)
	if _, err := nc.Subscribe(proto.SubjectAll, func(m *nats.Msg) { asked <- m }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return asked
}

// TestShutdownFinishesRequestsInFlight checks the order of a worker's
// shutdown: a handler request in flight when it begins is still answered on
// its socket, and only then is the socket closed with 1001. Meanwhile the
// worker's /readyz, which the supervisor's admin address reads, says it is
// shutting down: it takes no socket and refuses every new envelope.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	asked := handlerRequests(t, n.URL(), 1)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.ShutdownTimeout = 5 * time.Second
	r := startWorker(t, cfg, 0)
	admin := httptest.NewServer(r.w.AdminHandler())
	defer admin.Close()
	c := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "alice", time.Hour))
	c.Send("slow", nil, "r1")
	var m *nats.Msg
	select {
	case m = <-asked:
	case <-time.After(wait):
		t.Fatal("the handler was not asked")
	}
	r.cancel()
	// Shutdown has begun once the listener is closed.
	testkit.Eventually(t, wait, "the worker stops accepting", func() bool {
		conn, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	resp, err := plain.Get(admin.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body := readiness.Read(resp)
	resp.Body.Close()
	if body.Ready() || !strings.Contains(strings.Join(body.Reasons, ","), "shutting down") {
		t.Errorf("/readyz while draining: %d %+v, want 503 saying it is shutting down", resp.StatusCode, body)
	}
	if err := m.Respond(proto.AppendReply(nil, nil)); err != nil {
		t.Fatal(err)
	}
	if f := c.ExpectRef(wait, "r1"); f.Event != proto.EventAck {
		t.Errorf("request in flight at shutdown got %+v, want its ack", f)
	}
	if code := testkit.CloseCode(c.WaitClosed(wait)); code != proto.CloseGoingAway {
		t.Errorf("socket closed with %d, want 1001", code)
	}
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
}

// metric returns the value of the series line that starts with series (name
// and labels) in the worker's /metrics, or "" if there is none.
func metric(w *Worker, series string) string {
	rec := httptest.NewRecorder()
	w.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestOverloadRefusesEnvelopesUntilCaughtUp holds a worker's fan-out behind
// a burst of dispatches: the worker reports it lagging, answers a new
// envelope unavailable at once and counts it; once delivery catches up it
// stops lagging, has delivered the whole burst, and forwards envelopes
// again.
func TestOverloadRefusesEnvelopesUntilCaughtUp(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	answerOK(t, n.URL(), nil)
	pub := publisher(t, rd.URL())

	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.FanoutQueue = 64 // lagging from 8 queued dispatches, until 1
	hold := make(chan struct{})
	var release sync.Once
	r := startWorkerWith(t, cfg, 0, zap.NewNop(), WithDelivery(func(next fanout.Deliverer) fanout.Deliverer {
		return held{next: next, hold: hold}
	}))
	t.Cleanup(func() { release.Do(func() { close(hold) }) })
	c := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "alice", time.Hour))

	const burst = 20
	for i := range burst {
		d := proto.Dispatch{Event: "message", Args: json.RawMessage(strconv.Itoa(i)), Users: []string{"alice"}}
		if err := pub.Publish(context.Background(), proto.Channel, proto.AppendDispatch(nil, &d)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, wait, "the worker reads the burst and reports its fan-out lagging", func() bool {
		return metric(r.w, "switchboard_gateway_fanout_backlog") == strconv.Itoa(burst) &&
			metric(r.w, "switchboard_gateway_fanout_lagging") == "1"
	})
	c.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "r1")
	f := c.ExpectRef(wait, "r1")
	var e proto.Error
	_ = json.Unmarshal(f.Args, &e)
	if f.Event != proto.EventError || e.Code != proto.CodeUnavailable || e.Message != "gateway overloaded, retry later" {
		t.Fatalf("reply while lagging = %+v (%+v), want unavailable: gateway overloaded, retry later", f, e)
	}
	for series, want := range map[string]string{
		`switchboard_gateway_overload_refusals_total{reason="fanout_lagging"}`:              "1",
		`switchboard_gateway_overload_refusals_total{reason="requests_in_flight"}`:          "0",
		`switchboard_gateway_envelopes_received_total{event="_other",result="unavailable"}`: "1",
		"switchboard_gateway_fanout_backlog":                                                strconv.Itoa(burst),
		"switchboard_gateway_redis_resubscriptions_total":                                   "0",
	} {
		if got := metric(r.w, series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}

	release.Do(func() { close(hold) })
	testkit.Eventually(t, wait, "the fan-out catches up", func() bool {
		return metric(r.w, "switchboard_gateway_fanout_lagging") == "0" && metric(r.w, "switchboard_gateway_fanout_backlog") == "0"
	})
	for i := range burst {
		f := c.ExpectEvent(wait, "message")
		if string(f.Args) != strconv.Itoa(i) {
			t.Fatalf("dispatch %d carried %s: the burst was not delivered whole and in order", i, f.Args)
		}
	}
	c.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "r2")
	if f := c.ExpectRef(wait, "r2"); f.Event != proto.EventAck {
		t.Errorf("reply after catching up = %+v, want ack", f)
	}
}

// held is a Deliverer that holds each dispatch until hold is closed.
type held struct {
	next fanout.Deliverer
	hold <-chan struct{}
}

func (h held) Deliver(d *proto.Dispatch) int {
	<-h.hold
	return h.next.Deliver(d)
}

// answerOK stands in for handlers-svc on the NATS server at url: it answers
// every request ok, first handing it to seen when that is set, until the
// test ends.
func answerOK(t *testing.T, url string, seen func(proto.Request)) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.QueueSubscribe(proto.SubjectAll, proto.QueueGroup, func(m *nats.Msg) {
		if seen != nil {
			req, _ := proto.DecodeRequest(m.Data)
			seen(req)
		}
		_ = m.Respond(proto.AppendReply(nil, nil))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// publisher returns a Redis client of the server at url, closed when the
// test ends.
func publisher(t *testing.T, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	pub := redis.NewClient(opts)
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

// TestUnrecordedDispatchCounted: a worker with recovery on counts, in
// switchboard_gateway_dispatches_unrecorded_total, a dispatch to users
// that came without a position (a handlers-svc with HISTORY_WINDOW=0),
// and still delivers it; one with a position is not counted.
func TestUnrecordedDispatchCounted(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.ShutdownTimeout = 5 * time.Second
	if cfg.HistoryWindow == 0 {
		t.Fatal("the test config has recovery off")
	}
	r := startWorker(t, cfg, 0)
	c := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "alice", time.Hour))
	pub := publisher(t, rd.URL())
	if err := pub.Publish(context.Background(), proto.Channel, `{"event":"plain","users":["alice"]}`).Err(); err != nil {
		t.Fatal(err)
	}
	c.Expect(wait, "the dispatch without a position", func(f proto.Frame) bool { return f.Event == "plain" })
	if got := metric(r.w, "switchboard_gateway_dispatches_unrecorded_total"); got != "1" {
		t.Errorf("dispatches_unrecorded_total = %q, want 1", got)
	}
}
