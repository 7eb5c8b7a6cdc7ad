package dispatch

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// beforeKey is a go-redis hook that runs do once, before the first
// command that names key reaches Redis.
type beforeKey struct {
	key   string
	fired atomic.Bool
	do    func(ctx context.Context)
}

func (h *beforeKey) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *beforeKey) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *beforeKey) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if slices.Contains(cmd.Args(), any(h.key)) && h.fired.CompareAndSwap(false, true) {
			h.do(ctx)
		}
		return next(ctx, cmd)
	}
}

// TestLeaveDuringJoinKeepsThePlace: a user's leave of a room that runs
// between the two scripts of the same user's join of it (the place taken,
// not yet a member) gives the place back; the join then makes the user a
// member. A member must hold a place among the user's rooms, or joining
// and leaving rooms at once, over and over, gets a user into more rooms
// than proto.MaxRoomsPerUser.
func TestLeaveDuringJoinKeepsThePlace(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	d := New(rdb, Options{Window: NoHistory})
	ctx := context.Background()
	h := &beforeKey{key: proto.RoomMembersKey("general")}
	h.do = func(ctx context.Context) {
		if _, _, err := d.Leave(ctx, "general", "bob"); err != nil {
			t.Errorf("leave: %v", err)
		}
	}
	rdb.AddHook(h)

	if _, joined, err := d.Join(ctx, "general", "bob"); err != nil || !joined {
		t.Fatalf("join: %v %v", joined, err)
	}
	if !h.fired.Load() {
		t.Fatal("the leave did not run during the join")
	}
	member, err := rdb.SIsMember(ctx, proto.RoomMembersKey("general"), "bob").Result()
	if err != nil {
		t.Fatal(err)
	}
	placed, err := rdb.SIsMember(ctx, proto.UserRoomsKey("bob"), "general").Result()
	if err != nil {
		t.Fatal(err)
	}
	if member && !placed {
		t.Fatal("bob is a member of general, which is not among bob's rooms: it counts toward no bound")
	}
}
