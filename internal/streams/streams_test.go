package streams_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// client returns a client of a new Redis. It does not record the run on
// connect (OnConnect, tested on its own), so a test can pretend another
// run by setting proto.RunKey(proto.BroadcastPartition).
func client(t testing.TB) *redis.Client {
	t.Helper()
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func publish(t *testing.T, rdb *redis.Client, users ...string) []proto.Pos {
	t.Helper()
	pos, _, err := streams.Publish(context.Background(), rdb, time.Minute,
		&proto.Dispatch{Event: "message", Args: json.RawMessage(`{"n":1}`), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]proto.Pos, len(pos))
	for i, p := range pos {
		var ok bool
		if out[i], ok = proto.ParsePos(p); !ok {
			t.Fatalf("position %q", p)
		}
	}
	return out
}

func read(t *testing.T, rdb *redis.Client, q streams.Query) streams.Result {
	t.Helper()
	res, err := streams.Read(context.Background(), rdb, []streams.Query{q})
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// TestReadCreatesTheStream: reading a stream that has no meta starts one,
// at offset 0 of a new epoch, and the writer continues it.
func TestReadCreatesTheStream(t *testing.T) {
	rdb := client(t)
	res := read(t, rdb, streams.Query{Stream: streams.UserStream, User: "bob", Max: 10})
	if res.Top.Off != 0 || !proto.ValidEpoch(res.Top.Epoch) || res.Top.MS == 0 || len(res.Entries) != 0 {
		t.Fatalf("a new stream: %+v", res)
	}
	p := publish(t, rdb, "bob")[0]
	if p.Epoch != res.Top.Epoch || p.Off != 1 || p.MS < res.Top.MS {
		t.Fatalf("the first event %+v does not continue the stream read %+v", p, res.Top)
	}
	if again := read(t, rdb, streams.Query{Stream: streams.UserStream, User: "bob", Max: 10}); again.Top != p {
		t.Fatalf("top %+v, want %+v", again.Top, p)
	}
}

// TestReadEntries: the entries after a position of the stream's epoch,
// when it is 1 to Max behind; none otherwise.
func TestReadEntries(t *testing.T) {
	rdb := client(t)
	var ps []proto.Pos
	for range 5 {
		ps = append(ps, publish(t, rdb, "bob")[0])
	}
	q := streams.Query{Stream: streams.UserStream, User: "bob", From: ps[1], After: true, Max: 10}
	res := read(t, rdb, q)
	if res.Top != ps[4] || len(res.Entries) != 3 {
		t.Fatalf("read after offset 2: top %+v, %d entries", res.Top, len(res.Entries))
	}
	for i, e := range res.Entries {
		if e.Pos != ps[2+i] || e.Event != "message" || string(e.Args) != `{"n":1}` {
			t.Fatalf("entry %d = %+v, want %+v", i, e, ps[2+i])
		}
	}
	for name, q := range map[string]streams.Query{
		"at the top":     {Stream: streams.UserStream, User: "bob", From: ps[4], After: true, Max: 10},
		"too far behind": {Stream: streams.UserStream, User: "bob", From: ps[0], After: true, Max: 3},
		"another epoch":  {Stream: streams.UserStream, User: "bob", From: proto.Pos{Epoch: "other", MS: ps[0].MS, Off: 1}, After: true, Max: 10},
		"not asked":      {Stream: streams.UserStream, User: "bob", From: ps[0], Max: 10},
	} {
		if res := read(t, rdb, q); len(res.Entries) != 0 || res.Top != ps[4] {
			t.Errorf("%s: %d entries, top %+v", name, len(res.Entries), res.Top)
		}
	}
}

// TestReadInParts: Count and Bytes cut the entries read short, from the
// first after the position: by number, and by size (each entry's event
// and args plus Overhead), also past the script's steps of 64 entries;
// an entry larger than Bytes alone is still returned; Max alone decides
// whether entries are read.
func TestReadInParts(t *testing.T) {
	rdb := client(t)
	args := json.RawMessage(`{"text":"` + strings.Repeat("x", 90) + `"}`) // 101 bytes, and "message" 7
	var ps []proto.Pos
	for range 150 {
		p, _, err := streams.Publish(context.Background(), rdb, time.Minute,
			&proto.Dispatch{Event: "message", Args: args, Users: []string{"bob"}})
		if err != nil {
			t.Fatal(err)
		}
		pos, _ := proto.ParsePos(p[0])
		ps = append(ps, pos)
	}
	base := streams.Query{Stream: streams.UserStream, User: "bob", From: ps[9], After: true, Max: 1000}
	for _, tt := range []struct {
		name                   string
		count, bytes, overhead int
		want                   int
	}{
		{"no bound", 0, 0, 0, 140},
		{"count", 5, 0, 0, 5},
		{"bytes", 0, 10 * 108, 0, 10},
		{"bytes with overhead", 0, 10 * 120, 12, 10},
		{"bytes just short", 0, 10*108 - 1, 0, 9},
		{"bytes past a step", 0, 100 * 108, 0, 100},
		{"count before bytes", 7, 100 * 108, 0, 7},
		{"one larger than the budget", 0, 1, 0, 1},
	} {
		q := base
		q.Count, q.Bytes, q.Overhead = tt.count, tt.bytes, tt.overhead
		res := read(t, rdb, q)
		if len(res.Entries) != tt.want || res.Top != ps[149] {
			t.Errorf("%s: %d entries, top %+v; want %d", tt.name, len(res.Entries), res.Top, tt.want)
			continue
		}
		for i, e := range res.Entries {
			if e.Pos != ps[10+i] {
				t.Errorf("%s: entry %d at %+v, want %+v", tt.name, i, e.Pos, ps[10+i])
				break
			}
		}
	}
	q := base
	q.Max, q.Count = 100, 5 // 140 behind
	if res := read(t, rdb, q); len(res.Entries) != 0 {
		t.Errorf("more than Max behind, with a Count: %d entries", len(res.Entries))
	}
}

// TestReadNewEpochOnAnotherRun: a stream written on another run of Redis
// is read as a new, empty one; a read does not write a stream that is in
// order.
func TestReadNewEpochOnAnotherRun(t *testing.T) {
	rdb := client(t)
	p := publish(t, rdb, "bob")[0]
	// The stream written on another run of Redis than the one that runs
	// now (the run key, which OnConnect and the scripts' own check of the
	// server keep current).
	rdb.HSet(context.Background(), proto.UserMetaKey("bob"), "r", "another-run")
	res := read(t, rdb, streams.Query{Stream: streams.UserStream, User: "bob", From: p, After: true, Max: 10})
	if res.Top.Epoch == p.Epoch || res.Top.Off != 0 {
		t.Fatalf("after another run: top %+v, want offset 0 of a new epoch", res.Top)
	}
	if n := rdb.XLen(context.Background(), proto.UserStreamKey("bob")).Val(); n != 0 {
		t.Fatalf("the old epoch's %d entries are still there", n)
	}
	if q := publish(t, rdb, "bob")[0]; q.Epoch != res.Top.Epoch || q.Off != 1 {
		t.Fatalf("the writer continued with %+v, want offset 1 of %s", q, res.Top.Epoch)
	}
}

// TestReadBroadcastAndTops: the broadcast stream reads like a user's; Tops
// reads metas, zero for a stream that has none.
func TestReadBroadcastAndTops(t *testing.T) {
	rdb := client(t)
	ctx := context.Background()
	pos, _, err := streams.Publish(ctx, rdb, time.Minute, &proto.Dispatch{Event: "news", Broadcast: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := proto.ParsePos(pos[0])
	res := read(t, rdb, streams.Query{Stream: streams.BroadcastStream, From: proto.Pos{Epoch: b.Epoch}, After: true, Max: 10})
	if res.Top != b || len(res.Entries) != 1 || res.Entries[0].Event != "news" || string(res.Entries[0].Args) != "null" {
		t.Fatalf("broadcast read: %+v", res)
	}
	u := publish(t, rdb, "bob")[0]
	tops, err := streams.Tops(ctx, rdb, []string{proto.BroadcastMetaKey, proto.UserMetaKey("bob"), proto.UserMetaKey("nobody")})
	if err != nil {
		t.Fatal(err)
	}
	if tops[0] != b || tops[1] != u || tops[2] != (proto.Pos{}) {
		t.Fatalf("Tops = %+v, want %+v %+v and zero", tops, b, u)
	}
}

// TestReadScriptLost: after Redis drops its scripts, a read reloads it.
func TestReadScriptLost(t *testing.T) {
	rdb := client(t)
	read(t, rdb, streams.Query{Stream: streams.UserStream, User: "bob", Max: 1})
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	read(t, rdb, streams.Query{Stream: streams.UserStream, User: "bob", Max: 1})
}

// TestPublishCountsUnheard: the script reports how many of its publishes no
// subscriber received, and a subscriber on the channel makes them heard.
func TestPublishCountsUnheard(t *testing.T) {
	rdb := client(t)
	ctx := context.Background()
	msg := func(user string) *proto.Dispatch {
		return &proto.Dispatch{Event: "message", Args: json.RawMessage(`{}`), Users: []string{user}}
	}
	pos, unheard, err := streams.Publish(ctx, rdb, time.Minute, msg("bob"), msg("carol"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pos) != 2 || unheard != 2 {
		t.Fatalf("with no subscriber: %d positions, %d unheard; want 2 and 2", len(pos), unheard)
	}
	sub := rdb.Subscribe(ctx, proto.Channel)
	defer func() { _ = sub.Close() }()
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	pos, unheard, err = streams.Publish(ctx, rdb, time.Minute, msg("bob"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pos) != 1 || unheard != 0 {
		t.Fatalf("with a subscriber: %d positions, %d unheard; want 1 and 0", len(pos), unheard)
	}
}

func TestSplitResult(t *testing.T) {
	if pos, n, err := streams.SplitResult([]string{"a.1-1", "3"}); err != nil || n != 3 || len(pos) != 1 || pos[0] != "a.1-1" {
		t.Fatalf("SplitResult = %q %d %v", pos, n, err)
	}
	for _, bad := range [][]string{nil, {"a.1-1"}} {
		if _, _, err := streams.SplitResult(bad); err == nil {
			t.Errorf("SplitResult(%q): no error", bad)
		}
	}
}

// TestStreamKeepsTTLAcrossNewEpoch: when a read starts a new epoch (the
// store was written on another run of Redis) and deletes the stream, the
// next event makes a stream that still expires, though the TTLs were set
// moments before.
func TestStreamKeepsTTLAcrossNewEpoch(t *testing.T) {
	rdb := client(t)
	ctx := context.Background()
	publish(t, rdb, "bob")
	if err := rdb.Set(ctx, proto.RunKey(proto.BroadcastPartition), "another-run", 0).Err(); err != nil {
		t.Fatal(err)
	}
	read(t, rdb, streams.Query{Stream: streams.UserStream, User: "bob", Max: 1})
	publish(t, rdb, "bob")
	if ttl := rdb.PTTL(ctx, proto.UserStreamKey("bob")).Val(); ttl <= 0 {
		t.Fatalf("bob's stream after a new epoch: PTTL %s, want it to expire", ttl)
	}
}

// TestCurrentTopsByRun: CurrentTops counts a stream written on another
// run of Redis as none, as the scripts would (Tops still reads it), and
// checks nothing while no run is recorded.
func TestCurrentTopsByRun(t *testing.T) {
	rdb := client(t)
	ctx := context.Background()
	u := publish(t, rdb, "bob")[0]
	metas, parts := []string{proto.UserMetaKey("bob")}, []int{proto.PartitionOf("bob")}
	top := func() proto.Pos {
		t.Helper()
		tops, err := streams.CurrentTops(ctx, rdb, metas, parts)
		if err != nil {
			t.Fatal(err)
		}
		return tops[0]
	}
	if got := top(); got != u {
		t.Fatalf("on the run that wrote it: %+v, want %+v", got, u)
	}
	runKey := proto.RunKey(proto.BroadcastPartition)
	if err := rdb.Set(ctx, runKey, "anotherrun", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := top(); got != (proto.Pos{}) {
		t.Fatalf("on another run: %+v, want none", got)
	}
	if tops, _ := streams.Tops(ctx, rdb, metas); tops[0] != u {
		t.Fatalf("Tops on another run: %+v, want %+v", tops[0], u)
	}
	if err := rdb.Del(ctx, runKey).Err(); err != nil {
		t.Fatal(err)
	}
	if got := top(); got != u {
		t.Fatalf("with no run recorded: %+v, want %+v", got, u)
	}
}
