package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// buildSocketIONotify builds docs/examples/socketio's notify job, in the
// layout TestSocketIOGuide builds the example in (its go.mod reaches the
// repository's modules as ../../../<module>), and returns its path.
func buildSocketIONotify(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a module: not in -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, m := range []string{"handlers-svc", "internal", "proto"} {
		if err := os.Symlink(filepath.Join(root, m), filepath.Join(dir, m)); err != nil {
			t.Fatal(err)
		}
	}
	app := filepath.Join(dir, socketIOExample)
	if err := os.CopyFS(app, os.DirFS(filepath.Join(root, socketIOExample))); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	cmd := exec.Command(goBin, "build", "-o", bin+"/", "./notify")
	cmd.Dir, cmd.Env = app, append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -trimpath")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./notify in %s: %v\n%s", socketIOExample, err, out)
	}
	return filepath.Join(bin, "notify")
}

// runNotify runs the job with args and env, and returns its output and
// error.
func runNotify(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestSocketIONotifyDeliversOnce runs the example's notify job twice for
// one notification, as a job queue does that runs its jobs at least once
// (a worker that died after the dispatch and before it acknowledged the
// job, or a retry after the job's exit 1 on a `timeout`, which may have
// been delivered): bob must be told once. docs/handlers.md ("Retrying
// from Go") says to give such a dispatch an IdempotencyKey, one per event
// meant to be delivered once: notify keys it by its second argument, the
// notification's id (it gave none once).
func TestSocketIONotifyDeliversOnce(t *testing.T) {
	notify := buildSocketIONotify(t)
	s := testkit.StartStack(t, testkit.StackOptions{})
	bob := s.Dial("bob")
	env := []string{"REDIS_URL=" + s.RedisURL()}
	for run := 1; run <= 2; run++ {
		if out, err := runNotify(t, notify, env, "bob", "inv-42"); err != nil {
			t.Fatalf("run %d of the job: %v\n%s", run, err, out)
		}
	}
	// Events to a user reach a socket in order: once bob has alice's
	// message, sent after both runs, he has every notification too.
	alice := s.Dial("alice")
	alice.Send("sendMessage", map[string]string{"to": "bob", "text": "after the job"}, "m1")
	if f := alice.ExpectRef(5*time.Second, "m1"); f.Event != "ack" {
		t.Fatalf("sendMessage: %+v", f)
	}
	bob.Expect(5*time.Second, "alice's message", func(f proto.Frame) bool { return f.Event == "message" })
	var got int
	for _, a := range bob.Arrivals() {
		if a.Frame.Event == "notification" {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("bob got %d notifications of inv-42 from two runs of its job, want 1: notify dispatches without an IdempotencyKey", got)
	}
}

// TestSocketIONotifyKeepsHistoryWindow runs the example's notify job in a
// deployment whose HISTORY_WINDOW is an hour, set for the job as for the
// services, while bob is away: docs/socketio.md promises that "a user who
// is offline for less than HISTORY_WINDOW gets it on reconnect", so bob's
// stream must keep the notification for about an hour. Every writer of a
// stream trims it (MINID) and sets its TTL to its own window
// (dispatch.Options.Window; docs/handlers.md "From Go": "Window is the
// gateway's HISTORY_WINDOW"). notify once hard-coded 2 minutes: the
// stream expired in 2m10s, and a device of bob's that came back after 3
// minutes resumed with recovered:false, the notification lost.
func TestSocketIONotifyKeepsHistoryWindow(t *testing.T) {
	notify := buildSocketIONotify(t)
	window := []string{"HISTORY_WINDOW=1h"}
	s := testkit.StartStack(t, testkit.StackOptions{Env: window, HandlersEnv: window})
	if out, err := runNotify(t, notify, append(window, "REDIS_URL="+s.RedisURL()), "bob"); err != nil {
		t.Fatalf("the job: %v\n%s", err, out)
	}
	var rdb redis.UniversalClient
	if s.RedisCluster != nil {
		rdb = s.RedisCluster.Client(&redis.ClusterOptions{})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: s.Redis.Addr()})
	}
	defer rdb.Close()
	d, err := rdb.PTTL(context.Background(), proto.UserStreamKey("bob")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if d < 59*time.Minute {
		t.Fatalf("bob's stream, which holds the notification, expires in %s with HISTORY_WINDOW=1h: notify records with a window of its own (2m), not HISTORY_WINDOW", d.Round(time.Second))
	}
}

// TestSocketIONotifyRedisCluster runs the example's notify job against a
// Redis Cluster named as REDIS_URL names one (docs/protocol.md section 1:
// a URL with addr parameters), as the services take it: it must dispatch.
// notify once parsed REDIS_URL with redis.ParseURL, which refuses the
// addr parameters ("redis: unexpected option: addr"), so in such a
// deployment the job never ran (and TestSocketIOGuide failed under
// E2E_REDIS=cluster).
func TestSocketIONotifyRedisCluster(t *testing.T) {
	notify := buildSocketIONotify(t)
	c := testkit.StartRedisCluster(t, 3)
	out, err := runNotify(t, notify, []string{"REDIS_URL=" + c.URL()}, "bob")
	if err != nil {
		t.Fatalf("the job with REDIS_URL=%s: %v\n%s", c.URL(), err, out)
	}
	rdb := c.Client(nil)
	n, err := rdb.XLen(context.Background(), proto.UserStreamKey("bob")).Result()
	if err != nil || n != 1 {
		t.Fatalf("bob's stream holds %d events (%v), want the notification", n, err)
	}
}
