package loadgen

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseRedisTraffic(t *testing.T) {
	info := "# Stats\r\ntotal_connections_received:5\r\ntotal_net_output_bytes:987654\r\n" +
		"# Commandstats\r\ncmdstat_evalsha:calls=40,usec=9,usec_per_call=0.2\r\n" +
		"cmdstat_publish:calls=30,usec=6,usec_per_call=0.2,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_spublish:calls=12,usec=6\r\ncmdstat_publishx:calls=1000\r\n"
	tr, err := ParseRedisTraffic(info)
	if err != nil {
		t.Fatal(err)
	}
	if tr != (RedisTraffic{OutputBytes: 987654, Publishes: 42}) {
		t.Errorf("got %+v, want 987654 bytes and 42 publishes (publish and spublish, not evalsha or publishx)", tr)
	}
	if tr, err := ParseRedisTraffic("total_net_output_bytes:7\n"); err != nil || tr != (RedisTraffic{OutputBytes: 7}) {
		t.Errorf("no publish yet: %+v, %v", tr, err)
	}
	for _, bad := range []string{"", "cmdstat_publish:calls=1\n", "total_net_output_bytes:x\n",
		"total_net_output_bytes:1\ncmdstat_publish:calls=-\n", "total_net_output_bytes:1\ncmdstat_publish:usec=3\n"} {
		if _, err := ParseRedisTraffic(bad); err == nil {
			t.Errorf("ParseRedisTraffic(%q): no error", bad)
		}
	}
}

func TestFanoutDiff(t *testing.T) {
	a := FanoutSample{Redis: RedisTraffic{OutputBytes: 1000, Publishes: 10}, Workers: 8, Received: 80, Unrouted: 70}
	b := FanoutSample{Redis: RedisTraffic{OutputBytes: 21000, Publishes: 110}, Workers: 8, Received: 880, Unrouted: 770}
	st := FanoutDiff(a, b)
	want := FanoutStats{Workers: 8, Publishes: 100, RedisOutBytes: 20000, BytesPerDispatch: 200,
		Received: 800, Unrouted: 700, UnroutedShare: 0.875, ReceivedPerDispatch: 8}
	if st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	if st := FanoutDiff(a, a); st.BytesPerDispatch != 0 || st.UnroutedShare != 0 || st.ReceivedPerDispatch != 0 {
		t.Errorf("nothing happened: %+v, want no ratios", st)
	}
}

func TestFanoutMarkdown(t *testing.T) {
	run := func(mode string, bytes, readers, share, p99 float64) Result {
		return Result{Mode: "load", Stack: mode, Users: 10000, Devices: 1, Rate: 2000, Duration: 10,
			Latency: Latency{P50: 1, P99: p99}, CPUTotalPer1k: 0.5, CPUPer1k: map[string]float64{ProcWorkers: 0.2, ProcRedis: 0.1},
			Pass: true, Fanout: &FanoutStats{Workers: 8, Publishes: 40000, BytesPerDispatch: bytes,
				ReceivedPerDispatch: readers, UnroutedShare: share}}
	}
	var b strings.Builder
	FanoutMarkdown(&b, []Result{run("shared", 2400, 8, 0.875, 10), run("per_user", 300, 1, 0.002, 5)},
		[]Saturation{{Mode: "saturation", Stack: "per_user", Users: 10000, Devices: 1, Rate: 6000, Deliveries: 12000}})
	out := b.String()
	for _, want := range []string{
		"| shared | 8 | 10000x1 | 2000 | 4000 | 2400 | 8.00 | 87.5% | 87.5% |",
		"| per_user | 8 | 10000x1 | 2000 | 4000 | 300 | 1.00 | 0.2% | 87.5% |",
		"**Saturation, per_user** (U=10000, D=1)",
		"R=2000: Redis out bytes per dispatch 0.12, workers reading each dispatch 0.12, p99 0.50",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestOneToManyFrames(t *testing.T) {
	p := parseFrame([]byte(`{"event":"fanout_1n","args":{"text":"r7s12t1733112000000000000"},"pos":"k.1-2"}`))
	if p.kind != kindFan || !p.valid || p.run != 7 || p.seq != 12 || p.at != 1733112000000000000 {
		t.Errorf("1→N dispatch parsed as %+v", p)
	}
	run := &oneToManyRun{id: 7, warmSeqs: 10, endSeqs: 13, arrived: make([]atomic.Int32, 13)}
	now := time.Unix(0, 1733112000000000000).Add(3 * time.Millisecond)
	run.frame(p, now)
	run.frame(parsed{kind: kindFan, valid: true, run: 8, seq: 12}, now) // another run's
	run.frame(parsed{kind: kindFan, valid: true, run: 7, seq: 13}, now) // past the end
	run.frame(parsed{kind: kindFan, valid: true, run: 7, seq: 2}, now)  // warm-up: counted, not timed
	if run.total.Load() != 2 || run.arrived[12].Load() != 1 || run.arrived[2].Load() != 1 {
		t.Errorf("total %d, arrived[12] %d, arrived[2] %d; want 2, 1, 1",
			run.total.Load(), run.arrived[12].Load(), run.arrived[2].Load())
	}
	if run.lat.Count() != 1 || run.lat.Max() < 2*time.Millisecond {
		t.Errorf("latency: %d recorded, max %s; want the measured arrival only, 3 ms", run.lat.Count(), run.lat.Max())
	}
}

func TestJoinAnswers(t *testing.T) {
	run := &oneToManyRun{id: 7, joins: make([]atomic.Int32, 3)}
	for i := range run.joins {
		run.joins[i].Store(joinPending)
	}
	run.frame(parseFrame([]byte(`{"event":"ack","ref":"7.0","args":{"room":"bench-1n","members":1}}`)), time.Now())
	run.frame(parseFrame([]byte(`{"event":"error","ref":"7.1","args":{"code":"unavailable","message":"overloaded"}}`)), time.Now())
	run.frame(parseFrame([]byte(`{"event":"ack","ref":"8.2","args":{}}`)), time.Now()) // another run's
	run.frame(parseFrame([]byte(`{"event":"ack","ref":"7.9","args":{}}`)), time.Now()) // no such member
	if a, b, c := run.joins[0].Load(), run.joins[1].Load(), run.joins[2].Load(); a != joinDone || b != joinRefused || c != joinPending {
		t.Errorf("joins %d %d %d, want done, refused, pending", a, b, c)
	}
}

func TestOneToManyMarkdown(t *testing.T) {
	var b strings.Builder
	OneToManyMarkdown(&b, []Result{
		{Mode: "fan1n", Stack: "per_user", Target: "broadcast", Recipients: 10000, SendsPerSec: 15, DeliveriesPerSec: 150000,
			Latency: Latency{P50: 10, P90: 20, P99: 40, Max: 45}, Pass: true},
		{Mode: "load", Stack: "shared"},
	})
	out := b.String()
	if !strings.Contains(out, "| per_user | broadcast | 10000 | 15 | 150000 | 10.00 ms | 20.00 ms | 40.00 ms | 45.0 ms |") || strings.Contains(out, "| shared |") {
		t.Errorf("table:\n%s", out)
	}
}
