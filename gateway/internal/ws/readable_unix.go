//go:build unix

package ws

import (
	"sync"
	"syscall"
)

// peeker holds what a socket has received, peeked at without taking it.
type peeker struct {
	buf  [maxClientControl]byte
	n    int  // bytes peeked
	size int  // bytes to take
	took bool // take read size bytes
	take func(fd uintptr) bool
}

var peekers = sync.Pool{New: func() any {
	p := new(peeker)
	p.take = p.takeFrame // bound once: passing it to RawConn.Read allocates nothing
	return p
}}

// peekData is the socket's syscall.RawConn.Read callback: it peeks at up to
// maxClientControl received bytes into a pooled peeker left in c.peeked,
// or reports false (nothing there yet), which makes RawConn.Read wait until
// the socket is readable. A waiting socket holds no peeker. An end or an
// error is left to gorilla's read to report.
func (c *Conn) peekData(fd uintptr) bool {
	p := peekers.Get().(*peeker)
	n, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
		peekers.Put(p)
		return false
	}
	p.n, p.took = max(n, 0), false
	c.peeked = p
	return true
}

// takeFrame reads the size bytes peekData saw. They are in the socket's
// receive queue, so one read returns them all.
func (p *peeker) takeFrame(fd uintptr) bool {
	n, err := syscall.Read(int(fd), p.buf[:p.size])
	p.took = err == nil && n == p.size
	return true
}

// awaitNetwork waits until the socket has data, an end, an error or its
// read deadline. When what arrived begins with a whole ping or pong of the
// client (parseClientControl), it reads that frame off the socket and
// returns it; otherwise it reads nothing and ok is false. Only the reader
// may call it, and only while gorilla's read buffer is empty, so gorilla
// is between frames and misses nothing.
func (c *Conn) awaitNetwork() (op int, payload []byte, ok bool) {
	if c.peek == nil {
		c.peek = c.peekData // bound once per socket, not per wait
	}
	err := c.rc.Read(c.peek)
	p := c.peeked
	c.peeked = nil
	if p == nil {
		return 0, nil, false
	}
	defer peekers.Put(p)
	if err != nil || p.n == 0 {
		return 0, nil, false
	}
	op, payload, p.size, ok = parseClientControl(p.buf[:p.n])
	if !ok {
		return 0, nil, false
	}
	if err := c.rc.Read(p.take); err != nil || !p.took {
		return 0, nil, false
	}
	return op, payload, true
}
