package worker

import (
	"context"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/announced"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// announcePipe returns a Writer on a new pipe and the set a reader
// goroutine fills from it, starting with orphans, as the supervisor's;
// read is closed once the Writer is closed and the pipe read to its end.
func announcePipe(t *testing.T, orphans []announced.Orphan) (rec *announced.Writer, set *announced.Set, read <-chan struct{}) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(w.Fd()))
	_ = w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rec, err = announced.NewWriter(fd, announced.DefaultMaxPending); err != nil {
		t.Fatal(err)
	}
	set = announced.NewSet(1000)
	set.Add(orphans)
	done := make(chan struct{})
	go func() { defer close(done); defer r.Close(); announced.Read(r, set) }()
	t.Cleanup(func() { _ = rec.Close(); <-done })
	return rec, set, done
}

// TestLifecycleOrphans: a worker handed the orphans of the worker it
// replaces announces, once it serves, each one's disconnect: code 1006,
// reason worker_lost, its own index, at the time of the death, and, with
// presence on, the user's sockets left once the orphan's lease is
// removed: of alice's two exactly one says 0, bob's says 1 (a socket of
// his on another worker). It records them done for its supervisor, and
// its own sockets as announced until they close: sockets opened and
// closed at once leave nothing, nor does carol's after the drain.
func TestLifecycleOrphans(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	exp := float64(time.Now().Add(time.Minute).UnixMilli())
	for user, conns := range map[string][]string{"alice": {"dead-a1", "dead-a2"}, "bob": {"dead-b1", "live-b2"}} {
		for _, c := range conns {
			if err := rdb.ZAdd(ctx, proto.UserPresenceKey(user), redis.Z{Score: exp, Member: c}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	lost := time.Now().Add(-time.Second).UnixMilli()
	orphans := []announced.Orphan{
		{Conn: "dead-a1", User: "alice", Lost: lost},
		{Conn: "dead-a2", User: "alice", Lost: lost},
		{Conn: "dead-b1", User: "bob", Lost: lost},
	}
	rec, set, read := announcePipe(t, orphans)

	got := lifecycleMessages(t, n.URL())
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	r := startWorkerWith(t, cfg, 1, zap.NewNop(), WithAnnounced(rec, slices.Clone(orphans)))

	zeros := 0
	for range orphans {
		l := nextLifecycle(t, got, "an orphan's disconnect")
		var user string
		for _, o := range orphans {
			if o.Conn == l.Conn {
				user = o.User
			}
		}
		if l.Type != proto.LifecycleTypeDisconnect || l.User != user || l.Worker != 1 || l.At != lost ||
			l.Code != 1006 || l.Reason != "worker_lost" || l.Resumed || l.Sockets == nil {
			t.Fatalf("orphan's message %+v (sockets %s): want the disconnect of one of %v by worker 1 at %d, 1006 worker_lost, with sockets",
				*l, sockets(l.Sockets), orphans, lost)
		}
		switch {
		case l.User == "bob" && *l.Sockets != 1:
			t.Errorf("bob's orphan says sockets %d, want 1: his socket elsewhere", *l.Sockets)
		case l.User == "alice" && *l.Sockets == 0:
			zeros++
		}
	}
	if zeros != 1 {
		t.Errorf("%d of alice's orphans say sockets 0, want exactly 1", zeros)
	}
	if m := metric(r.w, "switchboard_gateway_lifecycle_lost_disconnects_total"); m != "3" {
		t.Errorf("lost disconnects counted %q, want 3", m)
	}
	for _, c := range []string{"dead-a1", "dead-a2"} {
		if _, err := rdb.ZScore(ctx, proto.UserPresenceKey("alice"), c).Result(); err != redis.Nil {
			t.Errorf("alice's lease %s: %v, want removed", c, err)
		}
	}

	c := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "carol", time.Hour))
	nextLifecycle(t, got, "carol's connect")
	// Sockets that come and go at once: a connect and its disconnect in
	// one batch of the publisher's record nothing, in two a connect and
	// its disconnect.
	const brief = 30
	for range brief {
		testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "dave", time.Hour)).Close()
	}
	for range 2 * brief {
		nextLifecycle(t, got, "dave's sockets")
	}
	testkit.Eventually(t, wait, "the supervisor's set holds carol's socket alone", func() bool {
		return set.Len() == 1
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	<-read
	if left := set.Take(time.Now()); len(left) != 0 {
		t.Errorf("after the drain the set holds %v, want nothing: carol's disconnect was recorded", left)
	}
	_ = c
}

// TestLifecycleBatchConnectAndDisconnect: a batch holding both a
// socket's connect and its disconnect publishes both and records
// neither, so the supervisor's set holds nothing of it (were the connect
// recorded alone, a kill would have the replacement announce a second
// disconnect); another socket's connect in the batch is recorded.
func TestLifecycleBatchConnectAndDisconnect(t *testing.T) {
	n := testkit.StartNATS(t)
	rec, set, read := announcePipe(t, nil)
	cfg := testConfig()
	cfg.LifecycleHooks = true
	w := New(cfg, 0, zap.NewNop(), WithAnnounced(rec, nil))
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w.nc = nc
	got := lifecycleMessages(t, n.URL())
	item := func(typ, conn string, announced *bool) lifecycleItem {
		return lifecycleItem{announced: announced, m: &proto.Lifecycle{Type: typ, User: "u", Conn: conn}}
	}
	brief, kept := new(bool), new(bool)
	w.life.handle([]lifecycleItem{
		item(proto.LifecycleTypeConnect, "brief", brief),
		item(proto.LifecycleTypeConnect, "kept", kept),
		item(proto.LifecycleTypeDisconnect, "brief", brief),
	}, nil)
	for range 3 {
		nextLifecycle(t, got, "the first batch's messages")
	}
	if !*brief || !*kept {
		t.Fatalf("connects announced: brief %v, kept %v; want both", *brief, *kept)
	}
	_ = rec.Close()
	<-read
	left := set.Take(time.Now())
	if len(left) != 1 || left[0].Conn != "kept" {
		t.Errorf("the set holds %v, want kept's socket alone", left)
	}
}
