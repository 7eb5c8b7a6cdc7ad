package recovery

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// report is the soak report: what every test of the matrix did, and the
// totals the soak is judged by.
type report struct {
	results []Result
	start   time.Time
	end     time.Time
	passed  bool
	total   Result
}

func newReport(results []Result, start, end time.Time, passed bool) *report {
	r := &report{results: results, start: start, end: end, passed: passed}
	t := &r.total
	t.Stats.Resyncs = map[string]int{}
	t.Metrics = map[string]float64{}
	for _, res := range results {
		s := res.Stats
		t.Faults += res.Faults
		t.Skipped += res.Skipped
		t.Stats.Dispatched += s.Dispatched
		t.Stats.Acked += s.Acked
		t.Stats.Failed += s.Failed
		t.Stats.Events += s.Events
		t.Stats.Connects += s.Connects
		t.Stats.Resumes += s.Resumes
		t.Stats.Recovered += s.Recovered
		t.Stats.Replayed += s.Replayed
		t.Stats.NotRecovered += s.NotRecovered
		t.Stats.Gaps += s.Gaps
		t.Stats.Duplicates += s.Duplicates
		t.Stats.Violations += s.Violations
		for k, v := range s.Resyncs {
			t.Stats.Resyncs[k] += v
		}
		for k, v := range res.Metrics {
			t.Metrics[k] += v
		}
	}
	t.Duration = end.Sub(start)
	return r
}

// ok reports whether the soak passed: every test passed, and 0 gaps, 0
// duplicates and no violation in all the events checked.
func (r *report) ok() bool {
	s := r.total.Stats
	return r.passed && s.Gaps == 0 && s.Duplicates == 0 && s.Violations == 0
}

// summary is the report's one-paragraph gist, for the terminal.
func (r *report) summary() string {
	s := r.total.Stats
	return fmt.Sprintf("%d tests, %d events checked (%d dispatched, %d confirmed), %d faults, %d resumes (%d recovered, %d not), %d resyncs, %d gaps, %d duplicates, %d violations in %s: pass=%v",
		len(r.results), s.Events, s.Dispatched, s.Acked, r.total.Faults, s.Resumes, s.Recovered, s.NotRecovered,
		s.Resynced(), s.Gaps, s.Duplicates, s.Violations, r.total.Duration.Round(time.Second), r.ok())
}

// write writes the Markdown report to path and, with csvPath, appends the
// run's row to that CSV of all runs.
func (r *report) write(path, csvPath string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	r.markdown(f)
	if err := f.Close(); err != nil {
		return err
	}
	if csvPath == "" {
		return nil
	}
	return r.appendCSV(csvPath)
}

func (r *report) markdown(w io.Writer) {
	s := r.total.Stats
	fmt.Fprintf(w, "# switchboard soak: zero-gap delivery through the fault matrix, %s UTC\n\n", r.start.UTC().Format("2006-01-02 15:04"))
	fmt.Fprintf(w, "%s\n\n", r.summary())
	fmt.Fprintf(w, "- how: `make soak` (`SOAK_EVENTS=%s SOAK_RATE=%s`), the tests of `e2e/recovery` over the real binaries; commit %s\n",
		env("SOAK_EVENTS", strconv.Itoa(defaultSoakEvents)), env("SOAK_RATE", "(each test's default)"), commit())
	fmt.Fprintf(w, "- machine: %d cores, %s, %s; race detector %s; load average at the end %s\n",
		runtime.NumCPU(), runtime.Version(), redisVersion(), onOff(raceEnabled), loadAvg())
	fmt.Fprintf(w, "- what is checked (package `e2e/seqcheck`): every frame every device processed; per device and stream, offsets +1 within an epoch across every resume with recovered:true, no event twice, one event per position; at the end every device at its streams' tops with every confirmed event dispatched since its chain began. recovered:false and resync start a new chain and are counted below.\n\n")
	fmt.Fprintln(w, "| test | time | faults | events checked | dispatched | confirmed | unconfirmed | resumes | recovered | not recovered | replayed | resyncs | gaps | duplicates | violations | gaps healed (gateway) | resubscriptions | duplicates dropped |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	rows := append(append([]Result(nil), r.results...), r.total)
	for i, res := range rows {
		name := "`" + res.Name + "`"
		if i == len(rows)-1 {
			name = "**total**"
		}
		t := res.Stats
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %.0f | %.0f | %.0f |\n",
			name, res.Duration.Round(100*time.Millisecond), res.Faults, t.Events, t.Dispatched, t.Acked, t.Failed,
			t.Resumes, t.Recovered, t.NotRecovered, t.Replayed, t.Resynced(), t.Gaps, t.Duplicates, t.Violations,
			res.Metrics["gaps_healed"], res.Metrics["redis_resubscriptions"], res.Metrics["duplicates_dropped"])
	}
	fmt.Fprintf(w, "\nResyncs by reason: %v. Unconfirmed events (the author's socket or Redis went away before the answer) may or may not have been dispatched; a device may get each once or not at all. Posts the load skipped because every author was busy: %d.\n",
		s.Resyncs, r.total.Skipped)
	fmt.Fprintln(w, "\nThe gateway's counters are read at the end of each test from its live workers (a worker killed in the test starts again at zero).")
}

// appendCSV appends the run's row to the CSV of all runs, by the names in
// its header row; columns it has no value for are left empty.
func (r *report) appendCSV(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	header, err := csv.NewReader(f).Read()
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: header: %w", path, err)
	}
	s := r.total.Stats
	secs := r.total.Duration.Seconds()
	devices, users := 0, 0
	for _, res := range r.results {
		devices = max(devices, res.Devices)
		users = max(users, res.Users)
	}
	val := map[string]string{
		"run":              r.start.UTC().Format("2006-01-02-1504") + "-soak",
		"date":             r.start.UTC().Format("2006-01-02 15:04"),
		"commit":           commit(),
		"scenario":         "soak",
		"label":            fmt.Sprintf("fault matrix: %d tests, %d faults, %d resumes (%d not recovered), %d resyncs", len(r.results), r.total.Faults, s.Resumes, s.NotRecovered, s.Resynced()),
		"mode":             "matrix",
		"workers":          "2",
		"users":            strconv.Itoa(users),
		"devices":          strconv.Itoa(devices),
		"rate":             env("SOAK_RATE", ""),
		"sends_per_s":      fmt.Sprintf("%.0f", float64(s.Dispatched)/secs),
		"deliveries_per_s": fmt.Sprintf("%.0f", float64(s.Events)/secs),
		"missing":          strconv.Itoa(s.Gaps),
		"duplicates":       strconv.Itoa(s.Duplicates),
		"errors":           strconv.Itoa(s.Violations),
		"conns":            strconv.Itoa(devices),
		"pass":             map[bool]string{true: "yes", false: "no"}[r.ok()],
	}
	row := make([]string, len(header))
	for i, col := range header {
		row[i] = val[col]
	}
	out, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(out)
	_ = cw.Write(row)
	cw.Flush()
	return errors.Join(cw.Error(), out.Close())
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// commit returns SOAK_COMMIT, or the short hash of the checkout's HEAD.
func commit() string {
	if c := os.Getenv("SOAK_COMMIT"); c != "" {
		return c
	}
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func redisVersion() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return "redis unknown"
	}
	if f := strings.Fields(string(out)); len(f) >= 3 {
		return "redis " + strings.TrimPrefix(f[2], "v=")
	}
	return "redis unknown"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}
