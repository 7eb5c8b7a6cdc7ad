package streams_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// TestDrivePublish is bench/script-cost.sh's load, not a test: with
// DRIVE_ADDR set it makes DRIVE_CALLS calls of the publish script (or of
// the script in the file DRIVE_SCRIPT, which must take the same keys and
// arguments) on the Redis at DRIVE_ADDR, each carrying DRIVE_PAIRS
// sendMessage-shaped pairs of dispatches (a message to a user, a
// message_sent to its partner, ~330 bytes of args, both recorded), as
// handlers-svc's publisher merges them, over 1,000 users. Without
// DRIVE_ADDR it is skipped.
func TestDrivePublish(t *testing.T) {
	addr := os.Getenv("DRIVE_ADDR")
	if addr == "" {
		t.Skip("DRIVE_ADDR not set: bench/script-cost.sh's load")
	}
	calls, err1 := strconv.Atoi(os.Getenv("DRIVE_CALLS"))
	pairs, err2 := strconv.Atoi(os.Getenv("DRIVE_PAIRS"))
	if err1 != nil || err2 != nil || calls < 1 || pairs < 1 {
		t.Fatalf("DRIVE_CALLS=%q DRIVE_PAIRS=%q: want counts", os.Getenv("DRIVE_CALLS"), os.Getenv("DRIVE_PAIRS"))
	}
	script := streams.PublishScript
	if f := os.Getenv("DRIVE_SCRIPT"); f != "" {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		script = redis.NewScript(string(src))
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	args := sendMessageArgs
	for i := range calls {
		units := make([]*streams.Unit, 0, 2*pairs)
		for j := range pairs {
			u := (i*pairs + j) % 1000 &^ 1
			from, to := "u"+strconv.Itoa(u), "u"+strconv.Itoa(u+1)
			units = append(units,
				streams.NewUnit(&proto.Dispatch{Event: "message", Args: args, Users: []string{to}}, true),
				streams.NewUnit(&proto.Dispatch{Event: "message_sent", Args: args, Users: []string{from}}, true))
		}
		keys, av := streams.PublishCall(units, 2*time.Minute, streams.MetaTTL)
		if err := script.Run(ctx, rdb, keys, av...).Err(); err != nil {
			t.Fatal(err)
		}
	}
}
