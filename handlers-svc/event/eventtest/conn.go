package eventtest

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/event"
)

// NewConn returns the socket of user a connect hook is told of: on the
// connection NewRequest gives user (so Dispatcher.ToConns of c.Conn
// passes the Recorder's checks), on worker 0, now, the user's only
// socket (Sockets 1). Change the returned fields to test other cases.
func NewConn(user string) event.Conn {
	return event.Conn{User: user, Conn: connOf(user), At: time.Now().Truncate(time.Millisecond), Sockets: 1}
}

// NewDisconnect returns the socket of user a disconnect hook is told of,
// as NewConn, closed with code and reason: such as 1000 and "client", or
// proto.CloseGoingAway and "shutdown"; it was the user's last socket
// (Sockets 0).
func NewDisconnect(user string, code int, reason string) event.Conn {
	c := NewConn(user)
	c.Code, c.Reason, c.Sockets = code, reason, 0
	return c
}

// Connect runs the connect hooks of mux with c, each in turn, as
// handlers-svc does, and returns their errors joined; a panic in one is
// the test's.
func Connect(ctx context.Context, mux *event.Mux, c event.Conn) error {
	return runHooks(ctx, mux.ConnectHooks(), c)
}

// Disconnect runs the disconnect hooks of mux with c, as Connect does.
func Disconnect(ctx context.Context, mux *event.Mux, c event.Conn) error {
	return runHooks(ctx, mux.DisconnectHooks(), c)
}

func runHooks(ctx context.Context, hooks []event.ConnHook, c event.Conn) error {
	var errs []error
	for _, h := range hooks {
		errs = append(errs, h(ctx, c))
	}
	return errors.Join(errs...)
}
