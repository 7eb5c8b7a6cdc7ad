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
// TCP or Unix stream sockets, it returns the connection as it is. Built
// with the race detector, a Conn reads and writes by syscall.Read and
// syscall.Write instead, as net.Conn does, which are what tell the
// detector of the bytes a system call moves (sys_linux_race.go).
package rawconn

import (
	"context"
	"net"
	"time"
)

// Wrap returns c reading and writing by raw system calls (see the package
// comment), or c itself where that is not possible.
func Wrap(c net.Conn) net.Conn { return wrap(c) }

// Dialer dials TCP connections and wraps them (Wrap). Its Dial has the
// signature of nats.go's CustomDialer, DialContext that of go-redis's
// Options.Dialer.
type Dialer struct {
	// Timeout bounds a dial, as net.Dialer's does; zero: none.
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
