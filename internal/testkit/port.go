package testkit

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for a
// server the test starts. Ports come from below the kernel's ephemeral range,
// so no outgoing connection on the machine can take one between this check
// and the server's bind (or while a test has its server stopped), and a port
// is never handed out twice in one test process: two servers of one stack
// once drew the same port from bind(":0"), which had just freed it. Nor is
// it handed out by another test process on the machine until t ends
// (reservePort): go test runs two packages at once, and a port one of
// them had drawn for a server not started yet, or stopped a while, or for
// an address that must stay unanswered (a service that is down), passed
// the other's bind check, so the other's server could take it.
func FreePort(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	const floor = 10000
	if low-floor >= 1000 {
		for range 200 {
			p := floor + rand.IntN(low-floor)
			if claim(p) && reserve(t, p) && bindable(p) {
				return p
			}
		}
	}
	for range 100 { // no room below the range: let the kernel pick
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if claim(p) && reserve(t, p) {
			return p
		}
	}
	t.Fatal("free port: none found")
	return 0
}

// reserve reserves p from other test processes until t ends, and reports
// whether it could: false if another process holds it. Released after
// t's other cleanups have stopped its servers (cleanups run last first).
func reserve(t testing.TB, p int) bool {
	r, ok := reservePort(p)
	if ok {
		t.Cleanup(func() { _ = r.Close() })
	}
	return ok
}

// RestartablePort returns a port for a server a test stops and starts again
// on the same port (Redis, NATS). Every FreePort port now qualifies.
func RestartablePort(t testing.TB) int {
	t.Helper()
	return FreePort(t)
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// claim records p as handed out and reports whether it was not already.
func claim(p int) bool {
	portsMu.Lock()
	defer portsMu.Unlock()
	if ports[p] {
		return false
	}
	ports[p] = true
	return true
}

func bindable(p int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil {
			low = lo
		}
	}
	return low
}
