package dispatch

import (
	"errors"
	"fmt"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// ErrNotSent is wrapped by the error of a dispatch whose context ended
// before it was written to Redis (while it waited in the publish queue,
// say, or read its rooms' members): nothing was delivered, so a retry is
// safe. The error also wraps the context's (errors.Is finds
// context.DeadlineExceeded or context.Canceled) and is an *event.Error
// with code unavailable. A dispatch whose context ends once it was
// written never wraps it: Redis may run it all the same (timeout).
var ErrNotSent = errors.New("dispatch not sent")

// notSent returns the error of a dispatch not sent because its context
// ended with ctxErr (ErrNotSent).
func notSent(ctxErr error) error {
	return &event.Error{
		Code:    proto.CodeUnavailable,
		Message: "dispatch not sent: its context ended before it reached Redis; nothing was delivered, so a retry is safe",
		Err:     fmt.Errorf("publish %s: %w: %w", proto.Channel, ErrNotSent, ctxErr),
	}
}

// NotDelivered reports whether err, a Dispatch's, says for sure that
// nothing was delivered, so that sending the message again is safe:
// ErrNotSent, or an *event.Error with code bad_request (the same message
// fails again) or unavailable, or a handler_error from Redis failing the
// publish script before it recorded or published any of the dispatch
// (WRONGTYPE on the meta key of its one user, say: the same message fails
// again until the key is mended). A bare context's error says no such
// thing (it may have been written before the context ended), nor does
// any other error (timeout, another handler_error).
func NotDelivered(err error) bool {
	if errors.Is(err, ErrNotSent) {
		return true
	}
	if u, ok := errors.AsType[*unitError](err); ok && !u.delivered {
		return true
	}
	e, ok := errors.AsType[*event.Error](err)
	return ok && (e.Code == proto.CodeBadRequest || e.Code == proto.CodeUnavailable)
}
