package event

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchboard/switchboard/proto"
)

// Error is an error a handler returns to choose what the client sees: Code is
// one of proto.Codes and Message is written for a person. Err,
// when set, is the internal cause: it is logged, never sent to the client.
type Error struct {
	Code    proto.Code
	Message string
	Err     error
}

// NewError returns an *Error with the given code and message.
func NewError(code proto.Code, message string) *Error {
	return &Error{Code: code, Message: message}
}

// Errorf returns an *Error with the given code and a message formatted as by
// fmt.Sprintf. It does not wrap: to keep a cause, set the Err field.
func Errorf(code proto.Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadRequest returns an *Error with code bad_request, for arguments the
// handler rejects. The message should name the field, as in
// "args.to must be a string".
func BadRequest(format string, args ...any) *Error {
	return Errorf(proto.CodeBadRequest, format, args...)
}

// Forbidden returns an *Error with code forbidden, for a user who may not
// do what they asked, such as send to a room they are not in.
func Forbidden(format string, args ...any) *Error {
	return Errorf(proto.CodeForbidden, format, args...)
}

// Unavailable returns an *Error with code unavailable, for a dependency the
// handler cannot reach. Set Err to keep the cause for the logs.
func Unavailable(format string, args ...any) *Error {
	return Errorf(proto.CodeUnavailable, format, args...)
}

// Error returns "code: message", followed by ": cause" when Err is set. It is
// meant for logs; the client sees only Code and Message.
func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Code) + ": " + e.Message + ": " + e.Err.Error()
	}
	return string(e.Code) + ": " + e.Message
}

// Unwrap returns the cause, so errors.Is and errors.As see through an Error.
func (e *Error) Unwrap() error { return e.Err }

// Messages of the wire errors WireError makes from untyped errors.
const (
	msgHandlerFailed = "handler failed"
	msgTimeout       = "handler timed out"
	msgCanceled      = "request was cancelled"
)

// WireError maps any error a handler returned to the error the client sees;
// it returns nil for nil. The first *Error or *proto.Error in err's chain
// keeps its code and message (an empty code becomes handler_error). Otherwise
// context.DeadlineExceeded becomes timeout, context.Canceled becomes
// unavailable, and anything else becomes handler_error with the message
// "handler failed": the text of an untyped error is never sent to a client,
// so it must be logged by whoever handles it.
func WireError(err error) *proto.Error {
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return wire(e.Code, e.Message)
	}
	if e, ok := errors.AsType[*proto.Error](err); ok {
		return wire(e.Code, e.Message)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &proto.Error{Code: proto.CodeTimeout, Message: msgTimeout}
	case errors.Is(err, context.Canceled):
		return &proto.Error{Code: proto.CodeUnavailable, Message: msgCanceled}
	default:
		return &proto.Error{Code: proto.CodeHandlerError, Message: msgHandlerFailed}
	}
}

func wire(code proto.Code, message string) *proto.Error {
	if code == "" {
		return &proto.Error{Code: proto.CodeHandlerError, Message: msgHandlerFailed}
	}
	return &proto.Error{Code: code, Message: message}
}
