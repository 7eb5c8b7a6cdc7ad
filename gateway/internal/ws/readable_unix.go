//go:build unix

package ws

import (
	"sync"
	"syscall"
)

// peekReadable is a syscall.RawConn.Read callback: it reports whether the
// socket has data to read, or an end or error to report, without taking
// any of it; false means "wait until the socket is readable".
func peekReadable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
}

var controlBufs = sync.Pool{New: func() any { return new([maxClientControl]byte) }}

// takeControl reads a client's ping or pong off rc when it is the first
// thing on the network and has wholly arrived (parseClientControl), and
// returns its opcode and payload; otherwise it reads nothing and reports
// false. Only the socket's reader may call it, and only while gorilla's
// read buffer is empty, so gorilla is between frames and misses nothing.
func takeControl(rc syscall.RawConn) (op int, payload []byte, ok bool) {
	buf := controlBufs.Get().(*[maxClientControl]byte)
	defer controlBufs.Put(buf)
	err := rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err != nil || n <= 0 {
			return true
		}
		var size int
		op, payload, size, ok = parseClientControl(buf[:n])
		if !ok {
			return true
		}
		// The frame is in the socket's receive queue, so this read
		// returns all of it at once.
		m, err := syscall.Read(int(fd), buf[:size])
		ok = err == nil && m == size
		return true
	})
	return op, payload, ok && err == nil
}
