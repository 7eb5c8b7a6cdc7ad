//go:build linux

package rawconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// conn is a TCP or Unix stream socket read with read(2) (its Reader) and
// written with sendto(2) by syscall.RawSyscall (sysRead, sysSend), inside
// its RawConn's Read and Write: under the descriptor's read or write lock,
// and waiting in the netpoller (deadlines included) when the call says
// EAGAIN.
type conn struct {
	net.Conn
	r Reader // its reads, raw: r.kind is never 0

	wmu    sync.Mutex // the write state below, for one Write at a time
	wp     []byte
	wn     int
	werr   syscall.Errno
	wnone  bool // sendto took nothing and said nothing: the write ends
	writeF func(fd uintptr) bool
}

func wrap(c net.Conn) net.Conn {
	r := newReader(c)
	if r.kind == 0 {
		return c
	}
	w := &conn{Conn: c, r: r}
	w.writeF = w.write
	return w
}

// newReader reads c raw when it is a TCP or Unix stream socket.
func newReader(c net.Conn) Reader {
	r := Reader{c: c, rc: rawConn(c)}
	if r.rc == nil {
		return r
	}
	switch c.(type) {
	case *net.TCPConn:
		r.kind = kindTCP
	case *net.UnixConn:
		// A datagram socket's empty datagram is no end, as a raw Read
		// would take it: net.Conn's own Read knows the difference.
		if isStream(r.rc) {
			r.kind = kindUnix
		}
	}
	return r
}

// SyscallConn is the wrapped connection's, for those that look beneath a
// net.Conn (go-redis checks a pooled connection's health through it).
func (c *conn) SyscallConn() (syscall.RawConn, error) { return c.r.rc, nil }

// NetConn returns the wrapped connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) Read(p []byte) (int, error) { return c.r.readRaw(p) }

// readOp is one raw Read's state, which its RawConn.Read callback fills
// in. Pooled, with the callback bound once, so that neither a Reader nor a
// Read allocates one; RawConn.Read holds the descriptor's read lock, so
// one Read at a time is in a callback whatever the goroutines.
type readOp struct {
	p     []byte
	n     int
	errno syscall.Errno
	f     func(fd uintptr) bool // op.read
}

var readOps = sync.Pool{New: func() any {
	op := new(readOp)
	op.f = op.read
	return op
}}

// readRaw is Read by read(2) inside RawConn.Read.
func (r *Reader) readRaw(p []byte) (int, error) {
	if len(p) == 0 {
		// net.Conn's reads nothing either, but says net.ErrClosed on a
		// closed connection (and ignores the deadline): Control fails
		// the same way, without a system call.
		if err := r.rc.Control(nop); err != nil {
			return 0, opError("read", r.kind, r.c, err)
		}
		return 0, nil
	}
	op := readOps.Get().(*readOp)
	op.p, op.n, op.errno = p, 0, 0
	err := r.rc.Read(op.f)
	n, errno := op.n, op.errno
	op.p = nil
	readOps.Put(op)
	switch {
	case err != nil:
		return 0, opError("read", r.kind, r.c, err)
	case errno != 0:
		return 0, opError("read", r.kind, r.c, os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is the RawConn.Read callback: false asks it to wait for
// readability.
func (op *readOp) read(fd uintptr) bool {
	for {
		n, e := sysRead(fd, op.p)
		switch e {
		case 0:
			op.n = n
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			op.errno = e
			return true
		}
	}
}

func (c *conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		// net.Conn's sends nothing either, but says net.ErrClosed on a
		// closed connection and os.ErrDeadlineExceeded past the
		// deadline: RawConn.Write checks both before it calls done.
		if err := c.r.rc.Write(done); err != nil {
			return 0, opError("write", c.r.kind, c.Conn, err)
		}
		return 0, nil
	}
	c.wmu.Lock()
	c.wp, c.wn, c.werr, c.wnone = p, 0, 0, false
	err := c.r.rc.Write(c.writeF)
	n, errno, none := c.wn, c.werr, c.wnone
	c.wp = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, opError("write", c.r.kind, c.Conn, err)
	case errno != 0:
		return n, opError("write", c.r.kind, c.Conn, os.NewSyscallError("write", errno))
	case none:
		return n, opError("write", c.r.kind, c.Conn, io.ErrUnexpectedEOF) // as net.Conn's Write
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

// opError is err of an op on c, a socket of kind, as net.Conn's Read and
// Write report it. RawConn's Read and Write put their own *net.OpError
// ("raw-read", "raw-write") around the poller's error
// (os.ErrDeadlineExceeded, net.ErrClosed); net.Conn has that error
// directly in its *net.OpError, so it is taken out.
func opError(op string, kind uint8, c net.Conn, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	netw := "tcp"
	if kind == kindUnix {
		netw = "unix"
	}
	return &net.OpError{Op: op, Net: netw, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// nop and done are callbacks of an empty Read and Write (RawConn's
// Control and Write), package-level so that passing them allocates
// nothing.
func nop(uintptr)       {}
func done(uintptr) bool { return true }

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
