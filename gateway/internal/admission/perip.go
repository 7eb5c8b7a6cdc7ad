package admission

import (
	"container/list"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pendingMinAge is how long a connection may wait for its request headers
// before PendingCap may close it to make room: a burst of clients behind
// one address all send their headers within it, a slowloris client never
// does.
const pendingMinAge = 500 * time.Millisecond

// PendingCap caps, per client address, the connections of a worker's
// client port that hold no request whose headers have arrived: new ones
// waiting for their first request, and keep-alive ones waiting for their
// next. A slowloris client, which opens connections and trickles their
// headers, holds a goroutine and a file descriptor per connection for up
// to the header timeout; an upgraded socket, or a connection inside a
// request, is not counted, so a user behind a shared address with many
// sockets is not capped.
//
// When an address has more than its cap, its oldest such connections are
// closed, as long as they have waited pendingMinAge: the newest are the
// ones most likely to be a real client about to send a whole request,
// and an attacker who keeps opening connections only pushes out its own
// older ones. So real clients behind the attacker's address still get in.
//
// Wire ConnState to the http.Server's ConnState. It is safe for concurrent
// use.
type PendingCap struct {
	max     int
	onEvict func() // counts a closed connection; may be nil

	mu     sync.Mutex
	byConn map[net.Conn]*list.Element // of pending, in byIP's list of the address
	byIP   map[netip.Addr]*list.List  // oldest first
	// timers close, once its oldest connection has waited pendingMinAge,
	// what an address still has over its cap: a burst that then stops
	// opening connections is brought back under it all the same.
	timers map[netip.Addr]*time.Timer
}

// pending is one connection waiting for request headers.
type pending struct {
	c     net.Conn
	ip    netip.Addr
	since time.Time
}

// NewPendingCap returns a PendingCap of max connections per address (0:
// none, ConnState does nothing); onEvict, when set, is called for each
// connection it closes.
func NewPendingCap(max int, onEvict func()) *PendingCap {
	return &PendingCap{max: max, onEvict: onEvict, byConn: map[net.Conn]*list.Element{}, byIP: map[netip.Addr]*list.List{},
		timers: map[netip.Addr]*time.Timer{}}
}

// ConnState follows c through the http.Server's states. net/http sets
// StateActive once a request's headers have been read, so c is waiting
// for headers from StateNew (or StateIdle) until then.
func (p *PendingCap) ConnState(c net.Conn, s http.ConnState) {
	if p.max <= 0 {
		return
	}
	switch s {
	case http.StateNew, http.StateIdle:
		p.add(c, time.Now())
	default: // active, hijacked (upgraded), closed
		p.remove(c)
	}
}

// add counts c as waiting for headers, and closes the oldest waiting
// connections of its address beyond the cap.
func (p *PendingCap) add(c net.Conn, now time.Time) {
	ip := addrOf(c.RemoteAddr())
	var evict []net.Conn
	p.mu.Lock()
	if _, ok := p.byConn[c]; !ok {
		l := p.byIP[ip]
		if l == nil {
			l = list.New()
			p.byIP[ip] = l
		}
		p.byConn[c] = l.PushBack(&pending{c: c, ip: ip, since: now})
		evict = p.trim(ip, l, now)
	}
	p.mu.Unlock()
	p.evict(evict)
}

// trim drops the oldest waiting connections of ip (list l) beyond the cap
// that have waited pendingMinAge, and returns them to be closed; when l
// is still over the cap, it arms ip's timer for when its oldest will have
// waited that long. p.mu must be held.
func (p *PendingCap) trim(ip netip.Addr, l *list.List, now time.Time) (evict []net.Conn) {
	for l.Len() > p.max {
		oldest := l.Front().Value.(*pending)
		if wait := pendingMinAge - now.Sub(oldest.since); wait > 0 {
			if p.timers[ip] == nil {
				p.timers[ip] = time.AfterFunc(wait, func() { p.expire(ip) })
			}
			break
		}
		p.drop(l.Front())
		evict = append(evict, oldest.c)
	}
	return evict
}

// expire is ip's timer: it closes what ip has over the cap by now.
func (p *PendingCap) expire(ip netip.Addr) {
	var evict []net.Conn
	p.mu.Lock()
	delete(p.timers, ip)
	if l := p.byIP[ip]; l != nil {
		evict = p.trim(ip, l, time.Now())
	}
	p.mu.Unlock()
	p.evict(evict)
}

// evict closes conns, and counts them.
func (p *PendingCap) evict(conns []net.Conn) {
	for _, old := range conns {
		_ = old.Close() // its ConnState becomes StateClosed, and remove finds nothing
		if p.onEvict != nil {
			p.onEvict()
		}
	}
}

// remove stops counting c.
func (p *PendingCap) remove(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.byConn[c]; ok {
		p.drop(e)
	}
}

// drop forgets e. p.mu must be held.
func (p *PendingCap) drop(e *list.Element) {
	w := e.Value.(*pending)
	delete(p.byConn, w.c)
	l := p.byIP[w.ip]
	l.Remove(e)
	if l.Len() == 0 {
		delete(p.byIP, w.ip)
	}
}

// Waiting returns how many connections of ip, or of its /64 for an IPv6
// address (clientOf), wait for request headers.
func (p *PendingCap) Waiting(ip netip.Addr) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.byIP[clientOf(ip)]; l != nil {
		return l.Len()
	}
	return 0
}

// addrOf returns the client a connection's remote address is counted as
// (clientOf); the zero Addr when it has none (all such connections share
// one count).
func addrOf(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return clientOf(ip)
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return clientOf(ap.Addr())
}

// ipv6ClientBits is the prefix of an IPv6 address that names one client
// for the per-address limits. A host, or a home, gets a whole /64 and can
// send each request from another address of it: counted one by one, its
// addresses would each have an allowance of their own, and an entry in the
// limits' maps.
const ipv6ClientBits = 64

// clientOf returns what the per-address limits count ip as: an IPv4
// address (mapped into IPv6 or not) itself, an IPv6 address its /64.
func clientOf(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.WithZone("").Prefix(ipv6ClientBits); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// remoteIP returns the client r is counted as, as addrOf.
func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return clientOf(ap.Addr())
}

// ipSweepEvery is how often ipRate forgets the addresses whose allowance
// is whole again, so its map holds only addresses seen lately.
const ipSweepEvery = time.Minute

// ipRate is a token bucket per client address for upgrade requests
// (golang.org/x/time/rate). Every request for /socket verifies a token,
// an HMAC, before anything else can refuse it: without this, one address
// could make a worker verify tokens as fast as it can send requests.
type ipRate struct {
	limit rate.Limit // 0: no limit
	burst int

	mu    sync.Mutex
	ips   map[netip.Addr]*rate.Limiter
	swept time.Time
}

func newIPRate(perSecond float64, burst int) *ipRate {
	return &ipRate{limit: rate.Limit(perSecond), burst: burst, ips: map[netip.Addr]*rate.Limiter{}, swept: time.Now()}
}

// allow reports whether ip may make one more upgrade request at now.
func (r *ipRate) allow(ip netip.Addr, now time.Time) bool {
	if r.limit <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.swept) >= ipSweepEvery {
		r.swept = now
		for a, l := range r.ips {
			if l.TokensAt(now) >= float64(r.burst) {
				delete(r.ips, a)
			}
		}
	}
	l := r.ips[ip]
	if l == nil {
		l = rate.NewLimiter(r.limit, r.burst)
		r.ips[ip] = l
	}
	return l.AllowN(now, 1)
}
