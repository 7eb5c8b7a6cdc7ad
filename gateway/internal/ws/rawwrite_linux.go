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
}

var rawWriters = sync.Pool{New: func() any {
	w := new(rawWriter)
	w.send = w.sendAll
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

const rawWrites = true

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
