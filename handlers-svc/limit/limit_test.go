package limit_test

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/limit"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sender(t *testing.T, cfg limit.Config) *limit.Sender {
	t.Helper()
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return limit.New(rdb, cfg)
}

func code(err error) proto.Code {
	var e *event.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// TestToUserBoundsOnePair: one sender's bytes to one recipient are bounded
// (a rate far below what the test sends, so the burst is all); another
// recipient, another sender and the sender themself are not affected.
func TestToUserBoundsOnePair(t *testing.T) {
	s := sender(t, limit.Config{BytesPerSecond: 1, BytesBurst: 50000})
	ctx := context.Background()
	for i := range 2 {
		if err := s.ToUser(ctx, "mallory", "bob", 24000); err != nil {
			t.Fatalf("message %d of the burst: %v", i, err)
		}
	}
	if err := s.ToUser(ctx, "mallory", "bob", 24000); code(err) != proto.CodeRateLimited {
		t.Fatalf("over the burst: %v, want rate_limited", err)
	}
	for _, tt := range []struct{ from, to string }{{"mallory", "carol"}, {"alice", "bob"}, {"mallory", "mallory"}} {
		if err := s.ToUser(ctx, tt.from, tt.to, 24000); err != nil {
			t.Errorf("%s to %s: %v, want allowed", tt.from, tt.to, err)
		}
	}
	if err := s.ToUser(ctx, "mallory", "bob", 60000); code(err) != proto.CodeRateLimited {
		t.Errorf("more than a whole burst at once: %v, want rate_limited", err)
	}
}

// TestRecipientsBoundsOneSender: the users one sender reaches are counted
// across calls.
func TestRecipientsBoundsOneSender(t *testing.T) {
	s := sender(t, limit.Config{RecipientsPerSecond: 1, RecipientsBurst: 150})
	ctx := context.Background()
	if err := s.Recipients(ctx, "mallory", 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Recipients(ctx, "mallory", 100); code(err) != proto.CodeRateLimited {
		t.Fatalf("250 recipients with a burst of 150: %v, want rate_limited", err)
	}
	if err := s.Recipients(ctx, "alice", 100); err != nil {
		t.Fatalf("another sender: %v", err)
	}
}

// TestNilAndOffAllowEverything: no Sender, or a bound set to 0, limits
// nothing.
func TestNilAndOffAllowEverything(t *testing.T) {
	var none *limit.Sender
	ctx := context.Background()
	if none.ToUser(ctx, "a", "b", 1<<30) != nil || none.Recipients(ctx, "a", 1<<30) != nil {
		t.Fatal("a nil Sender limited")
	}
	off := sender(t, limit.Config{})
	if off.ToUser(ctx, "a", "b", 1<<30) != nil || off.Recipients(ctx, "a", 1<<30) != nil {
		t.Fatal("a Sender with every bound off limited")
	}
}
