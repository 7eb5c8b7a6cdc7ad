package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestTransient: in both fan-out modes, a transient dispatch to users
// (Message.Transient, event.Transient's ToUsers and ToRooms, and inside a
// Batch), and a transient broadcast, reach a subscriber without positions
// and write no stream entry; Dispatch returns no positions for them. The
// recorded dispatches around them are recorded and carry positions, at
// consecutive offsets: a transient one takes none.
func TestTransient(t *testing.T) {
	for _, perUser := range []bool{false, true} {
		t.Run(fmt.Sprintf("per_user=%v", perUser), func(t *testing.T) {
			ctx, ps, rdb, d := lobby(t, perUser)
			td := event.Transient(d)
			steps := []func() error{
				func() error { return d.ToUsers(ctx, []string{"bob"}, "r1", nil) },
				func() error {
					pos, err := d.Dispatch(ctx, dispatch.Message{Event: "t1", Users: []string{"bob", "alice"}, Transient: true})
					if err == nil && (len(pos.Users) != 0 || pos.Broadcast != "") {
						err = fmt.Errorf("transient Dispatch returned positions %+v", pos)
					}
					return err
				},
				func() error { return td.ToUsers(ctx, []string{"bob"}, "t2", nil) },
				func() error { return td.(event.Rooms).ToRooms(ctx, []string{"lobby"}, "t3", nil) },
				func() error {
					return event.Atomically(ctx, d, func(b event.Dispatcher) error {
						if err := event.Transient(b).ToUsers(ctx, []string{"bob"}, "t4", nil); err != nil {
							return err
						}
						return b.ToUsers(ctx, []string{"bob"}, "r2", nil)
					})
				},
				func() error { return td.Broadcast(ctx, "t5", nil) },
				func() error {
					pos, err := d.Dispatch(ctx, dispatch.Message{Event: "t6", Broadcast: true, Transient: true})
					if err == nil && pos.Broadcast != "" {
						err = fmt.Errorf("transient broadcast returned bpos %q", pos.Broadcast)
					}
					return err
				},
				func() error {
					pos, err := d.Dispatch(ctx, dispatch.Message{Event: "r3", Users: []string{"bob"}})
					if err == nil && pos.Users["bob"] == "" {
						err = fmt.Errorf("recorded Dispatch returned no position: %+v", pos)
					}
					return err
				},
			}
			runSteps(t, steps)

			// Published in call order; t1 is one message in shared mode,
			// one per user in per-user mode.
			want := []string{"r1", "t1", "t2", "t3", "t4", "r2", "t5", "t6", "r3"}
			if perUser {
				want = []string{"r1", "t1", "t1", "t2", "t3", "t4", "r2", "t5", "t6", "r3"}
			}
			var offsets []uint64
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
					t.Fatalf("message %d: %s on %s, want %s", i, dd.Event, msg.Channel, w)
				}
				perUserChannel := perUser && !dd.Broadcast
				if perUserChannel != (msg.Channel != proto.Channel) {
					t.Fatalf("message %d (%s) on %s, per-user mode %v", i, w, msg.Channel, perUser)
				}
				if w[0] == 't' {
					if len(dd.Pos) != 0 || dd.BPos != "" {
						t.Fatalf("transient %s published with positions %v %q: %s", w, dd.Pos, dd.BPos, msg.Payload)
					}
					continue
				}
				if dd.Pos["bob"] == "" {
					t.Fatalf("recorded %s published without bob's position: %s", w, msg.Payload)
				}
				offsets = append(offsets, mustPos(t, dd.Pos["bob"]).Off)
			}
			if offsets[1] != offsets[0]+1 || offsets[2] != offsets[1]+1 {
				t.Fatalf("recorded offsets %v, want consecutive: a transient dispatch took one", offsets)
			}
			for key, n := range map[string]int64{
				proto.UserStreamKey("bob"):   3, // r1, r2, r3
				proto.UserStreamKey("alice"): 0,
				proto.BroadcastStreamKey:     0,
			} {
				if got := rdb.XLen(ctx, key).Val(); got != n {
					t.Errorf("XLEN %s = %d, want %d: %v", key, got, n, rdb.XRange(ctx, key, "-", "+").Val())
				}
			}
		})
	}
}

// TestTransientIdempotencyKey: a transient message with an idempotency
// key is dispatched once, and its replay returns no positions; the key
// given again for the same message recorded is another message
// (ErrKeyReused).
func TestTransientIdempotencyKey(t *testing.T) {
	r := newRecorder(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := dispatch.Message{Event: "typing", Users: []string{"bob"}, Transient: true, IdempotencyKey: "typing-1"}
	pos, err := r.d.Dispatch(ctx, m)
	if err != nil || len(pos.Users) != 0 || pos.Replayed {
		t.Fatalf("first: %+v, %v; want no positions", pos, err)
	}
	if dd := r.next(t); dd.Event != "typing" || len(dd.Pos) != 0 {
		t.Fatalf("published %v, want typing without positions", dd)
	}
	pos, err = r.d.Dispatch(ctx, m)
	if err != nil || len(pos.Users) != 0 || !pos.Replayed {
		t.Fatalf("again: %+v, %v; want a replay without positions", pos, err)
	}
	m.Transient = false
	if _, err := r.d.Dispatch(ctx, m); !errors.Is(err, dispatch.ErrKeyReused) {
		t.Fatalf("the key for the message recorded: %v, want ErrKeyReused", err)
	}
	if n := r.rdb.XLen(ctx, proto.UserStreamKey("bob")).Val(); n != 0 {
		t.Fatalf("XLEN of bob's stream = %d, want 0", n)
	}
}

// TestClusterTransient: on a 3-master Redis Cluster, in both modes, a
// transient dispatch to users of every partition reaches each user once
// (per_user: with SPUBLISH on the user's channel) without a position, and
// no stream holds it; a recorded one after it is at offset 1.
func TestClusterTransient(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	for _, perUser := range []bool{false, true} {
		t.Run(fmt.Sprintf("per_user=%v", perUser), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1})
			users := make([]string, 30)
			for i := range users {
				users[i] = fmt.Sprintf("typist-%v-%d", perUser, i) // streams of their own per subtest
			}
			got := make(chan *redis.Message, 100)
			subscribeDispatches(t, ctx, rdb, users, perUser, got)

			d := dispatch.New(rdb, dispatch.Options{Window: time.Minute, PerUser: perUser})
			pos, err := d.Dispatch(ctx, dispatch.Message{Event: "typing", Users: users, Transient: true})
			if err != nil || len(pos.Users) != 0 {
				t.Fatalf("Dispatch = %+v, %v; want no positions", pos, err)
			}
			seen := map[string]bool{}
			for len(seen) < len(users) {
				var m *redis.Message
				select {
				case m = <-got:
				case <-ctx.Done():
					t.Fatalf("%d of %d users got it", len(seen), len(users))
				}
				dd, err := proto.DecodeDispatch([]byte(m.Payload))
				if err != nil {
					t.Fatal(err)
				}
				if dd.Event != "typing" || len(dd.Pos) != 0 {
					t.Fatalf("published %s, want typing without positions", m.Payload)
				}
				for _, u := range dd.Users {
					if seen[u] {
						t.Fatalf("%s named twice", u)
					}
					if perUser && m.Channel != proto.UserChannel(u) {
						t.Fatalf("%s's dispatch on %s", u, m.Channel)
					}
					seen[u] = true
				}
			}
			if err := d.ToUsers(ctx, users, "message", nil); err != nil {
				t.Fatal(err)
			}
			res, err := streams.Read(ctx, rdb, queries(users))
			if err != nil {
				t.Fatal(err)
			}
			for i, u := range users {
				if res[i].Top.Off != 1 {
					t.Fatalf("%s: stream top %v after a transient and a recorded dispatch, want offset 1", u, res[i].Top)
				}
			}
		})
	}
}
