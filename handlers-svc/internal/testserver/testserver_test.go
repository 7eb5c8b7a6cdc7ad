package testserver_test

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

	"github.com/switchboard/switchboard/handlers-svc/internal/testserver"
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
	r := testserver.StartRedis(t, 0)
	if r.Addr != net.JoinHostPort("127.0.0.1", fmt.Sprint(r.Port)) {
		t.Fatalf("Addr %q, Port %d", r.Addr, r.Port)
	}
	if err := ping(r.URL()); err != nil {
		t.Fatalf("PING %s: %v", r.URL(), err)
	}
	r.Stop()
	r.Stop()
	if c, err := net.Dial("tcp", r.Addr); err == nil {
		c.Close()
		t.Fatalf("%s accepts connections after Stop", r.Addr)
	}
}

func TestRedisOnGivenPort(t *testing.T) {
	port := testserver.FreePort(t)
	r := testserver.StartRedis(t, port)
	if r.Port != port {
		t.Fatalf("port %d, want %d", r.Port, port)
	}
	if err := ping(r.URL()); err != nil {
		t.Fatal(err)
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
	taken := testserver.StartRedis(t, 0)
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
				testserver.StartRedis(f, port)
			}()
			<-done
			f.cleanup()
			if !strings.Contains(f.fatal, "port") {
				t.Fatalf("StartRedis on a taken port: Fatalf %q, want it to say the port was taken", f.fatal)
			}
		})
	}
	if err := ping(taken.URL()); err != nil {
		t.Fatalf("the first server: %v", err)
	}
}

func TestNATS(t *testing.T) {
	for _, port := range []int{0, -1} {
		ns := testserver.StartNATS(t, port)
		p := ns.Addr().(*net.TCPAddr).Port
		if p == 4222 {
			t.Fatalf("StartNATS(%d) used the default port", port)
		}
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	port := testserver.FreePort(t)
	if p := testserver.StartNATS(t, port).Addr().(*net.TCPAddr).Port; p != port {
		t.Fatalf("port %d, want %d", p, port)
	}
}
