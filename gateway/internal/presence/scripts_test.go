package presence

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestScriptsFlushed: a Redis that lost the scripts (restarted, SCRIPT
// FLUSH) refuses them with NOSCRIPT, having run nothing; the writes load
// them again and go through, counted right and not counted as failed,
// and so does the refresh.
func TestScriptsFlushed(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := client(t, r)
	failed := &counter{}
	l := New(rdb, MinTTL, failed, zap.NewNop())
	run(t, l)
	ctx := context.Background()
	flush := func() {
		t.Helper()
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	opened := func(conn string, want int) {
		t.Helper()
		c := l.Opened("hal", conn)
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("Opened(%s)'s count not done", conn)
		}
		if n, ok := c.Sockets(); !ok || n != want {
			t.Errorf("Opened(%s): hal's sockets = %d, %t; want %d", conn, n, ok, want)
		}
	}
	opened("c1", 1)
	flush()
	opened("c2", 2)
	flush()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, ok := l.Closed(cctx, "hal", "c1"); !ok || n != 1 {
		t.Errorf("Closed(c1): hal's sockets = %d, %t; want 1", n, ok)
	}
	flush()
	first, _ := lease(t, rdb, "hal", "c2")
	testkit.Eventually(t, MinTTL, "the refresh writes c2's lease again", func() bool {
		exp, ok := lease(t, rdb, "hal", "c2")
		return ok && exp > first
	})
	if n := failed.n.Load(); n != 0 {
		t.Errorf("%d failed writes counted, want none", n)
	}
}

// TestUserWithManySockets: the sockets of a user with more than are
// looked up by a scan (indexFrom) are each leased, refreshed and
// removed, in any order, and Len follows them.
func TestUserWithManySockets(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := client(t, r)
	l := New(rdb, MinTTL, &counter{}, zap.NewNop())
	run(t, l)
	const socks = 3 * indexFrom
	var last *Count
	for i := range socks {
		last = l.Opened("ivy", "c"+strconv.Itoa(i))
	}
	l.Opened("ivy", "c0") // again: still one socket
	<-last.Done()
	if n := l.Len(); n != socks {
		t.Errorf("Len = %d, want %d", n, socks)
	}
	if n, _ := last.Sockets(); n != socks {
		t.Errorf("the last Opened counted %d sockets, want %d", n, socks)
	}
	exps := map[string]int64{}
	for i := range socks {
		c := "c" + strconv.Itoa(i)
		exps[c], _ = lease(t, rdb, "ivy", c)
	}
	testkit.Eventually(t, MinTTL, "a refresh writes every lease again", func() bool {
		for c, first := range exps {
			if exp, ok := lease(t, rdb, "ivy", c); !ok || exp <= first {
				return false
			}
		}
		return true
	})
	// Close every other one, from both ends, and the first and last.
	ctx := context.Background()
	closed := map[string]bool{}
	for i := 0; i < socks/2; i += 2 {
		for _, j := range []int{i, socks - 1 - i} {
			c := "c" + strconv.Itoa(j)
			closed[c] = true
			left, ok := l.Closed(ctx, "ivy", c)
			if !ok || left != socks-len(closed) {
				t.Fatalf("Closed(%s): %d, %t; want %d", c, left, ok, socks-len(closed))
			}
		}
	}
	if n := l.Len(); n != socks-len(closed) {
		t.Errorf("Len = %d, want %d", n, socks-len(closed))
	}
	for i := range socks {
		c := "c" + strconv.Itoa(i)
		if _, ok := lease(t, rdb, "ivy", c); ok == closed[c] {
			t.Errorf("%s: leased %t, closed %t", c, ok, closed[c])
		}
	}
}

// TestClusterRefresh: on a Redis Cluster the refresh writes the leases
// of users in every partition again, users with two sockets among them,
// also after the masters lost the scripts, and the leases and removals
// of sockets, by the scripts the masters lost, are written and counted
// right; no write fails.
func TestClusterRefresh(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(nil)
	failed := &counter{}
	l := New(rdb, MinTTL, failed, zap.NewNop())
	run(t, l)
	var users []string
	for i := range 4 * proto.Partitions {
		u := fmt.Sprintf("user-%d", i)
		users = append(users, u)
		l.Opened(u, "a-"+u)
		if i%3 == 0 {
			l.Opened(u, "b-"+u)
		}
	}
	ctx := context.Background()
	refreshed := func(what string) {
		t.Helper()
		firsts := map[string]int64{}
		for _, u := range users {
			testkit.Eventually(t, 5*time.Second, u+"'s lease is written", func() bool {
				exp, ok := lease(t, rdb, u, "a-"+u)
				firsts[u] = exp
				return ok
			})
		}
		testkit.Eventually(t, 2*MinTTL, what, func() bool {
			for _, u := range users {
				if exp, ok := lease(t, rdb, u, "a-"+u); !ok || exp <= firsts[u] {
					return false
				}
			}
			return true
		})
	}
	refreshed("a refresh writes every lease again")
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.ScriptFlush(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	refreshed("a refresh after the scripts were flushed writes every lease again")
	for i, u := range users {
		if _, ok := lease(t, rdb, u, "b-"+u); ok != (i%3 == 0) {
			t.Errorf("%s's second socket leased: %t", u, ok)
		}
	}
	// The scripts of a socket's lease and removal, which every node has
	// lost, are loaded again on each, in the partitions of one pipeline.
	counted := func(c *Count, what string, want int) {
		t.Helper()
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: count not done", what)
		}
		if n, ok := c.Sockets(); !ok || n != want {
			t.Errorf("%s: %d sockets, %t; want %d", what, n, ok, want)
		}
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil { // every node, go-redis's ClusterClient
		t.Fatal(err)
	}
	opened := make([]*Count, len(users))
	for i, u := range users {
		opened[i] = l.Opened(u, "c-"+u)
	}
	for i, u := range users {
		counted(opened[i], "Opened(c-"+u+")", 2+btoi(i%3 == 0))
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	closed := make([]*Count, len(users))
	for i, u := range users {
		closed[i] = l.closing(u, "c-"+u)
	}
	for i, u := range users {
		counted(closed[i], "Closed(c-"+u+")", 1+btoi(i%3 == 0))
		if _, ok := lease(t, rdb, u, "c-"+u); ok {
			t.Errorf("c-%s still leased once closed", u)
		}
	}
	if n := failed.n.Load(); n != 0 {
		t.Errorf("%d failed writes counted, want none", n)
	}
}

// TestScriptsHalfLoaded: a socket opened and closed in one batch while
// Redis has the removal's script but not the lease's (another worker
// loading them after a SCRIPT FLUSH or a failover, between the two): the
// removal runs and the lease is refused with NOSCRIPT; sent again once
// loaded, the lease must not outlive the removal queued after it.
func TestScriptsHalfLoaded(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := client(t, r)
	failed := &counter{}
	l := New(rdb, MinTTL, failed, zap.NewNop())
	ctx := context.Background()
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := removeScript.Load(ctx, rdb).Err(); err != nil {
		t.Fatal(err)
	}
	// Queued before Run starts, so that one batch writes both.
	opened := l.Opened("kim", "c1")
	l.Opened("kim", "c2")
	closed := l.closing("kim", "c1")
	run(t, l)
	for _, c := range []*Count{opened, closed} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the batch is not written")
		}
	}
	if _, ok := lease(t, rdb, "kim", "c1"); ok {
		t.Error("c1's lease was written back after its removal")
	}
	if _, ok := lease(t, rdb, "kim", "c2"); !ok {
		t.Error("c2 has no lease")
	}
	if n, ok := closed.Sockets(); ok && n != 1 {
		t.Errorf("c1's close counted %d sockets, want 1 (or not known)", n)
	}
	if n := failed.n.Load(); n != 0 {
		t.Errorf("%d failed writes counted, want none", n)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
