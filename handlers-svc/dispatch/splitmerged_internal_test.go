package dispatch

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestUnreadableReplyMayHaveBeenSent: a reply of the publish script that
// cannot be read (too few positions for the calls it carried, or no
// count) came from a script that ran, so its error says the dispatch may
// have been delivered, never that a retry is safe. Before, the plain
// error read as unavailable, and a dispatch with an idempotency key freed
// its key.
func TestUnreadableReplyMayHaveBeenSent(t *testing.T) {
	for name, reply := range map[string][]string{
		"too few positions": {"0", "e.1-1"},
		"no count":          {},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := redis.NewStringSliceCmd(context.Background())
			cmd.SetVal(reply)
			_, _, err := splitMerged(&call{cmd: cmd, first: 0, n: 3})
			if err == nil {
				t.Fatal("no error")
			}
			if NotDelivered(publishError(context.Background(), err)) {
				t.Fatalf("%v reads as not delivered", err)
			}
		})
	}
}
