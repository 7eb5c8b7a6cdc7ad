package dispatch

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// panicky is a go-redis hook whose pipelines that name key panic while it
// is armed.
type panicky struct {
	key   atomic.Pointer[string]
	armed atomic.Bool
}

func (h *panicky) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *panicky) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *panicky) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if h.armed.Load() && slices.Contains(c.Args(), any(*h.key.Load())) {
				panic("go-redis broke")
			}
		}
		return next(ctx, cmds)
	}
}

// TestClusterPanicReachesTheCaller: on a Redis Cluster, a dispatch to the
// users of two masters publishes through each master's publisher at once,
// one of them on a goroutine of its own. A panic of go-redis in a flush
// reaches the caller that was writing (TestLeaderPanic), where a handler's
// recovery answers it: on that goroutine, nothing recovered it, and the
// whole service died.
func TestClusterPanicReachesTheCaller(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	h := &panicky{}
	h.key.Store(new(string))
	rdb.AddHook(h)
	d := New(rdb, Options{Window: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first := c.NodeOf(proto.RunKey(proto.PartitionOf("alice")))
	var bob string
	for i := 0; bob == ""; i++ {
		if u := fmt.Sprintf("user-%d", i); c.NodeOf(proto.RunKey(proto.PartitionOf(u))) != first {
			bob = u
		}
	}
	for _, u := range []string{"alice", bob} { // the slots known, the script loaded
		if err := d.ToUsers(ctx, []string{u}, "warm", nil); err != nil {
			t.Fatal(err)
		}
	}

	// Whichever of the two masters' pipelines runs on a goroutine of its
	// own, each dispatch has one of them panic there.
	h.armed.Store(true)
	for _, key := range []string{proto.RunKey(proto.PartitionOf("alice")), proto.RunKey(proto.PartitionOf(bob))} {
		h.key.Store(&key)
		got := func() (p any) {
			defer func() { p = recover() }()
			_ = d.ToUsers(ctx, []string{"alice", bob}, "message", nil)
			return nil
		}()
		if got != "go-redis broke" {
			t.Fatalf("the caller recovered %v, want go-redis's panic", got)
		}
	}
	h.armed.Store(false)
	if err := d.ToUsers(ctx, []string{"alice", bob}, "message", nil); err != nil {
		t.Fatalf("after the panic: %v", err)
	}
}
