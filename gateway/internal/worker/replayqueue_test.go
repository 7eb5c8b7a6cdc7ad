package worker

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestReplayOverTheSendQueue: a resume whose missed events, within
// GATEWAY_MAX_REPLAY, are more bytes than the socket's send queue holds is
// answered connected with recovered false, and the socket stays open. It
// used to be closed as a slow consumer before it had sent anything, and
// again at every resume from the same position: a client that never
// learned it should reload, reconnecting at once each time.
func TestReplayOverTheSendQueue(t *testing.T) {
	rd := testkit.StartRedis(t)
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = testkit.StartNATS(t).URL(), rd.URL()
	cfg.SendQueueBytes = 16 << 10
	r := startWorker(t, cfg, 0)
	url := "ws://" + r.addr + "/socket"
	tok := token(t, "alice", time.Hour)

	pub := publisher(t, rd.URL())
	args, _ := json.Marshal(map[string]string{"text": strings.Repeat("x", 2000)})
	var pos []string
	for range 12 { // 24 KB, over the 16 KiB queue
		p, _, err := streams.Publish(context.Background(), pub, time.Minute,
			&proto.Dispatch{Event: "message", Args: args, Users: []string{"alice"}})
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, p[0])
	}

	for _, tt := range []struct {
		name      string
		from      string
		recovered bool
		events    int
	}{
		{"missed more than the queue holds", pos[0], false, 0},
		{"again from the same position", pos[0], false, 0},
		{"missed what the queue holds", pos[len(pos)-4], true, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := testkit.Dial(t, url+"?resume="+tt.from, tok)
			defer c.Close()
			got := c.Connected
			if got.Recovered == nil || *got.Recovered != tt.recovered {
				t.Fatalf("connected %+v, want recovered %v", got, tt.recovered)
			}
			if tt.events > 0 {
				testkit.Eventually(t, wait, "the missed events", func() bool { return len(c.Frames()) >= tt.events })
			}
			// Still open, and answering: an unknown event's error.
			c.Send("noSuchEvent", nil, "still")
			if f := c.ExpectRef(wait, "still"); f.Event != proto.EventError {
				t.Fatalf("reply %+v, want an error", f)
			}
			// (Frames leaves out connected and the reply, taken by Expect.)
			if n := len(c.Frames()); n != tt.events {
				t.Fatalf("%d frames besides connected and the reply, want the %d missed events", n, tt.events)
			}
		})
	}
}
