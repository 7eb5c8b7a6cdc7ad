package natserve_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func connect(t *testing.T, ns *testkit.NATS) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// running is a Server running in the background; stop cancels it and returns
// Run's error.
type running struct {
	srv    *natserve.Server
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned err
	err    error
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Error("Run did not return")
		return nil
	}
}

// serve runs a Server for h on its own connection and waits until it is
// subscribed. It is stopped, if still running, when the test ends.
func serve(t *testing.T, ns *testkit.NATS, h event.Handler, log *zap.Logger, cfg natserve.Config) *running {
	t.Helper()
	srv := natserve.New(connect(t, ns), h, log, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{srv: srv, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = srv.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	select {
	case <-srv.Ready():
	case <-r.done:
		t.Fatalf("Run: %v", r.err)
	}
	return r
}

// request sends a request for ev as the gateway does and returns the decoded
// reply: nil for {"ok":true}.
func request(t *testing.T, nc *nats.Conn, ev string, req proto.Request) *proto.Error {
	t.Helper()
	return requestRaw(t, nc, proto.Subject(ev), proto.AppendRequest(nil, &req))
}

func requestRaw(t *testing.T, nc *nats.Conn, subject string, body []byte) *proto.Error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	return proto.DecodeReply(msg.Data)
}

func TestReplies(t *testing.T) {
	ns := testkit.StartNATS(t)
	core, logs := observer.New(zapcore.DebugLevel)

	var got atomic.Pointer[event.Request]
	mux := event.NewMux()
	mux.HandleFunc("ok", func(ctx context.Context, r *event.Request) error {
		got.Store(r)
		return nil
	})
	mux.HandleFunc("reject", func(ctx context.Context, r *event.Request) error {
		return event.BadRequest("args.to must be a string")
	})
	mux.HandleFunc("fail", func(ctx context.Context, r *event.Request) error {
		return errors.New("db password is hunter2")
	})
	mux.HandleFunc("down", func(ctx context.Context, r *event.Request) error {
		return &event.Error{Code: proto.CodeUnavailable, Message: "dispatch unavailable", Err: errors.New("dial 10.0.0.1")}
	})
	mux.HandleFunc("slow", func(ctx context.Context, r *event.Request) error {
		<-ctx.Done()
		return ctx.Err()
	})
	mux.HandleFunc("crash", func(ctx context.Context, r *event.Request) error {
		panic("no middleware recovers this")
	})
	serve(t, ns, mux, zap.New(core), natserve.Config{Timeout: 200 * time.Millisecond})
	nc := connect(t, ns)

	tests := []struct {
		name    string
		subject string
		body    []byte
		want    *proto.Error
	}{
		{"ok", proto.Subject("ok"), req("ok"), nil},
		{"handler rejects args", proto.Subject("reject"), req("reject"), &proto.Error{Code: "bad_request", Message: "args.to must be a string"}},
		{"untyped error hidden", proto.Subject("fail"), req("fail"), &proto.Error{Code: "handler_error", Message: "handler failed"}},
		{"unavailable", proto.Subject("down"), req("down"), &proto.Error{Code: "unavailable", Message: "dispatch unavailable"}},
		{"timeout", proto.Subject("slow"), req("slow"), &proto.Error{Code: "timeout", Message: "handler timed out"}},
		{"panic", proto.Subject("crash"), req("crash"), &proto.Error{Code: "handler_error", Message: "handler failed"}},
		{"unknown event", proto.Subject("nope"), req("nope"), &proto.Error{Code: "unknown_event", Message: "no handler for event nope"}},
		{"body not JSON", proto.Subject("ok"), []byte("{not json"), &proto.Error{Code: "bad_request", Message: "request is not a valid JSON object"}},
		{"body without user", proto.Subject("ok"), []byte(`{"event":"ok","args":null,"conn":"c"}`), &proto.Error{Code: "bad_request", Message: "request user is required"}},
		{"body with bad event", proto.Subject("ok"), []byte(`{"event":"o k","user":"u"}`), &proto.Error{Code: "bad_request", Message: "request event must match " + proto.EventPattern}},
		{"subject mismatch", proto.Subject("reject"), req("ok"), &proto.Error{Code: "bad_request", Message: "request event does not match its subject"}},
		{"subject with more tokens", "handlers.ok.x", req("ok"), &proto.Error{Code: "bad_request", Message: "request event does not match its subject"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := requestRaw(t, nc, tt.subject, tt.body)
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Fatalf("reply %+v, want %+v", got, tt.want)
			}
		})
	}

	if got := request(t, nc, "ok", proto.Request{Event: "ok", User: "bob"}); got != nil {
		t.Fatalf("absent args: %+v", got)
	}
	if r := got.Load(); r.User != "bob" || r.Args != nil {
		t.Fatalf("absent args reached the handler as %q, want nil", r.Args)
	}
	if got := request(t, nc, "ok", proto.Request{Event: "ok", User: "alice", Conn: "alice-1", Ref: "r1", Args: []byte(`{"to":"bob"}`)}); got != nil {
		t.Fatal(got)
	}
	r := got.Load()
	if r == nil || r.Event != "ok" || r.User != "alice" || r.Conn != "alice-1" || r.Ref != "r1" || string(r.Args) != `{"to":"bob"}` {
		t.Fatalf("handler saw %+v", r)
	}

	// Failures are logged once each, with their cause and the request's
	// fields; answers the handler chose are logged at debug level.
	for _, c := range []struct {
		event string
		level zapcore.Level
		text  string
	}{
		{"fail", zapcore.ErrorLevel, "db password is hunter2"},
		{"down", zapcore.WarnLevel, "dial 10.0.0.1"},
		{"slow", zapcore.WarnLevel, "context deadline exceeded"},
		{"reject", zapcore.DebugLevel, "args.to must be a string"},
	} {
		entries := logs.FilterMessage("handler failed").FilterField(zap.String("event", c.event)).All()
		if len(entries) != 1 {
			t.Errorf("%s: logged %d times, want once", c.event, len(entries))
			continue
		}
		e := entries[0]
		f := e.ContextMap()
		if e.Level != c.level || f["user"] != "alice" || f["conn"] != "alice-1" || f["error"] == nil {
			t.Errorf("%s: entry %v %v", c.event, e.Level, f)
		}
		if s, _ := f["error"].(string); !contains(s, c.text) {
			t.Errorf("%s: error field %q, want it to contain %q", c.event, s, c.text)
		}
	}
	if logs.FilterMessage("handler panicked").Len() != 1 {
		t.Error("panic not logged")
	}
}

func req(ev string) []byte {
	return proto.AppendRequest(nil, &proto.Request{Event: ev, Args: []byte(`{"to":"bob"}`), User: "alice", Conn: "alice-1", Ref: "r1"})
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// gate is a handler that blocks every call until released and reports each
// call as it starts. It ignores its context, as a misbehaving handler would,
// but reports when the context ends.
type gate struct {
	started  chan string
	release  chan struct{}
	canceled atomic.Int32
	ctxDone  chan struct{} // receives once per handler that saw its context end
}

func newGate() *gate {
	return &gate{started: make(chan string, 16), release: make(chan struct{}), ctxDone: make(chan struct{}, 16)}
}

func (g *gate) ServeEvent(ctx context.Context, r *event.Request) error {
	g.started <- r.Ref
	select {
	case <-g.release:
	case <-ctx.Done():
		g.canceled.Add(1)
		g.ctxDone <- struct{}{}
		<-g.release
	}
	return nil
}

func waitStarted(t *testing.T, g *gate, want string) {
	t.Helper()
	select {
	case ref := <-g.started:
		if ref != want {
			t.Fatalf("started %q, want %q", ref, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("handler for %q did not start", want)
	}
}

// async sends a request in the background; the reply arrives on the channel.
func async(t *testing.T, nc *nats.Conn, ref string) <-chan *proto.Error {
	t.Helper()
	ch := make(chan *proto.Error, 1)
	body := proto.AppendRequest(nil, &proto.Request{Event: "slow", User: "u", Conn: "c", Ref: ref})
	// Publish the request before returning, so requests keep their order.
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest(proto.Subject("slow"), inbox, body); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer sub.Unsubscribe()
		msg, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			ch <- &proto.Error{Code: "test", Message: err.Error()}
			return
		}
		ch <- proto.DecodeReply(msg.Data)
	}()
	return ch
}

func TestGracefulDrain(t *testing.T) {
	ns := testkit.StartNATS(t)
	g := newGate()
	r := serve(t, ns, g, zap.NewNop(), natserve.Config{MaxConcurrent: 1, Timeout: 20 * time.Second})
	nc := connect(t, ns)

	first := async(t, nc, "first")
	waitStarted(t, g, "first")
	// The only slot is taken: the second request waits in the subscription.
	second := async(t, nc, "second")

	// Shut down with both requests in hand: one in flight, one queued.
	r.cancel()
	// Run cannot return while a handler it owns is blocked.
	select {
	case <-r.done:
		t.Fatalf("Run returned %v with a handler in flight", r.err)
	default:
	}
	close(g.release)

	for name, ch := range map[string]<-chan *proto.Error{"first": first, "second": second} {
		if got := <-ch; got != nil {
			t.Fatalf("%s: reply %+v, want ok", name, got)
		}
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	waitStarted(t, g, "second")
	if n := g.canceled.Load(); n != 0 {
		t.Fatalf("%d handlers were cancelled during a clean drain", n)
	}
}

func TestNoNewRequestsAfterDrain(t *testing.T) {
	ns := testkit.StartNATS(t)
	g := newGate()
	close(g.release)
	r := serve(t, ns, g, zap.NewNop(), natserve.Config{})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	nc := connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := nc.RequestWithContext(ctx, proto.Subject("slow"), req("slow"))
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request after Run returned: %v, want no responders", err)
	}
}

func TestShutdownTimeout(t *testing.T) {
	ns := testkit.StartNATS(t)
	g := newGate()
	defer close(g.release) // let the stuck handler end before the leak check
	r := serve(t, ns, g, zap.NewNop(), natserve.Config{Timeout: 20 * time.Second, ShutdownTimeout: time.Second})
	nc := connect(t, ns)

	_ = async(t, nc, "stuck")
	waitStarted(t, g, "stuck")
	err := r.stop(t)
	if err == nil || !contains(err.Error(), "1 handlers still running") {
		t.Fatalf("Run: %v, want it to give up on 1 handler", err)
	}
	select {
	case <-g.ctxDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck handler's context was not cancelled")
	}
}

// TestCancelledAtShutdownMayHaveRun: a handler cancelled at the shutdown
// deadline stopped mid-way, so its client is told timeout (it may have
// run), not unavailable, which says a retry is safe; with an idem, its
// key is kept as unknown.
func TestCancelledAtShutdownMayHaveRun(t *testing.T) {
	ns := testkit.StartNATS(t)
	started := make(chan struct{}, 1)
	h := event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	r := serve(t, ns, h, zap.NewNop(), natserve.Config{Timeout: 20 * time.Second, ShutdownTimeout: 300 * time.Millisecond})
	nc := connect(t, ns)
	reply := async(t, nc, "cut")
	<-started
	if err := r.stop(t); err == nil {
		t.Fatal("Run returned nil with a handler cut at its deadline")
	}
	e := <-reply
	if e == nil || e.Code != proto.CodeTimeout || !contains(e.Message, "may have run") {
		t.Fatalf("reply %+v, want timeout: it may have run", e)
	}
}

func TestOverloaded(t *testing.T) {
	ns := testkit.StartNATS(t)
	g := newGate()
	r := serve(t, ns, g, zap.NewNop(), natserve.Config{MaxConcurrent: 1, Timeout: 100 * time.Millisecond})
	nc := connect(t, ns)

	first := async(t, nc, "first")
	waitStarted(t, g, "first")
	// The first handler ignores its deadline and keeps the only slot.
	if got := <-async(t, nc, "second"); got == nil || got.Code != proto.CodeUnavailable || got.Message != "handlers-svc is overloaded" {
		t.Fatalf("second: %+v, want unavailable overloaded", got)
	}
	close(g.release)
	if got := <-first; got != nil {
		t.Fatalf("first: %+v", got)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestQueueGroupSharesRequests(t *testing.T) {
	ns := testkit.StartNATS(t)
	var mu sync.Mutex
	calls := map[int]int{}
	for i := range 2 {
		h := event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
			mu.Lock()
			calls[i]++
			mu.Unlock()
			return nil
		})
		serve(t, ns, h, zap.NewNop(), natserve.Config{})
	}
	nc := connect(t, ns)
	const n = 50
	for range n {
		if got := request(t, nc, "e", proto.Request{Event: "e", User: "u"}); got != nil {
			t.Fatal(got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls[0]+calls[1] != n {
		t.Fatalf("calls %v, want %d in all: each request served once", calls, n)
	}
}

func TestRunTwice(t *testing.T) {
	ns := testkit.StartNATS(t)
	r := serve(t, ns, event.NewMux(), zap.NewNop(), natserve.Config{})
	if err := r.srv.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

// awaitIdle waits until srv has n idle workers.
func awaitIdle(t *testing.T, srv *natserve.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.IdleWorkers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle workers, want %d", srv.IdleWorkers(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWorkersAreReusedAndBounded: after a burst of concurrent requests, at
// most MaxIdleWorkers of the workers that ran them stay, and the next
// request is run by one of them rather than by a new goroutine; when Run
// returns, none is left (and TestMain's leak check finds no goroutine).
func TestWorkersAreReusedAndBounded(t *testing.T) {
	ns := testkit.StartNATS(t)
	const burst = natserve.MaxIdleWorkers + 16
	var started atomic.Int32
	all := make(chan struct{})
	release, releaseHeld := make(chan struct{}), make(chan struct{})
	h := event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
		if r.Ref == "held" {
			<-releaseHeld
			return nil
		}
		if started.Add(1) == burst {
			close(all)
		}
		<-release
		return nil
	})
	r := serve(t, ns, h, zap.NewNop(), natserve.Config{Timeout: 20 * time.Second})
	nc := connect(t, ns)

	replies := make([]<-chan *proto.Error, burst)
	for i := range replies {
		replies[i] = async(t, nc, "burst")
	}
	select {
	case <-all: // every request of the burst runs at once, each in a worker
	case <-time.After(10 * time.Second):
		t.Fatalf("%d of %d handlers started", started.Load(), burst)
	}
	close(release)
	for i, ch := range replies {
		if got := <-ch; got != nil {
			t.Fatalf("request %d: %+v", i, got)
		}
	}
	awaitIdle(t, r.srv, natserve.MaxIdleWorkers)

	held := async(t, nc, "held")
	awaitIdle(t, r.srv, natserve.MaxIdleWorkers-1)
	close(releaseHeld)
	if got := <-held; got != nil {
		t.Fatalf("held: %+v", got)
	}
	awaitIdle(t, r.srv, natserve.MaxIdleWorkers)

	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := r.srv.IdleWorkers(); n != 0 {
		t.Fatalf("%d idle workers after Run returned, want 0", n)
	}
}

// TestShutdownWhileNATSIsDown: a stop while NATS is down (a rollout during
// an outage) has nothing to drain: no request can arrive and no reply
// leave. Run returns once its handlers are done, cleanly. Draining, it
// waited for nats.go's 10 s flush, so handlers-svc (HANDLERS_SHUTDOWN_TIMEOUT
// 10s) took its whole stop timeout and exited as failed, "drain did not
// finish".
func TestShutdownWhileNATSIsDown(t *testing.T) {
	ns := testkit.StartNATS(t)
	g := newGate()
	close(g.release)
	nc := connect(t, ns)
	srv := natserve.New(nc, g, zap.NewNop(), natserve.Config{ShutdownTimeout: 30 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	ns.Stop()
	testkit.Eventually(t, 10*time.Second, "the connection has seen NATS go", func() bool { return !nc.IsConnected() })

	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		// Draining, it took nats.go's 10 s flush timeout, or failed at
		// a ShutdownTimeout below it.
		if took := time.Since(stopped); err != nil || took > 5*time.Second {
			t.Fatalf("Run returned %v after %s with NATS down, want nil at once", err, took)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not return within 40 s of its stop with NATS down (ShutdownTimeout is 30 s)")
	}
}
