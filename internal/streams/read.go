package streams

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/proto"
)

//go:embed read.lua
var readSrc string

var readScript = redis.NewScript(readSrc)

// MetaTTL is how long a stream's meta outlives its last read or write: a
// client back after longer starts over (recovered false).
const MetaTTL = 24 * time.Hour

// Stream names one of a socket's two streams.
type Stream uint8

// A socket's streams.
const (
	UserStream      Stream = iota // the stream of the socket's user
	BroadcastStream               // the one stream of broadcasts
)

// Keys returns the keys of stream s of user: the stream and its meta.
func (s Stream) Keys(user string) (stream, meta string) {
	if s == BroadcastStream {
		return proto.BroadcastStreamKey, proto.BroadcastMetaKey
	}
	return proto.UserStreamKey(user), proto.UserMetaKey(user)
}

// Partition returns the partition of stream s of user.
func (s Stream) Partition(user string) int {
	if s == BroadcastStream {
		return proto.BroadcastPartition
	}
	return proto.PartitionOf(user)
}

// FrameKey returns the key of s's positions in frames: "pos" or "bpos".
func (s Stream) FrameKey() string {
	if s == BroadcastStream {
		return proto.KeyBPos
	}
	return proto.KeyPos
}

// Query asks for where one stream is and, when After is set and From is of
// the stream's epoch, the entries after From if it is at most Max behind.
// The stream is created, in a new epoch, when it has no meta or one of
// another run.
//
// Count and Bytes bound how many of those entries one read returns, so
// that a long way behind is read in parts: the first ones, at most Count
// of them (0: no bound), and at most Bytes (0: no bound) counting each
// entry as its event's and args' lengths plus Overhead; the first entry
// is returned whatever its size. Max alone decides whether entries are
// read at all.
type Query struct {
	Stream   Stream
	User     string // for UserStream
	From     proto.Pos
	After    bool // read the entries after From
	Max      int
	Count    int
	Bytes    int
	Overhead int
}

// Result is a query's answer: the stream's top (its epoch, the time and
// offset of its last entry; offset 0 for none) and the entries read. The
// entries are read only when the query's epoch is the stream's and it is 1
// to Max entries behind the top; they are the first after From, all of
// them unless Count or Bytes cut them short. The caller checks they are
// contiguous from From (a stream trimmed by time lacks the oldest).
//
// Oldest is the offset of the stream's oldest entry, read when entries
// were to be read and the first is not the one after From's offset (0
// otherwise, or when the stream has none): at most that offset plus one,
// the stream holds what follows From, so From's time is not its entry's.
type Result struct {
	Top     proto.Pos
	Entries []Entry
	Oldest  uint64
}

// Entry is one recorded event. Except lists the connections its dispatch
// left out (proto.Dispatch.Except), which neither a replay nor a gap
// filled sends it to; nil for none.
type Entry struct {
	Pos    proto.Pos
	Event  string
	Args   []byte
	Except []string
	// Undeliverable: Args are not JSON a socket can be sent
	// (proto.ValidArgs: not UTF-8, which a client fails a text frame for,
	// or not valid JSON), or Event is one of the gateway's own
	// (proto.Reserved: a second connected, a forged resync), as a
	// publisher that does not check may record them, and as the live path
	// drops them. A reader skips such an entry as one its socket is left
	// out of: its place moves past it and nothing is sent.
	Undeliverable bool
}

// Read runs queries in one pipeline and returns their results in order.
// Redis having lost the script costs one reload. On a Redis Cluster the
// pipeline is split by node, each query checked against its partition's
// run key.
func Read(ctx context.Context, rdb redis.UniversalClient, qs []Query) ([]Result, error) {
	cmds, err := execRead(ctx, rdb, qs)
	if err != nil && isNoScript(err) {
		if err = readScript.Load(ctx, rdb).Err(); err != nil {
			return nil, fmt.Errorf("load the read script: %w", err)
		}
		cmds, err = execRead(ctx, rdb, qs)
	}
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(qs))
	for i, cmd := range cmds {
		if out[i], err = parseResult(cmd.Val()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func execRead(ctx context.Context, rdb redis.UniversalClient, qs []Query) ([]*redis.Cmd, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(qs))
	seed := NewEpoch()
	cluster := IsCluster(rdb)
	for i, q := range qs {
		sk, mk := q.Stream.Keys(q.User)
		run := runKey(cluster, q.Stream.Partition(q.User))
		epoch, after, off := "", "", "0"
		if q.After {
			epoch, after, off = q.From.Epoch, q.From.ID(), strconv.FormatUint(q.From.Off, 10)
		}
		cmds[i] = readScript.EvalSha(ctx, pipe, []string{run, sk, mk},
			epoch, after, off, q.Max, seed+strconv.Itoa(i), int64(MetaTTL/time.Second), liveRun(cluster),
			max(q.Count, 0), max(q.Bytes, 0), max(q.Overhead, 0))
	}
	_, err := pipe.Exec(ctx)
	return cmds, err
}

// parseResult reads the script's answer: {epoch, top offset, top time,
// entries, oldest ID}, entries as XRANGE gives them: {id, {field, value,
// ...}}.
func parseResult(v any) (Result, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 5 {
		return Result{}, fmt.Errorf("read script: unexpected answer %T", v)
	}
	epoch, _ := a[0].(string)
	off, okOff := uintOf(a[1])
	ms, okMS := uintOf(a[2])
	if !proto.ValidEpoch(epoch) || !okOff || !okMS {
		return Result{}, fmt.Errorf("read script: bad meta %q %v %v", epoch, a[1], a[2])
	}
	res := Result{Top: proto.Pos{Epoch: epoch, MS: ms, Off: off}}
	xs, _ := a[3].([]any)
	for _, x := range xs {
		e, err := parseEntry(epoch, x)
		if err != nil {
			return Result{}, err
		}
		res.Entries = append(res.Entries, e)
	}
	if id, _ := a[4].(string); id != "" {
		_, off, ok := proto.ParseStreamID(id)
		if !ok {
			return Result{}, fmt.Errorf("read script: bad oldest id %q", id)
		}
		res.Oldest = off
	}
	return res, nil
}

func parseEntry(epoch string, x any) (Entry, error) {
	pair, ok := x.([]any)
	if !ok || len(pair) != 2 {
		return Entry{}, errors.New("read script: malformed stream entry")
	}
	id, _ := pair[0].(string)
	ms, off, ok := proto.ParseStreamID(id)
	if !ok {
		return Entry{}, fmt.Errorf("read script: bad entry id %q", id)
	}
	e := Entry{Pos: proto.Pos{Epoch: epoch, MS: ms, Off: off}}
	fields, _ := pair[1].([]any)
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := fields[i].(string)
		value, _ := fields[i+1].(string)
		switch name {
		case "e":
			e.Event = value
		case "a":
			e.Args = []byte(value)
		case "x":
			// Written by the publish script from a checked list; one
			// that does not read leaves no connection out.
			if json.Unmarshal([]byte(value), &e.Except) != nil {
				e.Except = nil // not the strings that read before the error
			}
		}
	}
	if !proto.ValidEventName(e.Event) {
		return Entry{}, fmt.Errorf("read script: entry %s has no valid event", id)
	}
	e.Undeliverable = proto.Reserved(e.Event) || (len(e.Args) > 0 && !proto.ValidArgs(e.Args))
	return e, nil
}

func uintOf(v any) (uint64, bool) {
	switch x := v.(type) {
	case string:
		n, err := strconv.ParseUint(x, 10, 64)
		return n, err == nil
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// NewEpoch returns a random epoch (or prefix of one): 64 bits in base 36,
// so an epoch never repeats one that was lost.
func NewEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails, per crypto/rand
	return strconv.FormatUint(binary.LittleEndian.Uint64(b[:]), 36)
}

// isNoScript reports whether err is Redis's answer to a script it does not
// have.
func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// Tops returns the top of the stream of each meta key, in order, read in
// pipelined batches; a stream without meta gets the zero Pos. It only
// reads.
func Tops(ctx context.Context, rdb redis.Cmdable, metas []string) ([]proto.Pos, error) {
	return tops(ctx, rdb, metas, nil)
}

// CurrentTops is Tops as the scripts see the streams: a meta written on
// another run of Redis than the one its partition's run key names (a
// restart, or a failover, that kept it: the store may have lost the
// events written after it) counts as none, the zero Pos, for the next
// script to touch its stream starts a new epoch. parts[i] is the
// partition of the stream of metas[i] (Stream.Partition). A run key not
// set yet checks nothing; on a Redis Cluster a run key can lag a failover
// until a connection or a script sets it (the scripts also check the
// server's own run). It only reads.
func CurrentTops(ctx context.Context, rdb redis.Cmdable, metas []string, parts []int) ([]proto.Pos, error) {
	cluster := IsCluster(rdb)
	runs := make([]string, len(metas))
	for i, p := range parts {
		runs[i] = runKey(cluster, p)
	}
	return tops(ctx, rdb, metas, runs)
}

// tops reads the tops of metas; with runs, a meta whose run is not the
// one in run key runs[i] counts as none.
func tops(ctx context.Context, rdb redis.Cmdable, metas, runs []string) ([]proto.Pos, error) {
	out := make([]proto.Pos, len(metas))
	for start := 0; start < len(metas); start += sweepBatch {
		end := min(start+sweepBatch, len(metas))
		pipe := rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, end-start)
		for i, k := range metas[start:end] {
			cmds[i] = pipe.HMGet(ctx, k, "e", "s", "t", "r")
		}
		runCmds := map[string]*redis.StringCmd{} // by run key, each read once a batch
		if runs != nil {
			for _, k := range runs[start:end] {
				if runCmds[k] == nil {
					runCmds[k] = pipe.Get(ctx, k)
				}
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, cmd := range cmds {
			v := cmd.Val()
			if len(v) != 4 {
				continue
			}
			epoch, _ := v[0].(string)
			off, ok1 := uintOf(v[1])
			ms, ok2 := uintOf(v[2])
			if !ok1 || !ok2 || !proto.ValidEpoch(epoch) {
				continue
			}
			if runs != nil {
				wrote, _ := v[3].(string)
				if run := runCmds[runs[start+i]].Val(); run != "" && wrote != run {
					continue // written on another run: the store may have lost what followed
				}
			}
			out[start+i] = proto.Pos{Epoch: epoch, MS: ms, Off: off}
		}
	}
	return out, nil
}

// sweepBatch is how many metas one pipeline of Tops reads.
const sweepBatch = 512
