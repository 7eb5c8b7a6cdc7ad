package loadgen

import (
	"strings"
	"testing"
)

func abResult(stack, ref string, rate, p99, workersCPU float64, mem int64) Result {
	cpu := map[string]float64{ProcWorkers: workersCPU, ProcSupervisor: 0.001, ProcHandlers: 0.02, ProcNATS: 0.01, ProcRedis: 0.005}
	return Result{Mode: "load", Stack: stack, Ref: ref, Users: 1000, Devices: 2, Rate: rate, DeliveriesPerSec: rate * 4,
		Latency: Latency{P50: 0.5, P99: p99}, CPUPer1k: cpu, CPUTotalPer1k: TotalCPU(cpu), RedisUsedMemory: mem, Pass: true}
}

// TestCompareSideBySide: per rate, each stack's median over its runs with
// their range, and the candidate's ratio and difference to the other.
func TestCompareSideBySide(t *testing.T) {
	results := []Result{
		abResult("candidate", "aa1d427", 4000, 3, 0.020, 60<<20),
		abResult("baseline", "fff6f93", 4000, 8, 0.040, 50<<20),
		abResult("candidate", "aa1d427", 4000, 5, 0.030, 60<<20),
		abResult("baseline", "fff6f93", 4000, 10, 0.040, 50<<20),
		abResult("baseline", "fff6f93", 1000, 2, 0.050, 50<<20),
		abResult("candidate", "aa1d427", 1000, 1, 0.025, 60<<20),
	}
	results[3].Missing, results[3].Pass = 7, false
	sats := []Saturation{
		{Mode: "saturation", Stack: "baseline", Ref: "fff6f93", Users: 1000, Devices: 2, Rate: 10000, Deliveries: 40000, LowestFailing: 11000},
		{Mode: "saturation", Stack: "candidate", Ref: "aa1d427", Users: 1000, Devices: 2, Rate: 12000, Deliveries: 48000, LowestFailing: 13000},
	}
	if got := Stacks(results[4:], sats); strings.Join(got, ",") != "candidate,baseline" {
		t.Errorf("stacks %v, want the candidate first", got)
	}
	var b strings.Builder
	Compare(&b, results, sats)
	out := b.String()
	for _, want := range []string{
		"Stacks compared: candidate = aa1d427, baseline = fff6f93.",
		"| measure | candidate aa1d427 | baseline fff6f93 | candidate ÷ baseline | candidate − baseline |",
		// R = 1,000 before R = 4,000.
		"**R = 1000 sends/s**, U x D = 1000x2, runs per stack: candidate 1, baseline 1",
		"**R = 4000 sends/s**, U x D = 1000x2, runs per stack: candidate 2, baseline 2",
		// Medians, ranges, ratio and difference.
		"| delivery latency p99, ms | 4.00 (3.00–5.00) | 9.00 (8.00–10.00) | 0.44 | -5.00 |",
		"| CPU ms per 1,000 deliveries: gateway workers | 25.00 (20.00–30.00) | 40.00 (40.00–40.00) | 0.62 | -15.00 |",
		"| CPU ms per 1,000 deliveries: **all server processes** | 61.00 (56.00–66.00) | 76.00 (76.00–76.00) | 0.80 | -15.00 |",
		"| Redis used memory after the run, MiB | 60.0 (60.0–60.0) | 50.0 (50.0–50.0) | 1.20 | +10.0 |",
		"| Redis memory added per user (the − column ÷ U), bytes | | | | 10486 |",
		"| missing / duplicates / errors, all runs | 0 / 0 / 0 | 7 / 0 / 0 | | |",
		"| runs passed (p99 < 50 ms, nothing lost) | 2 of 2 | 1 of 2 | | |",
		"| candidate aa1d427 | 1000x2 | 12000 | 48000 | 13000 | 1.00 |",
		"| baseline fff6f93 | 1000x2 | 10000 | 40000 | 11000 | 1.20 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks\n%s\n--- report:\n%s", want, out)
		}
	}
	if strings.Index(out, "R = 1000 ") > strings.Index(out, "R = 4000 ") {
		t.Error("rates not in order")
	}
}

func TestMedianCellRatioDiff(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median of 3 = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median of 4 = %v", m)
	}
	if c := cell("%.1f", []float64{2}); c != "2.0" {
		t.Errorf("one value: %q", c)
	}
	if r := ratio(1, 0); r != "n/a" {
		t.Errorf("ratio to 0: %q", r)
	}
	if d := diff("%.2f", 0); d != "+0.00" {
		t.Errorf("diff 0: %q", d)
	}
	if d := diff("%.2f", -0.001); d != "-0.00" {
		t.Errorf("diff -0.001: %q", d)
	}
}
