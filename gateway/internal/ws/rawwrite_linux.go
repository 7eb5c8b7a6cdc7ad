//go:build linux

package ws

import (
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawWriter sends a buffer on a non-blocking socket with raw send(2)
// calls. A send to a loopback or LAN peer returns within microseconds
// (the fd is non-blocking: a full socket answers EAGAIN, and RawConn.Write
// then waits in the netpoller), so the scheduler need not be told of it;
// told, as net.Conn.Write does, sysmon hands the worker's only P to another
// thread whenever a send passes 20 µs, a futex wake-up and a thread switch
// for nothing. MSG_NOSIGNAL makes a write to a reset connection EPIPE
// instead of a SIGPIPE.
type rawWriter struct {
	p    []byte
	err  error
	send func(fd uintptr) bool // w.sendAll, bound once per pooled writer
	now  func(fd uintptr)      // w.sendNow, likewise
}

var rawWriters = sync.Pool{New: func() any {
	w := new(rawWriter)
	w.send = w.sendAll
	w.now = w.sendNow
	return w
}}

func (w *rawWriter) sendAll(fd uintptr) bool {
	for len(w.p) > 0 {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(w.p))), uintptr(len(w.p)), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			w.p = w.p[n:]
		case unix.EINTR:
		case unix.EAGAIN:
			return false // wait until writable, or the write deadline
		default:
			w.err = e
			return true
		}
	}
	return true
}

// sendNow sends as much of w.p as the socket takes at once and stops at
// EAGAIN, leaving the rest in w.p: it never waits.
func (w *rawWriter) sendNow(fd uintptr) { w.sendAll(fd) }

const rawWrites = true

// trySend sends what it can of p on the socket behind rc without waiting
// and returns the part the socket did not take (none, almost always: a
// socket's send buffer holds far more than one batch). It goes through
// rc.Control rather than rc.Write, which would refuse at once if a write
// deadline set for an earlier wait had passed since: the caller sets a
// fresh deadline only for a rest it has to wait for, and so skips
// SetWriteDeadline's timer update on every write that does not.
func trySend(rc syscall.RawConn, p []byte) ([]byte, error) {
	w := rawWriters.Get().(*rawWriter)
	w.p, w.err = p, nil
	err := rc.Control(w.now)
	if err == nil {
		err = w.err
	}
	rest := w.p
	w.p, w.err = nil, nil
	rawWriters.Put(w)
	return rest, err
}

// writeAll writes p to the socket behind rc, honouring its write deadline.
func writeAll(rc syscall.RawConn, p []byte) error {
	w := rawWriters.Get().(*rawWriter)
	w.p, w.err = p, nil
	err := rc.Write(w.send)
	if err == nil {
		err = w.err
	}
	w.p, w.err = nil, nil
	rawWriters.Put(w)
	return err
}
