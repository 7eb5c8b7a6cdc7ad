package loadgen

import (
	"bufio"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHistogramQuantilesWithinOnePercent(t *testing.T) {
	var h Histogram
	rng := rand.New(rand.NewPCG(1, 2))
	var vals []time.Duration
	for range 100000 {
		// Log-uniform from 1 µs to 10 s.
		d := time.Duration(float64(time.Microsecond) * pow10(rng.Float64()*7))
		d = d.Truncate(time.Microsecond)
		vals = append(vals, d)
		h.Record(d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		if diff := float64(got-want) / float64(want); diff < -0.01 || diff > 0.01 {
			t.Errorf("q%.3f = %v, want %v (±1%%)", q, got, want)
		}
	}
	if h.Max() != vals[len(vals)-1] {
		t.Errorf("max = %v, want %v", h.Max(), vals[len(vals)-1])
	}
	if h.Count() != uint64(len(vals)) {
		t.Errorf("count = %d", h.Count())
	}
}

func pow10(x float64) float64 {
	r := 1.0
	for ; x >= 1; x-- {
		r *= 10
	}
	// 10^x for x in [0,1) by a few terms of exp(x ln 10).
	y, term := 1.0, 1.0
	for i := 1; i < 30; i++ {
		term *= x * 2.302585092994046 / float64(i)
		y += term
	}
	return r * y
}

func TestHistogramBuckets(t *testing.T) {
	for v := uint64(0); v < 1<<20; v += 1 + v/50 {
		i := bucketOf(v)
		if hi := bucketHigh(i); hi < v || (i > 0 && bucketHigh(i-1) >= v) {
			t.Fatalf("value %d in bucket %d whose range ends at %d (previous %d)", v, i, hi, bucketHigh(i-1))
		}
	}
	var h Histogram
	if h.Quantile(0.99) != 0 {
		t.Error("empty histogram has a quantile")
	}
	h.Record(-time.Second)
	if h.Max() != 0 {
		t.Errorf("negative recorded as %v", h.Max())
	}
}

func TestTrackerCountsMissingDuplicatesAndMisrouted(t *testing.T) {
	const devices = 2
	tr := NewTracker(4, devices)
	// Send 0: u0 device 1 to u1; every frame arrives, one twice.
	tr.Sent(0, 0, 1)
	for dev := range devices {
		if !tr.Arrived(0, Message, 1, dev) {
			t.Fatal("first message not new")
		}
		if !tr.Arrived(0, MessageSent, 0, dev) {
			t.Fatal("first message_sent not new")
		}
	}
	if !tr.Arrived(0, Ack, 0, 1) {
		t.Fatal("ack not new")
	}
	if tr.Arrived(0, Message, 1, 0) {
		t.Fatal("duplicate counted as new")
	}
	// Send 1: u3 device 0 to u2; one message lost, one on the wrong user,
	// the ack on the wrong device.
	tr.Sent(1, 3, 0)
	tr.Arrived(1, Message, 2, 0)
	tr.Arrived(1, Message, 3, 1) // u3 is the sender, not the partner
	tr.Arrived(1, MessageSent, 3, 0)
	tr.Arrived(1, MessageSent, 3, 1)
	tr.Arrived(1, Ack, 3, 1)
	// Send 2: answered with an error: nothing expected.
	tr.Sent(2, 4, 0)
	tr.Failed(2)
	// A frame for a send never made, and one past the end.
	tr.Arrived(3, Message, 1, 0)
	tr.Arrived(99, Ack, 0, 0)

	got := tr.Tally()
	want := Tally{
		Sends: 3, Deliveries: 7, Acks: 1, Missing: 1, MissingAcks: 1,
		Duplicates: 1, Misrouted: 2, Unknown: 2, ErrorAnswered: 1,
	}
	if got != want {
		t.Errorf("tally\n got %+v\nwant %+v", got, want)
	}
	if tr.Complete() {
		t.Error("complete with a missing delivery")
	}
	tr.Arrived(1, Message, 2, 1)
	tr.Arrived(1, Ack, 3, 0)
	if !tr.Complete() {
		t.Errorf("not complete: %+v", tr.Tally())
	}
}

func TestSumMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines{worker="0"} 5012
go_goroutines{worker="1"} 4990
go_goroutines_extra 7
switchboard_gateway_connections_open{worker="0"} 5000
switchboard_gateway_connections_open{worker="1"} 4980
`
	got := SumMetrics(bufio.NewScanner(strings.NewReader(text)), "go_goroutines", "switchboard_gateway_connections_open")
	if got["go_goroutines"] != 10002 || got["switchboard_gateway_connections_open"] != 9980 {
		t.Errorf("sums = %v", got)
	}
}

func TestReadProcSelf(t *testing.T) {
	st, err := ReadProc(pidSelf)
	if err != nil {
		t.Fatal(err)
	}
	if st.RSS <= 0 {
		t.Errorf("RSS = %d", st.RSS)
	}
}
