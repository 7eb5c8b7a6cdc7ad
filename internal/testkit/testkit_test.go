package testkit_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ping(url string) error {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

func TestRedis(t *testing.T) {
	r := testkit.StartRedis(t)
	if r.Addr() != net.JoinHostPort("127.0.0.1", fmt.Sprint(r.Port)) {
		t.Fatalf("Addr %q, Port %d", r.Addr(), r.Port)
	}
	if err := ping(r.URL()); err != nil {
		t.Fatalf("PING %s: %v", r.URL(), err)
	}
	r.Stop()
	r.Stop()
	if c, err := net.Dial("tcp", r.Addr()); err == nil {
		c.Close()
		t.Fatalf("%s accepts connections after Stop", r.Addr())
	}
	r.Start()
	if err := ping(r.URL()); err != nil {
		t.Fatalf("PING %s after a restart: %v", r.URL(), err)
	}
}

func TestRedisOnGivenPort(t *testing.T) {
	port := testkit.FreePort(t)
	r := testkit.StartRedisOn(t, port)
	if r.Port != port {
		t.Fatalf("port %d, want %d", r.Port, port)
	}
	if err := ping(r.URL()); err != nil {
		t.Fatal(err)
	}
}

// TestRedisPause: a paused server accepts connections but answers nothing.
func TestRedisPause(t *testing.T) {
	r := testkit.StartRedis(t)
	r.Pause(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, ReadTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	if err := rdb.Ping(context.Background()).Err(); err == nil {
		t.Fatal("a paused redis-server answered PING")
	}
}

// fatalTB records the first Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	mu       sync.Mutex
	fatal    string
	cleanups []func()
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fatalTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fatalTB) cleanup() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestRedisGivenPortTaken(t *testing.T) {
	taken := testkit.StartRedis(t)
	for _, other := range []struct {
		name string
		addr string
	}{
		{"redis", ""},
		{"listener", "127.0.0.1:0"},
	} {
		t.Run(other.name, func(t *testing.T) {
			port := taken.Port
			if other.addr != "" {
				ln, err := net.Listen("tcp", other.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				port = ln.Addr().(*net.TCPAddr).Port
			}
			f := &fatalTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				testkit.StartRedisOn(f, port)
			}()
			<-done
			f.cleanup()
			if !strings.Contains(f.fatal, "port") {
				t.Fatalf("StartRedisOn on a taken port: Fatalf %q, want it to say the port was taken", f.fatal)
			}
		})
	}
	if err := ping(taken.URL()); err != nil {
		t.Fatalf("the first server: %v", err)
	}
}

func connectNATS(t *testing.T, url string) error {
	t.Helper()
	nc, err := nats.Connect(url, nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	return nc.Flush()
}

func TestNATS(t *testing.T) {
	n := testkit.StartNATS(t)
	if n.Port == 4222 {
		t.Fatal("StartNATS used the default port")
	}
	if err := connectNATS(t, n.URL()); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	n.Stop()
	if err := connectNATS(t, n.URL()); err == nil {
		t.Fatalf("%s accepts connections after Stop", n.URL())
	}
	n.Start()
	if err := connectNATS(t, n.URL()); err != nil {
		t.Fatalf("after a restart: %v", err)
	}

	port := testkit.FreePort(t)
	if m := testkit.StartNATSOn(t, port); m.Port != port || m.URL() != fmt.Sprintf("nats://127.0.0.1:%d", port) {
		t.Fatalf("port %d, URL %s, want %d", m.Port, m.URL(), port)
	}
}

// TestNATSSubscriptions: Subscriptions counts a client's subscriptions
// while it is connected, and no longer once it has gone.
func TestNATSSubscriptions(t *testing.T) {
	n := testkit.StartNATS(t)
	base := n.Subscriptions()
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, subj := range []string{"a", "b"} {
		if _, err := nc.QueueSubscribeSync(subj, "q"); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := n.Subscriptions(); got != base+2 {
		t.Fatalf("%d subscriptions with the client's 2, want %d", got, base+2)
	}
	nc.Close()
	testkit.Eventually(t, 10*time.Second, "the closed client's subscriptions are gone", func() bool {
		return n.Subscriptions() == base && n.Clients() == 0
	})
}

// TestFreePort: a port is never handed out twice in one process, and is
// free to bind.
func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := testkit.FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("bind %d: %v", p, err)
		}
		ln.Close()
	}
}

// TestStartRedisCluster: three masters share every slot, and the URL is in
// go-redis's cluster form, naming them all.
func TestStartRedisCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	opts, err := redis.ParseClusterURL(c.URL())
	if err != nil || len(opts.Addrs) != 3 {
		t.Fatalf("URL %q: %v, %v", c.URL(), opts, err)
	}
	rdb := c.Client(nil)
	slots, err := rdb.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	covered, masters := 0, map[string]bool{}
	for _, s := range slots {
		covered += s.End - s.Start + 1
		masters[s.Nodes[0].Addr] = true
	}
	if covered != 16384 || len(masters) != 3 {
		t.Fatalf("%d slots covered by %d masters, want 16384 by 3", covered, len(masters))
	}
}
