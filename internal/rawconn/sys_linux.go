//go:build linux && !race

package rawconn

import (
	"syscall"
	"unsafe"
)

// sysRead is read(2) on fd into p, not told to the scheduler.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), e
}

// sysSend is sendto(2) of p on fd, not told to the scheduler (Send).
// MSG_NOSIGNAL makes a send to a reset connection EPIPE instead of a
// SIGPIPE.
func sysSend(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}
