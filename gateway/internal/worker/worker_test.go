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

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	secret = "worker-test-secret"
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

func TestCheckOrigin(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		dev     bool
		origin  string // "" = no Origin header
		want    bool
	}{
		{name: "no Origin header", origin: "", want: true},
		{name: "no Origin header with a list", allowed: []string{"https://app.example"}, origin: "", want: true},
		{name: "same host", origin: "http://gw.example:7999", want: true},
		{name: "same host over https", origin: "https://gw.example:7999", want: true},
		{name: "same host other case", origin: "http://GW.example:7999", want: true},
		{name: "same name other port", origin: "http://gw.example:8000", want: false},
		{name: "other origin", origin: "https://evil.example", want: false},
		{name: "subdomain of the host", origin: "http://x.gw.example:7999", want: false},
		{name: "null origin", origin: "null", want: false},
		{name: "unparsable origin", origin: "http://%zz", want: false},
		{name: "dev mode allows any", dev: true, origin: "https://evil.example", want: true},
		{name: "list match", allowed: []string{"https://app.example", "https://admin.example"}, origin: "https://admin.example", want: true},
		{name: "list match other case", allowed: []string{"https://app.example"}, origin: "https://APP.example", want: true},
		{name: "list miss", allowed: []string{"https://app.example"}, origin: "https://evil.example", want: false},
		{name: "list miss on scheme", allowed: []string{"https://app.example"}, origin: "http://app.example", want: false},
		{name: "list miss on port", allowed: []string{"https://app.example"}, origin: "https://app.example:8443", want: false},
		{name: "list replaces own host", allowed: []string{"https://app.example"}, origin: "http://gw.example:7999", want: false},
		{name: "list applies in dev mode too", allowed: []string{"https://app.example"}, dev: true, origin: "https://evil.example", want: false},
		{name: "star", allowed: []string{"*"}, origin: "https://anything.example", want: true},
		{name: "star among others", allowed: []string{"https://app.example", "*"}, origin: "https://anything.example", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.AllowedOrigins, cfg.Dev = tt.allowed, tt.dev
			w := New(cfg, 0, zap.NewNop())
			r := httptest.NewRequest("GET", "http://gw.example:7999/socket", nil)
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if got := w.checkOrigin(r); got != tt.want {
				t.Errorf("checkOrigin(Origin %q, Host %s) = %v, want %v", tt.origin, r.Host, got, tt.want)
			}
		})
	}
}

// TestSocketRefusals runs the worker's routes on a real server and checks
// every refused upgrade: status, content type and the JSON body shape.
func TestSocketRefusals(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://app.example"}
	w := New(cfg, 0, zap.NewNop())
	srv := httptest.NewServer(w.routes())
	defer srv.Close()
	good := token(t, "alice", time.Hour)
	expired, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour)),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		query   string
		header  http.Header
		status  int
		code    proto.Code
		message string // "" = any
	}{
		{name: "no token", status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrNoToken.Message},
		{name: "garbage token", header: http.Header{"Authorization": {"Bearer nope"}},
			status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrMalformed.Message},
		{name: "wrong secret", header: http.Header{"Authorization": {"Bearer " + mustMint(t, "other", "alice")}},
			status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrBadSignature.Message},
		{name: "expired", query: "token=" + expired,
			status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrExpired.Message},
		{name: "no sub", header: http.Header{"Authorization": {"Bearer " + mustMint(t, secret, "")}},
			status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrNoSubject.Message},
		{name: "forbidden origin with a good token",
			header: http.Header{"Authorization": {"Bearer " + good}, "Origin": {"https://evil.example"}},
			status: http.StatusForbidden, code: proto.CodeForbiddenOrigin},
		{name: "forbidden origin without a token", header: http.Header{"Origin": {"https://evil.example"}},
			status: http.StatusForbidden, code: proto.CodeForbiddenOrigin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/socket"
			if tt.query != "" {
				url += "?" + tt.query
			}
			wsc, resp, err := websocket.DefaultDialer.Dial(url, tt.header)
			if err == nil {
				_ = wsc.Close()
				t.Fatal("upgrade succeeded, want it refused")
			}
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			body, _ := io.ReadAll(resp.Body)
			var got map[string]map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %q is not JSON: %v", body, err)
			}
			e := got["error"]
			if len(got) != 1 || len(e) != 2 || e["code"] != string(tt.code) {
				t.Fatalf("body = %s, want {\"error\":{\"code\":%q,\"message\":...}}", body, tt.code)
			}
			msg, _ := e["message"].(string)
			if msg == "" || (tt.message != "" && msg != tt.message) {
				t.Errorf("message = %q, want %q", msg, tt.message)
			}
			if strings.Contains(msg, good) || strings.Contains(msg, expired) {
				t.Errorf("message %q holds the token", msg)
			}
		})
	}
}

func mustMint(t *testing.T, key, user string) string {
	t.Helper()
	tok, err := auth.Mint(key, user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestHealthz(t *testing.T) {
	w := New(testConfig(), 3, zap.NewNop())
	srv := httptest.NewServer(w.routes())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Worker int    `json:"worker"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || body.Status != "ok" || body.Worker != 3 {
		t.Errorf("/healthz = %d %+v, want 200 ok for worker 3", resp.StatusCode, body)
	}
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
	return startWorkerWith(t, cfg, index, nil)
}

// startWorkerWith is startWorker with setup run on the Worker before Run.
func startWorkerWith(t *testing.T, cfg config.Config, index int, setup func(*Worker)) *running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: New(cfg, index, zap.NewNop()), addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	if setup != nil {
		setup(r.w)
	}
	go func() { r.done <- r.w.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(cfg.ShutdownTimeout + wait):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	testkit.Eventually(t, wait, "the worker is ready", func() bool {
		return status("http://"+r.addr+"/readyz") == http.StatusOK
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
	core, logs := observer.New(zap.InfoLevel)
	r := startWorkerWith(t, cfg, 3, func(w *Worker) { w.log = zap.New(core) })
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
	testkit.Eventually(t, wait, "the refused upgrade counted and alice's places given back", func() bool {
		r.w.mu.Lock()
		alice := r.w.counts.perUser["alice"]
		r.w.mu.Unlock()
		return alice == 2 && metric(r.w, `switchboard_gateway_upgrades_refused_total{reason="bad_upgrade"}`) == "1"
	})

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

// TestShutdownFinishesRequestsInFlight checks the order of a worker's
// shutdown: a handler request in flight when it begins is still answered on
// its socket, and only then is the socket closed with 1001.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	asked := make(chan *nats.Msg, 1)
	if _, err := nc.Subscribe(proto.SubjectAll, func(m *nats.Msg) { asked <- m }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.ShutdownTimeout = 5 * time.Second
	r := startWorker(t, cfg, 0)
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

// TestDevToken: /dev/token mints a working token in dev mode only.
func TestDevToken(t *testing.T) {
	for _, dev := range []bool{false, true} {
		cfg := testConfig()
		cfg.Dev = dev
		srv := httptest.NewServer(New(cfg, 0, zap.NewNop()).routes())
		resp, err := http.Get(srv.URL + "/dev/token?user=carol")
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Token, User string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		srv.Close()
		if !dev {
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("/dev/token outside dev mode: %d, want 404", resp.StatusCode)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK || body.User != "carol" {
			t.Fatalf("/dev/token: %d %+v", resp.StatusCode, body)
		}
		user, err := auth.NewVerifier(cfg.JWTSecret, "").Verify(body.Token)
		if err != nil || user != "carol" {
			t.Fatalf("minted token verifies as %q, %v", user, err)
		}
	}
}

// TestProbesAreNotCounted: a refused upgrade counts once by its reason; the
// plain GET the JavaScript client sends after it (its probe) gets the same
// answer and counts nothing, whatever the answer.
func TestProbesAreNotCounted(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://app.example"}
	w := New(cfg, 0, zap.NewNop())
	srv := httptest.NewServer(w.routes())
	defer srv.Close()
	refusedTotal := func(reason string) string {
		rec := httptest.NewRecorder()
		w.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		prefix := `switchboard_gateway_upgrades_refused_total{reason="` + reason + `"} `
		for _, l := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix)
			}
		}
		t.Fatalf("no %s... line in /metrics", prefix)
		return ""
	}
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/socket"
	get := func(query string, header http.Header) int {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/socket?"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// Refused upgrades count.
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL+"?token=nope", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upgrade with a bad token: %v, want 401", err)
	}
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {"https://evil.example"}}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upgrade from a refused origin: %v, want 403", err)
	}
	// Probes answer alike and count nothing.
	good := token(t, "alice", time.Hour)
	probes := []struct {
		name   string
		query  string
		header http.Header
		status int
	}{
		{"bad token", "token=nope", http.Header{}, http.StatusUnauthorized},
		{"refused origin", "token=" + good, http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		// Not started (no NATS, no Redis): the upgrade would get 503 too.
		{"good token", "token=" + good, http.Header{}, http.StatusServiceUnavailable},
	}
	for _, p := range probes {
		if got := get(p.query, p.header); got != p.status {
			t.Errorf("probe with a %s: %d, want %d", p.name, got, p.status)
		}
	}
	want := map[string]string{"unauthorized": "1", "forbidden_origin": "1", "bad_upgrade": "0", "unavailable": "0"}
	for reason, n := range want {
		if got := refusedTotal(reason); got != n {
			t.Errorf("upgrades_refused_total{reason=%q} = %s, want %s", reason, got, n)
		}
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
	r := startWorkerWith(t, cfg, 0, func(w *Worker) { w.beforeDeliver = func() { <-hold } })
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
