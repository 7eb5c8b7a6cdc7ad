//go:build linux

package rawconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// conn is a TCP or Unix stream socket read with read(2) and written with
// sendto(2) by syscall.RawSyscall (sysRead, sysSend), inside its RawConn's
// Read and Write: under the descriptor's read or write lock, and waiting
// in the netpoller (deadlines included) when the call says EAGAIN.
type conn struct {
	net.Conn
	rc  syscall.RawConn
	net string // for errors: "tcp", "unix"

	rmu   sync.Mutex // the read state below, for one Read at a time
	rp    []byte
	rn    int
	rerr  syscall.Errno
	readF func(fd uintptr) bool

	wmu    sync.Mutex // the write state below, for one Write at a time
	wp     []byte
	wn     int
	werr   syscall.Errno
	wnone  bool // sendto took nothing and said nothing: the write ends
	writeF func(fd uintptr) bool
}

func wrap(c net.Conn) net.Conn {
	var kind string
	switch c.(type) {
	case *net.TCPConn:
		kind = "tcp"
	case *net.UnixConn:
		kind = "unix"
	default:
		return c
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return c
	}
	if kind == "unix" && !isStream(rc) {
		// A datagram socket's empty datagram is no end, as Read would
		// take it: net.Conn's own Read knows the difference.
		return c
	}
	w := &conn{Conn: c, rc: rc, net: kind}
	w.readF, w.writeF = w.read, w.write
	return w
}

// SyscallConn is the wrapped connection's, for those that look beneath a
// net.Conn (go-redis checks a pooled connection's health through it).
func (c *conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// NetConn returns the wrapped connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rp, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readF)
	n, errno := c.rn, c.rerr
	c.rp = nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is the RawConn.Read callback: false asks it to wait for
// readability.
func (c *conn) read(fd uintptr) bool {
	for {
		n, e := sysRead(fd, c.rp)
		switch e {
		case 0:
			c.rn = n
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = e
			return true
		}
	}
}

func (c *conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	c.wp, c.wn, c.werr, c.wnone = p, 0, 0, false
	err := c.rc.Write(c.writeF)
	n, errno, none := c.wn, c.werr, c.wnone
	c.wp = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	case none:
		return n, c.opError("write", io.ErrUnexpectedEOF) // as net.Conn's Write
	}
	return n, nil
}

// write is the RawConn.Write callback: it sends what the socket takes of
// c.wp, and false asks RawConn.Write to wait for room.
func (c *conn) write(fd uintptr) bool {
	for c.wn < len(c.wp) {
		n, e := sysSend(fd, c.wp[c.wn:])
		switch e {
		case 0:
			if n == 0 {
				// Never for a stream socket; were it to happen, trying
				// again would spin, holding the thread and its P.
				c.wnone = true
				return true
			}
			c.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// opError is err as net.Conn's Read and Write report it. RawConn's Read
// and Write put their own *net.OpError ("raw-read", "raw-write") around
// the poller's error (os.ErrDeadlineExceeded, net.ErrClosed); net.Conn has
// that error directly in its *net.OpError, so it is taken out.
func (c *conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: c.net, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// isStream reports whether rc's socket is SOCK_STREAM.
func isStream(rc syscall.RawConn) bool {
	typ, err := -1, error(nil)
	if cerr := rc.Control(func(fd uintptr) {
		typ, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
	}); cerr != nil || err != nil {
		return false
	}
	return typ == syscall.SOCK_STREAM
}

// Send sends what it can of p on the non-blocking socket fd, as one
// sendto(2) the scheduler is not told of, for code that writes inside its
// own RawConn.Write (the gateway's frame writer). A race build sends by
// syscall.Write instead, so the race detector sees the bytes (sysSend).
// It returns what was sent and the call's error number: EAGAIN when the
// socket takes nothing now.
func Send(fd uintptr, p []byte) (int, syscall.Errno) { return sysSend(fd, p) }
