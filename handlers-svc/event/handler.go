package event

import "context"

// Handler serves one event request. ServeEvent returns nil when the request
// succeeded, or an error that WireError maps to the code and message the
// client sees.
type Handler interface {
	ServeEvent(ctx context.Context, r *Request) error
}

// HandlerFunc adapts an ordinary function to a Handler.
type HandlerFunc func(ctx context.Context, r *Request) error

// ServeEvent calls f(ctx, r).
func (f HandlerFunc) ServeEvent(ctx context.Context, r *Request) error { return f(ctx, r) }

// Middleware wraps a Handler with behaviour that runs around it, such as
// logging or panic recovery.
type Middleware func(Handler) Handler
