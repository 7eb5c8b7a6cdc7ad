package handlers_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/limit"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestLeaveRoomBiggerThanRecipientsBurst: leaveRoom charges the room's
// members against the leaver's HANDLERS_RECIPIENTS_* bound, and
// limit.Sender refuses outright any charge above the burst. Where an
// operator set the burst below proto.MaxRoomMembers (here 100, as
// operations.md allows), a member of a room that had grown past the burst
// could never leave it: every leaveRoom was rate_limited, however long
// the client waited. A leave now counts at most a burst.
func TestLeaveRoomBiggerThanRecipientsBurst(t *testing.T) {
	rec := eventtest.NewRecorder()
	mux := limitedRoomsMux(t, rec, limit.Config{RecipientsPerSecond: 100, RecipientsBurst: 100})
	ctx := context.Background()
	if _, _, err := rec.Join(ctx, "big", "alice"); err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		if _, _, err := rec.Join(ctx, "big", fmt.Sprint("u", i)); err != nil {
			t.Fatal(err)
		}
	}
	// alice has never sent anything: her allowance is whole.
	_, err := serve(mux, "leaveRoom", "alice", map[string]string{"room": "big"})
	members, _ := rec.Members(ctx, "big")
	if err != nil || slices.Contains(members, "alice") {
		t.Fatalf("alice's first leaveRoom of a room of %d with a recipients burst of 100: %v (still a member: %v); "+
			"a charge over the burst is refused for good, so she can never leave",
			len(members), event.WireError(err), slices.Contains(members, "alice"))
	}
}

// roomsOnRedis returns the rooms handlers served by mux on a real Redis
// (at addr, through rdb, which the test may hook) with d as dispatcher and
// store, carol a member of "general", and, with burst > 0, lim bounding
// the recipients at burst and 1 a second, with no in-process share (nil
// and no bound with 0).
func roomsOnRedis(t *testing.T, burst int) (addr string, rdb *redis.Client, d *dispatch.Dispatcher, mux *event.Mux, lim *limit.Sender) {
	t.Helper()
	srv := testkit.StartRedis(t)
	rdb = redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	d = dispatch.New(rdb, dispatch.Options{Window: dispatch.NoHistory})
	deps := handlers.Deps{Dispatcher: d, Rooms: d}
	if burst > 0 {
		lim = limit.New(rdb, limit.Config{RecipientsPerSecond: 1, RecipientsBurst: burst})
		deps.Senders = lim
	}
	mux = event.NewMux()
	if err := handlers.RegisterRooms(ctx, mux, deps); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Join(ctx, "general", "carol"); err != nil {
		t.Fatal(err)
	}
	return srv.Addr(), rdb, d, mux, lim
}

// beforeCmd is a go-redis hook that runs do once, before the nth command
// (the first when nth is 0) naming key, of one of names (any command when
// none), reaches Redis: it puts another request at an exact point of one
// in flight, on the real Redis.
type beforeCmd struct {
	key   string
	names []string
	nth   int32
	seen  atomic.Int32
	fired atomic.Bool
	do    func()
}

func (h *beforeCmd) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *beforeCmd) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *beforeCmd) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if (len(h.names) == 0 || slices.Contains(h.names, cmd.Name())) && slices.Contains(cmd.Args(), any(h.key)) &&
			h.seen.Add(1) >= max(h.nth, 1) && h.fired.CompareAndSwap(false, true) {
			h.do()
		}
		return next(ctx, cmd)
	}
}

// scripts names the commands that run a script.
var scripts = []string{"evalsha", "eval"}

// TestJoinUndoDropsAConcurrentAckedJoin: alice joins "general" from two
// devices at once (an app that joins its rooms on connect), and device
// A's join is rate_limited. Device B's join runs while A's is at its
// limiter. Whatever each is answered, the room must agree: B acked means
// alice is a member, both refused means she is not. Before the fix, A's
// join added her, B's found her a member and was acked, then A's limiter
// refused and its undo removed her: B's acked join was lost. Now the
// limiter is charged before the join, so a refusal leaves nothing to
// undo. Real Redis for membership, the limiter and the dispatches; the
// hook only places B's request at the point where it can land.
func TestJoinUndoDropsAConcurrentAckedJoin(t *testing.T) {
	ctx := context.Background()
	// A burst of 2 and no in-process share: every charge is counted in Redis.
	_, rdb, d, mux, lim := roomsOnRedis(t, 2)
	// alice has just reached two users elsewhere (a post's mentions, say).
	if err := lim.Recipients(ctx, "alice", 2); err != nil {
		t.Fatal(err)
	}

	var bErr error
	var bRes handlers.RoomResult
	// The limiter's counter of alice, with redis_rate's prefix.
	hook := &beforeCmd{key: "rate:sb:limit:recipients:alice", do: func() {
		// Device B's join, while A's is between its SADD and its limiter.
		r := eventtest.NewRequest("joinRoom", "alice", map[string]string{"room": "general"})
		r.Conn = "alice-b"
		bErr = mux.ServeEvent(ctx, r)
		bRes, _ = eventtest.Result[handlers.RoomResult](r)
	}}
	rdb.AddHook(hook)

	r := eventtest.NewRequest("joinRoom", "alice", map[string]string{"room": "general"})
	r.Conn = "alice-a"
	aErr := mux.ServeEvent(ctx, r)
	if !hook.fired.Load() {
		t.Fatal("device B's join did not run during A's")
	}
	if w := event.WireError(aErr); w == nil || w.Code != proto.CodeRateLimited {
		t.Fatalf("device A's join: %v, want rate_limited (the setup)", aErr)
	}
	members, err := d.Members(ctx, "general")
	if err != nil {
		t.Fatal(err)
	}
	switch member := slices.Contains(members, "alice"); {
	case bErr == nil && !member:
		t.Fatalf("device B was acked joined (%+v), but alice is no member: %v (A's undo removed her)", bRes, members)
	case bErr != nil && member:
		t.Fatalf("both joins were refused (B: %v), but alice is a member: %v", bErr, members)
	}
}

// TestLeaveOfNonMemberRemovesAConcurrentJoin: alice, not in "general",
// sends leaveRoom from device A and joinRoom from device B at about the
// same time. A's leave reads the members, finds she is none, and takes
// the "no one to tell" path (meant to tidy her own list of rooms), whose
// Rooms.Leave also removes her from the members. B's join ran in between:
// she was added, every member was sent room_joined, and B was acked.
// Before the fix A's leave removed her and sent no room_left, which
// section 5 promises whenever a member leaves: carol saw her join and
// never her leave. Now room_left is sent for it.
func TestLeaveOfNonMemberRemovesAConcurrentJoin(t *testing.T) {
	ctx := context.Background()
	addr, rdb, d, mux, _ := roomsOnRedis(t, 0)
	carolHeard := roomEvents(t, addr, d, "carol")

	var bErr error
	hook := &beforeCmd{key: proto.RoomMembersKey("general"), names: scripts, do: func() {
		// Device B's join, after A's leave read the members and before
		// it runs its leave script.
		r := eventtest.NewRequest("joinRoom", "alice", map[string]string{"room": "general"})
		r.Conn = "alice-b"
		bErr = mux.ServeEvent(ctx, r)
	}}
	r := eventtest.NewRequest("leaveRoom", "alice", map[string]string{"room": "general"})
	r.Conn = "alice-a"
	// A's leave first reads the members (SMEMBERS); its first script on
	// the room's key is the leave.
	rdb.AddHook(hook)
	aErr := mux.ServeEvent(ctx, r)
	if !hook.fired.Load() || bErr != nil || aErr != nil {
		t.Fatalf("setup: B's join ran during A's leave: %v, B: %v, A: %v", hook.fired.Load(), bErr, aErr)
	}
	events := carolHeard()
	members, err := d.Members(ctx, "general")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(members, "alice") && !slices.Contains(events, handlers.EventRoomLeft+" alice") {
		t.Fatalf("carol heard %v and alice is no member now (%v): removed from the room with no room_left", events, members)
	}
}

// TestJoinUndoKeepsAConcurrentAckedJoin: alice joins "general" from
// device A, and Redis fails A's room_joined (out of memory: the dispatch
// is refused, and nothing is delivered) but not A's join. Device B's join
// lands between the two: it finds alice a member already and is acked,
// as joinRoom is when already a member. A's join is then undone, so that
// unavailable means nothing happened; before the fix the undo removed
// alice, and B's acked join was lost. Now the undo removes only a
// membership no other join was answered for: alice stays, and A is not
// told unavailable, which would say nothing was done. Real Redis for
// membership and the dispatches; the hook only places B's join, and the
// out-of-memory setting, just before A's room_joined.
func TestJoinUndoKeepsAConcurrentAckedJoin(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: testkit.StartRedis(t).Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	// Recording on: the publish script is refused whole when Redis is out
	// of memory, while removing a member is still allowed.
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	mux := event.NewMux()
	if err := handlers.RegisterRooms(ctx, mux, handlers.Deps{Dispatcher: d, Rooms: d}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Join(ctx, "general", "carol"); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.ConfigSet(context.Background(), "maxmemory", "0").Err() })

	var bErr error
	var bRes handlers.RoomResult
	// With no recipients bound, A's first read of the members is
	// room_joined's (ToRooms' SMEMBERS), after its join script.
	hook := &beforeCmd{key: proto.RoomMembersKey("general"), names: []string{"smembers"}, do: func() {
		r := eventtest.NewRequest("joinRoom", "alice", map[string]string{"room": "general"})
		r.Conn = "alice-b"
		bErr = mux.ServeEvent(ctx, r)
		bRes, _ = eventtest.Result[handlers.RoomResult](r)
		// 1 byte: whatever Redis holds is over it, so A's room_joined
		// is refused.
		if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
			t.Error(err)
		}
	}}
	rdb.AddHook(hook)
	r := eventtest.NewRequest("joinRoom", "alice", map[string]string{"room": "general"})
	r.Conn = "alice-a"
	aErr := mux.ServeEvent(ctx, r)
	if !hook.fired.Load() || bErr != nil || aErr == nil {
		t.Fatalf("setup: B's join ran during A's: %v, and was acked: %v; A's room_joined failed: %v", hook.fired.Load(), bErr, aErr)
	}
	members, err := d.Members(ctx, "general")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(members, "alice") {
		t.Fatalf("device B was acked joined (%+v), but alice is no member: %v (A's undo removed her; A got %v)",
			bRes, members, event.WireError(aErr))
	}
	if w := event.WireError(aErr); w.Code == proto.CodeUnavailable {
		t.Fatalf("A got %+v, which says nothing was done, but alice is a member", w)
	}
}
