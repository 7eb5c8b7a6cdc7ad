package presence_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/presence"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

var _ event.Presence = (*presence.Reader)(nil)

// lease writes conn's lease in user's key as a gateway worker does,
// expiring in d (negative: expired).
func lease(t *testing.T, rdb redis.UniversalClient, user, conn string, d time.Duration) {
	t.Helper()
	err := rdb.ZAdd(context.Background(), proto.UserPresenceKey(user),
		redis.Z{Score: float64(time.Now().Add(d).UnixMilli()), Member: conn}).Err()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCountAndConns: Count counts the unexpired leases of each user, 0
// for one with none or only expired ones; Conns lists the unexpired
// ones, sorted; a user's expired lease is ignored, not counted.
func TestCountAndConns(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	lease(t, rdb, "alice", "c2", time.Minute)
	lease(t, rdb, "alice", "c1", time.Minute)
	lease(t, rdb, "alice", "dead", -time.Second)
	lease(t, rdb, "bob", "dead", -time.Second)
	p := presence.New(rdb)
	ctx := context.Background()
	got, err := p.Count(ctx, "alice", "bob", "carol")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"alice": 2, "bob": 0, "carol": 0}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Count = %v, want %v", got, want)
	}
	conns, err := p.Conns(ctx, "alice")
	if err != nil || !slices.Equal(conns, []string{"c1", "c2"}) {
		t.Errorf("Conns(alice) = %v, %v; want [c1 c2]", conns, err)
	}
	if conns, err := p.Conns(ctx, "carol"); err != nil || len(conns) != 0 {
		t.Errorf("Conns(carol) = %v, %v; want none", conns, err)
	}
	if got, err := p.Count(ctx); err != nil || len(got) != 0 {
		t.Errorf("Count() = %v, %v; want an empty map", got, err)
	}

	// More users than one pipeline holds.
	many := make([]string, 1200)
	for i := range many {
		many[i] = "u" + strconv.Itoa(i)
	}
	lease(t, rdb, many[len(many)-1], "c", time.Minute)
	got, err = p.Count(ctx, many...)
	if err != nil || len(got) != len(many) || got[many[len(many)-1]] != 1 || got[many[0]] != 0 {
		t.Errorf("Count of %d users: %d counts, last %d, first %d, %v", len(many), len(got), got[many[len(many)-1]], got[many[0]], err)
	}

	// Redis down: unavailable, for the handler to return as it is.
	r.Stop()
	_, err = p.Count(ctx, "alice")
	if e, ok := errors.AsType[*event.Error](err); !ok || e.Code != proto.CodeUnavailable {
		t.Errorf("Count with Redis down: %v, want an unavailable *event.Error", err)
	}
	_, err = p.Conns(ctx, "alice")
	if e, ok := errors.AsType[*event.Error](err); !ok || e.Code != proto.CodeUnavailable {
		t.Errorf("Conns with Redis down: %v, want an unavailable *event.Error", err)
	}
}

// TestCluster: on a Redis Cluster the users of every partition are
// counted in one call.
func TestCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(nil)
	var users []string
	seen := map[int]bool{}
	for i := 0; len(users) < proto.Partitions; i++ {
		u := fmt.Sprintf("user-%d", i)
		if p := proto.PartitionOf(u); !seen[p] {
			seen[p] = true
			users = append(users, u)
			for j := range p%3 + 1 {
				lease(t, rdb, u, "c"+strconv.Itoa(j), time.Minute)
			}
		}
	}
	got, err := presence.New(rdb).Count(context.Background(), users...)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if want := proto.PartitionOf(u)%3 + 1; got[u] != want {
			t.Errorf("Count(%s) = %d, want %d", u, got[u], want)
		}
	}
}
