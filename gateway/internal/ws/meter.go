package ws

import (
	"io"
	"time"
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
	net io.Reader
	c   *Conn // set by NewConn; nil: nothing is metered

	tokens float64 // bytes of overhead the socket may still read; below 0: owed
	last   int64   // UnixNano of the last refill; 0: a full allowance

	msg io.Reader // the message being read (payload), for payload.Read
}

// Read reads from the network, once the allowance is not overspent.
func (m *meter) Read(p []byte) (int, error) {
	if m.c == nil || m.c.limits.OverheadRate <= 0 {
		return m.net.Read(p)
	}
	m.wait()
	n, err := m.net.Read(p)
	m.tokens -= float64(n)
	return n, err
}

// refill adds what the time since the last refill earned, up to the
// burst.
func (m *meter) refill(now time.Time) {
	rate, burst := m.c.limits.OverheadRate, m.c.limits.OverheadBurst
	t := now.UnixNano()
	switch {
	case m.last == 0:
		m.tokens = burst
	case t > m.last:
		m.tokens = min(burst, m.tokens+float64(t-m.last)/float64(time.Second)*rate)
	}
	m.last = t
}

// wait returns once the allowance is not overspent, or at once when the
// socket is closing: a closing socket reads on, to find the client's
// close frame, until its grace deadline.
func (m *meter) wait() {
	m.refill(time.Now())
	if m.tokens >= 0 {
		return
	}
	d := time.Duration(-m.tokens / m.c.limits.OverheadRate * float64(time.Second))
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-m.c.closed:
		t.Stop()
	}
	m.refill(time.Now())
}

// payload reads the message being read (meter.msg) and gives its bytes
// back to the allowance: payload is not overhead.
type payload meter

func (p *payload) Read(b []byte) (int, error) {
	n, err := p.msg.Read(b)
	if p.c != nil && p.c.limits.OverheadRate > 0 {
		p.tokens = min(p.tokens+float64(n), p.c.limits.OverheadBurst)
	}
	return n, err
}
