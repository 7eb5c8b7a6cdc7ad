package testkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisAttempts is how many free ports StartRedis tries: a port found free
// can be taken by another process before redis-server binds it.
const redisAttempts = 3

// redisReadyTimeout bounds the wait for a started redis-server to answer PING.
const redisReadyTimeout = 10 * time.Second

// Redis is a redis-server process owned by a test, on a port of its own
// that it keeps across Stop and Start.
type Redis struct {
	Port int

	t        testing.TB
	bin      string
	dir      string
	password string   // requirepass; "" = none
	extra    []string // more redis-server arguments (cluster mode)

	mu  sync.Mutex
	run *redisRun // the current process; nil before the first Start
}

// redisRun is one redis-server process.
type redisRun struct {
	cmd  *exec.Cmd
	out  syncBuffer    // the process's output
	done chan struct{} // closed when the process has exited
}

// StartRedis starts redis-server on a free port, without persistence, waits
// until it answers PING and stops it when the test ends. If the port is
// taken before redis-server binds it, it tries another one, a few times.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	var lastErr error
	for range redisAttempts {
		r := newRedis(t, RestartablePort(t))
		if lastErr = r.start(); lastErr == nil {
			return r
		}
	}
	t.Fatalf("redis-server did not start: %v", lastErr)
	return nil
}

// StartRedisOn is StartRedis on the given port; a port that is taken fails
// the test.
func StartRedisOn(t testing.TB, port int) *Redis {
	t.Helper()
	r := newRedis(t, port)
	if err := r.start(); err != nil {
		t.Fatalf("redis-server did not start: %v", err)
	}
	return r
}

// StartRedisUnix is StartRedis with the server listening on a Unix
// socket as well, which UnixURL names.
func StartRedisUnix(t testing.TB) *Redis {
	t.Helper()
	var lastErr error
	for range redisAttempts {
		r := newRedis(t, RestartablePort(t))
		r.extra = []string{"--unixsocket", r.unixPath(), "--unixsocketperm", "700"}
		if lastErr = r.start(); lastErr == nil {
			return r
		}
	}
	t.Fatalf("redis-server did not start: %v", lastErr)
	return nil
}

// UnixURL returns the unix:// URL, database 0, of a server started by
// StartRedisUnix.
func (r *Redis) UnixURL() string { return "unix://" + r.unixPath() + "?db=0" }

func (r *Redis) unixPath() string { return r.dir + "/redis.sock" }

func newRedis(t testing.TB, port int) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH (%v): install Redis to run these tests (`make test` installs it; or e.g. apt-get install redis-server)", err)
	}
	r := &Redis{Port: port, t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(r.Stop)
	return r
}

// Addr returns host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)) }

// URL returns the server's address as a redis:// URL, database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Start (re)starts the server on its port and waits until it answers; the
// test fails if it cannot.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("redis-server did not start: %v", err)
	}
}

// start starts a process and waits until it answers PING. It returns an
// error, the process stopped, if the process exits first or another server
// answers on the port (the port was taken).
func (r *Redis) start() error {
	r.t.Helper()
	run := &redisRun{done: make(chan struct{})}
	run.cmd = exec.Command(r.bin, "--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--loglevel", "warning")
	if r.password != "" {
		run.cmd.Args = append(run.cmd.Args, "--requirepass", r.password)
	}
	run.cmd.Args = append(run.cmd.Args, r.extra...)
	run.cmd.Stdout, run.cmd.Stderr = &run.out, &run.out
	run.cmd.SysProcAttr = dieWithTest(&syscall.SysProcAttr{})
	if err := run.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	go func() { _ = run.cmd.Wait(); close(run.done) }()
	r.mu.Lock()
	r.run = run
	r.mu.Unlock()
	if err := r.waitReady(run); err != nil {
		r.Stop()
		return err
	}
	return nil
}

// waitReady polls PING until run answers it. It returns an error if the
// process exits first or another server answers on its port, and fails the
// test if neither happens in time. Each PING is bounded by a short timeout,
// so something on the port that accepts connections but never answers does
// not hide the process's exit.
func (r *Redis) waitReady(run *redisRun) error {
	r.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), Password: r.password, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), redisReadyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := r.exited(run); err != nil {
			return err
		}
		if rdb.Ping(ctx).Err() == nil {
			pid, err := serverPID(ctx, rdb)
			if err != nil {
				r.t.Fatalf("redis-server on %s: INFO server: %v", r.Addr(), err)
			}
			if pid != run.cmd.Process.Pid {
				return fmt.Errorf("port %d is taken by another redis-server (pid %d)", r.Port, pid)
			}
			return nil
		}
		select {
		case <-run.done:
		case <-ctx.Done():
			if err := r.exited(run); err != nil {
				return err
			}
			r.t.Fatalf("redis-server on %s did not answer PING within %v", r.Addr(), redisReadyTimeout)
		case <-tick.C:
		}
	}
}

// exited returns an error with the process's output if run has exited, nil
// while it runs.
func (r *Redis) exited(run *redisRun) error {
	select {
	case <-run.done:
		return fmt.Errorf("redis-server on %s exited at start-up (port taken?): %s: %s",
			r.Addr(), run.cmd.ProcessState, strings.TrimSpace(run.out.String()))
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

// Stop kills the server and waits for it to exit. It is idempotent, and safe
// to call from several goroutines.
func (r *Redis) Stop() {
	r.mu.Lock()
	run := r.run
	r.mu.Unlock()
	if run == nil {
		return
	}
	select {
	case <-run.done:
		return
	default:
	}
	_ = run.cmd.Process.Kill()
	<-run.done
}

// Pause stops the server's process (SIGSTOP) until the end of the test:
// the kernel still accepts connections and takes what is written, but
// nothing is answered, as from a hung Redis.
func (r *Redis) Pause(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	run := r.run
	r.mu.Unlock()
	if err := run.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("pause redis-server: %v", err)
	}
	t.Cleanup(func() { _ = run.cmd.Process.Signal(syscall.SIGCONT) })
}

// Continue resumes a redis-server stopped by Pause.
func (r *Redis) Continue() {
	r.mu.Lock()
	run := r.run
	r.mu.Unlock()
	_ = run.cmd.Process.Signal(syscall.SIGCONT)
}
