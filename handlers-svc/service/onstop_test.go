package service

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestOnStopWaitsForHandlers: handlers.Deps.OnStop promises that a
// family's stop runs "once no handler runs any more" (docs/handlers.md:
// "after the last request"), so a family may close what its handlers use
// (a database handle). When a handler outlives HANDLERS_SHUTDOWN_TIMEOUT,
// natserve cancels it and returns at once, and realMain runs the stops
// while the handler is still running: the family's database is closed
// under it.
func TestOnStopWaitsForHandlers(t *testing.T) {
	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	var running atomic.Int32
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stopRanWhileRunning := make(chan int32, 1)
	slow := func(_ context.Context, mux *event.Mux, deps handlers.Deps) error {
		// A handler whose work does not end with its context (a call
		// given no context, say), for a while after the cancel.
		mux.HandleFunc("slowWork", func(ctx context.Context, _ *event.Request) error {
			running.Add(1)
			defer running.Add(-1)
			started <- struct{}{}
			<-ctx.Done()
			select {
			case <-release:
			case <-time.After(3 * time.Second):
			}
			return ctx.Err()
		})
		deps.OnStop(func() { stopRanWhileRunning <- running.Load() })
		return nil
	}
	a := startFamilies(t, append(handlers.Families(), slow), ns.Port, rs.Port)
	a.await(t, "/readyz", http.StatusOK, "")

	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := proto.Request{Event: "slowWork", User: "alice", Conn: "c1", Ref: "r1"}
	if err := nc.PublishRequest(proto.Subject(req.Event), nats.NewInbox(), proto.AppendRequest(nil, &req)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not start")
	}
	err = a.stop(t) // ShutdownTimeout 5 s: the handler outlives it
	t.Logf("realMain: %v", err)
	select {
	case n := <-stopRanWhileRunning:
		if n != 0 {
			t.Fatalf("the family's OnStop ran while %d of its handlers still ran", n)
		}
	default:
		t.Fatal("the family's OnStop did not run")
	}
}
