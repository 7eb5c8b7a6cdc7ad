package dispatch_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestDisconnectPublishes: a disconnect goes out on the shared channel,
// in per_user mode too, as one control message that no gateway decodes as
// a dispatch, and is not recorded in any stream.
func TestDisconnectPublishes(t *testing.T) {
	for _, perUser := range []bool{false, true} {
		srv := testkit.StartRedis(t)
		rdb := newClient(t, srv.Addr())
		d := dispatch.New(rdb, dispatch.Options{Window: time.Minute, PerUser: perUser})
		ps := subscribe(t, rdb)
		ctx := context.Background()
		long := strings.Repeat("é", 100) // 200 bytes: cut to 122
		n, err := d.Disconnect(ctx, dispatch.Disconnect{Users: []string{"alice", "bob", "alice"}, Conns: []string{"c1"}, Reason: long})
		if err != nil || n != 1 {
			t.Fatalf("per_user=%v: Disconnect = %d, %v; want 1 subscriber", perUser, n, err)
		}
		body := receive(t, ps)
		if _, err := proto.DecodeDispatch([]byte(body)); err == nil {
			t.Fatalf("%s decodes as a dispatch", body)
		}
		m, err := proto.DecodeDisconnect([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if !slices.Equal(m.Users, []string{"alice", "bob"}) || !slices.Equal(m.Conns, []string{"c1"}) || m.Reconnect {
			t.Errorf("published %+v", m)
		}
		if m.Reason != strings.Repeat("é", 61) {
			t.Errorf("reason %q (%d bytes), want 61 é", m.Reason, len(m.Reason))
		}
		keys, err := rdb.Keys(ctx, "*").Result()
		if err != nil || len(keys) != 0 {
			t.Errorf("per_user=%v: keys %q after a disconnect (%v), want none: nothing is recorded", perUser, keys, err)
		}
		if n, err := d.Disconnect(ctx, dispatch.Disconnect{Conns: []string{"c2"}, Reconnect: true}); err != nil || n != 1 {
			t.Fatalf("conns only: %d, %v", n, err)
		}
		if m, _ := proto.DecodeDisconnect([]byte(receive(t, ps))); !m.Reconnect || !slices.Equal(m.Conns, []string{"c2"}) {
			t.Errorf("conns only: published %+v", m)
		}
	}
}

func TestDisconnectCheck(t *testing.T) {
	srv := testkit.StartRedis(t)
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{})
	many := make([]string, dispatch.MaxUsers+1)
	for i := range many {
		many[i] = "u"
	}
	for _, m := range []dispatch.Disconnect{
		{},
		{Reason: "no target"},
		{Users: []string{""}},
		{Users: []string{"a\nb"}},
		{Users: many},
		{Conns: []string{"has space"}},
		{Conns: []string{strings.Repeat("c", dispatch.MaxConnLen+1)}},
		{Users: []string{"alice"}, Reason: "line\nbreak"},
	} {
		n, err := d.Disconnect(context.Background(), m)
		var e *event.Error
		if !errors.As(err, &e) || e.Code != proto.CodeBadRequest || n != 0 {
			t.Errorf("%+v: %d, %v; want bad_request", m, n, err)
		}
	}
}

func TestDisconnectRedisDown(t *testing.T) {
	srv := testkit.StartRedis(t)
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{})
	srv.Stop()
	_, err := d.Disconnect(context.Background(), dispatch.Disconnect{Users: []string{"alice"}})
	if w := event.WireError(err); w.Code != proto.CodeUnavailable {
		t.Fatalf("with Redis down: %v (code %s), want unavailable", err, w.Code)
	}
}

// TestClusterDisconnect: on a Redis Cluster the shared channel is classic
// pub/sub, which every node relays: a worker subscribed through any node
// gets the disconnect.
func TestClusterDisconnect(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := c.Client(&redis.ClusterOptions{MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	d := dispatch.New(rdb, dispatch.Options{PerUser: true})
	var subs []*redis.PubSub
	for _, n := range c.Nodes {
		sc := redis.NewClient(&redis.Options{Addr: n.Addr()})
		t.Cleanup(func() { _ = sc.Close() })
		ps := sc.Subscribe(ctx, proto.Channel)
		t.Cleanup(func() { _ = ps.Close() })
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, ps)
	}
	if _, err := d.Disconnect(ctx, dispatch.Disconnect{Users: []string{"alice"}, Reason: "banned"}); err != nil {
		t.Fatal(err)
	}
	for i, ps := range subs {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if m, err := proto.DecodeDisconnect([]byte(msg.Payload)); err != nil || m.Reason != "banned" {
			t.Fatalf("node %d got %q: %+v, %v", i, msg.Payload, m, err)
		}
	}
}

// TestDisconnectRevoke: a revoke records each user's moment in
// proto.RevokedKey before publishing it as revoke_before, keeps a later
// moment already there, deletes the fields older than RevokeTTL, and lets
// the hash expire a RevokeTTL after.
func TestDisconnectRevoke(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	ttl := time.Hour
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute, RevokeTTL: ttl})
	ps := subscribe(t, rdb)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	later := now + 10*60*1000 // set by a handlers-svc whose clock is ahead
	stale := now - ttl.Milliseconds() - 60*1000
	fresh := now - 1000
	if err := rdb.HSet(ctx, proto.RevokedKey, "carol", later, "old", stale, "dave", fresh).Err(); err != nil {
		t.Fatal(err)
	}
	before := time.Now().UnixMilli()
	if _, err := d.Disconnect(ctx, dispatch.Disconnect{Users: []string{"alice", "carol"}, Revoke: true}); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixMilli()
	m, err := proto.DecodeDisconnect([]byte(receive(t, ps)))
	if err != nil || m.RevokeBefore < before || m.RevokeBefore > after {
		t.Fatalf("published %+v, %v; want revoke_before in [%d, %d]", m, err, before, after)
	}
	got, err := rdb.HGetAll(ctx, proto.RevokedKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"alice": strconv.FormatInt(m.RevokeBefore, 10),
		"carol": strconv.FormatInt(later, 10), // the later one kept
		"dave":  strconv.FormatInt(fresh, 10), // within the TTL
	} // "old", past the TTL, deleted
	if !maps.Equal(got, want) {
		t.Errorf("%s = %v, want %v", proto.RevokedKey, got, want)
	}
	if pttl, err := rdb.PTTL(ctx, proto.RevokedKey).Result(); err != nil || pttl <= ttl-time.Minute || pttl > ttl {
		t.Errorf("PTTL %s = %s, %v; want about %s", proto.RevokedKey, pttl, err, ttl)
	}

	// Without revoke, nothing is recorded and no revoke_before is sent.
	if err := rdb.Del(ctx, proto.RevokedKey).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Disconnect(ctx, dispatch.Disconnect{Users: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}
	if m, _ := proto.DecodeDisconnect([]byte(receive(t, ps))); m.RevokeBefore != 0 {
		t.Errorf("a disconnect without revoke published revoke_before %d", m.RevokeBefore)
	}
	if n, err := rdb.Exists(ctx, proto.RevokedKey).Result(); err != nil || n != 0 {
		t.Errorf("a disconnect without revoke wrote %s (%d, %v)", proto.RevokedKey, n, err)
	}
}

func TestDisconnectRevokeNeedsUsers(t *testing.T) {
	m := dispatch.Disconnect{Conns: []string{"c1"}, Revoke: true}
	if err := m.Check(); err == nil || !strings.Contains(err.Error(), "revoke needs users") {
		t.Fatalf("conns-only revoke: Check = %v, want bad_request", err)
	}
	if err := (dispatch.Options{RevokeTTL: -time.Second}).Check(); err == nil {
		t.Fatal("a negative RevokeTTL passed Check")
	}
}

// TestDisconnectRevokeRecordsReconnect: a revoke that asks the clients to
// reconnect records its moment in proto.RevokedReconnectKey too, so a
// worker that misses the message closes with 4002, not 4003; a later
// revoke without reconnect removes the mark; a revoke that loses to a
// later moment already recorded leaves both hashes alone. Both hashes
// expire with the TTL.
func TestDisconnectRevokeRecordsReconnect(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	ttl := time.Hour
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute, RevokeTTL: ttl})
	ctx := context.Background()
	later := time.Now().UnixMilli() + 10*60*1000
	if err := rdb.HSet(ctx, proto.RevokedKey, "carol", later).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Disconnect(ctx, dispatch.Disconnect{Users: []string{"alice", "bob", "carol"}, Revoke: true, Reconnect: true}); err != nil {
		t.Fatal(err)
	}
	revoked, err := rdb.HGetAll(ctx, proto.RevokedKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	again, err := rdb.HGetAll(ctx, proto.RevokedReconnectKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alice": revoked["alice"], "bob": revoked["bob"]} // carol's later revoke stands
	if revoked["alice"] == "" || !maps.Equal(again, want) {
		t.Fatalf("%s = %v after a revoke asking to reconnect (revoked %v); want %v", proto.RevokedReconnectKey, again, revoked, want)
	}
	if pttl, err := rdb.PTTL(ctx, proto.RevokedReconnectKey).Result(); err != nil || pttl <= ttl-time.Minute || pttl > ttl {
		t.Errorf("PTTL %s = %s, %v; want about %s", proto.RevokedReconnectKey, pttl, err, ttl)
	}

	// A later revoke of bob that does not ask to reconnect ends his mark.
	testkit.Eventually(t, 5*time.Second, "the clock moves a millisecond", func() bool {
		return strconv.FormatInt(time.Now().UnixMilli(), 10) > revoked["bob"]
	})
	if _, err := d.Disconnect(ctx, dispatch.Disconnect{Users: []string{"bob"}, Revoke: true}); err != nil {
		t.Fatal(err)
	}
	if again, err = rdb.HGetAll(ctx, proto.RevokedReconnectKey).Result(); err != nil || !maps.Equal(again, map[string]string{"alice": revoked["alice"]}) {
		t.Fatalf("%s = %v, %v after bob's revoke without reconnect; want alice's mark only", proto.RevokedReconnectKey, again, err)
	}
}

// TestRevokedKeysShareASlot: the two revoke hashes are written by one
// script, so on a Redis Cluster they must be in one hash slot.
func TestRevokedKeysShareASlot(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	a, err := rdb.ClusterKeySlot(ctx, proto.RevokedKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	b, err := rdb.ClusterKeySlot(ctx, proto.RevokedReconnectKey).Result()
	if err != nil || a != b {
		t.Fatalf("slot of %s = %d, of %s = %d (%v): want one slot", proto.RevokedKey, a, proto.RevokedReconnectKey, b, err)
	}
	d := dispatch.New(rdb, dispatch.Options{PerUser: true})
	if _, err := d.Disconnect(ctx, dispatch.Disconnect{Users: []string{"alice"}, Revoke: true, Reconnect: true}); err != nil {
		t.Fatalf("a revoke asking to reconnect on a cluster: %v", err)
	}
}
