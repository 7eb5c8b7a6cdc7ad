package event_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

func TestWireError(t *testing.T) {
	secret := errors.New("dial tcp 10.0.0.7:6379: connection refused")
	tests := []struct {
		name string
		err  error
		want *proto.Error
	}{
		{"nil", nil, nil},
		{"bad request", event.BadRequest("args.%s must be a string", "to"), &proto.Error{Code: "bad_request", Message: "args.to must be a string"}},
		{"unavailable with cause", &event.Error{Code: proto.CodeUnavailable, Message: "dispatch unavailable", Err: secret}, &proto.Error{Code: "unavailable", Message: "dispatch unavailable"}},
		{"wrapped typed", fmt.Errorf("load: %w", event.Unavailable("store unavailable")), &proto.Error{Code: "unavailable", Message: "store unavailable"}},
		{"typed wins over deadline", &event.Error{Code: proto.CodeUnavailable, Message: "dispatch unavailable", Err: context.DeadlineExceeded}, &proto.Error{Code: "unavailable", Message: "dispatch unavailable"}},
		{"custom code", event.Errorf(proto.CodeHandlerError, "quota of %d reached", 3), &proto.Error{Code: "handler_error", Message: "quota of 3 reached"}},
		{"empty code", &event.Error{Message: "oops", Err: secret}, &proto.Error{Code: "handler_error", Message: "handler failed"}},
		{"proto error", proto.NewError(proto.CodeBadRequest, "request user is required"), &proto.Error{Code: "bad_request", Message: "request user is required"}},
		{"deadline", context.DeadlineExceeded, &proto.Error{Code: "timeout", Message: "handler timed out"}},
		{"wrapped deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), &proto.Error{Code: "timeout", Message: "handler timed out"}},
		{"canceled", context.Canceled, &proto.Error{Code: "unavailable", Message: "request was cancelled"}},
		{"untyped", secret, &proto.Error{Code: "handler_error", Message: "handler failed"}},
		{"untyped EOF", fmt.Errorf("read: %w", io.EOF), &proto.Error{Code: "handler_error", Message: "handler failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := event.WireError(tt.err)
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Fatalf("WireError(%v) = %+v, want %+v", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorUnwrapAndText(t *testing.T) {
	cause := errors.New("connection refused")
	e := &event.Error{Code: proto.CodeUnavailable, Message: "dispatch unavailable", Err: cause}
	if !errors.Is(e, cause) {
		t.Fatal("errors.Is does not see the cause")
	}
	if got, want := e.Error(), "unavailable: dispatch unavailable: connection refused"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got, want := event.BadRequest("args.to must be a string").Error(), "bad_request: args.to must be a string"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got := event.NewError(proto.CodeTimeout, "slow"); got.Code != proto.CodeTimeout || got.Message != "slow" || got.Err != nil {
		t.Fatalf("NewError = %+v", got)
	}
}
