package worker

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestReplayOverTheSendQueue: a resume whose missed events, within
// GATEWAY_MAX_REPLAY, are several times what the socket's send queue holds
// (320 KB over the smallest queue config allows, about 66 KB) is recovered: connected says recovered:true with
// every event missed, the socket stays open, and it receives every one of
// them exactly once, in order, then what comes live. The replay used to be
// queued whole, closing the socket as a slow consumer before it had sent
// anything, at every resume from the same position; then answered
// recovered:false.
func TestReplayOverTheSendQueue(t *testing.T) {
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = testkit.StartNATS(t).URL(), rd.URL()
	cfg.SendQueueBytes = config.MinSendQueueBytes
	r := startWorker(t, cfg, 0)
	url := "ws://" + r.addr + "/socket"
	tok := token(t, "alice", time.Hour)

	pub := publisher(t, rd.URL())
	args, _ := json.Marshal(map[string]string{"text": strings.Repeat("x", 8000)})
	var pos []string
	for range 41 { // 40 missed after the first: 320 KB, five queues' worth
		p, _, err := streams.Publish(context.Background(), pub, time.Minute,
			&proto.Dispatch{Event: "message", Args: args, Users: []string{"alice"}})
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, p[0])
	}

	for _, tt := range []struct {
		name  string
		from  int // the index of the position resumed from
		extra int // events published after connect
	}{
		{"missed more than the queue holds", 0, 0},
		{"again from the same position", 0, 0},
		{"and events after it", 0, 2},
		{"missed what the queue holds", len(pos) - 4, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := testkit.Dial(t, url+"?resume="+pos[tt.from], tok)
			defer c.Close()
			got := c.Connected
			missed := len(pos) - 1 - tt.from
			if got.Recovered == nil || !*got.Recovered || got.Missed == nil || *got.Missed != missed {
				t.Fatalf("connected %+v, want recovered with %d missed", got, missed)
			}
			want := append([]string(nil), pos[tt.from+1:]...)
			for range tt.extra {
				p, _, err := streams.Publish(context.Background(), pub, time.Minute,
					&proto.Dispatch{Event: "message", Args: args, Users: []string{"alice"}})
				if err != nil {
					t.Fatal(err)
				}
				pos, want = append(pos, p[0]), append(want, p[0])
			}
			testkit.Eventually(t, wait, "every missed event", func() bool { return len(c.Frames()) >= len(want) })
			// Still open, and answering: an unknown event's error.
			c.Send("noSuchEvent", nil, "still")
			if f := c.ExpectRef(wait, "still"); f.Event != proto.EventError {
				t.Fatalf("reply %+v, want an error", f)
			}
			// (Frames leaves out connected and the reply, taken by Expect.)
			frames := c.Frames()
			if len(frames) != len(want) {
				t.Fatalf("%d frames besides connected and the reply, want the %d events", len(frames), len(want))
			}
			for i, f := range frames {
				if f.Event != "message" || f.Pos != want[i] {
					t.Fatalf("frame %d: %s at %s, want message at %s", i, f.Event, f.Pos, want[i])
				}
			}
		})
	}
}
