package dispatch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestCheckFanout: a Go backend's per-user Dispatcher finds a gateway
// worker left in shared mode (whose sockets would get none of its
// dispatches to users) with ErrFanoutMismatch, and the end of it; a
// shared-mode Dispatcher loses nothing to either kind of worker; Redis
// down is unavailable.
func TestCheckFanout(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	ctx := context.Background()
	worker := func(chans ...string) *redis.PubSub {
		ps := newClient(t, srv.Addr()).Subscribe(ctx, chans...)
		for range chans {
			if _, err := ps.Receive(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return ps
	}
	perUserD := dispatch.New(rdb, dispatch.Options{PerUser: true})
	sharedD := dispatch.New(rdb, dispatch.Options{})

	// No worker yet is normal at start-up (gateways may come later): no
	// error, and the zero count tells it.
	if w, err := perUserD.CheckFanout(ctx); err != nil || w != (dispatch.Workers{}) {
		t.Fatalf("no worker: %+v, %v; want none, nil", w, err)
	}
	perUserW := worker(proto.Channel, proto.PerUserMarkerChannel)
	defer func() { _ = perUserW.Close() }()
	sharedW := worker(proto.Channel)
	w, err := perUserD.CheckFanout(ctx)
	if !errors.Is(err, dispatch.ErrFanoutMismatch) || w != (dispatch.Workers{Shared: 1, PerUser: 1}) {
		t.Fatalf("a shared worker, publishing per user: %+v, %v; want 1 and 1, ErrFanoutMismatch", w, err)
	}
	if w, err := sharedD.CheckFanout(ctx); err != nil || w != (dispatch.Workers{Shared: 1, PerUser: 1}) {
		t.Fatalf("both kinds, publishing shared: %+v, %v; want 1 and 1, nil", w, err)
	}
	_ = sharedW.Close()
	testkit.Eventually(t, 5*time.Second, "the shared worker gone", func() bool {
		w, err := perUserD.CheckFanout(ctx)
		return err == nil && w == dispatch.Workers{PerUser: 1}
	})

	srv.Stop()
	_, err = perUserD.CheckFanout(ctx)
	if e, ok := errors.AsType[*event.Error](err); !ok || e.Code != proto.CodeUnavailable {
		t.Fatalf("Redis down: %v, want unavailable", err)
	}
}
