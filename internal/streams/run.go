package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/proto"
)

// OnConnect is a go-redis Options.OnConnect hook: it reads the server's run
// id and stores it in proto.RunKey unless it is there already. A read-only
// replica refuses the write; that is not an error, since nothing is written
// through it either. Every client of the streams sets it.
//
// A Redis server that restarts, or a replica promoted in a failover, may
// have lost the last writes before it while keeping older ones (AOF with
// fsync every second, asynchronous replication). A stream whose top offset
// went back would then reuse offsets that clients have already seen. To
// rule that out, every stream's meta records the run id of the server that
// wrote it, and the scripts start a new epoch for a stream written on
// another run. OnConnect keeps proto.RunKey equal to the current server's
// run id: as every client connection runs it before its first command, the
// first script run on a restarted server already sees the new run.

func OnConnect(ctx context.Context, cn *redis.Conn) error {
	info, err := cn.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("redis run id: %w", err)
	}
	id, ok := RunID(info)
	if !ok {
		return errors.New("redis run id: INFO server has no run_id")
	}
	// Written only when it differs: a SET per new connection would be a
	// write the AOF and replicas carry for nothing.
	err = cn.Eval(ctx, setRun, []string{proto.RunKey}, id).Err()
	if err != nil && !errors.Is(err, redis.Nil) && !strings.HasPrefix(err.Error(), "READONLY") {
		return fmt.Errorf("redis run id: %w", err)
	}
	return nil
}

const setRun = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) end return 1`

// RunID returns the run_id field of an INFO server answer.
func RunID(info string) (string, bool) {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "run_id:"); ok {
			v = strings.TrimSpace(v)
			return v, v != ""
		}
	}
	return "", false
}
