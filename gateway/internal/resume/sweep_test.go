package resume_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// afterRead runs fire once, right after the next read of the streams
// (the read script's pipeline) has its answer from Redis and before the
// resumer applies it: the moment a read made while the fan-out was not
// subscribed is in flight.
type afterRead struct {
	armed atomic.Bool
	fire  func()
}

func (h *afterRead) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *afterRead) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *afterRead) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err == nil && len(cmds) > 0 && cmds[0].Name() == "evalsha" && h.armed.CompareAndSwap(true, false) {
			h.fire()
		}
		return err
	}
}

// whileReading arms a hook on f's client: after the next read, an event
// is published to user (nothing delivers it: the fan-out is "down") and
// the resubscribed fan-out's sweep runs over s, all before the read is
// applied.
func (f *fixture) whileReading(t *testing.T, s *resume.Socket, user, event string) {
	t.Helper()
	h := &afterRead{}
	h.fire = func() {
		f.publish(t, user, event)
		if err := f.res.Sweep(context.Background(), []*resume.Socket{s}); err != nil {
			t.Error(err)
		}
	}
	f.rdb.AddHook(h)
	h.armed.Store(true)
}

// TestSweepDuringConnectReadsAgain: the fan-out resubscribes while a
// socket's connect read is in flight, a read made before an event that
// no subscriber heard; the sweep finds the socket busy with that read.
// The socket must still get the event, once its read settles, though no
// later event of its stream comes to reveal the gap.
func TestSweepDuringConnectReadsAgain(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s := f.res.NewSocket(c)
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	f.whileReading(t, s, "bob", "lost1")
	if err := f.res.Connect(context.Background(), s, proto.Connected{Worker: 0}, "", ""); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the event published during the connect read is filled", func() bool {
		return len(c.events(t)) == 1
	})
	if got := join(c.events(t)); got != "lost1@1" {
		t.Fatalf("events %q, want lost1@1", got)
	}
	if len(f.rec.resyncs()) != 0 || f.rec.healedN() != 1 {
		t.Fatalf("resyncs %v, healed %d; want none, 1", f.rec.resyncs(), f.rec.healedN())
	}
}

// TestSweepDuringFillReadsAgain: likewise for a live socket whose gap is
// being filled when the fan-out resubscribes: the fill's read ends before
// an event no subscriber heard, and the socket reads again for it.
func TestSweepDuringFillReadsAgain(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	f.publish(t, "bob", "e1")
	e2 := f.publish(t, "bob", "e2")
	f.whileReading(t, s, "bob", "lost3")
	s.Offer(false, &e2, eventFrame("bob", "e2", e2)) // e1 lost on the way: a fill
	testkit.Eventually(t, 5*time.Second, "the gap and the event published during its read are filled", func() bool {
		return len(c.events(t)) == 3
	})
	if got, want := join(c.events(t)), "e1@1 e2@2 lost3@3"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if len(f.rec.resyncs()) != 0 {
		t.Fatalf("resyncs %v, want none", f.rec.resyncs())
	}
}
