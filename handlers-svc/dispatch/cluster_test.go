package dispatch_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// spreadUsers returns n user ids that cover every partition.
func spreadUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("member-%d", i)
	}
	return users
}

// TestClusterDispatch: on a 3-master Redis Cluster, in both modes, a
// dispatch to users of every partition (and a room of them) reaches each
// user once with the position the API returned, which the user's stream
// holds; per_user publishes with SPUBLISH on each user's channel, shared on
// the shared channel, which every node relays.
func TestClusterDispatch(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	for _, perUser := range []bool{false, true} {
		t.Run(fmt.Sprintf("per_user=%v", perUser), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
			users := spreadUsers(200)
			// One sharded subscription per partition, or the shared channel.
			got := make(chan *redis.Message, 1000)
			subscribeDispatches(t, ctx, rdb, users, perUser, got)

			d := dispatch.New(rdb, dispatch.Options{Window: time.Minute, PerUser: perUser})
			room := fmt.Sprintf("lobby-%v", perUser)
			for _, u := range users[:50] {
				if _, _, err := d.Join(ctx, room, u); err != nil {
					t.Fatal(err)
				}
			}
			pos, err := d.Dispatch(ctx, dispatch.Message{Event: "m1", Users: users[50:], Rooms: []string{room}})
			if err != nil {
				t.Fatal(err)
			}
			if len(pos.Users) != len(users) {
				t.Fatalf("%d positions for %d users", len(pos.Users), len(users))
			}
			seen := map[string]string{}
			for len(seen) < len(users) || (!perUser && len(seen) == 0) {
				var m *redis.Message
				select {
				case m = <-got:
				case <-ctx.Done():
					t.Fatalf("%d of %d users got it", len(seen), len(users))
				}
				dd, err := proto.DecodeDispatch([]byte(m.Payload))
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range dd.Users {
					if _, dup := seen[u]; dup {
						t.Fatalf("%s named twice", u)
					}
					if perUser && m.Channel != proto.UserChannel(u) {
						t.Fatalf("%s's dispatch on %s", u, m.Channel)
					}
					seen[u] = dd.Pos[u]
				}
			}
			res, err := streams.Read(ctx, rdb, queries(users))
			if err != nil {
				t.Fatal(err)
			}
			for i, u := range users {
				if seen[u] != pos.Users[u] || res[i].Top.String() != pos.Users[u] {
					t.Fatalf("%s: published %s, returned %s, stream top %s", u, seen[u], pos.Users[u], res[i].Top)
				}
			}

			// A batch of a broadcast and users of several partitions: every
			// part recorded; the broadcast on the shared channel.
			if err := d.Batch(ctx, func(b event.Dispatcher) error {
				if err := b.Broadcast(ctx, "m2", nil); err != nil {
					return err
				}
				return b.ToUsers(ctx, users[:20], "m3", nil)
			}); err != nil {
				t.Fatal(err)
			}
			res2, err := streams.Read(ctx, rdb, queries(users[:20]))
			if err != nil {
				t.Fatal(err)
			}
			for i := range res2 {
				if res2[i].Top.Off != res[i].Top.Off+1 {
					t.Fatalf("%s: top %v after %v", users[i], res2[i].Top, res[i].Top)
				}
			}
		})
	}
}

// TestClusterConnsSkipUsers: on a Redis Cluster, a dispatch to users of
// every partition and to connections names the connections in one message
// only, with every user it does not name as its skip_users, in both modes
// (in per_user, that message is the only one on the shared channel).
func TestClusterConnsSkipUsers(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	for _, perUser := range []bool{false, true} {
		t.Run(fmt.Sprintf("per_user=%v", perUser), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
			ps := rdb.Subscribe(ctx, proto.Channel)
			defer ps.Close()
			if _, err := ps.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			d := dispatch.New(rdb, dispatch.Options{Window: time.Minute, PerUser: perUser})
			// Users of every partition, and in the first message's
			// partition more than one message holds (maxUnitUsers).
			users := spreadUsers(100)
			for i := 0; len(users) < 400; i++ {
				if u := fmt.Sprintf("crowd-%d", i); proto.PartitionOf(u) == proto.PartitionOf(users[0]) {
					users = append(users, u)
				}
			}
			// Each run its own event: a node may relay the last run's
			// messages on the shared channel after this run subscribed.
			ev := fmt.Sprintf("e_%v", perUser)
			pos, err := d.Dispatch(ctx, dispatch.Message{Event: ev, Users: users, Conns: []string{"c1"}})
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			withConns := 0
			for len(seen) < len(users) && (!perUser || withConns == 0) {
				m, err := ps.ReceiveMessage(ctx)
				if err != nil {
					t.Fatalf("%d of %d users published: %v", len(seen), len(users), err)
				}
				dd, err := proto.DecodeDispatch([]byte(m.Payload))
				if err != nil {
					t.Fatal(err)
				}
				if dd.Event != ev {
					continue
				}
				for _, u := range dd.Users {
					if seen[u] || dd.Pos[u] != pos.Users[u] || dd.Pos[u] == "" {
						t.Fatalf("%s: named twice, or published at %q, Dispatch says %q", u, dd.Pos[u], pos.Users[u])
					}
					seen[u] = true
				}
				if len(dd.Conns) == 0 {
					if dd.SkipUsers != nil {
						t.Fatalf("a message without conns has skip_users %v", dd.SkipUsers)
					}
					continue
				}
				withConns++
				if !slices.Equal(dd.Conns, []string{"c1"}) || len(dd.Users) == 0 || len(dd.Users) > 128 {
					t.Fatalf("conns %v with %d users", dd.Conns, len(dd.Users))
				}
				// Every user of the dispatch once: in the message, or skipped.
				all := append(slices.Clone(dd.Users), dd.SkipUsers...)
				slices.Sort(all)
				want := slices.Sorted(slices.Values(users))
				if !slices.Equal(all, want) {
					t.Fatalf("users %d and skip_users %d do not make the dispatch's %d users", len(dd.Users), len(dd.SkipUsers), len(users))
				}
			}
			if withConns != 1 {
				t.Fatalf("%d messages name the conns, want 1", withConns)
			}
		})
	}
}

func queries(users []string) []streams.Query {
	qs := make([]streams.Query, len(users))
	for i, u := range users {
		qs[i] = streams.Query{Stream: streams.UserStream, User: u, Max: 1}
	}
	return qs
}

// TestClusterRoomsAndGroupedOrder: rooms work on a cluster, and the
// positions of the dispatch API name the right users whatever order they
// were given in.
func TestClusterRoomsAndGroupedOrder(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
	ctx := context.Background()
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	users := spreadUsers(40)
	slices.Reverse(users)
	for _, r := range []string{"a", "b"} {
		for _, u := range users[:10] {
			if _, _, err := d.Join(ctx, r, u); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, _, err := d.Leave(ctx, "b", users[0]); err != nil || n != 9 {
		t.Fatalf("leave: %d members, %v", n, err)
	}
	if err := d.ToRooms(ctx, []string{"a", "b"}, "hi", nil); err != nil {
		t.Fatal(err)
	}
	pos, err := d.Dispatch(ctx, dispatch.Message{Event: "m", Users: users})
	if err != nil {
		t.Fatal(err)
	}
	res, err := streams.Read(ctx, rdb, queries(users))
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range users {
		if res[i].Top.String() != pos.Users[u] {
			t.Fatalf("%s: returned %s, stream top %s", u, pos.Users[u], res[i].Top)
		}
		wantOff := uint64(1)
		if i < 10 {
			wantOff = 2 // the room's event before
		}
		if res[i].Top.Off != wantOff {
			t.Fatalf("%s: offset %d, want %d", u, res[i].Top.Off, wantOff)
		}
	}
}

// lossyConn loses the reply to the first write that carries an EVALSHA
// once armed: it reads the reply (so Redis has run the script), drops it
// and fails as a reset connection would.
type lossyConn struct {
	net.Conn
	armed   *atomic.Bool
	pending bool
}

func (c *lossyConn) Write(p []byte) (int, error) {
	if c.armed.Load() && bytes.Contains(bytes.ToLower(p), []byte("evalsha")) {
		c.armed.Store(false)
		c.pending = true
	}
	return c.Conn.Write(p)
}

func (c *lossyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.pending && err == nil && n > 0 {
		_ = c.Conn.Close()
		return 0, syscall.ECONNRESET
	}
	return n, err
}

// TestClusterPublishNeverSentTwice: on a Redis Cluster, a publish whose
// reply is lost with its connection fails, and the script ran once: a
// ClusterClient would otherwise send it again on a new connection, and
// record and publish the event twice.
func TestClusterPublishNeverSentTwice(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	var armed atomic.Bool
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &lossyConn{Conn: conn, armed: &armed}, nil
		}})
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.ToUsers(ctx, []string{"alice"}, "first", nil); err != nil {
		t.Fatal(err) // the script loaded, the connections made
	}
	armed.Store(true)
	if err := d.ToUsers(ctx, []string{"alice"}, "second", nil); err == nil {
		t.Fatal("a publish whose reply was lost succeeded")
	}
	if armed.Load() {
		t.Fatal("the publish was not written through the lossy connection")
	}
	n, err := rdb.XLen(ctx, proto.UserStreamKey("alice")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("alice's stream holds %d events, want 2: the lost reply's script ran once", n)
	}
}

// BenchmarkClusterDispatch: one sendMessage-shaped dispatch at a time, to
// two users of different partitions of a 3-master Redis Cluster: two
// script calls, on two nodes.
func BenchmarkClusterDispatch(b *testing.B) {
	c := testkit.StartRedisCluster(b, 3)
	ctx := context.Background()
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect})
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	users := []string{"alice"}
	for i := 0; len(users) < 2; i++ {
		if u := fmt.Sprintf("bob%d", i); proto.PartitionOf(u) != proto.PartitionOf("alice") {
			users = append(users, u)
		}
	}
	args := map[string]string{"from": "alice", "to": users[1], "text": "hello"}
	if err := d.ToUsers(ctx, users, "message", args); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := d.ToUsers(ctx, users, "message", args); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClusterOutageLoggedPerPartition: with one master of a cluster gone,
// dispatches to its partitions fail with unavailable while those to the
// other masters' succeed, and the outage is logged once, naming the
// partition, with no "reachable again" between each two failures, which
// one flag for the whole cluster would log.
func TestClusterOutageLoggedPerPartition(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	ctx := context.Background()
	// One dial per attempt: the failures must come well inside the
	// cluster's node timeout (5 s), after which it stops serving the
	// other masters' slots too (CLUSTERDOWN).
	// go-redis keeps dialing the gone master, a second apart, until its
	// client is closed (the cleanup c.Client registers, which runs before
	// this one): the dialers end within a second of that.
	t.Cleanup(func() {
		testkit.Eventually(t, 5*time.Second, "go-redis's dialers of the gone master ended", func() bool {
			buf := make([]byte, 1<<20)
			return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("(*ConnPool).tryDial"))
		})
	})
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1, DialerRetries: 1})
	core, logs := observer.New(zap.InfoLevel)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute}).LogOutages(zap.New(core))
	down := c.NodeOf(proto.RunKey(proto.PartitionOf("alice")))
	bob := ""
	for i := 0; bob == ""; i++ {
		if u := fmt.Sprintf("bob%d", i); c.NodeOf(proto.RunKey(proto.PartitionOf(u))) != down {
			bob = u
		}
	}
	for _, u := range []string{"alice", bob} { // both reached once, so the slots are known
		if err := d.ToUsers(ctx, []string{u}, "message", nil); err != nil {
			t.Fatal(err)
		}
	}
	down.Stop()
	for range 5 {
		if w := event.WireError(d.ToUsers(ctx, []string{"alice"}, "message", nil)); w.Code != proto.CodeUnavailable {
			t.Fatalf("to alice, whose master is gone: %s, want unavailable", w.Code)
		}
		if err := d.ToUsers(ctx, []string{bob}, "message", nil); err != nil {
			t.Fatalf("to %s, whose master is up: %v", bob, err)
		}
	}
	gone := logs.FilterMessageSnippet("redis unreachable").All()
	if len(gone) != 1 {
		t.Fatalf("outage logged %d times for 5 failed dispatches, want once", len(gone))
	}
	parts, _ := gone[0].ContextMap()["partitions"].([]any)
	if len(parts) != 1 || fmt.Sprint(parts[0]) != fmt.Sprint(proto.PartitionOf("alice")) {
		t.Errorf("outage logged for partitions %v, want [%d]", gone[0].ContextMap()["partitions"], proto.PartitionOf("alice"))
	}
	if n := logs.FilterMessageSnippet("reachable again").Len(); n != 0 {
		t.Errorf("\"reachable again\" logged %d times while alice's master was still gone", n)
	}
}

// TestClusterPartlyDeliveredIsNotUnavailable: on a Redis Cluster a
// dispatch to users of several masters is one script call per partition,
// each all or none. With one master gone, the calls to the others still
// record and publish: the dispatch must not fail with unavailable, which
// says nothing was delivered and a retry is safe (a retry would deliver
// it twice to the users of the masters that are up), but with timeout,
// "it may have been delivered".
func TestClusterPartlyDeliveredIsNotUnavailable(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	ctx := context.Background()
	t.Cleanup(func() { // as in TestClusterOutageLoggedPerPartition
		testkit.Eventually(t, 5*time.Second, "go-redis's dialers of the gone master ended", func() bool {
			buf := make([]byte, 1<<20)
			return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("(*ConnPool).tryDial"))
		})
	})
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1, DialerRetries: 1})
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	down := c.NodeOf(proto.RunKey(proto.PartitionOf("alice")))
	bob := ""
	for i := 0; bob == ""; i++ {
		if u := fmt.Sprintf("bob%d", i); c.NodeOf(proto.RunKey(proto.PartitionOf(u))) != down {
			bob = u
		}
	}
	for _, u := range []string{"alice", bob} { // both reached once, so the slots are known
		if err := d.ToUsers(ctx, []string{u}, "message", nil); err != nil {
			t.Fatal(err)
		}
	}
	down.Stop()
	for _, tt := range []struct {
		name     string
		dispatch func() error
	}{
		{"Dispatch", func() error {
			_, err := d.Dispatch(ctx, dispatch.Message{Event: "message", Users: []string{"alice", bob}})
			return err
		}},
		{"ToUsers", func() error { return d.ToUsers(ctx, []string{"alice", bob}, "message", nil) }},
	} {
		before, err := rdb.XLen(ctx, proto.UserStreamKey(bob)).Result()
		if err != nil {
			t.Fatal(err)
		}
		err = tt.dispatch()
		after, xerr := rdb.XLen(ctx, proto.UserStreamKey(bob)).Result()
		if xerr != nil {
			t.Fatal(xerr)
		}
		if after != before+1 {
			t.Fatalf("%s: %s's stream went from %d to %d events, want one more: his master is up", tt.name, bob, before, after)
		}
		if w := event.WireError(err); w == nil || w.Code != proto.CodeTimeout {
			t.Errorf("%s to alice (master gone) and %s (delivered): %v, want timeout (it may have been delivered)", tt.name, bob, err)
		}
	}
	// A dispatch to the gone master's users only is still unavailable.
	if w := event.WireError(d.ToUsers(ctx, []string{"alice"}, "message", nil)); w == nil || w.Code != proto.CodeUnavailable {
		t.Errorf("to alice only: %v, want unavailable", w)
	}
}

// subscribeDispatches subscribes to where a cluster dispatch to users is
// published (per_user: a sharded subscription per partition of users'
// channels; else the shared channel) and sends each message to got until
// the test ends; with perUser it fails when users are of fewer than two
// partitions.
func subscribeDispatches(t *testing.T, ctx context.Context, rdb *redis.ClusterClient, users []string, perUser bool, got chan<- *redis.Message) {
	t.Helper()
	var subs []*redis.PubSub
	if perUser {
		byPart := map[int][]string{}
		for _, u := range users {
			byPart[proto.PartitionOf(u)] = append(byPart[proto.PartitionOf(u)], proto.UserChannel(u))
		}
		if len(byPart) < 2 {
			t.Fatalf("users of %d partitions, want several", len(byPart))
		}
		for _, chans := range byPart {
			ps := rdb.SSubscribe(ctx, chans...)
			for range chans {
				if _, err := ps.Receive(ctx); err != nil {
					t.Fatal(err)
				}
			}
			subs = append(subs, ps)
		}
	} else {
		ps := rdb.Subscribe(ctx, proto.Channel)
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, ps)
	}
	for _, ps := range subs {
		t.Cleanup(func() { _ = ps.Close() })
		go func() {
			for m := range ps.Channel() {
				got <- m
			}
		}()
	}
}
