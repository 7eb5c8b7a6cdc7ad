package loadgen

import "golang.org/x/sys/unix"

// plainRecv and plainSend are read(2) and write(2) on a non-blocking
// socket, through the ordinary system call path, for the systems without
// the Linux build's raw calls. The Go runtime turns SIGPIPE on a socket
// into EPIPE. Like the raw calls they return 0 with an error.
func plainRecv(fd uintptr, p []byte) (int, error) { return counted(unix.Read(int(fd), p)) }

func plainSend(fd uintptr, p []byte) (int, error) { return counted(unix.Write(int(fd), p)) }

func counted(n int, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	return n, nil
}
