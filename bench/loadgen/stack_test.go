package loadgen_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard/switchboard/bench/loadgen"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestScenarioOverRealStack runs a tiny scenario against the real binaries:
// every send's deliveries and ack arrive, once each, on the right sockets.
// It checks bookkeeping, not speed.
func TestScenarioOverRealStack(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	g, err := loadgen.New(loadgen.Config{
		URL: s.URL(), Secret: testkit.Secret, Users: 4, Devices: 2, Workers: 2,
		Drain:     10 * time.Second,
		Processes: loadgen.Processes{Gateway: s.Gateway.Pid()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx := context.Background()
	if _, n, err := g.Connect(ctx); err != nil || n != 8 {
		t.Fatalf("connect: %d sockets, %v", n, err)
	}
	res := g.Load(ctx, 40, 250*time.Millisecond, time.Second)
	if res.Sends != 50 || res.Missing != 0 || res.MissingAcks != 0 || res.Duplicates != 0 ||
		res.Misrouted != 0 || res.Unknown != 0 || res.ErrorFrames != 0 || res.ConnsLost != 0 {
		t.Errorf("result: %s", res.JSON())
	}
	if res.Deliveries != 4*res.Sends || res.Latency.Count != 4*40 || res.AckLatency.Count != 40 {
		t.Errorf("deliveries %d, measured %d, acks measured %d: %s", res.Deliveries, res.Latency.Count, res.AckLatency.Count, res.JSON())
	}
	if res.GatewayRSS <= 0 {
		t.Errorf("gateway RSS not read: %s", res.JSON())
	}
}
