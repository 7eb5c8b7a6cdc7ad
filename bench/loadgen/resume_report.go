package loadgen

import (
	"fmt"
	"io"
)

// ResumeStats is what a resume run counted (Result.Resume). The resume
// latency is Result.Latency (dial to the last missed event), the time to
// the connected frame Result.DialLatency, and missed events that never
// came and duplicates are Result.Missing and Result.Duplicates.
type ResumeStats struct {
	Rounds         int     `json:"rounds"`
	MissedEach     int     `json:"missed_each"`           // messages sent to each away user
	Resumes        int64   `json:"resumes"`               // reconnects with resume=
	Recovered      int64   `json:"recovered"`             // answered recovered:true
	NotRecovered   int64   `json:"not_recovered"`         // answered recovered:false, or nothing
	MissedMismatch int64   `json:"missed_mismatch"`       // connected's missed was not the messages acked
	PosMismatch    int64   `json:"pos_mismatch"`          // recovered, but connected's pos was not the resume position
	Replayed       int64   `json:"replayed"`              // missed events received, each once
	ReplayedPerSec float64 `json:"replayed_per_s"`        // over the time resumes were under way
	OutOfOrder     int64   `json:"out_of_order"`          // missed events not in their place (sent order)
	PosGaps        int64   `json:"pos_gaps"`              // an event whose offset does not follow the last one handled
	Unexpected     int64   `json:"unexpected"`            // a frame on a resumed socket that is none of its missed events
	Incomplete     int64   `json:"incomplete"`            // resumes whose last missed event had not come by the timeout
	DialErrors     int64   `json:"dial_errors"`           // reconnects that failed
	GoalMet        bool    `json:"p99_within_goal"`       // p99 <= ResumeGoal
	Unsupported    bool    `json:"unsupported,omitempty"` // the stack has no recovery: nothing was measured
}

// correct reports whether every resume recovered exactly what it missed.
func (st *ResumeStats) correct() bool {
	return st.NotRecovered == 0 && st.MissedMismatch == 0 && st.PosMismatch == 0 && st.OutOfOrder == 0 &&
		st.PosGaps == 0 && st.Unexpected == 0 && st.Incomplete == 0 && st.DialErrors == 0
}

// writeResume writes a resume result for a person (WriteTable).
func (r Result) writeResume(w io.Writer, row func(k, f string, a ...any)) {
	st := r.Resume
	if st == nil {
		st = &ResumeStats{}
	}
	fmt.Fprintf(w, "resume%s: %d users x %d devices, %d missed events each, %d rounds, %.0f reconnects/s\n",
		stackNote(r), r.Users, r.Devices, st.MissedEach, st.Rounds, r.Rate)
	if st.Unsupported {
		row("not measured", "the stack has no recovery (no position in its connected frames)")
		return
	}
	l := r.Latency
	row("resume latency ms", "p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (n=%d; goal p99 <= %d ms: %v)",
		l.P50, l.P90, l.P99, l.Max, l.Count, ResumeGoal.Milliseconds(), st.GoalMet)
	d := r.DialLatency
	row("dial to connected ms", "p50 %.2f  p99 %.2f  max %.2f", d.P50, d.P99, d.Max)
	row("resumes", "%d: %d recovered, %d not; %d with a wrong missed count, %d with a wrong position", st.Resumes, st.Recovered, st.NotRecovered, st.MissedMismatch, st.PosMismatch)
	row("missed events", "%d replayed (%.0f/s), %d missing, %d duplicates, %d out of order, %d offset gaps, %d unexpected",
		st.Replayed, st.ReplayedPerSec, r.Missing, r.Duplicates, st.OutOfOrder, st.PosGaps, st.Unexpected)
	row("errors", "%d incomplete, %d failed reconnects, %d of %d sends failed, %d error frames, %d conns lost",
		st.Incomplete, st.DialErrors, r.SendErrors, r.Sends, r.ErrorFrames, r.ConnsLost)
	row("CPU s per 1k replayed", "workers %.3f, supervisor %.3f, handlers-svc %.3f, nats %.3f, redis %.3f, all servers %.3f, loadgen %.3f",
		r.CPUPer1k[ProcWorkers], r.CPUPer1k[ProcSupervisor], r.CPUPer1k[ProcHandlers], r.CPUPer1k[ProcNATS],
		r.CPUPer1k[ProcRedis], r.CPUTotalPer1k, r.LoadgenCPUPer1k)
	row("pass (all exact, none lost)", "%v", r.Pass)
}

// ResumeMarkdown writes resume results as a Markdown table.
func ResumeMarkdown(w io.Writer, results []Result) {
	fmt.Fprintf(w, "**Resume** (docs/protocol.md section 6): devices drop, their partners send each of them the missed events, they reconnect with `resume=<last position>`; latency from the reconnect's dial to the last missed event received. Goal: p99 ≤ %d ms.\n\n", ResumeGoal.Milliseconds())
	fmt.Fprintln(w, "| stack | U x D | missed each | resumes | reconnects/s | p50 | p90 | p99 | max | to connected p99 | recovered / not | missing | dup | out of order | other errors | replayed/s | CPU ms/1k replayed, all servers | redis | p99 ≤ goal | pass |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
	for _, r := range results {
		st := r.Resume
		if st == nil || st.Unsupported {
			fmt.Fprintf(w, "| %s | %dx%d | | | | not measured: no recovery on this stack | | | | | | | | | | | | | | |\n", stackName(r), r.Users, r.Devices)
			continue
		}
		l := r.Latency
		other := st.MissedMismatch + st.PosMismatch + st.PosGaps + st.Unexpected + st.Incomplete + st.DialErrors +
			r.SendErrors + r.ErrorFrames + r.ConnsLost
		fmt.Fprintf(w, "| %s | %dx%d | %d | %d | %.0f | %.2f ms | %.2f ms | %.2f ms | %.1f ms | %.2f ms | %d / %d | %d | %d | %d | %d | %.0f | %.2f | %.2f | %s | %s |\n",
			stackName(r), r.Users, r.Devices, st.MissedEach, st.Resumes, r.Rate, l.P50, l.P90, l.P99, l.Max, r.DialLatency.P99,
			st.Recovered, st.NotRecovered, r.Missing, r.Duplicates, st.OutOfOrder, other, st.ReplayedPerSec,
			r.CPUTotalPer1k*1000, r.CPUPer1k[ProcRedis]*1000, yes(st.GoalMet), yes(r.Pass))
	}
}
