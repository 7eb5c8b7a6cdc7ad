package service

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestFamilyHooks: a family's connect hook, registered on the service's
// mux, is told of a connect the gateway publishes, dispatches through the
// family's Dispatcher to the new connection (the Redis channel carries
// it), and is counted on /metrics.
func TestFamilyHooks(t *testing.T) {
	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	welcome := func(_ context.Context, mux *event.Mux, deps handlers.Deps) error {
		mux.OnConnect(func(ctx context.Context, c event.Conn) error {
			return deps.Dispatcher.ToConns(ctx, []string{c.Conn}, "welcome", map[string]any{"user": c.User, "resumed": c.Resumed})
		})
		return nil
	}
	a := startFamilies(t, append(handlers.Families(), welcome), ns.Port, rs.Port)
	a.await(t, "/readyz", http.StatusOK, "")

	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	sub := rdb.Subscribe(context.Background(), proto.Channel)
	defer sub.Close()
	if _, err := sub.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}

	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	l := proto.Lifecycle{Type: proto.LifecycleTypeConnect, User: "alice", Conn: "alice-c1", Worker: 0, At: time.Now().UnixMilli(), Resumed: true}
	if err := nc.Publish(proto.LifecycleConnect, proto.AppendLifecycle(nil, &l)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.Channel():
		d, err := proto.DecodeDispatch([]byte(m.Payload))
		if err != nil {
			t.Fatalf("dispatch %s: %v", m.Payload, err)
		}
		if d.Event != "welcome" || len(d.Conns) != 1 || d.Conns[0] != "alice-c1" || string(d.Args) != `{"resumed":true,"user":"alice"}` {
			t.Errorf("dispatched %+v (args %s), want welcome to alice-c1", d, d.Args)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connect hook dispatched nothing")
	}
	testkit.Eventually(t, 10*time.Second, "the hook is counted", func() bool {
		v, ok := value(a.scrape(t), "switchboard_handlers_lifecycle_hooks_total", map[string]string{"type": "connect", "result": "ok"})
		return ok && v == 1
	})
	if err := a.stop(t); err != nil {
		t.Fatalf("realMain: %v", err)
	}
}
