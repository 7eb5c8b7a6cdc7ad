// Package middleware holds the event.Middleware every handlers-svc mux uses,
// for teams to reuse on their own groups: panic recovery, an access log and
// Prometheus metrics by event and result. All are safe for concurrent use
// and start no goroutines.
package middleware

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// Recover returns middleware that turns a panic in the handler into an error
// with code handler_error and the message "handler failed", and logs the
// panic value and stack at error level. The client never sees the panic.
func Recover(log *zap.Logger) event.Middleware {
	return func(next event.Handler) event.Handler {
		return event.HandlerFunc(func(ctx context.Context, r *event.Request) (err error) {
			defer func() {
				if p := recover(); p != nil {
					log.Error("handler panicked",
						zap.String("event", r.Event),
						zap.String("user", r.User),
						zap.String("conn", r.Conn),
						zap.Any("panic", p),
						zap.Stack("stack"),
					)
					err = event.NewError(proto.CodeHandlerError, "handler failed")
				}
			}()
			return next.ServeEvent(ctx, r)
		})
	}
}

// Log returns middleware that logs every request once it has been served,
// with its event, user, conn, ref, duration and result code ("ok" on success): at
// debug level on success and at info level on failure. It logs codes, not
// error text; the transport logs the causes of failures. A panic passing
// through is logged with code "panic" and left to propagate, so Log may sit
// inside or outside Recover.
func Log(log *zap.Logger) event.Middleware {
	return func(next event.Handler) event.Handler {
		return event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
			start := time.Now()
			code := "panic"
			defer func() {
				lvl := zap.InfoLevel
				if code == "ok" {
					lvl = zap.DebugLevel
				}
				if ce := log.Check(lvl, "event served"); ce != nil {
					ce.Write(
						zap.String("event", r.Event),
						zap.String("user", r.User),
						zap.String("conn", r.Conn),
						zap.String("ref", r.Ref),
						zap.Duration("duration", time.Since(start)),
						zap.String("code", code),
					)
				}
			}()
			err := next.ServeEvent(ctx, r)
			if err == nil {
				code = "ok"
			} else {
				code = string(event.WireError(err).Code)
			}
			return err
		})
	}
}
