package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard/switchboard/proto"
)

// olderLeave is the leave script of the release before the join tokens
// (proto.RoomJoinKey): it removes the member and knows nothing of the
// token. During a rolling deploy the older handlers-svc instances run it
// against the same Redis as the new ones.
const olderLeave = `
local r = redis.call('SREM', KEYS[1], ARGV[1])
return {redis.call('SCARD', KEYS[1]), r}
`

// TestRoomJoinsGoWithTheRoomAfterAMixedDeploy: alice joins "general"
// through a new instance (which keeps her join's token for its undo) and
// leaves it through an older one, which removes her from the members but
// not her token; bob joins and leaves through new instances. When the
// room is gone (its members set), no key of it may stay for good: each
// token left has a TTL of at most a minute. (A first version of the fix
// kept the tokens in one hash per room, with no expiry: one field per
// member for the room's life, and for good after a mixed deploy.)
func TestRoomJoinsGoWithTheRoomAfterAMixedDeploy(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	if _, _, err := r.d.JoinUndoably(ctx, "general", "alice", "t-alice"); err != nil {
		t.Fatal(err)
	}
	if err := r.rdb.Eval(ctx, olderLeave, []string{proto.RoomMembersKey("general")}, "alice").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.d.JoinUndoably(ctx, "general", "bob", "t-bob"); err != nil {
		t.Fatal(err)
	}
	if n, left, err := r.d.Leave(ctx, "general", "bob"); err != nil || !left || n != 0 {
		t.Fatalf("bob's leave: %d members after, left %v, %v", n, left, err)
	}
	keys, err := r.rdb.Keys(ctx, "*sb:r:general*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if ttl := r.rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > time.Minute {
			t.Errorf("the room has no member, but its key %s is kept (TTL %v)", k, ttl)
		}
	}
	if r.rdb.Exists(ctx, proto.RoomJoinKey("general", "bob")).Val() != 0 {
		t.Errorf("bob's join token outlived his leave")
	}
}
