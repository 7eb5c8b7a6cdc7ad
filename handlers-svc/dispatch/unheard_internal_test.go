package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestUnheardCountedBehindAPerUserCall: in per-user mode, a dispatch to
// users publishes on users' channels only, which count no unheard
// publishes, and its caller does not count any. When such a call is the
// first of a merged script call, the broadcast merged behind it must still
// be counted: the script counts the whole call's unheard publishes on the
// first call, and the broadcast's own says uncounted.
func TestUnheardCountedBehindAPerUserCall(t *testing.T) {
	srv := testkit.StartRedis(t)
	gated, g := newGatedDispatcher(t, srv.Addr())
	d := New(gated.pub.rdb, Options{Window: 2 * time.Minute, PerUser: true})
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- d.Broadcast(ctx, "first", nil) }()
	g.next(t)
	errs := make(chan error, 2)
	go func() { errs <- d.ToUsers(ctx, []string{"bob"}, "message", nil) }()
	awaitQueued(t, &d.pub, 1)
	go func() { errs <- d.Broadcast(ctx, "second", nil) }()
	awaitQueued(t, &d.pub, 2)
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := g.next(t); len(got) != 1 {
		t.Fatalf("second pipeline %v, want the two queued calls merged into one script call", got)
	}
	g.release <- struct{}{}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := d.Unheard(); n != 2 {
		t.Errorf("Unheard = %d after two broadcasts no one subscribed to, want 2", n)
	}
}
