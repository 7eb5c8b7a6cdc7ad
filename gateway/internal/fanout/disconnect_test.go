package fanout_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// seen is a Deliverer and a disconnect sink that record, in one channel
// and so in order, what reached them.
type seen chan string

func (s seen) Deliver(d *proto.Dispatch) int { s <- "event " + d.Event; return 1 }

func (s seen) disconnect(d *proto.Disconnect) {
	s <- "disconnect " + d.Users[0] + " " + d.Reason
}

func (s seen) next(t *testing.T) string {
	t.Helper()
	select {
	case v := <-s:
		return v
	case <-time.After(wait):
		t.Fatal("nothing delivered")
		return ""
	}
}

func runWith(t *testing.T, r *testkit.Redis, to fanout.Deliverer, opts ...fanout.Option) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &running{sub: fanout.New(client(t, r), to, 0, zap.NewNop(), opts...), cancel: cancel, done: make(chan error, 1)}
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

// TestDisconnectInOrder: a disconnect reaches OnDisconnect, between the
// dispatches published around it, in any JSON form, and is never
// delivered as a dispatch.
func TestDisconnectInOrder(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	got := make(seen, 16)
	s := runWith(t, r, got, fanout.OnDisconnect(got.disconnect))
	waitLive(t, s, true)

	publish(t, pub, string(proto.AppendDispatch(nil, &proto.Dispatch{Event: "before", Users: []string{"alice"}})))
	publish(t, pub, string(proto.AppendDisconnect(nil, &proto.Disconnect{Users: []string{"alice"}, Reason: "banned"})))
	publish(t, pub, `{ "users": ["bob"], "reason": "other form", "control": "disconnect" }`)
	publish(t, pub, `{"control":"disconnect","event":"sneaky","users":["carol"]}`) // a dispatch, as to an earlier release
	publish(t, pub, `{"control":"disconnect","users":[""]}`)                       // neither: malformed
	publish(t, pub, string(proto.AppendDispatch(nil, &proto.Dispatch{Event: "after", Users: []string{"alice"}})))
	want := []string{"event before", "disconnect alice banned", "disconnect bob other form", "event sneaky", "event after"}
	var order []string
	for range want {
		order = append(order, got.next(t))
	}
	if !slices.Equal(order, want) {
		t.Fatalf("delivered %q, want %q", order, want)
	}
	// The one with an event is a valid dispatch by the old rules (a
	// control key is ignored), so it is delivered as the event it names:
	// what an earlier release does with it too. Only AppendDisconnect's
	// messages are promised to be dropped by such a worker.
	if s.sub.Malformed() != 1 {
		t.Errorf("%d malformed, want 1", s.sub.Malformed())
	}
}

// TestDisconnectWithoutHandlerIsMalformed is a worker that does not know
// disconnects (an earlier release, or no OnDisconnect): it drops one as
// malformed and delivers nothing for it.
func TestDisconnectWithoutHandlerIsMalformed(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	got := make(seen, 16)
	s := runWith(t, r, got)
	waitLive(t, s, true)

	publish(t, pub, string(proto.AppendDisconnect(nil, &proto.Disconnect{Users: []string{"alice"}, Reason: "banned", Reconnect: true})))
	publish(t, pub, string(proto.AppendDispatch(nil, &proto.Dispatch{Event: "after", Users: []string{"alice"}})))
	if v := got.next(t); v != "event after" {
		t.Fatalf("first delivered %q, want the dispatch after the disconnect", v)
	}
	if s.sub.Malformed() != 1 {
		t.Errorf("%d malformed, want 1", s.sub.Malformed())
	}
}
