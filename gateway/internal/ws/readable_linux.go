//go:build linux

package ws

import (
	"syscall"
	"unsafe"
)

// received reports whether the socket fd has received data, an end or an
// error, without taking any of it. A raw recvfrom(2): it never blocks
// (MSG_DONTWAIT), so the scheduler is not told of it (package rawconn
// says why that matters).
func received(fd uintptr) bool {
	var b [1]byte
	_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return e != syscall.EAGAIN && e != syscall.EWOULDBLOCK
}
