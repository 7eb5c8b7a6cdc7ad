package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// subscribe subscribes to proto.Channel and waits for the confirmation, so
// no later publish is missed.
func subscribe(t *testing.T, rdb *redis.Client) *redis.PubSub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps := rdb.Subscribe(ctx, proto.Channel)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return ps
}

func receive(t *testing.T, ps *redis.PubSub) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if msg.Channel != proto.Channel {
		t.Fatalf("channel %q, want %q", msg.Channel, proto.Channel)
	}
	return msg.Payload
}

func newClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// TestOptionsCheck: Check takes the windows HISTORY_WINDOW takes (1s to
// a day), 0 (the default) and any negative one (NoHistory), and refuses
// any other positive one, or a MetaTTL shorter than the window, with an
// error naming the option; New panics with that error. A backend's window
// of milliseconds would let events expire before any client is back, one
// of days outlive the streams' epochs.
func TestOptionsCheck(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled: New makes no call
	t.Cleanup(func() { _ = rdb.Close() })
	for _, tt := range []struct {
		opts dispatch.Options
		bad  string // what the error names; "" = valid
	}{
		{dispatch.Options{}, ""},
		{dispatch.Options{Window: dispatch.NoHistory}, ""},
		{dispatch.Options{Window: -time.Second}, ""},
		{dispatch.Options{Window: time.Second}, ""},
		{dispatch.Options{Window: proto.MaxHistoryWindow}, ""},
		{dispatch.Options{Window: time.Minute, MetaTTL: time.Minute}, ""},
		{dispatch.Options{Window: dispatch.NoHistory, MetaTTL: time.Second}, ""},
		{dispatch.Options{Window: time.Nanosecond}, "Options.Window"},
		{dispatch.Options{Window: 999 * time.Millisecond}, "Options.Window"},
		{dispatch.Options{Window: proto.MaxHistoryWindow + time.Nanosecond}, "Options.Window"},
		{dispatch.Options{Window: 7 * 24 * time.Hour}, "Options.Window"},
		{dispatch.Options{Window: time.Hour, MetaTTL: time.Minute}, "Options.MetaTTL"},
		{dispatch.Options{MetaTTL: time.Minute}, "Options.MetaTTL"}, // shorter than DefaultWindow
	} {
		err := tt.opts.Check()
		if tt.bad == "" {
			if err != nil {
				t.Errorf("%+v: Check = %v, want nil", tt.opts, err)
			}
			if dispatch.New(rdb, tt.opts) == nil {
				t.Errorf("%+v: New = nil", tt.opts)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.bad) {
			t.Errorf("%+v: Check = %v, want an error naming %s", tt.opts, err, tt.bad)
			continue
		}
		func() {
			defer func() {
				if r := recover(); r != err && fmt.Sprint(r) != err.Error() {
					t.Errorf("%+v: New panicked with %v, want %v", tt.opts, r, err)
				}
			}()
			dispatch.New(rdb, tt.opts)
		}()
	}
}

func TestPublish(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	ps := subscribe(t, newClient(t, srv.Addr()))
	d := dispatch.New(rdb, dispatch.Options{Window: dispatch.NoHistory})
	ctx := context.Background()

	type msg struct {
		Text string `json:"text"`
	}
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"to users", func() error { return d.ToUsers(ctx, []string{"bob", "b\"o"}, "message", msg{Text: "hi <3"}) },
			`{"event":"message","args":{"text":"hi \u003c3"},"users":["bob","b\"o"],"conns":[],"broadcast":false}`},
		{"to conns, raw args", func() error { return d.ToConns(ctx, []string{"c1"}, "ping", json.RawMessage(`[1,2]`)) },
			`{"event":"ping","args":[1,2],"users":[],"conns":["c1"],"broadcast":false}`},
		{"broadcast, nil args", func() error { return d.Broadcast(ctx, "news", nil) },
			`{"event":"news","args":null,"users":[],"conns":[],"broadcast":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			got := receive(t, ps)
			if got != tt.want {
				t.Fatalf("published\n%s\nwant\n%s", got, tt.want)
			}
			if _, err := proto.DecodeDispatch([]byte(got)); err != nil {
				t.Fatalf("the gateway would reject it: %v", err)
			}
		})
	}
}

func TestNothingToDispatch(t *testing.T) {
	srv := testkit.StartRedis(t)
	ps := subscribe(t, newClient(t, srv.Addr()))
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: dispatch.NoHistory})
	ctx := context.Background()

	if err := d.ToUsers(ctx, nil, "message", nil); err != nil {
		t.Fatal(err)
	}
	if err := d.ToConns(ctx, []string{}, "message", nil); err != nil {
		t.Fatal(err)
	}
	if err := d.ToUsers(ctx, nil, "bad name", nil); err == nil {
		t.Fatal("invalid event name accepted for an empty list")
	}
	// The next message on the channel is the marker: nothing came before it.
	if err := d.Broadcast(ctx, "marker", nil); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, ps); got != `{"event":"marker","args":null,"users":[],"conns":[],"broadcast":true}` {
		t.Fatalf("first message %s, want the marker", got)
	}
}

func TestProgrammingErrors(t *testing.T) {
	srv := testkit.StartRedis(t)
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: dispatch.NoHistory})
	ctx := context.Background()
	tests := []struct {
		name string
		err  error
	}{
		{"invalid event", d.ToUsers(ctx, []string{"a"}, "no spaces", nil)},
		{"unmarshallable args", d.Broadcast(ctx, "e", func() {})},
		{"invalid raw args", d.ToConns(ctx, []string{"c"}, "e", json.RawMessage(`{"a":`))},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: accepted", tt.name)
			continue
		}
		if w := event.WireError(tt.err); w.Code != proto.CodeHandlerError {
			t.Errorf("%s: code %s, want handler_error", tt.name, w.Code)
		}
	}
}

func TestRedisDown(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	d := dispatch.New(rdb, dispatch.Options{Window: dispatch.NoHistory})
	ctx := context.Background()
	if err := d.Broadcast(ctx, "e", nil); err != nil {
		t.Fatalf("before stop: %v", err)
	}

	srv.Stop()
	err := d.ToUsers(ctx, []string{"bob"}, "message", map[string]string{"text": "hi"})
	var e *event.Error
	if !errors.As(err, &e) || e.Code != proto.CodeUnavailable || e.Message != "dispatch unavailable" {
		t.Fatalf("got %v, want unavailable \"dispatch unavailable\"", err)
	}
	if e.Err == nil {
		t.Fatal("the cause is not wrapped")
	}
	if w := event.WireError(err); w.Code != proto.CodeUnavailable || w.Message != "dispatch unavailable" {
		t.Fatalf("wire error %+v", w)
	}
}

func TestContextEnded(t *testing.T) {
	srv := testkit.StartRedis(t)
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: dispatch.NoHistory})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err := d.Broadcast(ctx, "e", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
	// Never written: not sent, and a retry is safe.
	if !errors.Is(err, dispatch.ErrNotSent) {
		t.Fatalf("got %v, want ErrNotSent", err)
	}
	if w := event.WireError(err); w.Code != proto.CodeUnavailable {
		t.Fatalf("code %s, want unavailable", w.Code)
	}
}

// TestBatch: the dispatches of a batch are published together and in order;
// a batch whose fn fails publishes none of them.
func TestBatch(t *testing.T) {
	srv := testkit.StartRedis(t)
	ps := subscribe(t, newClient(t, srv.Addr()))
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: dispatch.NoHistory})
	ctx := context.Background()

	err := d.Batch(ctx, func(b event.Dispatcher) error {
		if err := b.ToUsers(ctx, []string{"bob"}, "message", map[string]string{"n": "1"}); err != nil {
			return err
		}
		return b.ToUsers(ctx, []string{"alice"}, "message_sent", map[string]string{"n": "1"})
	})
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	for _, want := range []string{
		`{"event":"message","args":{"n":"1"},"users":["bob"],"conns":[],"broadcast":false}`,
		`{"event":"message_sent","args":{"n":"1"},"users":["alice"],"conns":[],"broadcast":false}`,
	} {
		if got := receive(t, ps); got != want {
			t.Fatalf("published %s, want %s", got, want)
		}
	}

	failed := errors.New("handler gave up")
	err = d.Batch(ctx, func(b event.Dispatcher) error {
		if err := b.ToUsers(ctx, []string{"bob"}, "message", "dropped"); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Batch = %v, want fn's error", err)
	}
	// The channel is ordered: the next message is the marker, not "dropped".
	if err := d.Broadcast(ctx, "marker", nil); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, ps); got != `{"event":"marker","args":null,"users":[],"conns":[],"broadcast":true}` {
		t.Fatalf("after a failed batch got %s, want the marker", got)
	}
}

// TestBatchRedisDown: a batch that cannot reach Redis is unavailable.
func TestBatchRedisDown(t *testing.T) {
	srv := testkit.StartRedis(t)
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: dispatch.NoHistory})
	srv.Stop()
	ctx := context.Background()
	err := d.Batch(ctx, func(b event.Dispatcher) error {
		_ = b.ToUsers(ctx, []string{"bob"}, "message", nil)
		return b.ToUsers(ctx, []string{"alice"}, "message_sent", nil)
	})
	var e *event.Error
	if !errors.As(err, &e) || e.Code != proto.CodeUnavailable {
		t.Fatalf("Batch with Redis down = %v, want unavailable", err)
	}
}

// TestRedisOutageLoggedOnce: while Redis is down every dispatch fails with
// unavailable, but the outage is logged once, and so is the recovery.
func TestRedisOutageLoggedOnce(t *testing.T) {
	srv := testkit.StartRedis(t)
	core, logs := observer.New(zap.InfoLevel)
	// As handlers-svc configures it: no command retries (PUBLISH is not
	// safe to repeat).
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	d := dispatch.New(rdb, dispatch.Options{Window: dispatch.NoHistory}).LogOutages(zap.New(core))
	ctx := context.Background()
	if err := d.Broadcast(ctx, "e", nil); err != nil {
		t.Fatalf("before stop: %v", err)
	}
	port := srv.Port
	srv.Stop()
	for range 5 {
		if w := event.WireError(d.Broadcast(ctx, "e", nil)); w.Code != proto.CodeUnavailable {
			t.Fatalf("while down: code %s, want unavailable", w.Code)
		}
	}
	testkit.StartRedisOn(t, port)
	// go-redis's pool, after as many failed dials as its size, fails at
	// once for up to a second while it probes the server in the background.
	deadline := time.Now().Add(10 * time.Second)
	for d.Broadcast(ctx, "e", nil) != nil {
		if time.Now().After(deadline) {
			t.Fatal("dispatches still fail 10s after Redis is back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range 3 {
		if err := d.Broadcast(ctx, "e", nil); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	}
	if n := logs.FilterMessageSnippet("redis unreachable").Len(); n != 1 {
		t.Errorf("outage logged %d times for 5 failed dispatches, want once", n)
	}
	if n := logs.FilterMessageSnippet("redis reachable again").Len(); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
}

// TestUnheardCountedAndLoggedOnce: dispatches published while no gateway
// worker listens are counted, and logged once, with the event, until one
// is heard again.
func TestUnheardCountedAndLoggedOnce(t *testing.T) {
	srv := testkit.StartRedis(t)
	core, logs := observer.New(zap.InfoLevel)
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: time.Minute}).LogOutages(zap.New(core))
	ctx := context.Background()
	for range 3 {
		if err := d.ToUsers(ctx, []string{"bob", "carol"}, "message", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.Unheard(); n != 3 {
		t.Errorf("Unheard = %d after 3 dispatches with no subscriber, want 3", n)
	}
	subscribe(t, newClient(t, srv.Addr()))
	if err := d.Broadcast(ctx, "news", nil); err != nil {
		t.Fatal(err)
	}
	if n := d.Unheard(); n != 3 {
		t.Errorf("Unheard = %d after a heard dispatch, want still 3", n)
	}
	warned := logs.FilterMessageSnippet("reached no gateway worker")
	if warned.Len() != 1 {
		t.Fatalf("unheard logged %d times for 3 dispatches, want once", warned.Len())
	}
	if ev := warned.All()[0].ContextMap()["event"]; ev != "message" {
		t.Errorf("the log line names event %v, want message", ev)
	}
	if n := logs.FilterMessageSnippet("reach gateway workers again").Len(); n != 1 {
		t.Errorf("heard again logged %d times, want once", n)
	}
}

// TestUnheardLoggedOnceWhileCallsMerge: concurrent dispatches that no
// subscriber hears are merged into shared script calls, whose first call
// counts the whole call's unheard publishes. The others heard nothing
// either, and must not log "again": a Redis restart under load, before the
// gateways had resubscribed, logged the two lines in turn 44 times in 0.6
// seconds (SRE trial), not once per episode.
func TestUnheardLoggedOnceWhileCallsMerge(t *testing.T) {
	srv := testkit.StartRedis(t)
	core, logs := observer.New(zap.InfoLevel)
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: time.Minute}).LogOutages(zap.New(core))
	const senders, each = 32, 20
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make(chan error, senders)
	for i := range senders {
		go func() {
			for j := range each {
				if err := d.ToUsers(ctx, []string{fmt.Sprintf("u%d-%d", i, j)}, "message", nil); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range senders {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := d.Unheard(); n != senders*each {
		t.Errorf("Unheard = %d after %d dispatches with no subscriber, want all", n, senders*each)
	}
	if n := logs.FilterMessageSnippet("reach gateway workers again").Len(); n != 0 {
		t.Errorf("heard again logged %d times while no subscriber listened, want never", n)
	}
	if n := logs.FilterMessageSnippet("reached no gateway worker").Len(); n != 1 {
		t.Errorf("unheard logged %d times in one episode, want once", n)
	}
}

// BenchmarkDispatch measures a sendMessage-shaped dispatch (a Batch of two
// events) and a single one against a real redis-server on this machine, from
// 16 goroutines per CPU as handlers run under load, and, for reference, the
// batch with one MULTI/EXEC round trip per call (go-redis's TxPipelined, as
// the Dispatcher published before it gathered calls). Time per operation
// includes Redis's share of the CPU, which gathering cuts too.
func BenchmarkDispatch(b *testing.B) {
	srv := testkit.StartRedis(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	b.Cleanup(func() { _ = rdb.Close() })
	d := dispatch.New(rdb, dispatch.Options{Window: dispatch.NoHistory})
	msg := map[string]string{"from": "alice", "to": "bob", "text": "hello there"}

	b.Run("batch", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				err := d.Batch(ctx, func(bd event.Dispatcher) error {
					if err := bd.ToUsers(ctx, []string{"bob"}, "message", msg); err != nil {
						return err
					}
					return bd.ToUsers(ctx, []string{"alice"}, "message_sent", msg)
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// Recorded (recovery on), to 1,000 users in turn, with Redis's own CPU
	// time per operation (INFO cpu), the figure merging script calls cuts.
	rec := dispatch.New(rdb, dispatch.Options{Window: 2 * time.Minute})
	var n atomic.Int64
	b.Run("batch-recorded", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		before := redisCPU(b, rdb)
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				i := n.Add(1)
				err := rec.Batch(ctx, func(bd event.Dispatcher) error {
					if err := bd.ToUsers(ctx, []string{"u" + strconv.FormatInt(i%1000, 10)}, "message", msg); err != nil {
						return err
					}
					return bd.ToUsers(ctx, []string{"u" + strconv.FormatInt((i+1)%1000, 10)}, "message_sent", msg)
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64((redisCPU(b, rdb)-before).Microseconds())/float64(b.N), "redis-µs/op")
	})
	b.Run("single", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				if err := d.ToUsers(ctx, []string{"bob"}, "message", msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("batch-one-round-trip-each", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				// The same encoding as the Dispatcher's.
				var bodies [2][]byte
				for i, to := range []string{"bob", "alice"} {
					args, err := json.Marshal(msg)
					if err != nil {
						b.Error(err)
						return
					}
					bodies[i] = proto.AppendDispatch(make([]byte, 0, 128+len(args)),
						&proto.Dispatch{Event: "message", Users: []string{to}, Args: args})
				}
				_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Publish(ctx, proto.Channel, bodies[0])
					p.Publish(ctx, proto.Channel, bodies[1])
					return nil
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// redisCPU returns the CPU time the Redis server has used (INFO cpu).
func redisCPU(tb testing.TB, rdb *redis.Client) time.Duration {
	tb.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for line := range strings.Lines(info) {
		for _, f := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, f); ok {
				s, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					tb.Fatal(err)
				}
				total += s
			}
		}
	}
	return time.Duration(total * float64(time.Second))
}

// lobby starts a Redis and returns, within 10 s: a subscriber, ready, of
// the broadcast channel and of bob's and alice's channels; a client; and
// a dispatcher of a minute's window, per user or not, with alice in the
// room "lobby".
func lobby(t *testing.T, perUser bool) (context.Context, *redis.PubSub, *redis.Client, *dispatch.Dispatcher) {
	t.Helper()
	srv := testkit.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	ps := newClient(t, srv.Addr()).Subscribe(ctx, proto.Channel, proto.UserChannel("bob"), proto.UserChannel("alice"))
	t.Cleanup(func() { _ = ps.Close() })
	for range 3 {
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rdb := newClient(t, srv.Addr())
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute, PerUser: perUser})
	if _, _, err := d.Join(ctx, "lobby", "alice"); err != nil {
		t.Fatal(err)
	}
	return ctx, ps, rdb, d
}

// runSteps runs steps in order, failing the test at the first error.
func runSteps(t *testing.T, steps []func() error) {
	t.Helper()
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
}
