package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func summarize(h *Histogram) Latency {
	return Latency{
		Count: h.Count(), P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)),
		P99: ms(h.Quantile(0.99)), P999: ms(h.Quantile(0.999)), Max: ms(h.Max()),
	}
}

// Result is one phase's outcome: an idle test or a load run.
type Result struct {
	Mode     string  `json:"mode"`            // idle, load or resume
	Stack    string  `json:"stack,omitempty"` // which stack of an A/B run: candidate, baseline, ...
	Ref      string  `json:"ref,omitempty"`   // the commit that stack was built from
	Users    int     `json:"users"`
	Devices  int     `json:"devices"`
	Rate     float64 `json:"rate,omitempty"`
	Warmup   float64 `json:"warmup_s,omitempty"`
	Duration float64 `json:"duration_s,omitempty"`
	Conns    int     `json:"conns"`

	ConnectSeconds float64 `json:"connect_s,omitempty"`
	ConnectsPerSec float64 `json:"connects_per_s,omitempty"`
	DialLatency    Latency `json:"dial_latency,omitzero"` // per socket: dial to connected frame
	DialRetries    int64   `json:"dial_retries,omitempty"`

	SendsPerSec      float64 `json:"sends_per_s,omitempty"`
	DeliveriesPerSec float64 `json:"deliveries_per_s,omitempty"`
	Latency          Latency `json:"latency,omitzero"`
	AckLatency       Latency `json:"ack_latency,omitzero"`
	Tally
	ConnsLost      int64 `json:"conns_lost"`
	SendErrors     int64 `json:"send_errors"`
	ClientOverflow int64 `json:"client_overflow"`
	ErrorFrames    int64 `json:"error_frames"`

	GatewayRSS        int64              `json:"gateway_rss_bytes"`
	GatewayRSSBase    int64              `json:"gateway_rss_base_bytes,omitempty"`
	RSSPerConn        float64            `json:"rss_per_conn_bytes,omitempty"`       // (RSS open - RSS before) / conns
	RSSTotalPerConn   float64            `json:"rss_total_per_conn_bytes,omitempty"` // RSS open / conns
	Goroutines        int                `json:"goroutines,omitempty"`
	GoroutinesPerConn float64            `json:"goroutines_per_conn,omitempty"`
	ServerConns       int                `json:"server_conns,omitempty"`
	GatewayProcs      []ProcInfo         `json:"gateway_procs,omitempty"` // idle: supervisor, then workers
	Shards            int                `json:"loadgen_procs,omitempty"` // idle: load generator processes holding the sockets
	LoadgenRSS        int64              `json:"loadgen_rss_bytes,omitempty"`
	CPUPer1k          map[string]float64 `json:"cpu_s_per_1k_deliveries,omitempty"`
	CPUTotalPer1k     float64            `json:"cpu_s_per_1k_total,omitempty"` // ServerProcs summed
	LoadgenCPUPer1k   float64            `json:"loadgen_cpu_s_per_1k_deliveries,omitempty"`
	Host              HostShares         `json:"host_cpu,omitzero"`                 // load, fan1n: the machine's CPU time over the window
	RedisUsedMemory   int64              `json:"redis_used_memory_bytes,omitempty"` // after the run (Config.RedisAddr)
	RedisKeys         int64              `json:"redis_keys,omitempty"`
	Resume            *ResumeStats       `json:"resume,omitempty"`
	Fanout            *FanoutStats       `json:"fanout,omitempty"`     // Config.Fanout: what the run cost the fan-out
	Target            string             `json:"target,omitempty"`     // fan1n: room or broadcast
	Recipients        int                `json:"recipients,omitempty"` // fan1n: sockets each dispatch should reach
	Pass              bool               `json:"pass"`                 // load: p99 < 50 ms, nothing missing, no errors, rate kept; resume: every resume exact
	Closes            map[string]int     `json:"server_closes,omitempty"`
	ErrorCodes        map[string]int     `json:"error_codes,omitempty"`
}

// JSON returns r as one line.
func (r Result) JSON() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// WriteTable writes r for a person.
func (r Result) WriteTable(w io.Writer) {
	row := func(k, f string, a ...any) { fmt.Fprintf(w, "  %-28s %s\n", k, fmt.Sprintf(f, a...)) }
	switch r.Mode {
	case "idle":
		fmt.Fprintf(w, "idle: %d users x %d devices\n", r.Users, r.Devices)
		row("connections open", "%d", r.Conns)
		row("connect time", "%.3f s (%.0f conn/s)", r.ConnectSeconds, r.ConnectsPerSec)
		d := r.DialLatency
		row("per socket ms", "p50 %.2f  p99 %.2f  max %.2f  (%d failed dials retried)", d.P50, d.P99, d.Max, r.DialRetries)
		row("gateway RSS", "%.1f MiB (before: %.1f MiB)", mib(r.GatewayRSS), mib(r.GatewayRSSBase))
		row("RSS per idle conn", "%.0f B added (%.0f B total/conn)", r.RSSPerConn, r.RSSTotalPerConn)
		if r.Goroutines >= 0 {
			row("goroutines per conn", "%.2f (%d goroutines, %d conns seen by the gateway)", r.GoroutinesPerConn, r.Goroutines, r.ServerConns)
		} else {
			row("goroutines per conn", "n/a (no metrics endpoint)")
		}
		for i, p := range r.GatewayProcs {
			who := "supervisor"
			if i > 0 {
				who = "worker"
			}
			row(who, "pid %d: RSS %.1f MiB, %d fds", p.Pid, mib(p.RSS), p.FDs)
		}
		if r.Shards > 0 {
			row("load generator", "%d processes, RSS %.1f MiB in all", r.Shards, mib(r.LoadgenRSS))
		}
		if r.ConnsLost > 0 {
			row("sockets lost while held", "%d", r.ConnsLost)
		}
	case "load":
		fmt.Fprintf(w, "load%s: %d users x %d devices, R=%.0f sends/s, %.0f s after %.0f s warm-up\n",
			stackNote(r), r.Users, r.Devices, r.Rate, r.Duration, r.Warmup)
		row("sends/s", "%.0f", r.SendsPerSec)
		row("deliveries/s", "%.0f", r.DeliveriesPerSec)
		l := r.Latency
		row("delivery latency ms", "p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (n=%d)", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
		a := r.AckLatency
		row("ack latency ms", "p50 %.2f  p99 %.2f  max %.2f", a.P50, a.P99, a.Max)
		row("missing / dup / misrouted", "%d / %d / %d (acks missing %d)", r.Missing, r.Duplicates, r.Misrouted, r.MissingAcks)
		row("errors", "%d error frames, %d send errors, %d overflow, %d conns lost", r.ErrorFrames, r.SendErrors, r.ClientOverflow, r.ConnsLost)
		row("gateway RSS", "%.1f MiB", mib(r.GatewayRSS))
		if r.RedisUsedMemory > 0 {
			row("redis used memory", "%.1f MiB, %d keys", mib(r.RedisUsedMemory), r.RedisKeys)
		}
		names := make([]string, 0, len(r.CPUPer1k))
		for k := range r.CPUPer1k {
			names = append(names, k)
		}
		slices.Sort(names)
		var parts []string
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s %.3f", n, r.CPUPer1k[n]))
		}
		parts = append(parts, fmt.Sprintf("all servers %.3f", r.CPUTotalPer1k), fmt.Sprintf("loadgen %.3f", r.LoadgenCPUPer1k))
		row("CPU s per 1k deliveries", "%s", strings.Join(parts, ", "))
		row("host CPU", "%s busy, %s stolen by the hypervisor", pct(r.Host.Busy), pct(r.Host.Steal))
		if f := r.Fanout; f != nil {
			row("fan-out", "%d workers, %d dispatches, %.0f Redis out bytes each, read by %.2f workers each, %s of the reads unrouted",
				f.Workers, f.Publishes, f.BytesPerDispatch, f.ReceivedPerDispatch, pct(f.UnroutedShare))
		}
		row("pass (p99<50ms, none lost)", "%v", r.Pass)
	case "resume":
		r.writeResume(w, row)
	case "fan1n":
		fmt.Fprintf(w, "1→N%s: %s, %d sockets each, %.0f dispatches/s, %.0f s after %.0f s warm-up\n",
			stackNote(r), r.Target, r.Recipients, r.Rate, r.Duration, r.Warmup)
		row("deliveries/s", "%.0f", r.DeliveriesPerSec)
		l := r.Latency
		row("delivery latency ms", "p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (n=%d)", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
		row("missing / dup", "%d / %d", r.Missing, r.Duplicates)
		row("errors", "%d error frames, %d failed dispatches, %d conns lost", r.ErrorFrames, r.SendErrors, r.ConnsLost)
		row("CPU s per 1k deliveries", "workers %.3f, handlers-svc %.3f, redis %.3f, all servers %.3f",
			r.CPUPer1k[ProcWorkers], r.CPUPer1k[ProcHandlers], r.CPUPer1k[ProcRedis], r.CPUTotalPer1k)
		row("pass (p99<=50ms, none lost)", "%v", r.Pass)
	}
	if len(r.ErrorCodes) > 0 {
		row("error frames by code", "%v", r.ErrorCodes)
	}
	if len(r.Closes) > 0 {
		row("server closes", "%v", r.Closes)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// stackNote names r's stack for a heading, or is empty outside A/B runs.
func stackNote(r Result) string {
	if r.Stack == "" {
		return ""
	}
	if r.Ref != "" {
		return fmt.Sprintf(" [%s %s]", r.Stack, r.Ref)
	}
	return " [" + r.Stack + "]"
}

// Markdown writes results as Markdown tables: one for idle tests, one for
// load runs.
func Markdown(w io.Writer, results []Result) {
	var idle, load, resume []Result
	for _, r := range results {
		switch r.Mode {
		case "idle":
			idle = append(idle, r)
		case "resume":
			resume = append(resume, r)
		default:
			load = append(load, r)
		}
	}
	defer func() {
		if len(resume) > 0 {
			fmt.Fprintln(w)
			ResumeMarkdown(w, resume)
		}
	}()
	if len(idle) > 0 {
		// The stack is named only in an A/B run, so one-stack reports
		// keep their columns.
		stacked := slices.ContainsFunc(idle, func(r Result) bool { return r.Stack != "" })
		first := func(r Result) string {
			if stacked {
				return "| " + stackName(r) + " "
			}
			return ""
		}
		if stacked {
			fmt.Fprint(w, "| stack ")
		}
		fmt.Fprintln(w, "| idle conns | connect time | gateway RSS | RSS added per conn | RSS total per conn | goroutines per conn |")
		if stacked {
			fmt.Fprint(w, "| --- ")
		}
		fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, r := range idle {
			gor := "n/a"
			if r.Goroutines >= 0 {
				gor = fmt.Sprintf("%.2f", r.GoroutinesPerConn)
			}
			fmt.Fprintf(w, "%s| %d | %.2f s | %.1f MiB | %.0f B | %.0f B | %s |\n",
				first(r), r.Conns, r.ConnectSeconds, mib(r.GatewayRSS), r.RSSPerConn, r.RSSTotalPerConn, gor)
		}
		fmt.Fprintln(w)
		for _, r := range idle {
			if len(r.GatewayProcs) == 0 {
				continue
			}
			fmt.Fprintf(w, "Gateway processes%s holding %d sockets (supervisor first, then the workers):\n\n", stackNote(r), r.Conns)
			fmt.Fprintln(w, "| pid | RSS | open fds |")
			fmt.Fprintln(w, "| ---: | ---: | ---: |")
			for _, p := range r.GatewayProcs {
				fmt.Fprintf(w, "| %d | %.1f MiB | %d |\n", p.Pid, mib(p.RSS), p.FDs)
			}
			fmt.Fprintln(w)
			if r.Shards > 0 {
				fmt.Fprintf(w, "Load generator: %d processes, %.1f MiB RSS in all; %d dials retried; %d sockets lost while held.\n\n",
					r.Shards, mib(r.LoadgenRSS), r.DialRetries, r.ConnsLost)
			}
		}
	}
	if len(load) > 0 {
		fmt.Fprintln(w, "| stack | U x D | R (sends/s) | sends/s | deliveries/s | p50 | p90 | p99 | p99.9 | max | missing | dup | errors | CPU s/1k: workers | supervisor | handlers-svc | nats | redis | all servers | loadgen | host stolen | pass |")
		fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
		for _, r := range load {
			l := r.Latency
			errs := r.Errors()
			fmt.Fprintf(w, "| %s | %dx%d | %.0f | %.0f | %.0f | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.1f ms | %d | %d | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %s |\n",
				stackName(r), r.Users, r.Devices, r.Rate, r.SendsPerSec, r.DeliveriesPerSec, l.P50, l.P90, l.P99, l.P999, l.Max,
				r.Missing, r.Duplicates, errs, r.CPUPer1k[ProcWorkers], r.CPUPer1k[ProcSupervisor], r.CPUPer1k[ProcHandlers],
				r.CPUPer1k[ProcNATS], r.CPUPer1k[ProcRedis], r.CPUTotalPer1k, r.LoadgenCPUPer1k, pct(r.Host.Steal), yes(r.Pass))
		}
	}
}

// stackName is r's stack and commit for a table cell: "candidate" outside
// A/B runs.
func stackName(r Result) string {
	name := r.Stack
	if name == "" {
		name = "candidate"
	}
	if r.Ref != "" {
		name += " " + r.Ref
	}
	return name
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

// Errors is what went wrong in a load run beyond missing and duplicated
// deliveries, as the reports' errors columns count it: error frames,
// sends that failed or that the load generator dropped (its queue full),
// sockets lost, misrouted and unknown frames, and sends answered with no
// ack.
func (r Result) Errors() int64 {
	return r.ErrorFrames + r.SendErrors + r.ClientOverflow + r.ConnsLost + r.Misrouted + r.Unknown + r.MissingAcks
}
