package loadgen

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bindNoPort lets connect pick the source port by the whole 4-tuple, as it
// does without a bind, so ports in TIME_WAIT from an earlier run are reused
// rather than failing bind with "address already in use".
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// rawRecv and rawSend are recv(2) and send(2) on a non-blocking socket,
// made without telling the Go scheduler, since they return at once. Told,
// sysmon kept waking every 20 µs to hand the P of a call in progress to
// another thread, with a futex wake each time (about 5,000 a second at
// R=4,000). recv and send rather than read and write skip the VFS layer;
// MSG_NOSIGNAL turns a write to a reset connection into EPIPE without a
// SIGPIPE.
func rawRecv(fd uintptr, p []byte) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawSend(fd uintptr, p []byte) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
