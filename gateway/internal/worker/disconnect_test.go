package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestDisconnectLogsEachFieldOnce: the lines a backend's disconnect logs
// carry the worker once, from the worker's logger (as main builds it),
// with the user and conn of the socket closed. They carried "worker"
// twice, a JSON object with a repeated key, which log pipelines read
// differently or reject.
func TestDisconnectLogsEachFieldOnce(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	pub := publisher(t, rd.URL())

	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core).With(zap.Int("worker", 2), zap.Int("pid", 1)) // as main's wlog
	r := startWorkerWith(t, cfg, 2, log)

	a := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "alice", time.Hour))
	body, err := json.Marshal(proto.Disconnect{
		Control: proto.ControlDisconnect, Users: []string{"alice"}, Reason: "banned",
		RevokeBefore: time.Now().UnixMilli(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), proto.Channel, body).Err(); err != nil {
		t.Fatal(err)
	}
	if code := testkit.CloseCode(a.WaitClosed(wait)); code != proto.CloseDisconnected {
		t.Fatalf("close code %d, want %d", code, proto.CloseDisconnected)
	}

	for _, msg := range []string{"tokens revoked by a backend", "socket disconnected by a backend"} {
		entries := logs.FilterMessage(msg).All()
		if len(entries) != 1 {
			t.Fatalf("%d %q lines, want 1", len(entries), msg)
		}
		seen := map[string]int{}
		for _, f := range entries[0].Context {
			seen[f.Key]++
		}
		for key, count := range seen {
			if count != 1 {
				t.Errorf("%q carries %q %d times, want once", msg, key, count)
			}
		}
		if seen["worker"] != 1 {
			t.Errorf("%q has no worker field", msg)
		}
		if msg == "socket disconnected by a backend" {
			fields := entries[0].ContextMap()
			if fields["user"] != "alice" || fields["conn"] != a.Conn {
				t.Errorf("%q says user %v conn %v, want alice %s", msg, fields["user"], fields["conn"], a.Conn)
			}
		}
	}
}
