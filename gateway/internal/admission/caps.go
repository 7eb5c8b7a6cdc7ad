package admission

import (
	"fmt"
	"net/http"

	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/proto"
)

// socketCounts counts the sockets a worker has accepted, in all and per
// user, for GATEWAY_MAX_CONNS and GATEWAY_MAX_CONNS_PER_USER. A socket is
// counted from before its upgrade to the end of its read loop, so
// concurrent upgrades cannot overshoot a cap. Workers share no memory: the
// caps are per worker. It is guarded by Admission.mu.
type socketCounts struct {
	total   int
	perUser map[string]int
}

// refusal is why an upgrade is refused: its HTTP status, wire error and
// the reason label of the refusals metric.
type refusal struct {
	status int
	err    *proto.Error
	metric string
}

// reserveSocket counts a socket of user, or returns why the caps refuse it.
// a.mu must be held.
func (a *Admission) reserveSocket(user string) *refusal {
	if a.cfg.MaxConns > 0 && a.counts.total >= a.cfg.MaxConns {
		return &refusal{http.StatusServiceUnavailable, proto.NewError(proto.CodeUnavailable,
			"this gateway worker is at its socket limit: retry, another worker may have room"), metrics.RefusedWorkerFull}
	}
	if a.cfg.MaxConnsPerUser > 0 && a.counts.perUser[user] >= a.cfg.MaxConnsPerUser {
		return &refusal{http.StatusTooManyRequests, proto.NewError(proto.CodeTooManyConnections,
			fmt.Sprintf("too many open sockets for this user (at most %d per gateway worker): close one first", a.cfg.MaxConnsPerUser)), metrics.RefusedUserCap}
	}
	if a.counts.perUser == nil {
		a.counts.perUser = make(map[string]int)
	}
	a.counts.total++
	a.counts.perUser[user]++
	return nil
}

// releaseSocket uncounts a socket reserved with reserveSocket.
func (a *Admission) releaseSocket(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.counts.total--
	if n := a.counts.perUser[user] - 1; n > 0 {
		a.counts.perUser[user] = n
	} else {
		delete(a.counts.perUser, user)
	}
}
