package service

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/internal/config"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestOnStopWaitsForHandlers: handlers.Deps.OnStop promises that a
// family's stop runs "once no handler runs any more" (docs/handlers.md:
// "after the last request"), so a family may close what its handlers use
// (a database handle). When a handler outlives HANDLERS_SHUTDOWN_TIMEOUT,
// natserve cancels it; the stops then run once it has returned, if it does
// within natserve.CancelGrace, and are skipped, with an error logged, if
// it does not. (Before, they ran at once, under the running handler.)
func TestOnStopWaitsForHandlers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		after    time.Duration // how long the handler runs on after its cancel
		wantStop bool
	}{
		{"returns soon after its cancel", natserve.CancelGrace / 4, true},
		{"runs on past the grace", natserve.CancelGrace + 3*time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testkit.StartNATS(t)
			rs := testkit.StartRedis(t)
			var running atomic.Int32
			started := make(chan struct{}, 1)
			stopRanWhileRunning := make(chan int32, 1)
			release := make(chan struct{})
			t.Cleanup(func() {
				close(release)
				testkit.Eventually(t, 10*time.Second, "the handler returned", func() bool { return running.Load() == 0 })
			})
			slow := func(_ context.Context, mux *event.Mux, deps handlers.Deps) error {
				// A handler whose work does not end with its context (a
				// call given no context, say), for a while after the cancel.
				mux.HandleFunc("slowWork", func(ctx context.Context, _ *event.Request) error {
					running.Add(1)
					defer running.Add(-1)
					started <- struct{}{}
					<-ctx.Done()
					select { // the handler's own work: the scenario itself
					case <-time.After(tc.after):
					case <-release:
					}
					return ctx.Err()
				})
				deps.OnStop(func() { stopRanWhileRunning <- running.Load() })
				return nil
			}
			// A handler timeout past the shutdown's, so that the shutdown's
			// cancel is the one that ends the handler.
			a := startFamilies(t, append(handlers.Families(), slow), ns.Port, rs.Port,
				func(c *config.Config) { c.Timeout = 30 * time.Second })
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
			if err == nil || errors.Is(err, natserve.ErrHandlersRunning) != !tc.wantStop {
				t.Errorf("realMain = %v, want the shutdown timeout's error, wrapping ErrHandlersRunning only if the handler outlived the grace", err)
			}
			select {
			case n := <-stopRanWhileRunning:
				if n != 0 {
					t.Fatalf("the family's OnStop ran while %d of its handlers still ran", n)
				}
				if !tc.wantStop {
					t.Fatal("the family's OnStop ran")
				}
			default:
				if tc.wantStop {
					t.Fatal("the family's OnStop did not run")
				}
				if a.logs.FilterMessage("families' stops skipped: handlers still run after their cancel").Len() == 0 {
					t.Error("the skipped stops were not logged")
				}
			}
		})
	}
}
