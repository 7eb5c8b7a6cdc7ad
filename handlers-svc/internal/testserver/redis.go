package testserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisAttempts is how many free ports StartRedis tries when given port 0:
// a port found free can be taken by someone else before redis-server binds it.
const redisAttempts = 3

// redisReadyTimeout bounds the wait for a started redis-server to answer PING.
const redisReadyTimeout = 10 * time.Second

// Redis is a redis-server process started for one test.
type Redis struct {
	Addr string // 127.0.0.1:Port
	Port int

	cmd  *exec.Cmd
	out  bytes.Buffer  // the process's output; read only once done is closed
	done chan struct{} // closed when the process has exited
}

// StartRedis starts redis-server from PATH on 127.0.0.1:port, without
// persistence, waits until it answers PING and stops it when the test ends.
// Port 0 picks a free port, and another one, a few times, if the port was
// taken before redis-server could bind it; a given port that is taken fails
// the test. A missing binary fails the test: these tests run against a real
// server.
func StartRedis(t testing.TB, port int) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH (%v): install Redis to run these tests (`make test` installs it; or e.g. apt-get install redis-server)", err)
	}
	attempts := 1
	if port == 0 {
		attempts = redisAttempts
	}
	var lastErr error
	for range attempts {
		p := port
		if p == 0 {
			p = FreePort(t)
		}
		r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), Port: p, done: make(chan struct{})}
		r.cmd = exec.Command(bin, "--port", strconv.Itoa(p), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--loglevel", "warning")
		r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
		if err := r.cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		go func() { _ = r.cmd.Wait(); close(r.done) }()
		t.Cleanup(r.Stop)
		if lastErr = r.waitReady(t); lastErr == nil {
			return r
		}
		r.Stop()
	}
	t.Fatalf("redis-server did not start: %v", lastErr)
	return nil
}

// waitReady polls PING until this process answers it. It returns an error if
// the process exits first or another server answers on its port (the port was
// taken), and fails the test if neither happens in time. Each PING is bounded
// by a short timeout, so something on the port that accepts connections but
// never answers does not hide the process's exit.
func (r *Redis) waitReady(t testing.TB) error {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), redisReadyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := r.exited(); err != nil {
			return err
		}
		if rdb.Ping(ctx).Err() == nil {
			pid, err := serverPID(ctx, rdb)
			if err != nil {
				t.Fatalf("redis-server on %s: INFO server: %v", r.Addr, err)
			}
			if pid != r.cmd.Process.Pid {
				return fmt.Errorf("port %d is taken by another redis-server (pid %d)", r.Port, pid)
			}
			return nil
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			if err := r.exited(); err != nil {
				return err
			}
			t.Fatalf("redis-server on %s did not answer PING within %v", r.Addr, redisReadyTimeout)
		case <-tick.C:
		}
	}
}

// exited returns an error with the process's output if it has exited, nil
// while it runs.
func (r *Redis) exited() error {
	select {
	case <-r.done:
		return fmt.Errorf("redis-server on %s exited at start-up (port taken?): %s: %s",
			r.Addr, r.cmd.ProcessState, strings.TrimSpace(r.out.String()))
	default:
		return nil
	}
}

// serverPID returns the process_id the server reports in INFO server.
func serverPID(ctx context.Context, rdb *redis.Client) (int, error) {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("no process_id")
}

// URL returns the server's address as a redis:// URL, database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Stop kills the server and waits for it to exit. It is idempotent, and safe
// to call from several goroutines.
func (r *Redis) Stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Kill()
	<-r.done
}

// Pause stops the server's process (SIGSTOP) until the end of the test:
// the kernel still accepts connections and takes what is written, but
// nothing is answered, as from a hung Redis.
func (r *Redis) Pause(t testing.TB) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("pause redis-server: %v", err)
	}
	t.Cleanup(func() { _ = r.cmd.Process.Signal(syscall.SIGCONT) })
}
