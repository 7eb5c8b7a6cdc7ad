package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
)

// An A/B run (bench/run.sh with BENCH_BASELINE or BENCH_COMPARE_RECOVERY)
// runs the same load on two or more stacks, alternating at each rate, and
// tags every result with its stack. Compare puts them side by side: the
// first stack named is the candidate, the others are what it is compared
// with, as ratios (candidate ÷ other) and differences (candidate − other).

// Saturation is a saturation search's verdict, as loadgen writes it.
type Saturation struct {
	Mode          string  `json:"mode"` // "saturation"
	Stack         string  `json:"stack,omitempty"`
	Ref           string  `json:"ref,omitempty"`
	Users         int     `json:"users"`
	Devices       int     `json:"devices"`
	Rate          float64 `json:"rate"` // highest passing R, sends/s
	Deliveries    float64 `json:"deliveries_per_s"`
	LowestFailing float64 `json:"lowest_failing_rate"`
}

// Stacks returns the stacks results and sats name, in the order they first
// appear, a stack named "candidate" first. Results without a stack count
// as "candidate".
func Stacks(results []Result, sats []Saturation) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			s = "candidate"
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, r := range results {
		add(r.Stack)
	}
	for _, s := range sats {
		add(s.Stack)
	}
	if i := slices.Index(out, "candidate"); i > 0 {
		out = append(append([]string{"candidate"}, out[:i]...), out[i+1:]...)
	}
	return out
}

func stackOf(name string) string {
	if name == "" {
		return "candidate"
	}
	return name
}

// measure is one row of a side-by-side table: how to read it from a load
// result, and how to print it.
type measure struct {
	name   string
	value  func(r Result) float64
	format string // for the value, its range and the difference
}

func cpuMeasure(label, proc string) measure {
	return measure{name: "CPU ms per 1,000 deliveries: " + label, format: "%.2f",
		value: func(r Result) float64 { return r.CPUPer1k[proc] * 1000 }}
}

var loadMeasures = []measure{
	{name: "delivery latency p50, ms", format: "%.2f", value: func(r Result) float64 { return r.Latency.P50 }},
	{name: "delivery latency p99, ms", format: "%.2f", value: func(r Result) float64 { return r.Latency.P99 }},
	cpuMeasure("gateway workers", ProcWorkers),
	cpuMeasure("gateway supervisor", ProcSupervisor),
	cpuMeasure("handlers-svc", ProcHandlers),
	cpuMeasure("nats-server", ProcNATS),
	cpuMeasure("redis-server", ProcRedis),
	{name: "CPU ms per 1,000 deliveries: **all server processes**", format: "%.2f",
		value: func(r Result) float64 { return r.CPUTotalPer1k * 1000 }},
	{name: "CPU ms per 1,000 deliveries: the load generator", format: "%.2f",
		value: func(r Result) float64 { return r.LoadgenCPUPer1k * 1000 }},
	{name: "deliveries/s", format: "%.0f", value: func(r Result) float64 { return r.DeliveriesPerSec }},
	{name: "host CPU stolen by the hypervisor, %", format: "%.1f", value: func(r Result) float64 { return 100 * r.Host.Steal }},
	{name: "Redis used memory after the run, MiB", format: "%.1f",
		value: func(r Result) float64 { return mib(r.RedisUsedMemory) }},
}

// Compare writes the side-by-side report of an A/B run: per rate, each
// measure's median over the runs of each stack (with their range when
// there are several), the ratio and difference to the candidate; then the
// saturation of each stack, and its resume runs.
func Compare(w io.Writer, results []Result, sats []Saturation) {
	stacks := Stacks(results, sats)
	refs := map[string]string{}
	for _, r := range results {
		if r.Ref != "" {
			refs[stackOf(r.Stack)] = r.Ref
		}
	}
	for _, s := range sats {
		if s.Ref != "" {
			refs[stackOf(s.Stack)] = s.Ref
		}
	}
	title := func(s string) string {
		if refs[s] != "" {
			return s + " " + refs[s]
		}
		return s
	}
	var names []string
	for _, s := range stacks {
		names = append(names, fmt.Sprintf("%s = %s", s, cmp.Or(refs[s], "(no commit given)")))
	}
	fmt.Fprintf(w, "Stacks compared: %s. Each rate ran on every stack in turn, the same number of times, alternating; a cell is the median of a stack's runs, with their range when there are several. ÷ is the candidate's figure divided by the other's, − their difference: below 1 and negative mean the candidate is lower.\n",
		strings.Join(names, ", "))

	type key struct {
		rate        float64
		users, devs int
	}
	byRate := map[key]map[string][]Result{}
	var keys []key
	for _, r := range results {
		if r.Mode != "load" {
			continue
		}
		k := key{r.Rate, r.Users, r.Devices}
		if byRate[k] == nil {
			byRate[k] = map[string][]Result{}
			keys = append(keys, k)
		}
		byRate[k][stackOf(r.Stack)] = append(byRate[k][stackOf(r.Stack)], r)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.users*a.devs, b.users*b.devs), cmp.Compare(a.rate, b.rate))
	})
	cand := stacks[0]
	for _, k := range keys {
		runs := byRate[k]
		fmt.Fprintf(w, "\n**R = %.0f sends/s**, U x D = %dx%d, runs per stack: %s\n\n", k.rate, k.users, k.devs, runCounts(stacks, runs))
		header := "| measure |"
		align := "| --- |"
		for _, s := range stacks {
			header += " " + title(s) + " |"
			align += " ---: |"
		}
		for _, s := range stacks[1:] {
			header += fmt.Sprintf(" %s ÷ %s | %s − %s |", cand, s, cand, s)
			align += " ---: | ---: |"
		}
		fmt.Fprintln(w, header)
		fmt.Fprintln(w, align)
		for _, m := range loadMeasures {
			line := "| " + m.name + " |"
			med := map[string]float64{}
			have := map[string]bool{}
			for _, s := range stacks {
				vals := values(runs[s], m.value)
				if len(vals) == 0 {
					line += " |"
					continue
				}
				med[s], have[s] = median(vals), true
				line += " " + cell(m.format, vals) + " |"
			}
			for _, s := range stacks[1:] {
				if !have[cand] || !have[s] {
					line += " | |"
					continue
				}
				line += " " + ratio(med[cand], med[s]) + " | " + diff(m.format, med[cand]-med[s]) + " |"
			}
			fmt.Fprintln(w, line)
		}
		fmt.Fprint(w, "| Redis memory added per user (the − column ÷ U), bytes |")
		for range stacks {
			fmt.Fprint(w, " |")
		}
		for _, s := range stacks[1:] {
			a, b := values(runs[cand], memOf), values(runs[s], memOf)
			if len(a) == 0 || len(b) == 0 || a[0] == 0 || b[0] == 0 {
				fmt.Fprint(w, " | |")
				continue
			}
			fmt.Fprintf(w, " | %.0f |", (median(a)-median(b))/float64(k.users))
		}
		fmt.Fprintln(w)
		line := "| missing / duplicates / errors, all runs |"
		for _, s := range stacks {
			var miss, dup, errs int64
			for _, r := range runs[s] {
				miss += r.Missing
				dup += r.Duplicates
				errs += r.Errors()
			}
			line += fmt.Sprintf(" %d / %d / %d |", miss, dup, errs)
		}
		line += strings.Repeat(" | |", len(stacks)-1)
		fmt.Fprintln(w, line)
		line = "| runs passed (p99 < 50 ms, nothing lost) |"
		for _, s := range stacks {
			n := 0
			for _, r := range runs[s] {
				if r.Pass {
					n++
				}
			}
			line += fmt.Sprintf(" %d of %d |", n, len(runs[s]))
		}
		line += strings.Repeat(" | |", len(stacks)-1)
		fmt.Fprintln(w, line)
	}
	if len(sats) > 0 {
		fmt.Fprintln(w, "\n**Saturation**: the highest R with p99 < 50 ms and nothing missing, searched on each stack in turn.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| stack | U x D | saturation, sends/s | deliveries/s | lowest failing R | candidate ÷ this |")
		fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: |")
		var candRate float64
		for _, s := range sats {
			if stackOf(s.Stack) == cand {
				candRate = s.Rate
			}
		}
		for _, st := range stacks {
			for _, s := range sats {
				if stackOf(s.Stack) != st {
					continue
				}
				fmt.Fprintf(w, "| %s | %dx%d | %.0f | %.0f | %.0f | %s |\n", title(st), s.Users, s.Devices, s.Rate, s.Deliveries, s.LowestFailing, ratio(candRate, s.Rate))
			}
		}
	}
	var resumes []Result
	for _, r := range results {
		if r.Mode == "resume" {
			resumes = append(resumes, r)
		}
	}
	if len(resumes) > 0 {
		fmt.Fprintln(w)
		ResumeMarkdown(w, resumes)
	}
}

func memOf(r Result) float64 { return float64(r.RedisUsedMemory) }

func runCounts(stacks []string, runs map[string][]Result) string {
	var parts []string
	for _, s := range stacks {
		parts = append(parts, fmt.Sprintf("%s %d", s, len(runs[s])))
	}
	return strings.Join(parts, ", ")
}

func values(rs []Result, f func(Result) float64) []float64 {
	out := make([]float64, 0, len(rs))
	for _, r := range rs {
		out = append(out, f(r))
	}
	return out
}

// median returns the median of vals (the mean of the middle two for an
// even count); vals must not be empty.
func median(vals []float64) float64 {
	s := slices.Clone(vals)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// cell is the median of vals, with their range when there are several.
func cell(format string, vals []float64) string {
	m := fmt.Sprintf(format, median(vals))
	if len(vals) < 2 {
		return m
	}
	return fmt.Sprintf("%s ("+format+"–"+format+")", m, slices.Min(vals), slices.Max(vals))
}

// ratio is a ÷ b to two decimals, or n/a when b is 0.
func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// diff is d with its sign.
func diff(format string, d float64) string {
	s := fmt.Sprintf(format, d)
	if d >= 0 && !strings.HasPrefix(s, "-") {
		return "+" + s
	}
	return s
}
