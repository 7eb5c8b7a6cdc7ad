package worker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// lifecycleMessages subscribes to both lifecycle subjects on url and
// returns what arrives, decoded, in the order published: one
// subscription for both (nats.go delivers each subscription's messages
// on its own goroutine, so two would race each other).
func lifecycleMessages(t *testing.T, url string) <-chan *proto.Lifecycle {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	got := make(chan *proto.Lifecycle, 64)
	_, err = nc.Subscribe("switchboard.lifecycle.*", func(m *nats.Msg) {
		l, err := proto.DecodeLifecycle(m.Data)
		if err != nil {
			t.Errorf("%s: %s: %v", m.Subject, m.Data, err)
			return
		}
		if want, _ := proto.LifecycleSubject(l.Type); want != m.Subject {
			t.Errorf("a %s message on %s", l.Type, m.Subject)
		}
		got <- l
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return got
}

// nextLifecycle returns the next lifecycle message, failing the test
// after wait.
func nextLifecycle(t *testing.T, got <-chan *proto.Lifecycle, what string) *proto.Lifecycle {
	t.Helper()
	select {
	case l := <-got:
		return l
	case <-time.After(wait):
		t.Fatalf("no lifecycle message for %s within %s", what, wait)
		return nil
	}
}

// checkLifecycle fails the test unless l is want, its time within
// [from, now].
func checkLifecycle(t *testing.T, l *proto.Lifecycle, want proto.Lifecycle, from time.Time) {
	t.Helper()
	if l.At < from.UnixMilli() || l.At > time.Now().UnixMilli() {
		t.Errorf("%s of %s at %d, want between %d and now", l.Type, l.Conn, l.At, from.UnixMilli())
	}
	want.At = l.At
	got := *l
	if (got.Sockets == nil) != (want.Sockets == nil) || got.Sockets != nil && *got.Sockets != *want.Sockets {
		t.Errorf("%s of %s: sockets %s, want %s", l.Type, l.Conn, sockets(got.Sockets), sockets(want.Sockets))
	}
	got.Sockets, want.Sockets = nil, nil
	if got != want {
		t.Errorf("lifecycle message %+v, want %+v", got, want)
	}
}

// count returns &n, a Lifecycle's Sockets.
func count(n int) *int { return &n }

// sockets formats a Lifecycle's Sockets.
func sockets(n *int) string {
	if n == nil {
		return "absent"
	}
	return strconv.Itoa(*n)
}

// TestLifecycleMessages: a socket's connect is published once it is
// connected, with resumed when its client asked to resume, and its
// disconnect once it is closed, with the close code and the bounded
// reason the worker counts: a client's close, a token's expiry, a
// backend's revoke, and the 1001 of a drain, whose disconnects all reach
// NATS before the worker has stopped.
func TestLifecycleMessages(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	got := lifecycleMessages(t, n.URL())
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.ShutdownTimeout = 5 * time.Second
	r := startWorker(t, cfg, 2)
	url := "ws://" + r.addr + "/socket"

	// A client's close.
	start := time.Now()
	a := testkit.Dial(t, url, token(t, "alice", time.Hour))
	checkLifecycle(t, nextLifecycle(t, got, "alice's connect"), proto.Lifecycle{
		Type: proto.LifecycleTypeConnect, User: "alice", Conn: a.Conn, Worker: 2, Sockets: count(1)}, start)
	a.CloseNormally()
	checkLifecycle(t, nextLifecycle(t, got, "alice's disconnect"), proto.Lifecycle{
		Type: proto.LifecycleTypeDisconnect, User: "alice", Conn: a.Conn, Worker: 2,
		Code: 1000, Reason: "client", Sockets: count(0)}, start)

	// A resumed socket is a new connect; its token expires: issued as
	// expired, it is let in within the leeway and closed at its end.
	start = time.Now()
	b := testkit.Dial(t, url+"?resume=0-0", token(t, "bob", 2*time.Second-auth.Leeway))
	checkLifecycle(t, nextLifecycle(t, got, "bob's connect"), proto.Lifecycle{
		Type: proto.LifecycleTypeConnect, User: "bob", Conn: b.Conn, Worker: 2, Resumed: true, Sockets: count(1)}, start)
	checkLifecycle(t, nextLifecycle(t, got, "bob's disconnect at expiry"), proto.Lifecycle{
		Type: proto.LifecycleTypeDisconnect, User: "bob", Conn: b.Conn, Worker: 2,
		Code: proto.CloseTokenExpired, Reason: "token_expired", Sockets: count(0)}, start)

	// A backend revokes carol's tokens.
	start = time.Now()
	c := testkit.Dial(t, url, token(t, "carol", time.Hour))
	nextLifecycle(t, got, "carol's connect")
	d := proto.Disconnect{Control: proto.ControlDisconnect, Users: []string{"carol"}, RevokeBefore: time.Now().UnixMilli()}
	if err := publisher(t, rd.URL()).Publish(context.Background(), proto.Channel, proto.AppendDisconnect(nil, &d)).Err(); err != nil {
		t.Fatal(err)
	}
	checkLifecycle(t, nextLifecycle(t, got, "carol's disconnect at the revoke"), proto.Lifecycle{
		Type: proto.LifecycleTypeDisconnect, User: "carol", Conn: c.Conn, Worker: 2,
		Code: proto.CloseDisconnected, Reason: "disconnected", Sockets: count(0)}, start)

	// A drain: every socket's disconnect is out before Run returns.
	conns := map[string]bool{}
	for _, user := range []string{"dave", "erin", "frank"} {
		conns[testkit.Dial(t, url, token(t, user, time.Hour)).Conn] = true
		nextLifecycle(t, got, user+"'s connect")
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for range conns {
		select {
		case l := <-got:
			if l.Type != proto.LifecycleTypeDisconnect || !conns[l.Conn] || l.Code != proto.CloseGoingAway || l.Reason != "shutdown" {
				t.Errorf("at the drain: %+v, want a disconnect of one of %v with 1001 shutdown", *l, conns)
			}
			delete(conns, l.Conn)
		case <-time.After(wait):
			t.Fatalf("the drain published no disconnect of %v", conns)
		}
	}
	if s := metric(r.w, `switchboard_gateway_lifecycle_published_total{type="connect"}`); s != "6" {
		t.Errorf("connects published %s, want 6", s)
	}
	if s := metric(r.w, `switchboard_gateway_lifecycle_published_total{type="disconnect"}`); s != "6" {
		t.Errorf("disconnects published %s, want 6", s)
	}
}

// TestLifecycleOff: with GATEWAY_LIFECYCLE_HOOKS off nothing is
// published.
func TestLifecycleOff(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	got := lifecycleMessages(t, n.URL())
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	cfg.LifecycleHooks = false
	r := startWorker(t, cfg, 0)
	c := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "alice", time.Hour))
	c.CloseNormally()
	testkit.Eventually(t, wait, "the socket is closed", func() bool { return r.w.hub.Len() == 0 })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Run has closed its NATS connection, which sends what it buffered:
	// a message published would most likely be here by now. The counter
	// below is the exact check.
	select {
	case l := <-got:
		t.Errorf("with the hooks off: %+v published", *l)
	default:
	}
	if s := metric(r.w, `switchboard_gateway_lifecycle_published_total{type="connect"}`); s != "0" {
		t.Errorf("connects published %s, want 0", s)
	}
}

// TestLifecycleNATSDown: while NATS is down a socket still connects and
// closes as ever; its connect is refused by nats.go at once (no reconnect
// buffer) and counted as a publish error. A socket whose connect was
// refused is never announced, so its disconnect is not published either,
// even once NATS is back: a hook is told of no disconnect without its
// connect.
func TestLifecycleNATSDown(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	r := startWorker(t, cfg, 0)
	url := "ws://" + r.addr + "/socket"
	n.Stop()
	testkit.Eventually(t, wait, "the worker has seen NATS go", func() bool {
		return metric(r.w, "switchboard_gateway_nats_connected") == "0"
	})
	a := testkit.Dial(t, url, token(t, "alice", time.Hour))
	testkit.Eventually(t, wait, "alice's connect refused", func() bool {
		return metric(r.w, `switchboard_gateway_lifecycle_publish_errors_total{type="connect"}`) == "1"
	})

	// NATS comes back; alice closes, then bob connects and closes. The
	// worker publishes in order, on one connection: had alice's
	// disconnect been published, it would come before bob's connect.
	n.Start()
	testkit.Eventually(t, wait, "the worker has reconnected", func() bool {
		return metric(r.w, "switchboard_gateway_nats_connected") == "1"
	})
	got := lifecycleMessages(t, n.URL())
	a.CloseNormally()
	testkit.Eventually(t, wait, "alice's socket is closed", func() bool { return r.w.hub.Len() == 0 })
	b := testkit.Dial(t, url, token(t, "bob", time.Hour))
	b.CloseNormally()
	for _, typ := range []string{proto.LifecycleTypeConnect, proto.LifecycleTypeDisconnect} {
		l := nextLifecycle(t, got, "bob's "+typ)
		if l.Conn != b.Conn || l.Type != typ {
			t.Errorf("got %+v, want bob's %s (alice's connect %s was never published)", *l, typ, a.Conn)
		}
	}
	for typ, want := range map[string][2]string{"connect": {"1", "1"}, "disconnect": {"1", "0"}} {
		if s := metric(r.w, `switchboard_gateway_lifecycle_published_total{type="`+typ+`"}`); s != want[0] {
			t.Errorf("%s published %s, want %s", typ, s, want[0])
		}
		if s := metric(r.w, `switchboard_gateway_lifecycle_publish_errors_total{type="`+typ+`"}`); s != want[1] {
			t.Errorf("%s publish errors %s, want %s", typ, s, want[1])
		}
	}
}

// jam freezes px, the path to nc's server, and publishes 64 KB messages
// through nc until one fails, so that the kernel's buffers fill and
// nats.go blocks in a write while holding nc's lock: it returns once that
// is so (wedged). release stops the publishing, thaws px and waits for the
// publisher; the test's end calls it too, and a second call does nothing.
func jam(t *testing.T, nc *nats.Conn, px *testkit.Proxy) (release func()) {
	t.Helper()
	px.Freeze()
	var stop atomic.Bool
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		junk := make([]byte, 64<<10)
		for !stop.Load() {
			if nc.Publish("test.fill", junk) != nil {
				return
			}
		}
	}()
	release = sync.OnceFunc(func() { stop.Store(true); px.Thaw(); <-filled })
	t.Cleanup(release)
	testkit.Eventually(t, wait, "nats.go is stuck writing to the frozen path", func() bool { return wedged(nc) })
	return release
}

// wedged reports whether nc's lock stays held for a while: a writer is
// stuck in a write to a server that reads nothing (nats.go writes under
// the connection's lock). The probe left blocked ends once the proxy
// thaws.
func wedged(nc *nats.Conn) bool {
	done := make(chan struct{})
	go func() { nc.IsConnected(); close(done) }()
	select {
	case <-done:
		return false
	case <-time.After(300 * time.Millisecond):
		return true
	}
}

// TestLifecycleNATSStalled: NATS that stops reading (a frozen network
// path: the TCP connection stays up, nothing is acknowledged) wedges
// nats.go, whose Publish writes to the socket under the connection's lock
// once its 32 KB buffer is full, for up to natsconn.FlusherTimeout at a time.
// A socket must still connect (its connected frame) and close (its place
// given back) as ever: the lifecycle messages are not published on the
// socket's path. Thawed, the messages flow again.
func TestLifecycleNATSStalled(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	got := lifecycleMessages(t, n.URL())
	px := testkit.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", n.Port))
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = "nats://"+px.Addr(), rd.URL()
	r := startWorker(t, cfg, 0)
	url := "ws://" + r.addr + "/socket"
	a := testkit.Dial(t, url, token(t, "alice", time.Hour))
	nextLifecycle(t, got, "alice's connect")

	// Freeze the path and fill the kernel's buffers through the worker's
	// own connection, as the forwarder's requests would, until nats.go
	// blocks in a write.
	release := jam(t, r.w.nc, px)

	// A new socket connects, and sockets close and give their place back.
	start := time.Now()
	b, _, err := testkit.TryDial(t, url, token(t, "bob", time.Hour))
	if err != nil {
		t.Fatalf("bob's upgrade with NATS stalled: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("bob's connected took %s with NATS stalled", took)
	}
	a.CloseNormally()
	b.CloseNormally()
	// Each socket's close ends (admission.Leave, which a drain waits
	// for) without waiting for NATS.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := r.w.adm.Wait(ctx); err != nil {
		t.Errorf("the sockets' closes did not end with NATS stalled: %v", err)
	}

	// Thawed, a later socket's connect is published again.
	release()
	c := testkit.Dial(t, url, token(t, "carol", time.Hour))
	for {
		l := nextLifecycle(t, got, "carol's connect after the thaw")
		if l.Conn == c.Conn && l.Type == proto.LifecycleTypeConnect {
			break
		}
	}
}

// TestLifecycleAfterStop: once the publisher has stopped (Run is ending,
// after the drain's flush), a message still queued, and one a socket
// closing late queues, is counted as a publish error, not left uncounted.
func TestLifecycleAfterStop(t *testing.T) {
	w := New(testConfig(), 0, zap.NewNop())
	announced := true
	w.life.enqueue(lifecycleItem{announced: &announced, m: &proto.Lifecycle{Type: proto.LifecycleTypeDisconnect, User: "a", Conn: "c1"}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for !w.life.stopped.Load() {
		w.life.run(ctx) // may publish the queued message first, to no NATS, and go on
	}
	w.life.enqueue(lifecycleItem{announced: &announced, m: &proto.Lifecycle{Type: proto.LifecycleTypeDisconnect, User: "a", Conn: "c2"}})
	if s := metric(w, `switchboard_gateway_lifecycle_publish_errors_total{type="disconnect"}`); s != "2" {
		t.Errorf("disconnect publish errors %s, want 2", s)
	}
	if n := len(w.life.queue); n != 0 {
		t.Errorf("%d messages left queued", n)
	}
}
