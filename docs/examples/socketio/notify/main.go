// Command notify is the other backend's job: it pushes a notification to
// every device of a user, recorded for recovery, as docs/handlers.md
// "From Go" shows.
//
//	notify USER [ID]
//
// ID is the notification's id, and keys the dispatch: a job queue that
// runs the job again with the same ID (at least once delivery, a retry)
// within 5 minutes delivers it once. Without ID, a run again may deliver
// it twice. It reads REDIS_URL (one server, or a Redis Cluster named by
// addr parameters) and HISTORY_WINDOW (0: recovery off) as the services
// do: give it theirs.
//
// Its exit code tells the scheduler what to do:
//
//	0  delivered (recorded): it prints the position in USER's stream
//	1  outcome unknown (a timeout): it may have been delivered; run again
//	   with the same ID, it is delivered at most once
//	2  usage: bad arguments or settings, or a refused message
//	   (bad_request): running it again fails again
//	3  not delivered (Redis unreachable: dispatch.NotDelivered): run it
//	   again
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// Exit codes (the command's doc).
const (
	exitUnknown      = 1
	exitUsage        = 2
	exitNotDelivered = 3
)

func main() { os.Exit(run(os.Args[1:])) }

func run(argv []string) int {
	if len(argv) < 1 || len(argv) > 2 {
		fmt.Fprintln(os.Stderr, "usage: notify USER [ID]\nexit 0: delivered, 1: outcome unknown (run again with the same ID), 2: usage, 3: not delivered (run again)")
		return exitUsage
	}
	user := argv[0]
	rdb, err := redisClient(os.Getenv("REDIS_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "REDIS_URL:", err)
		return exitUsage
	}
	defer rdb.Close()
	window, err := historyWindow(os.Getenv("HISTORY_WINDOW"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "HISTORY_WINDOW:", err)
		return exitUsage
	}
	d, err := dispatch.NewChecked(rdb, dispatch.Options{Window: window})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitUsage
	}
	notification, key := map[string]string{"title": "invoice paid"}, ""
	if len(argv) == 2 {
		notification["id"], key = argv[1], "notification/"+argv[1] // one key per notification
	}
	args, _ := json.Marshal(notification)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pos, err := d.Dispatch(ctx, dispatch.Message{
		Event:          "notification",
		Args:           args,
		Users:          []string{user},
		IdempotencyKey: key,
	})
	if err != nil {
		w := event.WireError(err)
		fmt.Fprintln(os.Stderr, w)
		switch {
		case w.Code == proto.CodeBadRequest:
			return exitUsage
		case dispatch.NotDelivered(err):
			return exitNotDelivered
		}
		return exitUnknown
	}
	fmt.Println(pos.Users[user])
	return 0
}

// redisClient returns the client of REDIS_URL as the services read it
// (docs/protocol.md section 1): a Redis Cluster when the URL has addr
// parameters, one server otherwise; with the options dispatch.NewChecked
// asks for.
func redisClient(s string) (redis.UniversalClient, error) {
	if s == "" {
		s = "redis://127.0.0.1:6379/0"
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.Unwrap(err) // *url.Error quotes the URL, password and all
	}
	if u.Query().Has("addr") {
		o, err := redis.ParseClusterURL(s)
		if err != nil {
			return nil, err
		}
		o.MaxRetries, o.ContextTimeoutEnabled, o.OnConnect = -1, true, dispatch.OnConnect
		return redis.NewClusterClient(o), nil
	}
	o, err := redis.ParseURL(s)
	if err != nil {
		return nil, err
	}
	o.MaxRetries, o.ContextTimeoutEnabled, o.OnConnect = -1, true, dispatch.OnConnect
	return redis.NewClient(o), nil
}

// historyWindow is dispatch.Options.Window for HISTORY_WINDOW as the
// services read it: a Go duration, 120s when unset, 0 for recovery off.
func historyWindow(s string) (time.Duration, error) {
	if s == "" {
		return dispatch.DefaultWindow, nil
	}
	w, err := time.ParseDuration(s)
	if err == nil {
		err = proto.CheckHistoryWindow(w)
	}
	if w == 0 && err == nil {
		return dispatch.NoHistory, nil
	}
	return w, err
}
