package testserver

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. It
// comes from below the kernel's ephemeral range, so no outgoing connection
// can take it before the caller binds it, and it is never handed out twice
// in one test process (bind(":0") can return a port it has just freed).
func FreePort(t testing.TB) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil {
			low = lo
		}
	}
	const floor = 10000
	if low-floor >= 1000 {
		for range 200 {
			p := floor + rand.IntN(low-floor)
			if claim(p) && bindable(p) {
				return p
			}
		}
	}
	for range 100 { // no room below the range: let the kernel pick
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if claim(p) {
			return p
		}
	}
	t.Fatal("find a free port: none found")
	return 0
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

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
