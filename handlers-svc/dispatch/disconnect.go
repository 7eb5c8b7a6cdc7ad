package dispatch

import (
	"context"
	"fmt"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// Disconnect asks the gateway to close sockets (docs/protocol.md section
// 7, an extension): every socket of each of Users and each of Conns, with
// close code 4003 and Reason (the client stops for good), or, with
// Reconnect, 4002 (the client reconnects at once with a fresh token and
// resumes). It is the body of POST /v1/disconnect.
//
// It does not revoke tokens: a client that still holds a valid token can
// connect again. Use short-lived tokens, renewed by the client's getToken.
type Disconnect struct {
	Users []string `json:"users,omitempty"`
	Conns []string `json:"conns,omitempty"`
	// Reason is the close reason the sockets get: printable UTF-8, cut to
	// proto.MaxCloseReason bytes at a character boundary; empty is
	// "disconnected" (or "reconnect" with Reconnect).
	Reason    string `json:"reason,omitempty"`
	Reconnect bool   `json:"reconnect,omitempty"`
}

// Check reports what is wrong with m as a bad_request *event.Error naming
// the field, or nil: a target, at most MaxUsers user ids a token may
// carry and MaxConns connection ids of the gateway's form, as a Message's,
// and a printable reason.
func (m *Disconnect) Check() error {
	if len(m.Users) == 0 && len(m.Conns) == 0 {
		return event.BadRequest("no target: give users or conns")
	}
	if len(m.Users) > MaxUsers {
		return event.BadRequest("users names %d users, more than %d", len(m.Users), MaxUsers)
	}
	if len(m.Conns) > MaxConns {
		return event.BadRequest("conns names %d connections, more than %d", len(m.Conns), MaxConns)
	}
	if err := checkIDs(m.Users, m.Conns); err != nil {
		return err
	}
	if !proto.ValidReason(m.Reason) {
		return event.BadRequest("reason must be printable UTF-8")
	}
	return nil
}

// Disconnect checks m (Check's errors are bad_request) and publishes it
// on proto.Channel, which every gateway worker subscribes to in either
// fan-out mode: each closes the sockets it holds of m's targets. It is not
// recorded in the streams. It returns how many subscribers of the channel
// received it, the gateway workers (on a Redis Cluster only those
// subscribed through the node that took it, a lower bound); 0 means no
// worker listened, and then no socket was closed.
//
// A failure to reach Redis is an *event.Error with code unavailable
// (nothing was published); a reply lost after the command was sent is one
// with code timeout (it may have been); a context that ends first, the
// context's error. A disconnect is safe to repeat.
func (d *Dispatcher) Disconnect(ctx context.Context, m Disconnect) (workers int, err error) {
	if err := m.Check(); err != nil {
		return 0, err
	}
	msg := proto.Disconnect{Users: uniq(m.Users), Conns: m.Conns, Reason: proto.TruncateReason(m.Reason), Reconnect: m.Reconnect}
	body := proto.AppendDisconnect(nil, &msg)
	n, err := d.pub.rdb.Publish(ctx, proto.Channel, body).Result()
	if err != nil {
		if !unsent(err) {
			err = &maybeSentError{err: err}
		}
		return 0, publishError(ctx, fmt.Errorf("disconnect: %w", err))
	}
	return int(n), nil
}
