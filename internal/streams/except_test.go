package streams_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// TestExceptRecorded: a dispatch that leaves connections out keeps the
// list in its stream entries, by a shared unit and by a per-user one,
// whose message says it too (as AppendDispatch writes it); an entry of a
// dispatch without one reads with none.
func TestExceptRecorded(t *testing.T) {
	ctx := context.Background()
	rdb := client(t)
	ps := rdb.Subscribe(ctx, proto.UserChannel("bob"))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	except := []string{"c1", `c"2`}
	shared := &proto.Dispatch{Event: "message", Args: json.RawMessage(`{}`), Users: []string{"bob"}, Except: except}
	if _, _, err := streams.Publish(ctx, rdb, time.Minute, shared); err != nil {
		t.Fatal(err)
	}
	perUser := &proto.Dispatch{Event: "message", Args: json.RawMessage(`{}`), Users: []string{"bob"}, Except: except[:1]}
	keys, args := streams.PublishCall([]*streams.Unit{streams.NewPerUserUnit(perUser, true)}, time.Minute, streams.MetaTTL)
	res, err := streams.PublishScript.Run(ctx, rdb, keys, args...).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	pos, _, err := streams.SplitResult(res)
	if err != nil || len(pos) != 1 {
		t.Fatalf("per-user publish: %q, %v", pos, err)
	}
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := *perUser
	want.Pos = map[string]string{"bob": pos[0]}
	if got := string(proto.AppendDispatch(nil, &want)); msg.Payload != got {
		t.Fatalf("per-user body\n%s\nwant\n%s", msg.Payload, got)
	}
	publish(t, rdb, "bob") // one without

	r := read(t, rdb, streams.Query{Stream: streams.UserStream, User: "bob", From: proto.Pos{Epoch: mustPos(t, pos[0]).Epoch}, After: true, Max: 10})
	if len(r.Entries) != 3 {
		t.Fatalf("%d entries, want 3", len(r.Entries))
	}
	for i, w := range [][]string{except, except[:1], nil} {
		if !slices.Equal(r.Entries[i].Except, w) {
			t.Errorf("entry %d leaves out %q, want %q", i, r.Entries[i].Except, w)
		}
	}
}

func mustPos(t *testing.T, s string) proto.Pos {
	t.Helper()
	p, ok := proto.ParsePos(s)
	if !ok {
		t.Fatalf("position %q", s)
	}
	return p
}
