package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// dialFrom upgrades a socket of user from the local address ip (any
// 127.0.0.0/8 address is the loopback interface's) and waits for its
// connected frame; it returns how long that took.
func dialFrom(s *testkit.Stack, ip, user string) (time.Duration, error) {
	start := time.Now()
	d := websocket.Dialer{
		HandshakeTimeout: 5 * time.Second,
		NetDial: func(network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
			return nd.Dial(network, addr)
		},
	}
	c, _, err := d.Dial(s.URL(), http.Header{"Authorization": {"Bearer " + s.Token(user)}})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		return 0, err
	}
	var f proto.Frame
	if err := json.Unmarshal(data, &f); err != nil || f.Event != proto.EventConnected {
		return 0, err
	}
	return time.Since(start), nil
}

// TestSlowlorisAttack: a client on 127.0.0.1 opens connections to the
// client port, hundreds a second, thousands in all, each sending half a
// request and trickling a header line every second, as slowloris does.
// Meanwhile real clients keep connecting, from another address
// (127.0.0.2) and from the attacker's own: every one of them gets its
// socket promptly. The gateway held only a few hundred of the attacker's
// connections at any time (GATEWAY_IP_PENDING closes its oldest, counted
// in pending_connections_closed_total; without it the header timeout alone
// would let it hold five seconds' worth, over 2,000), and closed every
// one of them within the 5 s header timeout.
//
// The real clients from 127.0.0.1 are honest: they send whole requests,
// as clients do, and the cap counts only connections whose request
// headers have not arrived; a client that has sent them is never one of
// the oldest waiting.
func TestSlowlorisAttack(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	if _, err := dialFrom(s, "127.0.0.2", "probe"); err != nil {
		t.Skipf("cannot connect from 127.0.0.2 here: %v", err)
	}
	const (
		rate     = 400 // attack connections per second
		duration = 8 * time.Second
		// Without the cap: rate times the 5 s header timeout.
		unbounded = rate * 5
	)
	var (
		open, maxOpen, opened atomic.Int64
		longest               atomic.Int64 // ns: the longest an attack connection lived
		wg                    sync.WaitGroup
	)
	stop := make(chan struct{})
	attack := func() {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			return
		}
		born := time.Now()
		opened.Add(1)
		for n := open.Add(1); ; {
			m := maxOpen.Load()
			if n <= m || maxOpen.CompareAndSwap(m, n) {
				break
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			_, _ = io.WriteString(c, "GET /socket HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n")
			gone := make(chan struct{})
			go func() { _, _ = io.Copy(io.Discard, c); close(gone) }() // until the gateway closes it
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-gone:
					open.Add(-1)
					for life := int64(time.Since(born)); ; {
						l := longest.Load()
						if life <= l || longest.CompareAndSwap(l, life) {
							break
						}
					}
					return
				case <-tick.C:
					_, _ = io.WriteString(c, "X-Slow: 1\r\n")
				case <-stop:
					_ = c.Close()
					<-gone
					open.Add(-1)
					return
				}
			}
		}()
	}
	attackDone := make(chan struct{})
	go func() {
		defer close(attackDone)
		t := time.NewTicker(time.Second / rate)
		defer t.Stop()
		end := time.After(duration)
		for {
			select {
			case <-end:
				return
			case <-t.C:
				attack()
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })

	// Real clients, from both addresses, all through the attack.
	var slowest time.Duration
	real := 0
	for i := 0; ; i++ {
		select {
		case <-attackDone:
		default:
			ip := []string{"127.0.0.1", "127.0.0.2"}[i%2]
			d, err := dialFrom(s, ip, "real")
			if err != nil {
				t.Fatalf("a real client from %s could not connect %s into the attack (%d attack connections open): %v",
					ip, time.Duration(i)*250*time.Millisecond, open.Load(), err)
			}
			slowest = max(slowest, d)
			real++
			time.Sleep(250 * time.Millisecond)
			continue
		}
		break
	}
	t.Logf("%d attack connections opened, at most %d open at once; %d real clients connected, the slowest in %s",
		opened.Load(), maxOpen.Load(), real, slowest)
	if opened.Load() < 2000 {
		t.Fatalf("only %d attack connections opened, want thousands", opened.Load())
	}
	if slowest > 2*time.Second {
		t.Errorf("the slowest real client took %s to connect", slowest)
	}
	if m := maxOpen.Load(); m > unbounded/2 {
		t.Errorf("the gateway held %d attack connections at once, want a few hundred (the cap), far from %d", m, unbounded)
	}
	testkit.Eventually(t, 10*time.Second, "the gateway closed every attack connection", func() bool { return open.Load() == 0 })
	if l := time.Duration(longest.Load()); l > 7*time.Second {
		t.Errorf("an attack connection lived %s, past the 5 s header timeout", l)
	}
	if n := s.Metrics().Sum("switchboard_gateway_pending_connections_closed_total"); n < float64(opened.Load())/4 {
		t.Errorf("pending_connections_closed_total = %g, want most of the %d attack connections", n, opened.Load())
	}
	if s.Gateway.Exited() {
		t.Fatal("the gateway exited")
	}
}

// TestUpgradeFloodAttack: one address that asks for sockets as fast as it
// can (here with forged tokens, each of which the gateway would verify) is
// answered 429 rate_limited once past its allowance (GATEWAY_IP_UPGRADE_RATE,
// 50 a second and 200 at once per worker), before its token is looked at;
// a client from another address connects meanwhile.
func TestUpgradeFloodAttack(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	if _, err := dialFrom(s, "127.0.0.2", "probe"); err != nil {
		t.Skipf("cannot connect from 127.0.0.2 here: %v", err)
	}
	const n = 1500
	var limited, unauthorized atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan struct{})
	client := &http.Client{Timeout: 5 * time.Second}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addr+"/socket", nil)
				req.Header.Set("Authorization", "Bearer forged.token.x")
				for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket",
					"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				var body struct{ Error proto.Error }
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusTooManyRequests && body.Error.Code == proto.CodeRateLimited:
					limited.Add(1)
				case resp.StatusCode == http.StatusUnauthorized:
					unauthorized.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	took := time.Since(start)
	if _, err := dialFrom(s, "127.0.0.2", "real"); err != nil {
		t.Fatalf("a client from another address: %v", err)
	}
	t.Logf("%d requests in %s: %d refused 429, %d verified and refused 401", n, took, limited.Load(), unauthorized.Load())
	// At most the bursts of both workers plus 50 a second each were
	// verified.
	if max := 2*(200+50*took.Seconds()) + 10; float64(unauthorized.Load()) > max {
		t.Errorf("%d forged tokens verified in %s, want at most %.0f", unauthorized.Load(), took, max)
	}
	if limited.Load() == 0 {
		t.Error("no request was refused 429")
	}
	if got := s.Metrics().Sum("switchboard_gateway_upgrades_refused_total", "reason", "ip_rate_limited"); got != float64(limited.Load()) {
		t.Errorf("upgrades_refused_total{reason=ip_rate_limited} = %g, want %d", got, limited.Load())
	}
}
