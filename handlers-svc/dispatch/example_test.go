package dispatch_test

import (
	"context"
	"encoding/json"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
)

// A REST backend tells bob, on every device, that a post changed: recorded
// in his stream, so a device that was away recovers it (docs/handlers.md,
// "From another backend").
func ExampleDispatcher_Dispatch() {
	ctx := context.Background()
	if err := notify(ctx); err != nil {
		log.Print(err)
	}
}

func notify(ctx context.Context) error {
	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", MaxRetries: -1, OnConnect: dispatch.OnConnect})
	defer rdb.Close()
	d := dispatch.New(rdb, dispatch.Options{Window: 2 * time.Minute}) // HISTORY_WINDOW, as on the gateway
	pos, err := d.Dispatch(ctx, dispatch.Message{
		Event: "post_updated",
		Args:  json.RawMessage(`{"post":"p42"}`),
		Users: []string{"bob"},
	})
	if err != nil {
		return err // event.WireError(err).Code: bad_request, unavailable or timeout
	}
	log.Printf("recorded for bob at %s", pos.Users["bob"])
	return nil
}
