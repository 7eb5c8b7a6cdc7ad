package fanout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 10 * time.Second

// inbox is a Deliverer that hands every dispatch to a channel.
type inbox chan proto.Dispatch

func (in inbox) Deliver(d *proto.Dispatch) int {
	in <- *d
	return 1
}

func (in inbox) next(t *testing.T) proto.Dispatch {
	t.Helper()
	select {
	case d := <-in:
		return d
	case <-time.After(wait):
		t.Fatal("no dispatch delivered")
		return proto.Dispatch{}
	}
}

func client(t *testing.T, r *testkit.Redis) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// running is a Subscriber whose Run goes on in the background.
type running struct {
	sub    *fanout.Subscriber
	cancel context.CancelFunc
	done   chan error
}

// run starts a Subscriber on its own Redis client; it is stopped when the
// test ends if it is still running.
func run(t *testing.T, r *testkit.Redis, to fanout.Deliverer) *running {
	t.Helper()
	return runQueue(t, r, to, 0)
}

// runQueue is run with a queue of the given length.
func runQueue(t *testing.T, r *testkit.Redis, to fanout.Deliverer, queue int) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &running{sub: fanout.New(client(t, r), to, queue, zap.NewNop()), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- s.sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(wait):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return s
}

// stop cancels Run and returns its result.
func (s *running) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(wait):
		t.Fatal("Run did not return after its context was cancelled")
		return nil
	}
}

func publish(t *testing.T, c *redis.Client, payload string) {
	t.Helper()
	if err := c.Publish(context.Background(), proto.Channel, payload).Err(); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func waitLive(t *testing.T, s *running, want bool) {
	t.Helper()
	what := "the subscription is live"
	if !want {
		what = "the subscription is not live"
	}
	testkit.Eventually(t, wait, what, func() bool { return s.sub.Live() == want })
}

func TestDelivers(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 16)
	s := run(t, r, in)
	waitLive(t, s, true)

	want := []proto.Dispatch{
		{Event: "message", Args: json.RawMessage(`{"from":"alice","text":"hi"}`), Users: []string{"bob", "alice"}, Conns: []string{}},
		{Event: "post_updated_notification", Args: json.RawMessage(`{"post":"p1"}`), Users: []string{}, Conns: []string{"c1"}},
		{Event: "announce", Args: json.RawMessage(`"hello"`), Users: []string{}, Conns: []string{}, Broadcast: true},
	}
	for _, d := range want {
		publish(t, pub, string(proto.AppendDispatch(nil, &d)))
	}
	for i, w := range want {
		got := in.next(t)
		if got.Event != w.Event || string(got.Args) != string(w.Args) || !slices.Equal(got.Users, w.Users) ||
			!slices.Equal(got.Conns, w.Conns) || got.Broadcast != w.Broadcast {
			t.Errorf("dispatch %d = %+v, want %+v", i, got, w)
		}
	}
}

func TestMalformedDropped(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 16)
	s := run(t, r, in)
	waitLive(t, s, true)

	for _, bad := range []string{
		`not json`,
		``,
		`[]`,
		`{"event":""}`,
		`{"event":"has space","users":["u"]}`,
		`{"event":"e","users":"alice"}`,
		`{"event":"e","args":{]}`,
	} {
		publish(t, pub, bad)
	}
	publish(t, pub, `{"event":"ok","users":["alice"]}`)
	if got := in.next(t); got.Event != "ok" || !slices.Equal(got.Users, []string{"alice"}) {
		t.Fatalf("first delivered dispatch = %+v, want the valid one after the malformed ones", got)
	}
	publish(t, pub, `{"event":"ok2","broadcast":true}`)
	if got := in.next(t); got.Event != "ok2" || !got.Broadcast {
		t.Fatalf("next dispatch = %+v, want ok2", got)
	}
	select {
	case d := <-in:
		t.Errorf("extra dispatch %+v delivered", d)
	default:
	}
}

func TestOtherChannelsIgnored(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 16)
	s := run(t, r, in)
	waitLive(t, s, true)
	if err := pub.Publish(context.Background(), "switchboard:other", `{"event":"nope","broadcast":true}`).Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, pub, `{"event":"yes","broadcast":true}`)
	if got := in.next(t); got.Event != "yes" {
		t.Errorf("delivered %+v, want only the dispatch channel's message", got)
	}
}

func TestResubscribesAfterRedisRestart(t *testing.T) {
	r := testkit.StartRedis(t)
	in := make(inbox, 16)
	s := run(t, r, in)
	waitLive(t, s, true)
	pub := client(t, r)
	publish(t, pub, `{"event":"before","broadcast":true}`)
	if got := in.next(t); got.Event != "before" {
		t.Fatalf("got %+v, want before", got)
	}

	r.Stop()
	waitLive(t, s, false)
	r.Start()
	waitLive(t, s, true)

	publish(t, pub, `{"event":"after","broadcast":true}`)
	if got := in.next(t); got.Event != "after" {
		t.Fatalf("got %+v, want after", got)
	}
	if n := s.sub.Resubscriptions(); n != 1 {
		t.Fatalf("%d resubscriptions after Redis restarted once, want 1", n)
	}

	// And once more, to see the back-off was reset and recovery repeats.
	r.Stop()
	waitLive(t, s, false)
	r.Start()
	waitLive(t, s, true)
	publish(t, pub, `{"event":"again","broadcast":true}`)
	if got := in.next(t); got.Event != "again" {
		t.Fatalf("got %+v, want again", got)
	}
}

// TestWaitsForRedisAtStart starts Run while Redis is down: it keeps trying
// and subscribes once Redis comes up. A subscription that never was is not
// a lost one: the wait is logged once as Redis not reachable yet, not as
// "redis subscription lost" at error level, and neither counted as a
// resubscription nor observed as an outage, which an operator's alerts
// and dashboards read as Redis cutting the worker.
func TestWaitsForRedisAtStart(t *testing.T) {
	r := testkit.StartRedis(t)
	r.Stop()
	in := make(inbox, 16)
	core, logs := observer.New(zap.InfoLevel)
	outages := 0
	sub := fanout.New(client(t, r), in, 0, zap.New(core),
		fanout.OnRestored(func(time.Duration) { outages++ })) // the reader's goroutine only
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	s := &running{sub: sub, cancel: cancel, done: done}
	t.Cleanup(func() { _ = s.stop(t) })
	if s.sub.Live() {
		t.Fatal("Live with Redis down")
	}
	testkit.Eventually(t, wait, "the wait for Redis is logged", func() bool {
		return logs.FilterMessage("redis not reachable yet, subscribing in the background").Len() > 0
	})
	r.Start()
	waitLive(t, s, true)
	publish(t, client(t, r), `{"event":"hello","users":["u"]}`)
	if got := in.next(t); got.Event != "hello" {
		t.Fatalf("got %+v, want hello", got)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := s.sub.Resubscriptions(); n != 0 || outages != 0 {
		t.Errorf("the first subscription counted as %d resubscriptions and %d outages, want none", n, outages)
	}
	for msg, want := range map[string]int{
		"redis not reachable yet, subscribing in the background": 1,
		"redis subscribed": 1,
		"redis subscription lost, retrying; what is published until it is restored is filled from the streams then": 0,
		"redis subscription restored; what was published while it was down is filled from the streams":              0,
	} {
		if got := logs.FilterMessage(msg).Len(); got != want {
			t.Errorf("logged %q %d times, want %d", msg, got, want)
		}
	}
}

func TestRunReturnsOnCancel(t *testing.T) {
	tests := []struct {
		name string
		up   bool // Redis is up when Run is cancelled
	}{
		{"while subscribed", true},
		{"while Redis is down", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testkit.StartRedis(t)
			in := make(inbox, 16)
			s := run(t, r, in)
			waitLive(t, s, true)
			if !tt.up {
				r.Stop()
				waitLive(t, s, false)
			}
			if err := s.stop(t); err != nil {
				t.Errorf("Run after cancel = %v, want nil", err)
			}
			if s.sub.Live() {
				t.Error("Live after Run returned")
			}
		})
	}
}

func TestRunReturnsDeadlineError(t *testing.T) {
	r := testkit.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	sub := fanout.New(client(t, r), make(inbox, 1), 0, zap.NewNop())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	select {
	case err := <-done:
		if err != context.DeadlineExceeded {
			t.Errorf("Run = %v, want DeadlineExceeded", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return at its context's deadline")
	}
}

// gated is a Deliverer that delivers one dispatch per token received on
// step (all of them once step is closed) and records their events, so a
// test decides how far behind the channel delivery is.
type gated struct {
	step chan struct{}
	mu   sync.Mutex
	seen []string
}

func newGated() *gated { return &gated{step: make(chan struct{})} }

func (g *gated) Deliver(d *proto.Dispatch) int {
	<-g.step
	g.mu.Lock()
	g.seen = append(g.seen, d.Event)
	g.mu.Unlock()
	return 1
}

func (g *gated) events() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.seen)
}

// TestLaggingFollowsTheBacklog: a burst the deliverer cannot keep up with
// turns Lagging on at the high mark (queue/8); it stays on while the backlog
// drains past it and turns off only at the low mark (queue/64); nothing of
// the burst is lost.
func TestLaggingFollowsTheBacklog(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	g := newGated()
	s := runQueue(t, r, g, 128) // high mark 16, low mark 2
	waitLive(t, s, true)
	if s.sub.Lagging() {
		t.Fatal("Lagging before any dispatch")
	}
	const burst = 40
	for i := range burst {
		publish(t, pub, fmt.Sprintf(`{"event":"e%d","broadcast":true}`, i))
	}
	testkit.Eventually(t, wait, "the whole burst is read", func() bool { return s.sub.Backlog() == burst })
	if !s.sub.Lagging() {
		t.Fatalf("not Lagging with a backlog of %d", burst)
	}
	// Between the marks: still lagging.
	for range burst - 10 {
		g.step <- struct{}{}
	}
	testkit.Eventually(t, wait, "the backlog is down to 10", func() bool { return s.sub.Backlog() == 10 })
	if !s.sub.Lagging() {
		t.Error("Lagging turned off at a backlog of 10, above the low mark of 2")
	}
	// At the low mark: off.
	for range 8 {
		g.step <- struct{}{}
	}
	testkit.Eventually(t, wait, "Lagging turns off at the low mark", func() bool { return !s.sub.Lagging() })
	close(g.step)
	testkit.Eventually(t, wait, "the backlog drains", func() bool { return s.sub.Backlog() == 0 })
	got := g.events()
	if len(got) != burst {
		t.Fatalf("delivered %d dispatches, want %d", len(got), burst)
	}
	for i, e := range got {
		if want := fmt.Sprintf("e%d", i); e != want {
			t.Fatalf("dispatch %d is %s, want %s: order lost", i, e, want)
		}
	}
}

// TestSubscriberCutForLaggingResubscribes: a subscriber so far behind that
// Redis disconnects it for its pub/sub output buffer (here lowered to
// 256 KiB) survives, resubscribes by itself, counts it, and delivers what
// is published after.
func TestSubscriberCutForLaggingResubscribes(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	ctx := context.Background()
	if err := pub.ConfigSet(ctx, "client-output-buffer-limit", "pubsub 262144 131072 60").Err(); err != nil {
		t.Fatal(err)
	}
	g := newGated()
	s := runQueue(t, r, g, 64)
	waitLive(t, s, true)
	big := fmt.Sprintf(`{"event":"big","broadcast":true,"args":"%s"}`, strings.Repeat("x", 64<<10))
	subscribers := func() int {
		n, err := pub.PubSubNumSub(ctx, proto.Channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		return int(n[proto.Channel])
	}
	// The deliverer is held, so the queue fills, then the socket buffers,
	// then Redis's output buffer for the subscriber, until Redis cuts it.
	testkit.Eventually(t, wait, "Redis disconnects the lagging subscriber", func() bool {
		for range 16 {
			publish(t, pub, big)
		}
		return subscribers() == 0
	})
	if !s.sub.Lagging() {
		t.Error("not Lagging while Redis cut the subscriber for being behind")
	}
	close(g.step)
	testkit.Eventually(t, wait, "the subscription is restored", func() bool {
		return s.sub.Resubscriptions() == 1 && s.sub.Live() && subscribers() == 1
	})
	testkit.Eventually(t, wait, "the backlog drains and Lagging turns off", func() bool {
		return s.sub.Backlog() == 0 && !s.sub.Lagging()
	})
	publish(t, pub, `{"event":"after","broadcast":true}`)
	testkit.Eventually(t, wait, "a dispatch published after is delivered", func() bool {
		return slices.Contains(g.events(), "after")
	})
}

// held is a Deliverer that holds every dispatch until the test lets it go.
type held struct{ release chan struct{} }

func (h held) Deliver(*proto.Dispatch) int { <-h.release; return 1 }

// TestBacklogBoundedInBytes: a worker that falls behind holds at most its
// byte bound of dispatches read from Redis, however many the queue could
// count: the rest waits in Redis, and nothing is lost once it catches up.
func TestBacklogBoundedInBytes(t *testing.T) {
	r := testkit.StartRedis(t)
	h := held{release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	s := fanout.New(client(t, r), h, 1000, zap.NewNop(), fanout.QueueBytes(100<<10))
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, wait, "subscribed", s.Live)
	pub := client(t, r)
	big := `{"event":"big","args":"` + strings.Repeat("x", 40<<10) + `","users":[],"conns":[],"broadcast":true}`
	for range 10 {
		publish(t, pub, big)
	}
	// One is held by the deliverer; the queue takes two more (80 KiB of
	// the 100); the rest wait behind the bound.
	testkit.Eventually(t, wait, "the queue at its byte bound", func() bool { return s.BacklogBytes() >= 80<<10 })
	if b := s.BacklogBytes(); b > 100<<10 {
		t.Fatalf("%d bytes queued, over the 100 KiB bound", b)
	}
	for range 10 {
		h.release <- struct{}{}
	}
	testkit.Eventually(t, wait, "everything delivered", func() bool { return s.BacklogBytes() == 0 && s.Backlog() == 0 })
}

// TestBacklogDroppedAtExitCountedAndLogged: dispatches read from Redis and
// still queued when Run ends are counted (DroppedAtExit) and logged once,
// and with those delivered they add up to everything read.
func TestBacklogDroppedAtExitCountedAndLogged(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	g := newGated()
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	sub := fanout.New(client(t, r), g, 128, zap.New(core))
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	testkit.Eventually(t, wait, "subscribed", sub.Live)
	const burst = 40
	for i := range burst {
		publish(t, pub, fmt.Sprintf(`{"event":"e%d","broadcast":true}`, i))
	}
	testkit.Eventually(t, wait, "the whole burst is read", func() bool { return sub.Backlog() == burst })
	cancel()
	close(g.step) // the deliverer, held in its first Deliver, sees the end
	<-done
	delivered, dropped := len(g.events()), sub.DroppedAtExit()
	if dropped == 0 || delivered+int(dropped) != burst {
		t.Fatalf("%d delivered and %d dropped at exit, want some dropped and %d in all", delivered, dropped, burst)
	}
	if n := logs.FilterMessage("dropping the fan-out backlog at exit").Len(); n != 1 {
		t.Errorf("the drop logged %d times, want once", n)
	}
}

// TestUnrecordedCounted: with recovery on, a dispatch to users or a
// broadcast that carries no position was published by a handlers-svc
// with HISTORY_WINDOW=0 (or a v1 publisher). It is still delivered, as
// transient, but it is in no stream, so a device away while it was sent
// resumes recovered without it: the mismatch is counted and logged, once
// per process. Events to connections carry no position by design.
func TestUnrecordedCounted(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 16)
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	sub := fanout.New(client(t, r), in, 0, zap.New(core), fanout.Recorded())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, wait, "the subscription is live", sub.Live)

	for _, p := range []string{
		`{"event":"a","users":["alice"]}`,
		`{"event":"b","users":["alice"],"pos":{"alice":"e1.1-1"}}`,
		`{"event":"c","broadcast":true}`,
		`{"event":"d","broadcast":true,"bpos":"e2.1-1"}`,
		`{"event":"e","conns":["c1"]}`,
		`{"event":"f","users":["bob"]}`,
	} {
		publish(t, pub, p)
	}
	for range 6 {
		in.next(t) // every one is delivered
	}
	if n := sub.Unrecorded(); n != 3 {
		t.Errorf("Unrecorded = %d, want 3 (a, c and f)", n)
	}
	if n := logs.FilterMessageSnippet("HISTORY_WINDOW").Len(); n != 1 {
		t.Errorf("the mismatch was logged %d times, want once", n)
	}
}
