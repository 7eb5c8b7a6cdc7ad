package dispatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestMergedUnheardCountedWhenFirstCallFails found by review (fixed): of the calls merged into one script call (mergeCalls)
// only the first counts the call's unheard publishes (splitMerged, the
// others get uncounted). When Redis fails the first call's unit, its
// caller gets an error and hearCall is never called for it, so the
// unheard publishes of the calls merged behind it, which ran, are counted
// by no one: Unheard undercounts, and the "reached no gateway worker"
// warning is not logged for them.
func TestMergedUnheardCountedWhenFirstCallFails(t *testing.T) {
	srv := testkit.StartRedis(t)
	d, g := newGatedDispatcher(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	if err := rdb.Set(ctx, proto.UserMetaKey("broken"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// No one subscribes to the shared channel: every publish on it is
	// unheard.
	lead := make(chan error, 1)
	go func() { lead <- d.ToUsers(ctx, []string{"lead"}, "first", nil) }()
	if got := g.next(t); strings.Join(got, " ") != "evalsha/1" {
		t.Fatalf("first pipeline %v", got)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	broken, alice := make(chan error, 1), make(chan error, 1)
	go func() { broken <- d.ToUsers(dctx, []string{"broken"}, "note", nil) }()
	awaitQueued(t, &d.pub, 1)
	go func() { alice <- d.ToUsers(dctx, []string{"alice"}, "note", nil) }()
	awaitQueued(t, &d.pub, 2)
	g.release <- struct{}{}
	if err := <-lead; err != nil {
		t.Fatalf("first dispatch: %v", err)
	}
	if got := g.next(t); strings.Join(got, " ") != "evalsha/2" {
		t.Fatalf("second pipeline %v, want the two calls merged into one script call", got)
	}
	g.release <- struct{}{}
	if err := <-broken; err == nil {
		t.Fatal("broken's dispatch: no error")
	}
	if err := <-alice; err != nil {
		t.Fatalf("alice's dispatch: %v", err)
	}
	// lead's publish and alice's reached no subscriber.
	if n := d.Unheard(); n != 2 {
		t.Errorf("Unheard() = %d, want 2 (lead's and alice's publishes; alice's went uncounted behind broken's failed call)", n)
	}
}
