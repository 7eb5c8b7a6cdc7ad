package fanout_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/gateway/internal/testkit"
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
	ctx, cancel := context.WithCancel(context.Background())
	s := &running{sub: fanout.New(client(t, r), to, zap.NewNop()), cancel: cancel, done: make(chan error, 1)}
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
// and subscribes once Redis comes up.
func TestWaitsForRedisAtStart(t *testing.T) {
	r := testkit.StartRedis(t)
	r.Stop()
	in := make(inbox, 16)
	s := run(t, r, in)
	if s.sub.Live() {
		t.Fatal("Live with Redis down")
	}
	r.Start()
	waitLive(t, s, true)
	publish(t, client(t, r), `{"event":"hello","users":["u"]}`)
	if got := in.next(t); got.Event != "hello" {
		t.Fatalf("got %+v, want hello", got)
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
	sub := fanout.New(client(t, r), make(inbox, 1), zap.NewNop())
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
