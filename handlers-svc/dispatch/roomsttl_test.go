package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard/switchboard/proto"
)

// TestJoinTokenOutlivesTheRequestsDeadline: a join's token is what lets
// the handler undo the join when its room_joined cannot be dispatched,
// and that undo runs when the dispatch fails, at the latest at the
// request's deadline (and for at most a second after it,
// handlers.undoTimeout). HANDLERS_TIMEOUT and GATEWAY_HANDLER_TIMEOUT
// have no upper bound (operations.md: "raise it for slow handlers"), so
// a request may well have two minutes. A token kept only joinUndoTTL (a
// minute) is gone by then: the undo of a join no member heard of keeps
// the membership and tells the client "another of your devices joined
// the room meanwhile", which no device did. The token must be kept at
// least until the deadline of the request that made it.
func TestJoinTokenOutlivesTheRequestsDeadline(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, joined, err := r.d.JoinUndoably(ctx, "general", "alice", "t-alice"); err != nil || !joined {
		t.Fatalf("join: joined %v, %v", joined, err)
	}
	deadline, _ := ctx.Deadline()
	left := time.Until(deadline)
	ttl := r.rdb.PTTL(context.Background(), proto.RoomJoinKey("general", "alice")).Val()
	if ttl < left {
		t.Fatalf("the join's token is kept %v, but its request may still undo it for %v: "+
			"a room_joined that fails after %v is not undone, and the client is told another device joined", ttl, left, ttl)
	}
}
