package presence

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Scripts of a socket's lease and its removal: each returns the user's
// unexpired leases after it (KEYS[1] the user's key; ARGV the socket,
// then the time now in Unix ms; for a lease, its expiry and the key's
// TTL in ms). Numbers go as decimal strings. They go by EVALSHA (the
// text once per Redis, not per call); a Redis that lost them (restarted,
// SCRIPT FLUSH, a new master) answers NOSCRIPT, having run nothing, and
// gets them again by EVAL (reload).
const (
	addSource = `redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[2], '+inf')`
	removeSource = `redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[2], '+inf')`
)

var (
	addScript    = redis.NewScript(addSource)
	removeScript = redis.NewScript(removeSource)
	// sources maps a script's hash to its text, for the EVAL of a
	// command refused with NOSCRIPT.
	sources = map[string]string{addScript.Hash(): addSource, removeScript.Hash(): removeSource}
)

// The scripts' hashes, boxed once as their commands take them.
var addSHA, removeSHA any = addScript.Hash(), removeScript.Hash()

// scriptKeyPos is the position of KEYS[1] in an EVALSHA's (and an EVAL's) arguments.
const scriptKeyPos = 3

// exec runs the commands of l.batch on one pipeline, within writeTimeout,
// and counts and logs those that failed, by the leases they write. It
// reports whether any command failed, and whether the pipeline failed as
// a whole: every command failed, or its time ran out. Scripts Redis did
// not have, refused with NOSCRIPT and run not at all, are sent again by
// EVAL (reload), after the batch's other commands, which write other
// sockets' leases.
func (l *Leases) exec() (failed, whole bool) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	p := l.rdb.Pipeline()
	for _, q := range l.batch {
		_ = p.Process(ctx, q.cmd)
	}
	_, err := p.Exec(ctx)
	if err != nil && l.reload(ctx) {
		err = nil
		for _, q := range l.batch {
			if err = q.cmd.Err(); err != nil {
				break
			}
		}
	}
	if err == nil {
		return false, false
	}
	// A write is a command and the commands after it that are part of
	// it; its leases count once, if any of them failed.
	n, leases, first, w, counted := 0, 0, -1, 0, false
	for i, q := range l.batch {
		if !q.part {
			w, counted = q.leases, false
		}
		if q.cmd.Err() != nil {
			n++
			if !counted {
				leases, counted = leases+w, true
			}
			if first < 0 {
				first = i
			}
		}
	}
	whole = n == 0 || n == len(l.batch) || ctx.Err() != nil
	if n == 0 { // the pipeline failed as a whole
		first = 0
		for _, q := range l.batch {
			if !q.part {
				leases += q.leases
			}
		}
	}
	l.rec.PresenceWriteFailed(leases)
	for first > 0 && l.batch[first].part {
		first-- // the write's first command has its op
	}
	o := l.batch[first].op
	conn, _ := o.conn.(string)
	l.failed.Failed(err, zap.String("user", o.user), zap.String("conn", conn), zap.Int("failed_leases", leases))
	return true, whole
}

// reload loads the scripts again when a command of l.batch was refused
// with NOSCRIPT, and sends those commands again, in order. A removal of
// the batch that ran although the lease before it was refused (Redis got
// the removal's script between the two: another worker loading them) is
// sent again after that lease, or the lease would outlive its socket's
// close until it expired; the first run removed nothing, so its count is
// as if only the second ran. They go again by EVAL, with the script's
// text, which also gives the script to the node that lacked it: only that
// one, on a Redis Cluster, so a node that does not answer (a master that
// just failed) holds up no other's writes, as loading the scripts on
// every node would. It reports whether it sent any.
func (l *Leases) reload(ctx context.Context) bool {
	again := l.again[:0]
	defer func() {
		clear(again)
		l.again = again[:0]
	}()
	var refused map[any]struct{} // the sockets whose lease was refused
	for _, q := range l.batch {
		switch err := q.cmd.Err(); {
		case isNoScript(err):
			again = append(again, q.cmd)
			if q.op.add && !q.part {
				if refused == nil {
					refused = make(map[any]struct{})
				}
				refused[q.op.conn] = struct{}{}
			}
		case err == nil && !q.op.add && !q.part && refused != nil:
			if _, ok := refused[q.op.conn]; ok {
				again = append(again, q.cmd)
			}
		}
	}
	if len(again) == 0 {
		return false
	}
	evals := make([]*redis.Cmd, len(again)) // nil: c goes again as it is
	p := l.rdb.Pipeline()
	for i, c := range again {
		args := c.Args() // "evalsha", hash, 1, key, ARGV...
		if sha, ok := args[1].(string); ok && args[0] == "evalsha" && sources[sha] != "" {
			eval := make([]any, len(args))
			copy(eval, args)
			eval[0], eval[1] = "eval", sources[sha]
			evals[i] = redis.NewCmd(ctx, eval...)
			evals[i].SetFirstKeyPos(scriptKeyPos)
			_ = p.Process(ctx, evals[i])
		} else {
			_ = p.Process(ctx, c)
		}
	}
	_, _ = p.Exec(ctx) // each command carries its own result
	for i, c := range again {
		if e := evals[i]; e != nil {
			c := c.(*redis.Cmd) // an EVALSHA's
			c.SetVal(e.Val())
			c.SetErr(e.Err())
		}
	}
	return true
}

// isNoScript reports whether err is Redis's answer to a script it does not
// have.
func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
