package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/proto"
)

// OnConnect is a go-redis Options.OnConnect (or ClusterOptions.OnConnect)
// hook: it reads the server's run id and stores it in the run key
// (proto.RunKey) unless it is there already. A read-only replica refuses
// the write; that is not an error, since nothing is written through it
// either. Every client of the streams sets it.
//
// A Redis server that restarts, or a replica promoted in a failover, may
// have lost the last writes before it while keeping older ones (AOF with
// fsync every second, asynchronous replication). A stream whose top offset
// went back would then reuse offsets that clients have already seen. To
// rule that out, every stream's meta records the run id of the server that
// wrote it, and the scripts start a new epoch for a stream written on
// another run. OnConnect keeps the run key equal to the current server's
// run id: as every client connection runs it before its first command, the
// first script run on a restarted server already sees the new run.
//
// On one Redis one run key serves every stream. On a Redis Cluster
// (redis_mode:cluster) each partition has its own, in its slot, and the
// scripts of a partition check that one; a connection to a node sets the
// run key of every partition whose slot the node serves: it tries all of
// them, in one pipeline, and the node refuses the others (MOVED). There a
// connection may outlive its node's change of role (a replica promoted),
// so the scripts also check the run key against the server's own run id
// (liveRun); what OnConnect records is then a head start, not the
// guarantee.
func OnConnect(ctx context.Context, cn *redis.Conn) error {
	info, err := cn.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("redis run id: %w", err)
	}
	// A second round trip rather than INFO's sections in one: Redis 6
	// takes one section at a time.
	repl, err := cn.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("redis run id: %w", err)
	}
	id, ok := Run(info + repl)
	if !ok {
		return errors.New("redis run id: INFO has no run_id or master_replid")
	}
	// Written only when it differs: a SET per new connection would be a
	// write the AOF and replicas carry for nothing.
	if !clusterMode(info) {
		return runSet(cn.Eval(ctx, setRun, []string{runKey(false, 0)}, id).Err())
	}
	cmds, _ := cn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for part := range proto.Partitions {
			p.Eval(ctx, setRun, []string{proto.RunKey(part)}, id)
		}
		return nil
	})
	for _, c := range cmds {
		// A slot no master serves (CLUSTERDOWN, with
		// cluster-require-full-coverage no) is no reason to refuse the
		// connection for the slots that are served: the scripts check
		// the run again themselves.
		if err := c.Err(); err != nil && !isMoved(err) && !strings.HasPrefix(err.Error(), "CLUSTERDOWN") {
			if err := runSet(err); err != nil {
				return err
			}
		}
	}
	return nil
}

// runSet returns the error of setting a run key, nil for none or for a
// replica's refusal.
func runSet(err error) error {
	if err != nil && !errors.Is(err, redis.Nil) && !strings.HasPrefix(err.Error(), "READONLY") {
		return fmt.Errorf("redis run id: %w", err)
	}
	return nil
}

// isMoved reports whether err is a cluster node's refusal of a key whose
// slot another node serves (or is being moved to).
func isMoved(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "MOVED ") || strings.HasPrefix(s, "ASK ")
}

// clusterMode reports whether an INFO server answer is a Redis Cluster
// node's.
func clusterMode(info string) bool {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "redis_mode:"); ok {
			return strings.TrimSpace(v) == "cluster"
		}
	}
	return false
}

const setRun = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) end return 1`

// Run returns the run of a Redis server as the scripts record it, from its
// INFO server and INFO replication answers (together, in any order): the
// first 16 characters of its run id, which changes whenever the server
// starts, then the first 16 of its replication id, which changes (also
// when a master with no backlog gets a replica, which is taken for a new
// run all the same: docs/operations.md) whenever
// the server is promoted from replica to master, also when it had been the
// master before (a failback after a failover, which keeps the run id): a
// stream written on one master is never continued by a server that has
// followed another since. publish.lua and read.lua compute the same.
func Run(info string) (string, bool) {
	id, ok := infoField(info, "run_id:")
	repl, ok2 := infoField(info, "master_replid:")
	if !ok || !ok2 {
		return "", false
	}
	return id[:min(len(id), 16)] + repl[:min(len(repl), 16)], true
}

// infoField returns the value of the field named by prefix (with its
// colon) in an INFO answer.
func infoField(info, prefix string) (string, bool) {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			v = strings.TrimSpace(v)
			return v, v != ""
		}
	}
	return "", false
}
