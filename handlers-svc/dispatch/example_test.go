package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
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
	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", MaxRetries: -1, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect})
	defer rdb.Close()
	d, err := dispatch.NewChecked(rdb, dispatch.Options{Window: 2 * time.Minute}) // HISTORY_WINDOW, as on the gateway
	if err != nil {
		return err // a client or options to fix: ErrClientOptions names the option
	}
	pos, err := d.Dispatch(ctx, dispatch.Message{
		Event: "post_updated",
		Args:  json.RawMessage(`{"post":"p42"}`),
		Users: []string{"bob"},
	})
	if err != nil {
		return err // event.WireError(err).Code: bad_request, unavailable, timeout or handler_error
	}
	log.Printf("recorded for bob at %s", pos.Users["bob"])
	return nil
}

// A Go backend in a FANOUT_MODE=per_user deployment publishes per user,
// and checks at start-up that no gateway worker was left in shared mode,
// whose sockets would get none of its dispatches to users (handlers-svc
// checks the same every 10 s).
func ExampleDispatcher_CheckFanout() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", MaxRetries: -1, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect})
	defer rdb.Close()
	d := dispatch.New(rdb, dispatch.Options{PerUser: true}) // FANOUT_MODE=per_user
	workers, err := d.CheckFanout(ctx)
	switch {
	case errors.Is(err, dispatch.ErrFanoutMismatch):
		log.Printf("fix the gateways' FANOUT_MODE first: %v", err)
	case err != nil:
		log.Printf("fan-out not checked, Redis unreachable: %v", err)
	default:
		log.Printf("%d gateway workers, all per_user", workers.PerUser)
	}
}

// A billing service tells a customer, on every device, that an invoice was
// paid, and decides from the error whether sending again is safe: only
// unavailable says nothing was delivered. timeout and handler_error (and
// a context that ended while the call was in flight, which reads as
// timeout) may have been delivered, so a retry may deliver twice: a
// client that must not see it twice gets it once with
// Message.IdempotencyKey instead (ExampleDispatcher_Dispatch_idempotencyKey).
func ExampleDispatcher_Dispatch_retry() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", MaxRetries: -1, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect})
	defer rdb.Close()
	d := dispatch.New(rdb, dispatch.Options{})
	m := dispatch.Message{Event: "invoice_paid", Args: json.RawMessage(`{"invoice":"in_1"}`), Users: []string{"cus_42"}}
	for attempt := 1; ; attempt++ {
		pos, err := d.Dispatch(ctx, m)
		switch code := event.WireError(err); {
		case err == nil:
			log.Printf("recorded for cus_42 at %s", pos.Users["cus_42"])
			return
		case code.Code == proto.CodeUnavailable && ctx.Err() == nil && attempt < 3:
			time.Sleep(100 * time.Millisecond) // nothing was delivered: safe to send again
		case code.Code == proto.CodeBadRequest:
			log.Printf("fix the message: %s", code.Message) // never delivered; the same message fails again
			return
		default:
			log.Printf("invoice_paid may or may not have been delivered (%s): %v", code.Code, err)
			return
		}
	}
}

// A billing service tells a customer that an invoice was paid at most
// once, however often it retries: the invoice's id is the idempotency
// key. A retry after a timeout returns the first call's positions
// (Replayed) if that one was delivered, and dispatches if it surely was
// not; a POST /v1/dispatch with the same Idempotency-Key is the same
// dispatch.
func ExampleDispatcher_Dispatch_idempotencyKey() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", MaxRetries: -1, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect})
	defer rdb.Close()
	d := dispatch.New(rdb, dispatch.Options{})
	m := dispatch.Message{Event: "invoice_paid", Args: json.RawMessage(`{"invoice":"in_1"}`), Users: []string{"cus_42"},
		IdempotencyKey: "invoice_paid/in_1"}
	for attempt := 1; attempt <= 3; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		pos, err := d.Dispatch(actx, m)
		cancel()
		switch {
		case err == nil:
			log.Printf("recorded for cus_42 at %s (replayed: %t)", pos.Users["cus_42"], pos.Replayed)
			return
		case errors.Is(err, dispatch.ErrKeyUnknown):
			log.Printf("invoice_paid may or may not have been delivered; the key stays taken for %s", dispatch.IdempotencyTTL)
			return
		case errors.Is(err, dispatch.ErrKeyReused), event.WireError(err).Code == proto.CodeBadRequest:
			log.Printf("fix the message: %v", err)
			return
		}
		// Anything else is safe to retry with the key: at most once.
	}
}
