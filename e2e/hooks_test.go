package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/internal/testkit"
)

// hookService is a team's handlers-svc with lifecycle hooks (package
// service with one family more): on connect it dispatches "welcome" to
// the new connection; on disconnect it records the connection, its
// close code, reason and the user's sockets left (-1: not known) in a
// Redis list the test reads.
const hookService = `package main

import (
	"context"
	"strconv"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/service"
)

func main() { service.Main(append(handlers.Families(), registerHooks)...) }

func registerHooks(_ context.Context, mux *event.Mux, deps handlers.Deps) error {
	mux.OnConnect(func(ctx context.Context, c event.Conn) error {
		return deps.Dispatcher.ToConns(ctx, []string{c.Conn}, "welcome",
			map[string]any{"user": c.User, "worker": c.Worker, "resumed": c.Resumed})
	})
	mux.OnDisconnect(func(ctx context.Context, c event.Conn) error {
		return deps.Redis.RPush(ctx, "e2e:disconnects", c.Conn+" "+strconv.Itoa(c.Code)+" "+c.Reason+" "+strconv.Itoa(c.Sockets)).Err()
	})
	return nil
}
`

// buildHookService builds hookService as a module of its own, outside
// the workspace, that reaches the repository's modules through replace
// lines (the go.mod and go.sum of docs/examples/socketio, a team's module
// of the same imports), and returns the binary.
func buildHookService(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// The example's go.mod reaches the modules as ../../../<module>.
	dir := t.TempDir()
	for _, m := range []string{"handlers-svc", "internal", "proto"} {
		if err := os.Symlink(filepath.Join(root, m), filepath.Join(dir, m)); err != nil {
			t.Fatal(err)
		}
	}
	app := filepath.Join(dir, "a", "b", "hooksvc")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, socketIOExample, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(app, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(hookService), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hooksvc-bin")
	// -trimpath: without it the compiled packages record the temporary
	// directory they were built in, so every run compiled the repository's
	// modules afresh (about a minute with -race on this box); with it the
	// build cache serves them to every later run and test.
	cmd := exec.Command(goBin, "build", "-race", "-o", bin, ".")
	cmd.Dir, cmd.Env = app, append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -trimpath")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build of the hook service: %v\n%s", err, out)
	}
	return bin
}

// TestLifecycleHooks: a handlers-svc built with hooks, behind a real
// 2-worker gateway: each new socket, on either worker, gets the "welcome"
// its connect hook dispatches to it (after connected, which Dial takes
// first); on SIGTERM of the
// gateway every socket's disconnect reaches the disconnect hook, with
// 1001 and "shutdown", before the workers close NATS.
func TestLifecycleHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module: not in -short")
	}
	bin := buildHookService(t)
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, HandlersBin: bin})

	var clients []*testkit.Client
	for w := range 2 {
		c := s.DialOn("alice", w)
		f := c.ExpectEvent(wait, "welcome")
		var got struct {
			User    string
			Worker  int
			Resumed bool
		}
		if err := json.Unmarshal(f.Args, &got); err != nil {
			t.Fatalf("welcome args %s: %v", f.Args, err)
		}
		if got.User != "alice" || got.Worker != w || got.Resumed {
			t.Errorf("welcome on worker %d: %s, want alice on worker %d, not resumed", w, f.Args, w)
		}
		clients = append(clients, c)
	}

	s.Gateway.Signal(syscall.SIGTERM)
	for _, c := range clients {
		if code := testkit.CloseCode(c.WaitClosed(wait)); code != 1001 {
			t.Errorf("socket on worker %d closed with %d, want 1001", c.Worker, code)
		}
	}
	if err := s.Gateway.Wait(20 * time.Second); err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
	rdb, err := redisconn.New(s.RedisURL(), redisconn.Tuning{}) // a Redis Cluster too
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	var recorded []string
	testkit.Eventually(t, wait, "the disconnect hook recorded both sockets' drain", func() bool {
		var err error
		recorded, err = rdb.LRange(context.Background(), "e2e:disconnects", 0, -1).Result()
		if err != nil {
			return false
		}
		for _, c := range clients {
			if !slices.ContainsFunc(recorded, func(r string) bool { return strings.HasPrefix(r, c.Conn+" 1001 shutdown ") }) {
				return false
			}
		}
		return true
	})
	if n := strings.Count(s.Gateway.Logs(), "lifecycle message not published"); n != 0 {
		t.Errorf("the gateway failed to publish %d lifecycle messages:\n%s", n, strings.Join(recorded, "\n"))
	}
}
