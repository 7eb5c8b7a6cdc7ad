package streams_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// TestPerUserUnit: a per-user unit publishes one message on each user's
// channel, naming that user only with that user's position (byte for byte
// what NewUnit publishes for a dispatch to that user alone), records each
// user as a users unit does, and publishes nothing on the shared channel.
// Transient, it records nothing and carries no position.
func TestPerUserUnit(t *testing.T) {
	ctx := context.Background()
	rdb := client(t)
	users := []string{"alice", `b"ob`, "carol"}
	channels := []string{proto.Channel}
	for _, u := range users {
		channels = append(channels, proto.UserChannel(u))
	}
	ps := rdb.Subscribe(ctx, channels...)
	defer ps.Close()
	for range channels {
		if _, err := ps.Receive(ctx); err != nil { // the confirmations
			t.Fatal(err)
		}
	}
	// The bob before is recorded by a shared unit, so the per-user unit
	// continues a stream the other kind wrote.
	before := publish(t, rdb, `b"ob`)[0]
	if msg, err := ps.ReceiveMessage(ctx); err != nil || msg.Channel != proto.Channel {
		t.Fatalf("the shared unit's message: %+v, %v", msg, err)
	}

	d := &proto.Dispatch{Event: "message", Args: json.RawMessage(`{"text":"hi \"there\""}`), Users: users}
	for _, record := range []bool{true, false} {
		window := time.Duration(0)
		if record {
			window = time.Minute
		}
		keys, args := streams.PublishCall([]*streams.Unit{streams.NewPerUserUnit(d, record)}, window, streams.MetaTTL)
		res, err := streams.PublishScript.Run(ctx, rdb, keys, args...).StringSlice()
		if err != nil {
			t.Fatal(err)
		}
		pos, unheard, err := streams.SplitResult(res)
		if err != nil {
			t.Fatal(err)
		}
		if unheard != 0 {
			t.Fatalf("record %v: %d publishes counted unheard; a user's channel never counts", record, unheard)
		}
		if record != (len(pos) == len(users)) || (!record && len(pos) != 0) {
			t.Fatalf("record %v: positions %q", record, pos)
		}
		for i, u := range users {
			msg, err := ps.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Channel != proto.UserChannel(u) {
				t.Fatalf("message %d on %q, want %q (nothing on the shared channel)", i, msg.Channel, proto.UserChannel(u))
			}
			want := proto.Dispatch{Event: d.Event, Args: d.Args, Users: []string{u}}
			if record {
				want.Pos = map[string]string{u: pos[i]}
			}
			if got := string(proto.AppendDispatch(nil, &want)); msg.Payload != got {
				t.Fatalf("body\n%s\nwant\n%s", msg.Payload, got)
			}
			dec, err := proto.DecodeDispatch([]byte(msg.Payload))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dec.Users, []string{u}) || dec.Pos[u] != want.Pos[u] {
				t.Fatalf("decoded %+v", dec)
			}
		}
		if record {
			p, _ := proto.ParsePos(pos[1])
			if p.Epoch != before.Epoch || p.Off != before.Off+1 {
				t.Fatalf("bob's position %v does not follow %v", p, before)
			}
			res := read(t, rdb, streams.Query{Stream: streams.UserStream, User: "carol", From: proto.Pos{}, Max: 10})
			if res.Top.String() != pos[2] {
				t.Fatalf("carol's top %v, want %s", res.Top, pos[2])
			}
		}
	}
	// The shared channel got nothing: a probe published after arrives first.
	if err := rdb.Publish(ctx, proto.Channel, "probe").Err(); err != nil {
		t.Fatal(err)
	}
	if msg, err := ps.ReceiveMessage(ctx); err != nil || msg.Channel != proto.Channel || msg.Payload != "probe" {
		t.Fatalf("next message %+v, %v; want the probe", msg, err)
	}
}

// BenchmarkPublishRoom compares the Redis side of one recorded dispatch to
// 100 users (a room's members), published as one message on the shared
// channel and as 100 messages on the users' channels (per_user mode), no
// subscribers: the extra script work per_user costs handlers-svc's Redis.
func BenchmarkPublishRoom(b *testing.B) {
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("member-%d", i)
	}
	args := json.RawMessage(`{"room":"lobby","text":"` + strings.Repeat("x", 200) + `"}`)
	// per_user_spublish: the same with SPUBLISH, as on a Redis Cluster,
	// measured on one Redis to decide which one Redis uses.
	for _, mode := range []string{"shared", "per_user", "per_user_spublish"} {
		b.Run(mode, func(b *testing.B) {
			rdb := client(b)
			ctx := context.Background()
			d := &proto.Dispatch{Event: "message", Args: args, Users: users}
			for b.Loop() {
				u := streams.NewUnit(d, true)
				switch mode {
				case "per_user":
					u = streams.NewPerUserUnit(d, true)
				case "per_user_spublish":
					u = streams.NewPerUserUnit(d, true).Shard()
				}
				keys, cargs := streams.PublishCall([]*streams.Unit{u}, 2*time.Minute, streams.MetaTTL)
				if err := streams.PublishScript.Run(ctx, rdb, keys, cargs...).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
