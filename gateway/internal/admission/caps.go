package admission

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboard/switchboard/gateway/internal/hub"
	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/proto"
)

// Places is the one count of the worker's sockets, in all and per user,
// that the caps GATEWAY_MAX_CONNS and GATEWAY_MAX_CONNS_PER_USER are
// checked against: the hub. Admit reserves a place before the upgrade, so
// concurrent upgrades cannot overshoot a cap, and gives it back if the
// upgrade fails; the socket registered in it frees it when it is removed.
// Workers share no memory: the caps are per worker.
type Places interface {
	// Reserve holds a place for a socket of user, or fails with
	// hub.ErrFull or hub.ErrUserFull; 0 is no cap.
	Reserve(user string, maxConns, maxPerUser int) error
	// Cancel gives back a place Reserve held.
	Cancel(user string)
}

// refusal is why an upgrade is refused: its HTTP status, wire error and
// the reason label of the refusals metric.
type refusal struct {
	status int
	err    *proto.Error
	metric string
}

// reserveSocket holds a place for a socket of user, or returns why the caps
// refuse it.
func (a *Admission) reserveSocket(user string) *refusal {
	err := a.places.Reserve(user, a.cfg.MaxConns, a.cfg.MaxConnsPerUser)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hub.ErrUserFull):
		return &refusal{http.StatusTooManyRequests, proto.NewError(proto.CodeTooManyConnections,
			fmt.Sprintf("too many open sockets for this user (at most %d per gateway worker): close one first", a.cfg.MaxConnsPerUser)), metrics.RefusedUserCap}
	default:
		return &refusal{http.StatusServiceUnavailable, proto.NewError(proto.CodeUnavailable,
			"this gateway worker is at its socket limit: retry, another worker may have room"), metrics.RefusedWorkerFull}
	}
}
