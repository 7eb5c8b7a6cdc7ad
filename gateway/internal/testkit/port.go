package testkit

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// RestartablePort returns a free TCP port on 127.0.0.1 for a server a test
// stops and starts again on the same port (Redis, NATS). FreePort's ports
// come from the kernel's ephemeral range, where, while the server is down,
// any outgoing connection on the machine may take the port as its local
// port and make the restart fail; this one comes from below that range.
// It falls back to FreePort if the range leaves no room.
func RestartablePort(t testing.TB) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil {
			low = lo
		}
	}
	const floor = 10000
	if low-floor < 1000 {
		return FreePort(t)
	}
	for range 100 {
		p := floor + rand.IntN(low-floor)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		_ = ln.Close()
		return p
	}
	return FreePort(t)
}
