package natserve_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// publishLifecycle publishes l as a gateway worker does.
func publishLifecycle(t *testing.T, nc *nats.Conn, l proto.Lifecycle) {
	t.Helper()
	subject, _ := proto.LifecycleSubject(l.Type)
	if err := nc.Publish(subject, proto.AppendLifecycle(nil, &l)); err != nil {
		t.Fatal(err)
	}
}

// seen records what hooks were told, by connection id.
type seen struct {
	mu    sync.Mutex
	conns map[string][]event.Conn
	n     int
}

func (s *seen) hook(_ context.Context, c event.Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[string][]event.Conn{}
	}
	s.conns[c.Conn] = append(s.conns[c.Conn], c)
	s.n++
	return nil
}

func (s *seen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// TestHookOncePerQueueGroup: two instances in the queue group, each with a
// connect and a disconnect hook: every lifecycle message runs the hooks of
// exactly one of them, once, with the message's fields; messages taken
// before a drain are still run by it.
func TestHookOncePerQueueGroup(t *testing.T) {
	ns := testkit.StartNATS(t)
	var s seen
	cfg := natserve.Config{OnConnect: []event.ConnHook{s.hook}, OnDisconnect: []event.ConnHook{s.hook}}
	a := serve(t, ns, event.NewMux(), zap.NewNop(), cfg)
	b := serve(t, ns, event.NewMux(), zap.NewNop(), cfg)
	nc := connect(t, ns)

	const n = 50
	at := time.Now().UnixMilli()
	for i := range n {
		conn := fmt.Sprintf("c-%d", i)
		// Half the connects carry the user's sockets, as from a gateway
		// with presence; the other half do not (-1 to the hook).
		var sockets *int
		if i%2 == 0 {
			sockets = new(int)
			*sockets = i + 1
		}
		publishLifecycle(t, nc, proto.Lifecycle{Type: proto.LifecycleTypeConnect, User: "alice", Conn: conn, Worker: 1, At: at, Resumed: i%2 == 0, Sockets: sockets})
		publishLifecycle(t, nc, proto.Lifecycle{Type: proto.LifecycleTypeDisconnect, User: "alice", Conn: conn, Worker: 1, At: at + 1, Code: 1000, Reason: "client"})
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "every message's hook ran", func() bool { return s.count() >= 2*n })
	// Drained, both have run whatever they had taken.
	for _, r := range []*running{a, b} {
		if err := r.stop(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	if s.count() != 2*n {
		t.Fatalf("hooks ran %d times for %d messages", s.count(), 2*n)
	}
	for i := range n {
		conn := fmt.Sprintf("c-%d", i)
		got := s.conns[conn]
		if len(got) != 2 {
			t.Fatalf("%s: hooks told %d times, want a connect and a disconnect", conn, len(got))
		}
		for _, c := range got {
			if c.User != "alice" || c.Worker != 1 || c.At.UnixMilli() < at || c.At.UnixMilli() > at+1 {
				t.Errorf("%s: told %+v", conn, c)
			}
			if connect := c.Code == 0; connect && c.Resumed != (i%2 == 0) || !connect && (c.Reason != "client" || c.Resumed) {
				t.Errorf("%s: told %+v", conn, c)
			}
			want := -1
			if c.Code == 0 && i%2 == 0 {
				want = i + 1
			}
			if c.Sockets != want {
				t.Errorf("%s: told sockets %d, want %d", conn, c.Sockets, want)
			}
		}
	}
}

// TestHookPanicAndError: a hook that panics or fails is logged with its
// user, conn and event and counted, the hooks after it still run, and the
// service goes on serving hooks and requests.
func TestHookPanicAndError(t *testing.T) {
	ns := testkit.StartNATS(t)
	core, logs := observer.New(zapcore.InfoLevel)
	var mu sync.Mutex
	results := map[string]int{}
	var after seen
	mux := event.NewMux()
	mux.HandleFunc("ping", func(context.Context, *event.Request) error { return nil })
	cfg := natserve.Config{
		OnConnect: []event.ConnHook{
			func(_ context.Context, c event.Conn) error {
				switch c.User {
				case "panics":
					panic("hook bug")
				case "fails":
					return errors.New("presence store down")
				}
				return nil
			},
			after.hook,
		},
		Hooked: func(typ, result string) {
			mu.Lock()
			defer mu.Unlock()
			results[typ+":"+result]++
		},
	}
	serve(t, ns, mux, zap.New(core), cfg)
	nc := connect(t, ns)
	for _, user := range []string{"panics", "fails", "fine"} {
		publishLifecycle(t, nc, proto.Lifecycle{Type: proto.LifecycleTypeConnect, User: user, Conn: user + "-c", At: 1})
	}
	testkit.Eventually(t, 10*time.Second, "the second hook ran for every message", func() bool { return after.count() == 3 })
	if werr := request(t, nc, "ping", proto.Request{Event: "ping", User: "u", Conn: "c"}); werr != nil {
		t.Errorf("a request after a hook panicked: %v", werr)
	}
	mu.Lock()
	want := map[string]int{"connect:panic": 1, "connect:error": 1, "connect:ok": 4}
	if fmt.Sprint(results) != fmt.Sprint(want) {
		t.Errorf("outcomes %v, want %v", results, want)
	}
	mu.Unlock()
	for msg, user := range map[string]string{"lifecycle hook panicked": "panics", "lifecycle hook failed": "fails"} {
		got := logs.FilterMessage(msg).All()
		if len(got) != 1 {
			t.Errorf("%d lines %q, want 1", len(got), msg)
			continue
		}
		f := got[0].ContextMap()
		if f["user"] != user || f["conn"] != user+"-c" || f["event"] != "connect" || got[0].Level != zapcore.ErrorLevel {
			t.Errorf("%q logged %v at %s", msg, f, got[0].Level)
		}
	}
}

// TestNoHooksNoSubscription: without hooks, an instance takes no
// lifecycle message (NATS has no responder for one); with a connect hook
// only, it takes connects and not disconnects.
func TestNoHooksNoSubscription(t *testing.T) {
	ns := testkit.StartNATS(t)
	nc := connect(t, ns)
	responders := func(subject string) bool {
		t.Helper()
		_, err := nc.Request(subject, nil, 200*time.Millisecond)
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return false
		case errors.Is(err, nats.ErrTimeout):
			return true // taken and not answered: a hook subscription
		}
		t.Fatalf("request %s: %v", subject, err)
		return false
	}
	r := serve(t, ns, event.NewMux(), zap.NewNop(), natserve.Config{})
	for _, subject := range []string{proto.LifecycleConnect, proto.LifecycleDisconnect} {
		if responders(subject) {
			t.Errorf("without hooks, %s is subscribed", subject)
		}
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	var s seen
	serve(t, ns, event.NewMux(), zap.NewNop(), natserve.Config{OnConnect: []event.ConnHook{s.hook}})
	if !responders(proto.LifecycleConnect) {
		t.Errorf("with a connect hook, %s is not subscribed", proto.LifecycleConnect)
	}
	if responders(proto.LifecycleDisconnect) {
		t.Errorf("with no disconnect hook, %s is subscribed", proto.LifecycleDisconnect)
	}
}

// TestHooksLeaveRequestsSlots: a reconnect storm's hooks (a drain's
// disconnects, then the connects) that are slow, here stuck on a
// dependency until their timeout, take at most half the handler slots:
// a client's request is still served at once, not answered overloaded.
func TestHooksLeaveRequestsSlots(t *testing.T) {
	ns := testkit.StartNATS(t)
	const slots = 4
	release := make(chan struct{})
	var running, most atomic.Int32
	stuck := func(ctx context.Context, _ event.Conn) error {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		defer running.Add(-1)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	mux := event.NewMux()
	mux.HandleFunc("ping", func(context.Context, *event.Request) error { return nil })
	cfg := natserve.Config{
		MaxConcurrent: slots, Timeout: 5 * time.Second,
		OnConnect: []event.ConnHook{stuck}, OnDisconnect: []event.ConnHook{stuck},
	}
	serve(t, ns, mux, zap.NewNop(), cfg)
	defer close(release)
	nc := connect(t, ns)
	for i := range 20 {
		conn := fmt.Sprintf("c-%d", i)
		publishLifecycle(t, nc, proto.Lifecycle{Type: proto.LifecycleTypeDisconnect, User: "alice", Conn: conn, At: 1, Code: 1001, Reason: "shutdown"})
		publishLifecycle(t, nc, proto.Lifecycle{Type: proto.LifecycleTypeConnect, User: "alice", Conn: conn, At: 2})
	}
	testkit.Eventually(t, 10*time.Second, "the hooks hold their share of the slots", func() bool { return running.Load() >= slots/2 })
	start := time.Now()
	if werr := request(t, nc, "ping", proto.Request{Event: "ping", User: "u", Conn: "c"}); werr != nil {
		t.Errorf("a request during the storm: %+v", *werr)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a request during the storm took %s", took)
	}
	if n := most.Load(); n > slots/2 {
		t.Errorf("hooks held %d of %d slots at once, want at most %d", n, slots, slots/2)
	}
}

// TestHooksAfterNATSReconnect: after NATS restarts, the lifecycle
// subscriptions are in place again (nats.go sends them anew on
// reconnect): a connect published then still runs the hook.
func TestHooksAfterNATSReconnect(t *testing.T) {
	ns := testkit.StartNATS(t)
	var s seen
	r := serve(t, ns, event.NewMux(), zap.NewNop(), natserve.Config{OnConnect: []event.ConnHook{s.hook}})
	ns.Stop()
	ns.Start()
	nc := connect(t, ns)
	// Once the server has the Server's subscription again, a request
	// for the subject finds a responder (taken, never answered).
	testkit.Eventually(t, 10*time.Second, "the lifecycle subscription is back", func() bool {
		_, err := nc.Request(proto.LifecycleConnect, nil, 200*time.Millisecond)
		return errors.Is(err, nats.ErrTimeout)
	})
	publishLifecycle(t, nc, proto.Lifecycle{Type: proto.LifecycleTypeConnect, User: "alice", Conn: "after", At: 1})
	testkit.Eventually(t, 10*time.Second, "the hook ran after the reconnect", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns["after"]) == 1
	})
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
