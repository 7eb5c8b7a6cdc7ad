package admission

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// fakeConn is a connection from addr that records its Close.
type fakeConn struct {
	net.Conn
	addr   *net.TCPAddr
	closed atomic.Bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.addr }
func (c *fakeConn) Close() error         { c.closed.Store(true); return nil }

func from(ip string) *fakeConn {
	return &fakeConn{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
}

// TestPendingCap: an address's connections without request headers are
// capped by closing the oldest, but only once they have waited
// pendingMinAge (a burst of real clients is not cut); connections inside a
// request, idle again, or upgraded are counted as such; other addresses
// are not affected.
func TestPendingCap(t *testing.T) {
	var closed atomic.Int64
	p := NewPendingCap(2, func() { closed.Add(1) })
	t0 := time.Now()
	a := []*fakeConn{from("10.0.0.1"), from("10.0.0.1"), from("10.0.0.1"), from("10.0.0.1")}
	other := from("10.0.0.2")
	ip := netip.MustParseAddr("10.0.0.1")

	p.add(a[0], t0)
	p.add(a[1], t0)
	p.add(a[2], t0.Add(100*time.Millisecond)) // over the cap, but the oldest are young
	p.add(other, t0)
	if n := p.Waiting(ip); n != 3 || closed.Load() != 0 {
		t.Fatalf("a burst of 3 young connections: %d waiting, %d closed; want 3 and 0", n, closed.Load())
	}
	p.add(a[3], t0.Add(pendingMinAge)) // the two oldest have waited long enough
	if n := p.Waiting(ip); n != 2 || !a[0].closed.Load() || !a[1].closed.Load() || a[2].closed.Load() || a[3].closed.Load() {
		t.Fatalf("after a late arrival: %d waiting, closed %v %v %v %v; want 2, the two oldest closed",
			n, a[0].closed.Load(), a[1].closed.Load(), a[2].closed.Load(), a[3].closed.Load())
	}
	if closed.Load() != 2 || other.closed.Load() || p.Waiting(netip.MustParseAddr("10.0.0.2")) != 1 {
		t.Fatalf("closed %d, other address closed %v", closed.Load(), other.closed.Load())
	}

	// Headers read: no longer counted. Idle for the next request: counted
	// again. Upgraded or closed: gone.
	p.ConnState(a[2], http.StateActive)
	if n := p.Waiting(ip); n != 1 {
		t.Errorf("after a request's headers arrived: %d waiting, want 1", n)
	}
	p.ConnState(a[2], http.StateIdle)
	if n := p.Waiting(ip); n != 2 {
		t.Errorf("idle again: %d waiting, want 2", n)
	}
	p.ConnState(a[2], http.StateHijacked)
	p.ConnState(a[3], http.StateClosed)
	p.ConnState(other, http.StateClosed)
	if n := p.Waiting(ip); n != 0 || len(p.byConn) != 0 || len(p.byIP) != 0 {
		t.Errorf("after all left: %d waiting, %d conns and %d addresses kept; want none", n, len(p.byConn), len(p.byIP))
	}

	off := NewPendingCap(0, nil)
	for range 10 {
		off.ConnState(from("10.0.0.1"), http.StateNew)
	}
	if n := off.Waiting(ip); n != 0 {
		t.Errorf("a cap of 0 tracked %d connections", n)
	}
}

// TestIPRate: each address has its own bucket of upgrade requests; one
// that is whole again is forgotten at the next sweep.
func TestIPRate(t *testing.T) {
	r := newIPRate(1, 3)
	now := time.Now()
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::1")
	for i := range 3 {
		if !r.allow(a, now) {
			t.Fatalf("request %d of a burst of 3 refused", i+1)
		}
	}
	if r.allow(a, now) {
		t.Fatal("a fourth request at once allowed")
	}
	if !r.allow(b, now) {
		t.Fatal("another address refused")
	}
	if !r.allow(a, now.Add(1100*time.Millisecond)) {
		t.Fatal("a request a second later refused")
	}
	r.allow(a, now.Add(ipSweepEvery+time.Hour)) // sweeps: both are whole again
	if len(r.ips) != 1 {
		t.Errorf("%d addresses kept after the sweep, want only the one just seen", len(r.ips))
	}
	off := newIPRate(0, 0)
	for range 1000 {
		if !off.allow(a, now) {
			t.Fatal("no limit refused")
		}
	}
}

// TestIPv6SubnetRotationAttack: a client with an IPv6 subnet (a /64 is
// what one host or one home gets) can send every request from another
// address of it. The per-address limits count a /64 as one address, so
// such a client is held to one allowance, and keeps one entry in their
// maps however many of its addresses it uses; other /64s, and IPv4
// addresses (mapped ones included), are counted as before.
func TestIPv6SubnetRotationAttack(t *testing.T) {
	request := func(addr string) *http.Request {
		return &http.Request{RemoteAddr: addr}
	}
	now := time.Now()
	r := newIPRate(1, 3)
	for i := range 3 {
		if ip := remoteIP(request(fmt.Sprintf("[2001:db8:1:2::%x]:4000", i+1))); !r.allow(ip, now) {
			t.Fatalf("request %d of a burst of 3 refused", i+1)
		}
	}
	if r.allow(remoteIP(request("[2001:db8:1:2:ffff:ffff:ffff:ffff]:4000")), now) {
		t.Error("a fourth request at once, from another address of the same /64, allowed")
	}
	if len(r.ips) != 1 {
		t.Errorf("%d entries for the addresses of one /64, want 1", len(r.ips))
	}
	if !r.allow(remoteIP(request("[2001:db8:1:3::1]:4000")), now) {
		t.Error("a request from another /64 refused")
	}
	for i := range 3 {
		if !r.allow(remoteIP(request("[::ffff:10.0.0.1]:4000")), now) {
			t.Fatalf("request %d of a burst of 3 from a mapped IPv4 address refused", i+1)
		}
	}
	if !r.allow(remoteIP(request("10.0.0.2:4000")), now) || r.allow(remoteIP(request("10.0.0.1:4000")), now) {
		t.Error("IPv4 addresses are not counted one by one, mapped or not")
	}

	var closed atomic.Int64
	p := NewPendingCap(2, func() { closed.Add(1) })
	t0 := time.Now()
	rotating := []*fakeConn{from("2001:db8:1:2::1"), from("2001:db8:1:2::2"), from("2001:db8:1:2::3")}
	other := from("2001:db8:1:3::1")
	p.add(other, t0)
	for i, c := range rotating {
		p.add(c, t0.Add(time.Duration(i)*pendingMinAge))
	}
	if !rotating[0].closed.Load() || rotating[1].closed.Load() || rotating[2].closed.Load() || other.closed.Load() {
		t.Errorf("closed %v %v %v, other /64 %v: want the oldest of the /64 closed, and only it",
			rotating[0].closed.Load(), rotating[1].closed.Load(), rotating[2].closed.Load(), other.closed.Load())
	}
	if n := p.Waiting(netip.MustParseAddr("2001:db8:1:2::99")); n != 2 {
		t.Errorf("%d connections of the /64 waiting, want 2", n)
	}
	if len(p.byIP) != 2 {
		t.Errorf("%d entries for two /64s, want 2", len(p.byIP))
	}
}
