package testkit

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of redis-server processes owned by a
// test, every node a master serving a contiguous share of the slots (as
// redis-cli --cluster create splits them), without replicas.
type RedisCluster struct {
	Nodes []*Redis
	t     testing.TB
}

// clusterReadyTimeout bounds the wait for the nodes to agree on a cluster.
const clusterReadyTimeout = 30 * time.Second

// StartRedisCluster starts size redis-server processes in cluster mode on
// 127.0.0.1 (each on a free port, its cluster bus on another), joins them
// with redis-cli --cluster create (no replicas), waits until every node
// reports cluster_state:ok, and stops them when the test ends.
func StartRedisCluster(t testing.TB, size int) *RedisCluster {
	t.Helper()
	return StartRedisClusterWithReplicas(t, size, 0)
}

// StartRedisClusterWithReplicas is StartRedisCluster with replicas
// replicas of each master: masters*(1+replicas) processes, which redis-cli
// pairs up. Nodes lists them all; Masters which serve slots now.
func StartRedisClusterWithReplicas(t testing.TB, masters, replicas int) *RedisCluster {
	t.Helper()
	size := masters * (1 + replicas)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found in PATH (%v): install Redis to run these tests", err)
	}
	c := &RedisCluster{t: t}
	for range size {
		var r *Redis
		var lastErr error
		for range redisAttempts {
			r = newRedis(t, RestartablePort(t))
			r.extra = []string{"--cluster-enabled", "yes", "--cluster-config-file", r.dir + "/nodes.conf",
				"--cluster-port", strconv.Itoa(FreePort(t)), "--cluster-node-timeout", "5000"}
			if lastErr = r.start(); lastErr == nil {
				break
			}
			r = nil
		}
		if r == nil {
			t.Fatalf("redis-server (cluster node) did not start: %v", lastErr)
		}
		c.Nodes = append(c.Nodes, r)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	c.AwaitOK()
	return c
}

// AwaitOK waits until every node reports cluster_state:ok and knows every
// other node, so a client started now finds all slots served.
func (c *RedisCluster) AwaitOK() {
	c.t.Helper()
	ctx := context.Background()
	for _, n := range c.Nodes {
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		Eventually(c.t, clusterReadyTimeout, fmt.Sprintf("redis cluster node %s: cluster_state:ok", n.Addr()), func() bool {
			info, err := rdb.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
			return strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(c.Nodes)))
		})
		_ = rdb.Close()
	}
}

// Failover has a replica of the master that serves key's slot take over
// (CLUSTER FAILOVER, the graceful kind: the replica has caught up first),
// waits until it serves the slot and the cluster is ok again, and returns
// it. The cluster must have replicas.
func (c *RedisCluster) Failover(key string) *Redis {
	c.t.Helper()
	ctx := context.Background()
	master := c.NodeOf(key)
	mc := redis.NewClient(&redis.Options{Addr: master.Addr(), MaxRetries: -1})
	defer mc.Close()
	id, err := mc.ClusterMyID(ctx).Result()
	if err != nil {
		c.t.Fatalf("CLUSTER MYID on %s: %v", master.Addr(), err)
	}
	var replica *Redis
	for _, n := range c.Nodes {
		rc := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		info, err := rc.Info(ctx, "replication").Result()
		_ = rc.Close()
		if err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_port:"+strconv.Itoa(master.Port)+"\r") {
			replica = n
			break
		}
	}
	if replica == nil {
		c.t.Fatalf("no replica of %s (%s)", master.Addr(), id)
	}
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr(), MaxRetries: -1})
	defer rc.Close()
	// A manual failover needs the replica in sync with its master, and is
	// given up (silently) when it does not complete in time: asked again
	// until it takes.
	Eventually(c.t, clusterReadyTimeout, "the replica "+replica.Addr()+" serves "+key, func() bool {
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "master_link_status:up") {
			return false
		}
		if err := rc.ClusterFailover(ctx).Err(); err != nil {
			c.t.Logf("CLUSTER FAILOVER on %s: %v", replica.Addr(), err)
			return false
		}
		deadline := time.Now().Add(6 * time.Second)
		for time.Now().Before(deadline) {
			if role, err := rc.Do(ctx, "ROLE").Slice(); err == nil && len(role) > 0 && role[0] == "master" {
				return c.NodeOf(key) == replica || waitNodeOf(c, key, replica)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	})
	c.AwaitOK()
	return replica
}

// waitNodeOf waits a little for every node to agree that n serves key.
func waitNodeOf(c *RedisCluster, key string, n *Redis) bool {
	for range 100 {
		if c.NodeOf(key) == n {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// URL returns the cluster in the go-redis cluster URL form
// (docs/protocol.md section 1): redis://node1?addr=node2&addr=node3.
func (c *RedisCluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr()
	for i, n := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + n.Addr()
	}
	return u
}

// ClusterURL is URL.
func (c *RedisCluster) ClusterURL() string { return c.URL() }

// Addrs returns every node's host:port.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// Client returns a cluster client of c, closed when the test ends.
func (c *RedisCluster) Client(opts *redis.ClusterOptions) *redis.ClusterClient {
	if opts == nil {
		opts = &redis.ClusterOptions{}
	}
	opts.Addrs = c.Addrs()
	rdb := redis.NewClusterClient(opts)
	c.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// NodeOf returns the node that serves key's slot now.
func (c *RedisCluster) NodeOf(key string) *Redis {
	c.t.Helper()
	ctx := context.Background()
	for _, n := range c.Nodes {
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		slot, err := rdb.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			_ = rdb.Close()
			continue
		}
		slots, err := rdb.ClusterSlots(ctx).Result()
		_ = rdb.Close()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				for _, m := range c.Nodes {
					if m.Addr() == s.Nodes[0].Addr {
						return m
					}
				}
			}
		}
	}
	c.t.Fatalf("no node of the cluster serves %q", key)
	return nil
}
