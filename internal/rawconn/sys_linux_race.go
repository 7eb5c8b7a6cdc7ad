//go:build linux && race

package rawconn

import "syscall"

// With the race detector, the bytes move by syscall.Read and
// syscall.Write, as net.Conn's do. The detector learns only from those
// what a system call reads and writes of the buffer, and that a read
// comes after the write whose bytes it gets (they share a
// synchronization point): by raw system calls it saw neither, so it
// missed a race on a buffer a read was filling, and reported one between
// a goroutine that wrote to a socket and one that acted on the bytes it
// read (TestRaceDetectorSeesTheBytes). The scheduler is told of these
// calls; a race build is not measured for that.

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return n, errno(err)
}

// sysSend is write(2), as net.Conn's: a send to a reset connection raises
// a SIGPIPE, which the runtime ignores for descriptors other than 1 and 2,
// and says EPIPE.
func sysSend(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return n, errno(err)
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO // syscall.Read and Write return nothing else
}
