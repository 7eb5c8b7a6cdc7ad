package testkit

import (
	"fmt"
	"io"
	"net"
)

// reservePort keeps other test processes on this machine from handing out
// port p until the returned closer is called: it listens on an abstract
// Unix socket named after the port, which the kernel frees when the
// process ends, however it ends, and which leaves no file behind. It
// returns false if another process holds p.
func reservePort(p int) (io.Closer, bool) {
	ln, err := net.Listen("unix", fmt.Sprintf("@switchboard-testport-%d", p))
	if err != nil {
		return nil, false
	}
	return ln, true
}
