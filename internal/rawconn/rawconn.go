// Package rawconn has the services' hot sockets (NATS, Redis, the
// gateway's client sockets) read and written by raw system calls.
//
// Why. net.Conn's Read and Write tell the Go scheduler of every read(2)
// and write(2) (entersyscall). When a process's every P has been idle,
// sysmon sleeps until the next such call wakes it (a futex wake-up) and
// then polls every 20 µs for at least a millisecond, each poll a
// nanosleep(2): at 1,000 sends a second, a profile of a gateway worker and
// of handlers-svc had sysmon in 11 % of each one's CPU samples. The
// services' sockets are non-blocking, and a read or a write on one returns
// within microseconds or says EAGAIN, so the scheduler need not be told:
// on EAGAIN a Conn waits in the netpoller, as net.Conn does, honouring
// the deadlines set on it.
//
// Wrap changes nothing but how the bytes move: the same descriptor, the
// same deadlines, net.Conn's errors (*net.OpError around
// os.ErrDeadlineExceeded, net.ErrClosed or the system call's error;
// io.EOF at the end). On other systems, and for connections that are not
// TCP or Unix stream sockets, it returns the connection as it is. A
// Reader reads as Wrap's connection does, without the wrapper's
// allocations, for a connection written some other way. Built
// with the race detector, a Conn reads and writes by syscall.Read and
// syscall.Write instead, as net.Conn does, which are what tell the
// detector of the bytes a system call moves (sys_linux_race.go).
package rawconn

import (
	"context"
	"net"
	"syscall"
	"time"
)

// Wrap returns c reading and writing by raw system calls (see the package
// comment), or c itself where that is not possible.
func Wrap(c net.Conn) net.Conn { return wrap(c) }

// Reader reads a connection as Wrap's connection reads it, without the
// wrapper: a Reader is a value, NewReader allocates only what the
// connection's SyscallConn does (8 bytes, a RawConn the caller may share,
// see RawConn) and a Read nothing, where Wrap costs about 200 bytes in
// four allocations. It is for a connection read through it and written
// some other way, kept long enough for that to count: the gateway keeps
// one in each client socket's meter, for the socket's life.
//
// A Reader may be copied, and read from by several goroutines at once, as
// a net.Conn may. Make one with NewReader; the zero Reader is not usable.
type Reader struct {
	c    net.Conn
	rc   syscall.RawConn // c's; nil when c has none
	kind uint8           // kindTCP or kindUnix: reads are raw, their errors say "tcp" or "unix"; 0: reads are c.Read
}

const (
	kindTCP = 1 + iota
	kindUnix
)

// NewReader returns a Reader of c: one that reads by raw system calls
// where Wrap would wrap c, and by c's own Read elsewhere.
func NewReader(c net.Conn) Reader { return newReader(c) }

// Read reads from the connection as net.Conn's Read does: it waits for
// data in the netpoller, a deadline set on the connection ends the wait,
// and its errors are net.Conn's (io.EOF at the end, *net.OpError around
// os.ErrDeadlineExceeded, net.ErrClosed or the system call's error).
func (r *Reader) Read(p []byte) (int, error) {
	if r.kind == 0 {
		return r.c.Read(p)
	}
	return r.readRaw(p)
}

// RawConn returns the connection's syscall.RawConn, the one the Reader
// reads through, or nil when the connection has none (it is no
// syscall.Conn): a caller that also waits on the socket can use it
// instead of asking the connection for another, which allocates.
func (r *Reader) RawConn() syscall.RawConn { return r.rc }

// rawConn returns c's syscall.RawConn, or nil when it has none.
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Dialer dials TCP connections and wraps them (Wrap). Its Dial has the
// signature of nats.go's CustomDialer, DialContext that of go-redis's
// Options.Dialer. It dials with a net.Dialer, so a host name's addresses
// are tried as net.Dialer tries them: one after the other, sharing
// Timeout (each gets its part of the time left, at least 2 s, or all that
// is left when less), with an IPv4 attempt 300 ms after an IPv6 one when
// the name has both.
type Dialer struct {
	// Timeout bounds a dial, all of a name's addresses together, as
	// net.Dialer's does; zero: none but the context's.
	Timeout time.Duration
	// KeepAlive is the TCP keep-alive policy, as net.Dialer's
	// KeepAliveConfig; the zero value is net.Dialer's default.
	KeepAlive net.KeepAliveConfig
}

// Dial dials address over network and wraps the connection.
func (d Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext dials address over network within ctx and wraps the
// connection.
func (d Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.Timeout, KeepAliveConfig: d.KeepAlive}
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
