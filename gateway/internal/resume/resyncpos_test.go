package resume_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestBroadcastResyncCarriesPos: the contract's resync frame
// (PROTOCOL.md section 6) is {"pos":"...","reason":"..."}:
//
//	Where it cannot be filled, the gateway sends
//	`{"event":"resync","id":"<user>","args":{"pos":"...","reason":"..."}}`
//	and carries on from the new position.
//
// A gap in the broadcast stream sent {"bpos","reason"} with no pos (found
// by a conformance review), so a client written to the contract read no
// position. It now carries bpos, the broadcast stream's new top, beside
// pos, the socket's unmoved place in the user stream.
func TestBroadcastResyncCarriesPos(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	up := f.publish(t, "bob", "u1") // the socket has a place in the user stream
	s, connected := f.connect(t, c, "", "")
	if connected.Pos != up.String() {
		t.Fatalf("connected at %s, want %s", connected.Pos, up)
	}
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	broadcast := func(event string) proto.Pos {
		pos, _, err := streams.Publish(context.Background(), f.rdb, time.Minute,
			&proto.Dispatch{Event: event, Args: json.RawMessage(`{}`), Broadcast: true})
		if err != nil {
			t.Fatal(err)
		}
		p, _ := proto.ParsePos(pos[0])
		return p
	}
	b1 := broadcast("b1")
	s.Offer(true, &b1, proto.AppendEventAt(nil, "b1", "bob", json.RawMessage(`{}`), proto.KeyBPos, b1.Append(nil)))
	f.rdb.FlushAll(context.Background()) // Redis restarted empty: a gap that cannot be filled
	broadcast("n1")
	n2 := broadcast("n2")
	s.Offer(true, &n2, proto.AppendEventAt(nil, "n2", "bob", json.RawMessage(`{}`), proto.KeyBPos, n2.Append(nil))) // n1 missed, in a new epoch
	testkit.Eventually(t, 5*time.Second, "a resync", func() bool { return len(f.rec.resyncs()) == 1 })
	var args json.RawMessage
	for _, fr := range c.got() {
		if fr.Event == "resync" {
			args = fr.Args
		}
	}
	var fields map[string]any
	if err := json.Unmarshal(args, &fields); err != nil {
		t.Fatalf("resync args %s: %v", args, err)
	}
	if pos, ok := fields["pos"].(string); !ok || pos != up.String() {
		t.Fatalf("resync args %s: \"pos\" should be the socket's unmoved place in the user stream, %s: the contract's resync frame carries pos", args, up)
	}
	if bpos, ok := fields["bpos"].(string); !ok || bpos != n2.String() {
		t.Fatalf("resync args %s: \"bpos\" should be the broadcast stream's new top, %s", args, n2)
	}
	if reason, ok := fields["reason"].(string); !ok || reason == "" {
		t.Fatalf("resync args %s: no \"reason\"", args)
	}
}
