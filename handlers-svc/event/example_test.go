package event_test

import (
	"context"
	"fmt"

	"github.com/switchboard/switchboard/handlers-svc/event"
)

func ExampleMux() {
	mux := event.NewMux()
	mux.HandleFunc("ping", func(ctx context.Context, r *event.Request) error {
		return nil
	})

	for _, name := range []string{"ping", "pong"} {
		err := mux.ServeEvent(context.Background(), &event.Request{Event: name, User: "alice"})
		if w := event.WireError(err); w != nil {
			fmt.Println(name, "->", w.Code+":", w.Message)
			continue
		}
		fmt.Println(name, "-> ok")
	}
	// Output:
	// ping -> ok
	// pong -> unknown_event: no handler for event pong
}

func ExampleWireError() {
	cause := fmt.Errorf("dial redis: connection refused")
	for _, err := range []error{
		event.BadRequest("args.to must be a string"),
		&event.Error{Code: "unavailable", Message: "dispatch unavailable", Err: cause},
		context.DeadlineExceeded,
		cause, // internal text never reaches a client
	} {
		w := event.WireError(err)
		fmt.Println(w.Code, "|", w.Message)
	}
	// Output:
	// bad_request | args.to must be a string
	// unavailable | dispatch unavailable
	// timeout | handler timed out
	// handler_error | handler failed
}
