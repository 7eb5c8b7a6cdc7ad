package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// recorder is a Dispatcher that records, on a real Redis, and a
// subscriber. Its client does not record the run on connect (OnConnect,
// tested in package streams), so a test can pretend another run of Redis
// by setting proto.RunKey(proto.BroadcastPartition).
type recorder struct {
	d   *dispatch.Dispatcher
	rdb *redis.Client // for looking at the streams
	ps  *redis.PubSub
	srv *testkit.Redis
}

func newRecorder(t *testing.T, window time.Duration) *recorder {
	t.Helper()
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return &recorder{
		d:   dispatch.New(rdb, dispatch.Options{Window: window}),
		rdb: rdb,
		ps:  subscribe(t, newClient(t, srv.Addr())),
		srv: srv,
	}
}

// next returns the next published dispatch, decoded as a gateway would.
func (r *recorder) next(t *testing.T) proto.Dispatch {
	t.Helper()
	d, err := proto.DecodeDispatch([]byte(receive(t, r.ps)))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// entries returns the stream's entries as "id event args".
func (r *recorder) entries(t *testing.T, key string) []string {
	t.Helper()
	xs, err := r.rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range xs {
		out = append(out, fmt.Sprintf("%s %v %v", x.ID, x.Values["e"], x.Values["a"]))
	}
	return out
}

func (r *recorder) meta(t *testing.T, key string) map[string]string {
	t.Helper()
	m, err := r.rdb.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustPos(t *testing.T, s string) proto.Pos {
	t.Helper()
	p, ok := proto.ParsePos(s)
	if !ok {
		t.Fatalf("position %q does not parse", s)
	}
	return p
}

// TestRecordsUserDispatches: every dispatch to users is appended to each
// user's stream with contiguous offsets, its publication carries the
// positions, and the stream holds what a replay needs.
func TestRecordsUserDispatches(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	for i := range 3 {
		if err := r.d.ToUsers(ctx, []string{"bob", "carol", "bob"}, "message", map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	var bob, carol []proto.Pos
	for i := range 3 {
		d := r.next(t)
		if !slices.Equal(d.Users, []string{"bob", "carol"}) {
			t.Fatalf("users %v: a user named twice must be recorded and delivered once", d.Users)
		}
		if len(d.Pos) != 2 {
			t.Fatalf("dispatch %d positions %v, want bob's and carol's", i, d.Pos)
		}
		bob = append(bob, mustPos(t, d.Pos["bob"]))
		carol = append(carol, mustPos(t, d.Pos["carol"]))
	}
	for _, ps := range [][]proto.Pos{bob, carol} {
		for i, p := range ps {
			if p.Off != uint64(i+1) || p.Epoch != ps[0].Epoch || (i > 0 && p.MS < ps[i-1].MS) {
				t.Fatalf("positions %+v: want offsets 1, 2, 3 in one epoch, times not going back", ps)
			}
		}
	}
	if bob[0].Epoch == carol[0].Epoch {
		t.Error("two new streams got the same epoch")
	}
	got := r.entries(t, proto.UserStreamKey("bob"))
	want := []string{}
	for i, p := range bob {
		want = append(want, fmt.Sprintf("%s message {\"n\":%d}", p.ID(), i))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("bob's stream %q, want %q", got, want)
	}
	m := r.meta(t, proto.UserMetaKey("bob"))
	run, _ := r.rdb.Get(ctx, proto.RunKey(proto.BroadcastPartition)).Result()
	if m["e"] != bob[0].Epoch || m["s"] != "3" || m["t"] != strconv.FormatUint(bob[2].MS, 10) || m["r"] != run || run == "" {
		t.Fatalf("bob's meta %v (run %q)", m, run)
	}
	sttl := r.rdb.PTTL(ctx, proto.UserStreamKey("bob")).Val()
	mttl := r.rdb.TTL(ctx, proto.UserMetaKey("bob")).Val()
	if sttl <= time.Minute || sttl > time.Minute+10*time.Second || mttl <= 23*time.Hour || mttl > 24*time.Hour {
		t.Errorf("TTLs: stream %s (want window + 10 s), meta %s (want 24 h)", sttl, mttl)
	}
}

// TestRecordsBatchesAndBroadcasts: a batch is recorded in order, a user
// named by two of its dispatches gets two offsets; a broadcast goes to the
// broadcast stream with "bpos"; a dispatch to connections stays transient.
func TestRecordsBatchesAndBroadcasts(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	err := event.Atomically(ctx, r.d, func(d event.Dispatcher) error {
		if err := d.ToUsers(ctx, []string{"alice"}, "message", 1); err != nil {
			return err
		}
		return d.ToUsers(ctx, []string{"alice"}, "message_sent", 2)
	})
	if err != nil {
		t.Fatal(err)
	}
	m, s := r.next(t), r.next(t)
	pm, ps := mustPos(t, m.Pos["alice"]), mustPos(t, s.Pos["alice"])
	if m.Event != "message" || s.Event != "message_sent" || pm.Off != 1 || ps.Off != 2 || ps.Epoch != pm.Epoch {
		t.Fatalf("batch published %s %+v, %s %+v", m.Event, pm, s.Event, ps)
	}

	if err := r.d.Broadcast(ctx, "news", "hi"); err != nil {
		t.Fatal(err)
	}
	b := r.next(t)
	if !b.Broadcast || b.Pos != nil || mustPos(t, b.BPos).Off != 1 {
		t.Fatalf("broadcast published %+v", b)
	}
	if got := r.entries(t, proto.BroadcastStreamKey); len(got) != 1 || got[0] != mustPos(t, b.BPos).ID()+` news "hi"` {
		t.Fatalf("broadcast stream %q", got)
	}

	if err := r.d.ToConns(ctx, []string{"c1"}, "ping", nil); err != nil {
		t.Fatal(err)
	}
	c := r.next(t)
	if c.Pos != nil || c.BPos != "" || !slices.Equal(c.Conns, []string{"c1"}) {
		t.Fatalf("a dispatch to connections carries positions: %+v", c)
	}
}

// TestNewEpochWhenTheStoreLostData: a stream whose meta is gone, or was
// written on another run of Redis (a restart or failover that may have lost
// its tail), starts over in a new epoch, and its old entries go.
func TestNewEpochWhenTheStoreLostData(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	send := func() proto.Pos {
		t.Helper()
		if err := r.d.ToUsers(ctx, []string{"bob"}, "message", nil); err != nil {
			t.Fatal(err)
		}
		return mustPos(t, r.next(t).Pos["bob"])
	}
	p1 := send()
	send()

	r.rdb.Del(ctx, proto.UserMetaKey("bob"))
	p3 := send()
	if p3.Epoch == p1.Epoch || p3.Off != 1 {
		t.Fatalf("after the meta was lost: %+v, want offset 1 of a new epoch", p3)
	}
	if got := r.entries(t, proto.UserStreamKey("bob")); len(got) != 1 {
		t.Fatalf("the old epoch's entries are still there: %q", got)
	}

	// Written on another run: as after an AOF reload on a restarted
	// server, whose run the scripts read from the server itself.
	r.rdb.HSet(ctx, proto.UserMetaKey("bob"), "r", "another-run")
	p4 := send()
	if p4.Epoch == p3.Epoch || p4.Off != 1 {
		t.Fatalf("after a new run: %+v, want offset 1 of a new epoch", p4)
	}
	if p5 := send(); p5.Epoch != p4.Epoch || p5.Off != 2 {
		t.Fatalf("the next event %+v, want offset 2 of %s", p5, p4.Epoch)
	}

	// No run recorded (the key lost alone): the server's own is marked
	// again, the one bob's stream was written on, which goes on.
	r.rdb.Del(ctx, proto.RunKey(proto.BroadcastPartition))
	p6 := send()
	if p6.Epoch != p4.Epoch || p6.Off != 3 || r.rdb.Get(ctx, proto.RunKey(proto.BroadcastPartition)).Val() == "" {
		t.Fatalf("with no run recorded: %+v, want offset 3 of %s and the run marked again", p6, p4.Epoch)
	}
}

// TestClockGoingBack: entry times never go back, even when Redis's clock
// does, so IDs keep increasing with the offsets.
func TestClockGoingBack(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	if err := r.d.ToUsers(ctx, []string{"bob"}, "message", nil); err != nil {
		t.Fatal(err)
	}
	p1 := mustPos(t, r.next(t).Pos["bob"])
	future := p1.MS + uint64(time.Hour/time.Millisecond)
	r.rdb.HSet(ctx, proto.UserMetaKey("bob"), "t", future) // as if the clock had been an hour ahead
	if err := r.d.ToUsers(ctx, []string{"bob"}, "message", nil); err != nil {
		t.Fatal(err)
	}
	p2 := mustPos(t, r.next(t).Pos["bob"])
	if p2.MS != future || p2.Off != 2 || p2.Epoch != p1.Epoch {
		t.Fatalf("after the clock went back: %+v, want time %d, offset 2", p2, future)
	}
}

// TestTrimsByTime: entries older than the window are trimmed as new ones
// come (by whole stream nodes, so some older ones may stay a while).
func TestTrimsByTime(t *testing.T) {
	const window = time.Second // the least Options.Check takes
	r := newRecorder(t, window)
	ctx := context.Background()
	for range 250 {
		if err := r.d.ToUsers(ctx, []string{"bob"}, "e", nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(window + 50*time.Millisecond) // entries must age: time is what is tested
	if err := r.d.ToUsers(ctx, []string{"bob"}, "e", nil); err != nil {
		t.Fatal(err)
	}
	n := r.rdb.XLen(ctx, proto.UserStreamKey("bob")).Val()
	if n >= 251 || n < 1 {
		t.Fatalf("%d entries after the window passed, want old ones trimmed", n)
	}
	if m := r.meta(t, proto.UserMetaKey("bob")); m["s"] != "251" {
		t.Fatalf("top offset %s, want 251: trimming must not touch offsets", m["s"])
	}
}

// TestRecordingOff: with no window, dispatches are published as in v1,
// without positions, and nothing is stored.
func TestRecordingOff(t *testing.T) {
	r := newRecorder(t, dispatch.NoHistory)
	ctx := context.Background()
	if err := r.d.ToUsers(ctx, []string{"bob"}, "message", json.RawMessage(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if got, want := receive(t, r.ps), `{"event":"message","args":{"a":1},"users":["bob"],"conns":[],"broadcast":false}`; got != want {
		t.Fatalf("published %s, want %s", got, want)
	}
	if n := r.rdb.Exists(ctx, proto.UserStreamKey("bob"), proto.UserMetaKey("bob")).Val(); n != 0 {
		t.Fatalf("%d recovery keys written with recording off", n)
	}
}

// TestZeroWindowRecords: a Go backend that leaves Options.Window 0 records
// with DefaultWindow, as the services do by default, rather than turning
// recovery off without a word.
func TestZeroWindowRecords(t *testing.T) {
	r := newRecorder(t, 0)
	ctx := context.Background()
	if err := r.d.ToUsers(ctx, []string{"bob"}, "message", nil); err != nil {
		t.Fatal(err)
	}
	if d := r.next(t); d.Pos["bob"] == "" {
		t.Fatalf("published %+v without bob's position: not recorded", d)
	}
	sttl := r.rdb.PTTL(ctx, proto.UserStreamKey("bob")).Val()
	if sttl <= dispatch.DefaultWindow || sttl > dispatch.DefaultWindow+10*time.Second {
		t.Fatalf("bob's stream TTL %s, want DefaultWindow (%s) + 10 s", sttl, dispatch.DefaultWindow)
	}
}

// TestScriptLostIsReloaded: after Redis drops its scripts, the next
// dispatch still goes out once.
func TestScriptLostIsReloaded(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	if err := r.d.ToUsers(ctx, []string{"bob"}, "one", nil); err != nil {
		t.Fatal(err)
	}
	r.next(t)
	if err := r.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.d.ToUsers(ctx, []string{"bob"}, "two", nil); err != nil {
		t.Fatalf("dispatch after SCRIPT FLUSH: %v", err)
	}
	if d := r.next(t); d.Event != "two" || mustPos(t, d.Pos["bob"]).Off != 2 {
		t.Fatalf("published %+v", d)
	}
	if n := r.rdb.XLen(ctx, proto.UserStreamKey("bob")).Val(); n != 2 {
		t.Fatalf("bob's stream has %d entries, want 2: the refused call ran twice or not at all", n)
	}
}

// TestReservedEventsRefused: a dispatch may not name the gateway's own
// events.
func TestReservedEventsRefused(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx := context.Background()
	for _, name := range []string{"connected", "ack", "error", "resync"} {
		if err := r.d.ToUsers(ctx, []string{"bob"}, name, nil); err == nil {
			t.Errorf("ToUsers(%q) was accepted", name)
		}
		if err := r.d.Broadcast(ctx, name, nil); err == nil {
			t.Errorf("Broadcast(%q) was accepted", name)
		}
	}
}
