package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// needTool returns the path of a program the test needs. Where it is
// missing the test is skipped, except in CI (CI set), where `make test`
// has installed it and its absence is a failure.
func needTool(t *testing.T, what string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (looked for %v); .ci/deps.sh test installs it", what, candidates)
	}
	t.Skipf("%s is not installed (looked for %v): skipping; `make test` installs it", what, candidates)
	return ""
}

// TestClientJS runs the JavaScript client's tests
// (gateway/internal/web/jstest, read from the gateway's source tree by
// path, like the client itself) with `node --test` against a real stack: two workers, handlers-svc, NATS and
// Redis, the gateway in dev mode for /dev/token. One browser origin is
// allowed, so a test can be refused for another; Node sends no Origin of
// its own, which is always allowed. The recovery tests also get a stack
// whose history window is one second, and a control server (startControl)
// for what a client cannot do: empty Redis, await an expiry.
func TestClientJS(t *testing.T) {
	node := needTool(t, "node (Debian package nodejs)", "node", "nodejs")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_DEV=1", "GATEWAY_ALLOWED_ORIGINS=http://app.test"}})

	// The gateway serves the very module the tests import.
	want, err := os.ReadFile("../gateway/internal/web/assets/client.js")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.Addr + "/client.js")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		t.Fatalf("GET /client.js: %d, %d bytes, %v; want 200 and assets/client.js", resp.StatusCode, len(got), err)
	}

	args := nodeTestArgs(t, node)
	// A second stack keeps events one second (HISTORY_WINDOW on both
	// services), so a test can come back after its window has passed.
	short := testkit.StartStack(t, testkit.StackOptions{Workers: 1,
		Env: []string{"GATEWAY_DEV=1", "HISTORY_WINDOW=1s"}, HandlersEnv: []string{"HISTORY_WINDOW=1s"}})
	env := []string{"SB_URL=" + s.URL(), "SB_HTTP=http://" + s.Addr,
		"SB_SHORT_URL=" + short.URL(), "SB_SHORT_HTTP=http://" + short.Addr, "SB_CONTROL=" + startControl(t, s, short)}
	// One file after the other: the recovery tests empty the main stack's
	// Redis, which the others must not see.
	for _, file := range []string{"client.test.mjs", "recovery.test.mjs"} {
		runNode(t, node, slices.Concat(args, []string{"../gateway/internal/web/jstest/" + file}), env...)
	}
}

// nodeTestArgs returns the arguments of `node --test` for tests that need
// a WebSocket: Node 22 has one; Node 20 (from 20.10) only behind a flag.
// Without one the test is skipped (failed in CI).
func nodeTestArgs(t *testing.T, node string) []string {
	t.Helper()
	args := []string{"--test", "--test-reporter=spec"}
	hasWS := func(flags ...string) bool {
		out, err := exec.Command(node, append(flags, "-e", "process.stdout.write(typeof WebSocket)")...).Output()
		return err == nil && string(out) == "function"
	}
	switch {
	case hasWS():
	case hasWS("--experimental-websocket"):
		args = append([]string{"--experimental-websocket"}, args...)
	default:
		v, _ := exec.Command(node, "--version").Output()
		msg := fmt.Sprintf("node %s has no WebSocket: the client's tests need Node 20.10 or later (Debian bookworm's nodejs is 18)", strings.TrimSpace(string(v)))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg + ": skipping")
	}
	return args
}

// TestClientJSRenew runs renew.test.mjs: the JavaScript client with tokens
// that live 2 s, against a real stack, through a stream of emits longer
// than the gateway takes to close a socket whose token expired (exp plus
// the leeway, GATEWAY_JWT_LEEWAY 3 s here rather than the default 30 s,
// so the stream lasts 10 s, not 37). The rate limits are off so the
// stream can be steady.
func TestClientJSRenew(t *testing.T) {
	node := needTool(t, "node (Debian package nodejs)", "node", "nodejs")
	args := nodeTestArgs(t, node)
	const leeway = 3
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_RATE_LIMIT=0", "GATEWAY_USER_RATE_LIMIT=0",
		"GATEWAY_JWT_LEEWAY=" + strconv.Itoa(leeway) + "s"}})
	runNode(t, node, append(args, "../gateway/internal/web/jstest/renew.test.mjs"), "SB_URL="+s.URL(), "SB_SECRET="+s.Secret,
		"SB_LEEWAY="+strconv.Itoa(leeway))
}

// startControl serves what the JavaScript tests cannot do through a
// client, on a loopback address it returns (SB_CONTROL), until the test
// ends. Each request answers once it is done, so node awaits it:
//
//	POST /flushall        empties main's Redis: its streams are lost and
//	                      start over in new epochs (live sockets resync)
//	POST /broadcast       broadcasts a "news" event on main, recorded and
//	                      published as handlers-svc does (no handler of
//	                      the stack broadcasts)
//	POST /expired?user=U  waits until U's stream on short is gone, its
//	                      window passed (504 after 30 s)
//	POST /disconnect?user=U[&reason=R][&reconnect=1]
//	                      publishes a disconnect of U's sockets on main, as
//	                      handlers-svc's POST /v1/disconnect does
func startControl(t *testing.T, main, short *testkit.Stack) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: main.Redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	shortRdb := redis.NewClient(&redis.Options{Addr: short.Redis.Addr()})
	t.Cleanup(func() { _ = shortRdb.Close() })
	mux := http.NewServeMux()
	mux.HandleFunc("POST /flushall", func(w http.ResponseWriter, r *http.Request) {
		if err := rdb.FlushAll(r.Context()).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /broadcast", func(w http.ResponseWriter, r *http.Request) {
		d := &proto.Dispatch{Event: "news", Args: json.RawMessage(`{"text":"to everyone"}`), Broadcast: true}
		if _, _, err := streams.Publish(r.Context(), rdb, proto.DefaultHistoryWindow, d); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /disconnect", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		d := &proto.Disconnect{Users: []string{q.Get("user")}, Reason: q.Get("reason"), Reconnect: q.Get("reconnect") == "1"}
		if err := rdb.Publish(r.Context(), proto.Channel, proto.AppendDisconnect(nil, d)).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /expired", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		key := proto.UserStreamKey(r.URL.Query().Get("user"))
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			n, err := shortRdb.Exists(ctx, key).Result()
			if err == nil && n == 0 {
				return
			}
			select {
			case <-ctx.Done():
				http.Error(w, fmt.Sprintf("%s still there: %v", key, err), http.StatusGatewayTimeout)
				return
			case <-tick.C:
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestClientJSUnit runs the JavaScript client's unit tests
// (gateway/internal/web/jstest/*.unit.test.mjs): its recovery, token renewal, heartbeat
// watch, frame limit and retried emits driven
// by a scripted fake WebSocket, without a gateway or a network, so they
// need no WebSocket in Node either.
func TestClientJSUnit(t *testing.T) {
	node := needTool(t, "node (Debian package nodejs)", "node", "nodejs")
	runNode(t, node, []string{"--test", "--test-reporter=spec",
		"../gateway/internal/web/jstest/client.unit.test.mjs", "../gateway/internal/web/jstest/heartbeat.unit.test.mjs",
		"../gateway/internal/web/jstest/renew.unit.test.mjs", "../gateway/internal/web/jstest/retry.unit.test.mjs",
		"../gateway/internal/web/jstest/types.unit.test.mjs", "../gateway/internal/web/jstest/prev.unit.test.mjs"})
}

// TestClientTypes compiles gateway/internal/web/jstest/types.check.mts, a
// TypeScript app of the client's whole API, against client.d.ts with tsc
// --strict: the declarations must type what an app does, and refuse the
// misuses it marks with ts-expect-error (tsc fails on such a line that
// compiles). tsc is Debian's node-typescript, which .ci/deps.sh installs.
func TestClientTypes(t *testing.T) {
	tsc := needTool(t, "tsc (Debian package node-typescript)", "tsc")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, tsc, "--noEmit", "--strict", "--target", "es2022", "--lib", "es2022,dom",
		"--module", "nodenext", "--moduleResolution", "nodenext", "../gateway/internal/web/jstest/types.check.mts").CombinedOutput()
	if err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
}

// runNode runs node with args and env added to the test's environment, logs
// its output, and fails the test when it fails.
func runNode(t *testing.T, node string, args []string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(append(os.Environ(), "NO_COLOR=1"), env...)
	// node --test runs the file in a child process: kill the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // nothing of it outlives the test
	t.Logf("node %s\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("node --test: %v", err)
	}
}

// TestClientJSRetry runs retry.test.mjs: a Node client with retry sends
// numbered messages to another user while the worker holding its socket is
// killed (SIGKILL) three times; every emit resolves and every message
// reaches the recipient, and the sender's own stream, exactly once. The same
// run without retry must see emits fail: the kills are known to hit emits
// in flight, which retry then saves. The rate limits are off so the stream
// can be steady.
func TestClientJSRetry(t *testing.T) {
	node := needTool(t, "node (Debian package nodejs)", "node", "nodejs")
	args := append(nodeTestArgs(t, node), "../gateway/internal/web/jstest/retry.test.mjs")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2,
		Env: []string{"GATEWAY_DEV=1", "GATEWAY_RATE_LIMIT=0", "GATEWAY_USER_RATE_LIMIT=0"}})
	env := []string{"SB_URL=" + s.URL(), "SB_HTTP=http://" + s.Addr, "SB_CONTROL=" + startWorkerControl(t, s)}
	for _, retry := range []string{"1", "0"} {
		t.Run("retry="+retry, func(t *testing.T) {
			before := s.HandlersMetrics().Sum("switchboard_handlers_requests_replayed_total")
			runNode(t, node, args, append(env, "SB_RETRY="+retry)...)
			// How many repeats got a first run's answer, lost with its
			// socket: not asserted, since a kill may find none whose
			// handler had run, but a run with none proved less.
			t.Logf("emits answered from their idem record: %v", s.HandlersMetrics().Sum("switchboard_handlers_requests_replayed_total")-before)
		})
	}
}

// startWorkerControl serves, on a loopback address it returns
// (SB_CONTROL), what a JavaScript test cannot do to s's gateway workers,
// until the test ends. Each request answers once it is done:
//
//	POST /stop?worker=N  stops worker N (SIGSTOP): it reads nothing more
//	POST /kill?worker=N  kills worker N (SIGKILL), stopped or not, and
//	                     waits until the supervisor's new worker N is
//	                     ready (504 after 30 s)
func startWorkerControl(t *testing.T, s *testkit.Stack) string {
	t.Helper()
	pid := func(w http.ResponseWriter, r *http.Request) (int, bool) {
		n, err := strconv.Atoi(r.URL.Query().Get("worker"))
		p, ok := s.WorkerPids()[n]
		if err != nil || !ok {
			http.Error(w, fmt.Sprintf("no worker %q in %v", r.URL.Query().Get("worker"), s.WorkerPids()), http.StatusBadRequest)
			return 0, false
		}
		return p, true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		if p, ok := pid(w, r); ok {
			if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		}
	})
	mux.HandleFunc("POST /kill", func(w http.ResponseWriter, r *http.Request) {
		victim, ok := pid(w, r)
		if !ok {
			return
		}
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("worker"))
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if p := s.WorkerPids()[n]; p != 0 && p != victim && allReady(ctx, s) {
				return
			}
			select {
			case <-ctx.Done():
				http.Error(w, fmt.Sprintf("worker %d not back: %v", n, s.WorkerPids()), http.StatusGatewayTimeout)
				return
			case <-tick.C:
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// allReady reports whether s's gateway says every worker is ready: its
// admin address's /readyz answers 200.
func allReady(ctx context.Context, s *testkit.Stack) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.MetricsAddr+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
