package dispatch

import (
	"errors"
	"fmt"
	"strings"

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

// ErrPartlyDelivered is wrapped by the error of a dispatch that was
// delivered to some of its targets for sure and failed for others: on a
// Redis Cluster, the call of one partition ran and another's failed; on
// one Redis, Redis failed some of its messages (units of at most 128
// users) while the script ran and the others ran, or failed one after it
// had recorded it for some of its users (who have it: a gap filled at
// their next event, or a resume, gives it to their sockets). Its code
// stays what the failure's is, timeout or handler_error (never
// unavailable, which says nothing was delivered), and Dispatch returns
// with it the
// Positions of the users who have it (and the broadcast position, if
// that part ran): a user without a position did not get it, or, when
// Redis did not answer for that user's part (timeout), may have. To
// finish the delivery, send the message to the users without a position
// only (see Dispatch on idempotency keys). It is never wrapped by an
// error after which nothing was delivered (NotDelivered).
var ErrPartlyDelivered = errors.New("dispatch partly delivered")

// partlyDelivered returns err, the error of a dispatch some of which
// surely ran, wrapping ErrPartlyDelivered; its code (event.WireError)
// and the errors it wraps are err's.
func partlyDelivered(err error) error {
	if err == nil || errors.Is(err, ErrPartlyDelivered) {
		return err
	}
	return &partlyError{err: err}
}

// partlyError is partlyDelivered's error: err, wrapping
// ErrPartlyDelivered too. Its text says "dispatch partly delivered"
// once: err's own message may say it already (clusterResult's).
type partlyError struct{ err error }

func (e *partlyError) Error() string {
	s := e.err.Error()
	if strings.Contains(s, ErrPartlyDelivered.Error()) {
		return s
	}
	return ErrPartlyDelivered.Error() + ": " + s
}

func (e *partlyError) Unwrap() []error { return []error{ErrPartlyDelivered, e.err} }

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
	if errors.Is(err, ErrPartlyDelivered) {
		return false
	}
	if errors.Is(err, ErrNotSent) {
		return true
	}
	if u, ok := errors.AsType[*unitError](err); ok && !u.delivered {
		return true
	}
	e, ok := errors.AsType[*event.Error](err)
	return ok && (e.Code == proto.CodeBadRequest || e.Code == proto.CodeUnavailable)
}
