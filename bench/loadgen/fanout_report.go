package loadgen

import (
	"fmt"
	"io"
	"strings"
)

// FanoutMarkdown writes the fan-out scenario's load runs (those with
// Result.Fanout) as a Markdown table, a row per mode and rate, the mode
// being the run's stack (shared, per_user); then each mode's saturation,
// and, for every rate both modes ran, per_user's figures as ratios of
// shared's.
func FanoutMarkdown(w io.Writer, results []Result, sats []Saturation) {
	fmt.Fprintln(w, "| FANOUT_MODE | W | U x D | R (sends/s) | dispatches/s | Redis out bytes / dispatch | workers reading each dispatch | unrouted share | (W-D)/W | deliveries/s | p50 | p99 | missing | CPU s/1k: workers | handlers-svc | redis | all servers | pass |")
	fmt.Fprintln(w, "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	byKey := map[string]Result{}
	for _, r := range results {
		f := r.Fanout
		if r.Mode != "load" || f == nil {
			continue
		}
		byKey[fmt.Sprintf("%s@%.0f", r.Stack, r.Rate)] = r
		var expect string
		if f.Workers > 0 {
			expect = pct(float64(max(f.Workers-r.Devices, 0)) / float64(f.Workers))
		}
		fmt.Fprintf(w, "| %s | %d | %dx%d | %.0f | %.0f | %.0f | %.2f | %s | %s | %.0f | %.2f ms | %.2f ms | %d | %.3f | %.3f | %.3f | %.3f | %s |\n",
			stackName(r), f.Workers, r.Users, r.Devices, r.Rate, float64(f.Publishes)/max(r.Duration, 1e-9),
			f.BytesPerDispatch, f.ReceivedPerDispatch, pct(f.UnroutedShare), expect, r.DeliveriesPerSec,
			r.Latency.P50, r.Latency.P99, r.Missing, r.CPUPer1k[ProcWorkers], r.CPUPer1k[ProcHandlers],
			r.CPUPer1k[ProcRedis], r.CPUTotalPer1k, yes(r.Pass))
	}
	for _, s := range sats {
		name := s.Stack
		if name == "" {
			name = "candidate"
		}
		fmt.Fprintf(w, "\n**Saturation, %s** (U=%d, D=%d): highest R with p99 < 50 ms and nothing missing = **%.0f sends/s** (%.0f deliveries/s); lowest failing R tried: %.0f.\n",
			name, s.Users, s.Devices, s.Rate, s.Deliveries, s.LowestFailing)
	}
	var ratios []string
	for _, r := range results {
		if r.Stack != "per_user" || r.Fanout == nil {
			continue
		}
		sh, ok := byKey[fmt.Sprintf("shared@%.0f", r.Rate)]
		if !ok {
			continue
		}
		ratios = append(ratios, fmt.Sprintf("- R=%.0f: Redis out bytes per dispatch %s, workers reading each dispatch %s, p99 %s, CPU of all servers per delivery %s, of the workers %s, of Redis %s",
			r.Rate, ratio(r.Fanout.BytesPerDispatch, sh.Fanout.BytesPerDispatch),
			ratio(r.Fanout.ReceivedPerDispatch, sh.Fanout.ReceivedPerDispatch),
			ratio(r.Latency.P99, sh.Latency.P99), ratio(r.CPUTotalPer1k, sh.CPUTotalPer1k),
			ratio(r.CPUPer1k[ProcWorkers], sh.CPUPer1k[ProcWorkers]), ratio(r.CPUPer1k[ProcRedis], sh.CPUPer1k[ProcRedis])))
	}
	if len(ratios) > 0 {
		fmt.Fprintln(w, "\nper_user as a ratio of shared (per_user ÷ shared), at each rate:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(ratios, "\n"))
	}
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

// OneToManyMarkdown writes the 1→N scenario's phases (mode fan1n) as a
// Markdown table.
func OneToManyMarkdown(w io.Writer, results []Result) {
	fmt.Fprintln(w, "| FANOUT_MODE | target | sockets per dispatch | dispatches/s | deliveries/s | p50 | p90 | p99 | max | missing | dup | errors | CPU s/1k: workers | handlers-svc | redis | all servers | loadgen | pass (p99 ≤ 50 ms, none lost) |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range results {
		if r.Mode != "fan1n" {
			continue
		}
		l := r.Latency
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %.0f | %.2f ms | %.2f ms | %.2f ms | %.1f ms | %d | %d | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %s |\n",
			stackName(r), r.Target, r.Recipients, r.SendsPerSec, r.DeliveriesPerSec, l.P50, l.P90, l.P99, l.Max,
			r.Missing, r.Duplicates, r.ErrorFrames+r.SendErrors+r.ConnsLost, r.CPUPer1k[ProcWorkers], r.CPUPer1k[ProcHandlers],
			r.CPUPer1k[ProcRedis], r.CPUTotalPer1k, r.LoadgenCPUPer1k, yes(r.Pass))
	}
}
