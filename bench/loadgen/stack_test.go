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

// TestResumeOverRealStack runs the resume scenario against the real
// binaries, recovery on (the default): two rounds, so every user's devices
// go away once and every socket has handled live events before it drops;
// each resume is recovered with exactly what it missed.
func TestResumeOverRealStack(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	g := resumeGenerator(t, s)
	res, err := g.Resume(context.Background(), loadgen.ResumeOptions{Missed: 5, Rounds: 2, Rate: 200, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := res.Resume
	// 4 users x 2 devices: each round 2 users' 4 devices resume.
	if !res.Pass || st.Resumes != 8 || st.Recovered != 8 || st.Replayed != 8*5 || res.Latency.Count != 8 ||
		res.Sends != 2*2*5 || res.Missing != 0 || res.Duplicates != 0 {
		t.Errorf("result: %s", res.JSON())
	}
	if res.Latency.P50 <= 0 || res.DialLatency.Count != 8 {
		t.Errorf("latencies: %s", res.JSON())
	}
}

// TestResumeWithoutRecovery: a gateway with recovery off sends no
// positions, and the scenario says it measured nothing rather than fail.
func TestResumeWithoutRecovery(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1, Env: []string{"HISTORY_WINDOW=0"}})
	g := resumeGenerator(t, s)
	res, err := g.Resume(context.Background(), loadgen.ResumeOptions{Missed: 5, Rounds: 1, Rate: 200})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resume == nil || !res.Resume.Unsupported || res.Pass || res.Conns != 8 {
		t.Errorf("result: %s", res.JSON())
	}
}

func resumeGenerator(t *testing.T, s *testkit.Stack) *loadgen.Generator {
	t.Helper()
	g, err := loadgen.New(loadgen.Config{
		URL: s.URL(), Secret: testkit.Secret, Users: 4, Devices: 2, Workers: s.Workers,
		Processes: loadgen.Processes{Gateway: s.Gateway.Pid()}, KeepPositions: true,
		RedisAddr: s.Redis.Addr(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}
