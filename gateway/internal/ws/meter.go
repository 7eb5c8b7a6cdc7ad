package ws

import (
	"io"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/ratelimit"
	"github.com/switchboard/switchboard/internal/rawconn"
)

// DefaultOverheadRate and DefaultOverheadBurst are the allowance of
// overhead (Limits.OverheadRate) the gateway gives each socket: 16 KiB a
// second, 64 KiB at once. A client within its frame and ping allowances
// spends a few hundred bytes a second (a frame header is 6 to 14 bytes);
// a flood of empty frames is held to under 3,000 frames a second, a small
// share of a core, where unbounded it took a whole one.
const (
	DefaultOverheadRate  = 16 << 10
	DefaultOverheadBurst = 64 << 10
)

// meter is what a socket's read buffer reads the network through
// (Upgrade). It keeps the socket's allowance of overhead
// (Limits.OverheadRate): every byte read from the network is taken from
// it, and every byte of a data frame's payload handed to the read loop is
// given back, so what it spends is what no payload accounts for: frame
// headers, control frames, empty fragments. Those cost the read loop a
// frame's work each while no limit on data frames sees them. Before a read
// from the network with the allowance spent, the meter waits until it is
// back: the socket is not read, and a flood backs up into the client's
// buffers, as over the user allowance (forward).
//
// A meter belongs to its socket's read loop, the only goroutine that reads
// the socket, and is not safe for concurrent use.
type meter struct {
	// net reads the socket by raw system calls (package rawconn says
	// why), held by value: a wrapper would cost each socket about 200
	// bytes in four allocations. Its RawConn is the Conn's too (NewConn).
	net rawconn.Reader
	c   *Conn // set by NewConn; nil: nothing is metered

	allowance ratelimit.Allowance // bytes of overhead the socket may still read; below 0: owed

	msg io.Reader // the message being read (payload), for payload.Read
}

// Read reads from the network, once the allowance is not overspent.
func (m *meter) Read(p []byte) (int, error) {
	if m.c == nil || m.c.limits.OverheadRate <= 0 {
		return m.net.Read(p)
	}
	now := m.wait()
	n, err := m.net.Read(p)
	m.spend(float64(n), now)
	return n, err
}

// spend takes n bytes of the allowance at now and returns what is left,
// below 0 while owing.
func (m *meter) spend(n float64, now time.Time) float64 {
	return m.allowance.Spend(n, m.c.limits.OverheadRate, m.c.limits.OverheadBurst, now)
}

// wait returns once the allowance is not overspent, or at once when the
// socket is closing: a closing socket reads on, to find the client's
// close frame, until its grace deadline. It returns the time it looked.
func (m *meter) wait() time.Time {
	now := time.Now()
	left := m.spend(0, now)
	if left >= 0 {
		return now
	}
	t := time.NewTimer(time.Duration(-left / m.c.limits.OverheadRate * float64(time.Second)))
	select {
	case <-t.C:
	case <-m.c.closed:
		t.Stop()
	}
	return time.Now()
}

// payload reads the message being read (meter.msg) and gives its bytes
// back to the allowance: payload is not overhead.
type payload meter

func (p *payload) Read(b []byte) (int, error) {
	n, err := p.msg.Read(b)
	if p.c != nil && p.c.limits.OverheadRate > 0 {
		p.allowance.Give(float64(n), p.c.limits.OverheadBurst)
	}
	return n, err
}
