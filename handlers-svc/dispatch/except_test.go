package dispatch_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestExcept: in both fan-out modes, a dispatch that leaves connections
// out (Message.ExceptConns, event.Except and event.ExceptSender's
// ToUsers, ToRooms and Broadcast, inside a Batch, with Transient) is
// published with the list, and a recorded one keeps it in every target
// user's stream entry; one without a list says none.
func TestExcept(t *testing.T) {
	for _, perUser := range []bool{false, true} {
		t.Run(fmt.Sprintf("per_user=%v", perUser), func(t *testing.T) {
			ctx, ps, rdb, d := lobby(t, perUser)
			sender := &event.Request{Conn: "c-alice-1", User: "alice"}
			steps := []func() error{
				func() error {
					_, err := d.Dispatch(ctx, dispatch.Message{Event: "x1", Users: []string{"bob", "alice"}, ExceptConns: []string{"c-alice-1"}})
					return err
				},
				func() error { return event.ExceptSender(d, sender).ToUsers(ctx, []string{"bob"}, "x2", nil) },
				func() error {
					return event.ExceptSender(d, sender).(event.Rooms).ToRooms(ctx, []string{"lobby"}, "x3", nil)
				},
				func() error {
					return event.Atomically(ctx, d, func(b event.Dispatcher) error {
						return event.Except(b, "c-alice-1").ToUsers(ctx, []string{"bob"}, "x4", nil)
					})
				},
				func() error {
					return event.Transient(event.ExceptSender(d, sender)).ToUsers(ctx, []string{"bob"}, "t5", nil)
				},
				func() error { return event.ExceptSender(d, sender).Broadcast(ctx, "x6", nil) },
				func() error { return d.ToUsers(ctx, []string{"bob"}, "r7", nil) },
			}
			runSteps(t, steps)
			want := []string{"x1", "x2", "x3", "x4", "t5", "x6", "r7"}
			if perUser {
				want = []string{"x1", "x1", "x2", "x3", "x4", "t5", "x6", "r7"}
			}
			for i, w := range want {
				msg, err := ps.ReceiveMessage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				dd, err := proto.DecodeDispatch([]byte(msg.Payload))
				if err != nil {
					t.Fatal(err)
				}
				if dd.Event != w {
					t.Fatalf("message %d: %s, want %s", i, dd.Event, w)
				}
				wantExcept := []string{"c-alice-1"}
				if w[0] == 'r' {
					wantExcept = nil
				}
				if !slices.Equal(dd.Except, wantExcept) {
					t.Fatalf("%s published leaving out %q, want %q: %s", w, dd.Except, wantExcept, msg.Payload)
				}
				if (w[0] == 't') != dd.Transient {
					t.Fatalf("%s transient %v: %s", w, dd.Transient, msg.Payload)
				}
			}

			// bob's stream: x1, x2, x4 leave c-alice-1 out, r7 nothing
			// (t5 is in no stream); alice's: x1, x3.
			for user, events := range map[string][]string{"bob": {"x1", "x2", "x4", "r7"}, "alice": {"x1", "x3"}} {
				res, err := streams.Read(ctx, rdb, []streams.Query{{Stream: streams.UserStream, User: user,
					From: proto.Pos{Epoch: topEpoch(t, ctx, rdb, user)}, After: true, Max: 100}})
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, e := range res[0].Entries {
					got = append(got, e.Event)
					if wantX := e.Event[0] == 'x'; wantX != slices.Equal(e.Except, []string{"c-alice-1"}) || (!wantX && e.Except != nil) {
						t.Errorf("%s's entry %s leaves out %q", user, e.Event, e.Except)
					}
				}
				if !slices.Equal(got, events) {
					t.Errorf("%s's stream holds %v, want %v", user, got, events)
				}
			}
		})
	}
}

func topEpoch(t *testing.T, ctx context.Context, rdb *redis.Client, user string) string {
	t.Helper()
	res, err := streams.Read(ctx, rdb, []streams.Query{{Stream: streams.UserStream, User: user, Max: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Top.Epoch
}

// TestExceptBounds: an except list is bounded and checked as conns are,
// by Message.Check and by the Except view; bad_request, nothing sent.
func TestExceptBounds(t *testing.T) {
	tooMany := make([]string, dispatch.MaxConns+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("c%d", i)
	}
	for name, except := range map[string][]string{
		"too many":  tooMany,
		"empty":     {""},
		"space":     {"a b"},
		"too long":  {strings.Repeat("c", dispatch.MaxConnLen+1)},
		"non-ASCII": {"é"},
	} {
		m := dispatch.Message{Event: "e", Users: []string{"bob"}, ExceptConns: except}
		if err := m.Check(); event.WireError(err).Code != proto.CodeBadRequest || !strings.Contains(err.Error(), "except") {
			t.Errorf("%s: Check = %v, want a bad_request naming except", name, err)
		}
	}
	ok := dispatch.Message{Event: "e", Users: []string{"bob"}, ExceptConns: []string{"c1", strings.Repeat("c", dispatch.MaxConnLen)}}
	if err := ok.Check(); err != nil {
		t.Errorf("a good list: %v", err)
	}
	srv := testkit.StartRedis(t)
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: time.Minute})
	if err := event.Except(d, "a b").ToUsers(context.Background(), []string{"bob"}, "e", nil); event.WireError(err).Code != proto.CodeBadRequest {
		t.Errorf("Except view with a bad id: %v, want bad_request", err)
	}
}

// TestClusterExcept: on a 3-master Redis Cluster, in both modes, a
// dispatch to users of every partition that leaves a connection out says
// so in every message of every partition, and every user's entry keeps
// the list.
func TestClusterExcept(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	for _, perUser := range []bool{false, true} {
		t.Run(fmt.Sprintf("per_user=%v", perUser), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
			users := spreadUsers(40)
			got := make(chan *redis.Message, 100)
			subscribeDispatches(t, ctx, rdb, users, perUser, got)
			d := dispatch.New(rdb, dispatch.Options{Window: time.Minute, PerUser: perUser})
			pos, err := d.Dispatch(ctx, dispatch.Message{Event: "m", Users: users, ExceptConns: []string{"c1"}})
			if err != nil {
				t.Fatal(err)
			}
			seen := 0
			for seen < len(users) {
				var m *redis.Message
				select {
				case m = <-got:
				case <-ctx.Done():
					t.Fatalf("%d of %d users got it", seen, len(users))
				}
				dd, err := proto.DecodeDispatch([]byte(m.Payload))
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(dd.Except, []string{"c1"}) {
					t.Fatalf("a message leaving out %q: %s", dd.Except, m.Payload)
				}
				seen += len(dd.Users)
			}
			qs := queries(users)
			for i, u := range users {
				p := mustPos(t, pos.Users[u])
				qs[i].From, qs[i].After = proto.Pos{Epoch: p.Epoch, MS: p.MS, Off: p.Off - 1}, true
			}
			res, err := streams.Read(ctx, rdb, qs)
			if err != nil {
				t.Fatal(err)
			}
			for i, u := range users {
				if len(res[i].Entries) != 1 || !slices.Equal(res[i].Entries[0].Except, []string{"c1"}) {
					t.Fatalf("%s's entry: %+v", u, res[i].Entries)
				}
			}
		})
	}
}
