package forward

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// users holds the allowance each user shares among their sockets on this
// worker: a socket's own allowance (Config.Rate) bounds one socket, but a
// user may hold GATEWAY_MAX_CONNS_PER_USER sockets on every worker, so a
// user's sockets together are bounded too (Config.UserRate). It is a token
// bucket of golang.org/x/time/rate, which is safe for the concurrent read
// loops of one user's sockets.
type users struct {
	limit rate.Limit
	burst int
	wait  time.Duration // the longest a reader waits for a token

	mu sync.Mutex
	m  map[string]*allowance
}

// allowance is one user's bucket and how many of their sockets hold it.
type allowance struct {
	lim  *rate.Limiter
	refs int
}

// hold returns user's allowance for one more socket, or nil when users
// are not limited; the socket gives it back with release.
func (u *users) hold(user string) *allowance {
	if u.limit <= 0 {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	a := u.m[user]
	if a == nil {
		if u.m == nil {
			u.m = make(map[string]*allowance)
		}
		a = &allowance{lim: rate.NewLimiter(u.limit, u.burst)}
		u.m[user] = a
	}
	a.refs++
	return a
}

// release gives back a socket's hold on user's allowance; the last one
// drops it.
func (u *users) release(user string, a *allowance) {
	if a == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if a.refs--; a.refs == 0 {
		delete(u.m, user)
	}
}

// take takes a token of a for one frame of a socket, waiting for it up to
// wait: ok reports a token taken; closing reports that the socket began
// closing while it waited (the frame is then dropped unanswered). A wait
// that would be longer takes nothing and refuses at once.
func (a *allowance) take(wait time.Duration, closing <-chan struct{}) (ok, ended bool) {
	now := time.Now()
	r := a.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d == 0 {
		return true, false
	}
	if !r.OK() || d > wait {
		r.CancelAt(now)
		return false, false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true, false
	case <-closing:
		r.Cancel()
		return false, true
	}
}
