package handlers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/limit"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// limitedRoomsMux serves the rooms family with rec as its Dispatcher and
// Rooms and the sender bounds of cfg, kept in a real Redis.
func limitedRoomsMux(t *testing.T, rec *eventtest.Recorder, cfg limit.Config) *event.Mux {
	t.Helper()
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	mux := event.NewMux()
	deps := handlers.Deps{Dispatcher: rec, Rooms: rec, Senders: limit.New(rdb, cfg)}
	if err := handlers.RegisterRooms(context.Background(), mux, deps); err != nil {
		t.Fatal(err)
	}
	return mux
}

// reached counts the recipients of every dispatch rec recorded.
func reached(rec *eventtest.Recorder) int {
	n := 0
	for _, d := range rec.Dispatches() {
		n += len(d.Users)
	}
	return n
}

// TestRoomJoinLeaveFloodAttack: mallory, a member of a big room, leaves
// and joins it again and again. Each join and each leave tells every
// member, so without a bound each of her frames recorded an event in a
// hundred streams, however low HANDLERS_RECIPIENTS_PER_SEC was set: the
// bound sendToRoom and postUpdated honour was not taken by joinRoom and
// leaveRoom. Now they take it too, and a refused join leaves her out.
func TestRoomJoinLeaveFloodAttack(t *testing.T) {
	rec := eventtest.NewRecorder()
	mux := limitedRoomsMux(t, rec, limit.Config{RecipientsPerSecond: 1, RecipientsBurst: 450})
	ctx := context.Background()
	for i := range 99 {
		if _, _, err := rec.Join(ctx, "big", fmt.Sprint("u", i)); err != nil {
			t.Fatal(err)
		}
	}
	var refused error
	ops := 0
	for ops = 0; ops < 20 && refused == nil; ops++ {
		ev := "joinRoom"
		if ops%2 == 1 {
			ev = "leaveRoom"
		}
		_, refused = serve(mux, ev, "mallory", map[string]string{"room": "big"})
	}
	if w := event.WireError(refused); w == nil || w.Code != proto.CodeRateLimited {
		t.Fatalf("after %d joins and leaves of a room of 100 (%d recipients reached, a burst of 450): %v, want rate_limited",
			ops, reached(rec), refused)
	}
	if n := reached(rec); n > 450 {
		t.Fatalf("%d recipients reached with a burst of 450", n)
	}
	// The refusal was the fifth operation, a join: nothing was done.
	members, _ := rec.Members(ctx, "big")
	if ops != 5 || len(members) != 99 {
		t.Fatalf("refused at operation %d with %d members, want the fifth, a join, undone (99 members)", ops, len(members))
	}
}

// TestRoomSenderFloodsOneMemberAttack: mallory and bob share a room of
// two. sendMessage bounds what mallory pushes to bob in bytes
// (HANDLERS_SEND_BYTES_PER_SEC), but sendToRoom counted only recipients,
// so 4,000-character room messages reached bob at the full frame rate:
// the slow-consumer attack of TestSenderFloodsOneRecipientAttack, through
// a room. The bytes one sender pushes through one room are bounded now.
func TestRoomSenderFloodsOneMemberAttack(t *testing.T) {
	rec := eventtest.NewRecorder()
	mux := limitedRoomsMux(t, rec, limit.Config{BytesPerSecond: 1, BytesBurst: 50000, RecipientsPerSecond: 1000, RecipientsBurst: 1000})
	ctx := context.Background()
	for _, u := range []string{"bob", "mallory"} {
		if _, _, err := rec.Join(ctx, "pair", u); err != nil {
			t.Fatal(err)
		}
	}
	text := strings.Repeat("\u4e16", handlers.MaxTextLen) // 12,000 bytes
	var err error
	sent := 0
	for sent = 0; sent < 20; sent++ {
		if _, err = serve(mux, "sendToRoom", "mallory", map[string]string{"room": "pair", "text": text}); err != nil {
			break
		}
	}
	if w := event.WireError(err); w == nil || w.Code != proto.CodeRateLimited || sent != 4 {
		t.Fatalf("after %d room messages of 12,000 bytes with a burst of 50,000: %v, want the fifth rate_limited", sent, err)
	}
	// bob's own messages are not counted as mallory's.
	if _, err := serve(mux, "sendToRoom", "bob", map[string]string{"room": "pair", "text": text}); err != nil {
		t.Fatalf("bob in the same room: %v", err)
	}
}

// TestOwnStreamFloodAttack: every sendMessage records message_sent in the
// sender's own stream, and one without "to" records nothing else, so the
// byte bound toward recipients never saw it: one user's largest messages
// (4,000 "<", 24 KB once escaped) at the full frame rate held 144 MB of
// Redis per worker for the whole HISTORY_WINDOW. The sender's own stream
// is bounded as any recipient's now, whether or not the message also
// goes to another user.
func TestOwnStreamFloodAttack(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	rec := eventtest.NewRecorder()
	chat := handlers.NewChat(rec).Limit(limit.New(rdb, limit.Config{BytesPerSecond: 1, BytesBurst: 100000}))
	text := strings.Repeat("<", handlers.MaxTextLen) // 24,002 bytes escaped
	send := func(user string, args map[string]any) error {
		return chat.SendMessage(context.Background(), eventtest.NewRequest("sendMessage", user, args))
	}
	for i := range 4 { // 96,008 bytes: within the burst
		if err := send("mallory", map[string]any{"text": text}); err != nil {
			t.Fatalf("message %d of the burst: %v", i, err)
		}
	}
	if w := event.WireError(send("mallory", map[string]any{"text": text})); w == nil || w.Code != proto.CodeRateLimited {
		t.Fatalf("a fifth message of 24 KB to herself with a burst of 100,000 bytes: %+v, want rate_limited", w)
	} else if w.Message != "too much sent: slow down" {
		t.Errorf("refused with %q: it is her own copies, not another user, that are too much", w.Message)
	}
	// To another user, message_sent still goes to her own stream.
	if w := event.WireError(send("mallory", map[string]any{"to": "bob", "text": text})); w == nil || w.Code != proto.CodeRateLimited {
		t.Fatalf("a message to bob once her own stream's allowance is spent: %+v, want rate_limited", w)
	}
	// Another sender is not affected.
	if err := send("alice", map[string]any{"to": "bob", "text": text}); err != nil {
		t.Fatalf("alice: %v", err)
	}
}
