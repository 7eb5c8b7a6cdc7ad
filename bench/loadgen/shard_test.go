package loadgen

import (
	"testing"
	"time"
)

func TestSplitUsersWholePairsCoverEveryUser(t *testing.T) {
	for _, c := range []struct{ users, k int }{{100000 / 2, 6}, {10, 3}, {2, 1}, {14, 7}, {50000, 5}} {
		rs, err := SplitUsers(c.users, c.k)
		if err != nil {
			t.Fatalf("%d over %d: %v", c.users, c.k, err)
		}
		if len(rs) != c.k {
			t.Fatalf("%d over %d: %d ranges", c.users, c.k, len(rs))
		}
		next, lo, hi := 0, c.users, 0
		for _, r := range rs {
			if r.First != next || r.Count < 2 || r.Count%2 != 0 {
				t.Fatalf("%d over %d: bad range %+v after %d: %v", c.users, c.k, r, next, rs)
			}
			next += r.Count
			lo, hi = min(lo, r.Count), max(hi, r.Count)
		}
		if next != c.users || hi-lo > 2 {
			t.Errorf("%d over %d: %v", c.users, c.k, rs)
		}
	}
	for _, c := range []struct{ users, k int }{{7, 1}, {0, 1}, {4, 3}, {4, 0}} {
		if _, err := SplitUsers(c.users, c.k); err == nil {
			t.Errorf("%d over %d: no error", c.users, c.k)
		}
	}
}

func TestHistogramSnapshotMergeEqualsOneHistogram(t *testing.T) {
	var a, b, all, merged Histogram
	for i := range 5000 {
		d := time.Duration(i*i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	merged.Merge(a.Snapshot())
	merged.Merge(b.Snapshot())
	if merged.Count() != all.Count() || merged.Max() != all.Max() {
		t.Fatalf("count %d max %v, want %d %v", merged.Count(), merged.Max(), all.Count(), all.Max())
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		if merged.Quantile(q) != all.Quantile(q) {
			t.Errorf("q%v = %v, want %v", q, merged.Quantile(q), all.Quantile(q))
		}
	}
}

func TestMergeShardsSumsAndSpansTheConnectTime(t *testing.T) {
	var h1, h2 Histogram
	h1.Record(2 * time.Millisecond)
	h2.Record(40 * time.Millisecond)
	h2.Record(3 * time.Millisecond)
	t0 := time.Unix(1000, 0).UnixNano()
	reps := []ShardReport{
		{Users: 4, Conns: 8, Start: t0 + int64(10*time.Millisecond), End: t0 + int64(3*time.Second), Dials: h1.Snapshot(), DialRetries: 1, RSS: 10 << 20},
		{Users: 6, Conns: 12, Start: t0, End: t0 + int64(4*time.Second), Dials: h2.Snapshot(), DialRetries: 2, ConnsLost: 1, RSS: 20 << 20},
	}
	var res Result
	MergeShards(&res, reps)
	if res.Users != 10 || res.Conns != 20 || res.DialRetries != 3 || res.ConnsLost != 1 || res.Shards != 2 || res.LoadgenRSS != 30<<20 {
		t.Errorf("sums: %s", res.JSON())
	}
	if res.ConnectSeconds != 4 || res.ConnectsPerSec != 5 {
		t.Errorf("connect %v s, %v/s; want 4 s, 5/s", res.ConnectSeconds, res.ConnectsPerSec)
	}
	if res.DialLatency.Count != 3 || res.DialLatency.Max != 40 || res.DialLatency.P50 < 3 || res.DialLatency.P50 > 3.03 {
		t.Errorf("dial latency %+v", res.DialLatency)
	}
}
