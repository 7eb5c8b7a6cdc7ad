package loadgen

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestPlainCalls: the fallback of the raw calls moves bytes, and reports
// an empty non-blocking socket as EAGAIN with 0 bytes, as readFrames and
// writeNow expect of either.
func TestPlainCalls(t *testing.T) {
	for _, calls := range []struct {
		name       string
		recv, send func(uintptr, []byte) (int, error)
	}{{"plain", plainRecv, plainSend}, {"this build's", rawRecv, rawSend}} {
		t.Run(calls.name, func(t *testing.T) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fds[0])
			defer unix.Close(fds[1])
			for _, fd := range fds {
				if err := unix.SetNonblock(fd, true); err != nil {
					t.Fatal(err)
				}
			}
			buf := make([]byte, 16)
			if n, err := calls.recv(uintptr(fds[1]), buf); n != 0 || err != unix.EAGAIN {
				t.Fatalf("recv on an empty socket = %d, %v; want 0, EAGAIN", n, err)
			}
			if n, err := calls.send(uintptr(fds[0]), []byte("frame")); n != 5 || err != nil {
				t.Fatalf("send = %d, %v", n, err)
			}
			if n, err := calls.recv(uintptr(fds[1]), buf); n != 5 || err != nil || string(buf[:n]) != "frame" {
				t.Fatalf("recv = %d %q, %v; want 5 \"frame\"", n, buf[:max(n, 0)], err)
			}
		})
	}
}
