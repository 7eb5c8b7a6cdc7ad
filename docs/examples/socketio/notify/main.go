// Command notify is the other backend's job: it pushes a notification to
// every device of a user, recorded for recovery, as docs/handlers.md
// "From Go" shows.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
)

func main() {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	opt.MaxRetries, opt.ContextTimeoutEnabled, opt.OnConnect = -1, true, dispatch.OnConnect
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	d := dispatch.New(rdb, dispatch.Options{Window: 2 * time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pos, err := d.Dispatch(ctx, dispatch.Message{
		Event: "notification",
		Args:  json.RawMessage(`{"title":"invoice paid","id":"inv-42"}`),
		Users: []string{os.Args[1]},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, event.WireError(err))
		os.Exit(1)
	}
	fmt.Println(pos.Users[os.Args[1]])
}
