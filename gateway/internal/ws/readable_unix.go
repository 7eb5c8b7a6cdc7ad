//go:build unix && !linux

package ws

import "syscall"

// received reports whether the socket fd has received data, an end or an
// error, without taking any of it.
func received(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
}
