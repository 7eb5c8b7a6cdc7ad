package dispatch_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestOutOfMemoryDispatchesNothing: with maxmemory reached and
// noeviction (docs/operations.md, "maxmemory"), a dispatch to several
// users is refused whole: unavailable, which tells its caller that
// nothing was delivered and a retry is safe, and no stream gets its
// event. The publish script is flagged (#!lua), so Redis refuses it
// before it runs rather than failing its writes midway, after some users'
// events were recorded and published; the dispatch API frees an
// Idempotency-Key on that refusal, which would otherwise let a retry
// deliver twice.
func TestOutOfMemoryDispatchesNothing(t *testing.T) {
	ctx := context.Background()
	rdb := documentedClient(t)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	users := []string{"alice", "bob", "carol"}
	if _, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Users: users}); err != nil {
		t.Fatal(err)
	}
	// 1 byte: whatever Redis holds is over it.
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.ConfigSet(context.Background(), "maxmemory", "0").Err() })

	_, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Users: users, Args: []byte(`{"text":"hello"}`)})
	var e *event.Error
	if !errors.As(err, &e) || e.Code != proto.CodeUnavailable {
		t.Fatalf("dispatch with Redis out of memory: %v, want an unavailable *event.Error", err)
	}
	// Refused before it ran: an error raised inside the script names its
	// line (@user_script:N), and the writes before it would stand.
	if msg := err.Error(); !strings.Contains(msg, "OOM") || strings.Contains(msg, "user_script") {
		t.Fatalf("dispatch with Redis out of memory: %v, want Redis's OOM refusal of the whole script, not an error inside it", err)
	}
	for _, u := range users {
		if n := rdb.XLen(ctx, proto.UserStreamKey(u)).Val(); n != 1 {
			t.Errorf("%s's stream holds %d events, want the first dispatch's 1 only", u, n)
		}
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Users: users}); err != nil {
		t.Fatalf("dispatch once Redis has room again: %v", err)
	}
}

// TestFailureInsideTheScriptIsNotUnavailable: an error Redis raises while
// it runs the publish script (here WRONGTYPE: bob's stream key overwritten
// with a string) comes after the writes before it, which Redis does not
// undo: alice's event is recorded. The dispatch fails with handler_error,
// which says nothing about a retry being safe, not unavailable, which
// says nothing was delivered (and would free an Idempotency-Key).
func TestFailureInsideTheScriptIsNotUnavailable(t *testing.T) {
	ctx := context.Background()
	rdb := documentedClient(t)
	core, logs := observer.New(zapcore.InfoLevel)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute}).LogOutages(zap.New(core))
	users := []string{"alice", "bob"}
	if _, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Users: users}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, proto.UserStreamKey("bob"), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Users: users})
	var e *event.Error
	if !errors.As(err, &e) || e.Code != proto.CodeHandlerError || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("dispatch failing inside the script: %v, want a handler_error *event.Error with Redis's WRONGTYPE", err)
	}
	if logs.FilterMessageSnippet("unreachable").Len() != 0 {
		t.Errorf("Redis, which answered, was logged unreachable: %v", logs.All())
	}
	if n := rdb.XLen(ctx, proto.UserStreamKey("alice")).Val(); n != 2 {
		t.Fatalf("alice's stream holds %d events, want 2: the failed dispatch's write before bob's stands", n)
	}
}

// documentedClient returns a client of a new Redis, made as doc.go and
// docs/handlers.md ("From Go") tell a backend to make it.
func documentedClient(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testkit.StartRedis(t).Addr(), MaxRetries: -1, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}
