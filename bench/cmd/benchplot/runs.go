package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Columns is the header of runs.csv, in order. A row is one phase of one
// run: an idle test, a load run at one rate, a saturation search's verdict,
// or a resume run (mode). Cells that do not apply to a mode are empty. The
// cpu_* columns are CPU seconds per 1,000 deliveries of each process
// (cpu_gateway is the supervisor and its workers together, cpu_total every
// server process once); rss and goroutines are the gateway's, and the
// latencies are of deliveries, from the scheduled send time. In an A/B run
// (BENCH_BASELINE, BENCH_COMPARE_RECOVERY) stack names the stack a row
// measured and commit the commit it was built from. A resume row's rate is
// resumes per second, its latencies from each reconnect's dial to its last
// missed event, its cpu_* per 1,000 events replayed.
var Columns = []string{
	"run", "date", "commit", "scenario", "label", "mode", "workers",
	"users", "devices", "rate", "sends_per_s", "deliveries_per_s",
	"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
	"missing", "duplicates", "errors", "conns_lost",
	"cpu_gateway", "cpu_handlers", "cpu_nats", "cpu_redis", "cpu_loadgen",
	"conns", "connect_s", "gateway_rss_mib", "rss_per_conn_bytes", "rss_total_per_conn_bytes",
	"goroutines_per_conn", "lowest_failing_rate", "pass",
	// Added with A/B runs and the resume scenario; older rows leave them empty.
	"stack", "cpu_supervisor", "cpu_workers", "cpu_total", "redis_used_mib",
	"resumes", "missed_per_resume", "not_recovered",
	// Added with the fan-out scenario (make bench-fanout), whose stack is
	// the FANOUT_MODE: Redis output bytes per dispatch (a publish), and
	// the share of the dispatches the workers read that had no local
	// recipient; a 1→N row (mode fan1n) has its target (room, broadcast),
	// its rate in dispatches per second.
	"redis_out_bytes_per_dispatch", "unrouted_share", "target",
	// Added when a run on a busy host was first seen: the share of the
	// machine's CPU time the hypervisor took over a load or 1→N run's
	// window (host_steal), and the share spent running processes
	// (host_busy). A run with more than a few percent stolen measured the
	// host's contention as much as the stack.
	"host_busy", "host_steal",
	// Added when the same code was found 4x slower on another day's host:
	// the host calibration taken at the start of the run, before any
	// stack (loadgen -mode calibrate), the same on every row of the run:
	// ns per JSON Marshal+Unmarshal of a dispatch on one thread, µs per
	// 64-byte round trip between two threads over loopback TCP, and ns per
	// 64-byte loopback write. Compare them before comparing runs of
	// different days.
	"calib_cpu_ns", "calib_rtt_us", "calib_write_ns",
}

// Row is one line of runs.csv, by column name; an absent column is empty.
type Row map[string]string

// Float returns the number in column col, and false when the cell is empty
// or not a number.
func (r Row) Float(col string) (float64, bool) {
	s := r[col]
	if s == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// Meta is what a run's rows share: how the run is named and where it
// came from. Run identifies the run; Date is its UTC time, "2006-01-02
// 15:04"; Calib is the host calibration taken at its start, if any.
type Meta struct {
	Run, Date, Commit, Scenario, Label string
	Workers                            int
	Calib                              Calibration
}

// Calibration is the part of loadgen's calibrate line runs.csv keeps; a
// zero figure was not measured.
type Calibration struct {
	CPUNs   float64 `json:"cpu_ns"`
	RTTUs   float64 `json:"rtt_us"`
	WriteNs float64 `json:"write_ns"`
}

// ReadCalibration returns the last calibrate line (loadgen -mode
// calibrate) of r's JSON lines; other lines are skipped. It is an error
// when r has none, or when one of its figures is not a positive number.
func ReadCalibration(r io.Reader) (Calibration, error) {
	var c Calibration
	found := false
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var l struct {
			Mode string `json:"mode"`
			Calibration
		}
		if err := json.Unmarshal(line, &l); err != nil {
			return c, fmt.Errorf("line %d: %w", n, err)
		}
		if l.Mode != "calibrate" {
			continue
		}
		if !(l.CPUNs > 0 && l.RTTUs > 0 && l.WriteNs > 0) {
			return c, fmt.Errorf("line %d: a calibration with a figure missing: %s", n, line)
		}
		c, found = l.Calibration, true
	}
	if err := sc.Err(); err != nil {
		return c, err
	}
	if !found {
		return c, errors.New("no calibrate line")
	}
	return c, nil
}

// latency is the loadgen's latency summary, in milliseconds.
type latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

// result is the part of a loadgen JSON line that runs.csv keeps.
type result struct {
	Mode              string             `json:"mode"`
	Stack             string             `json:"stack"`
	Ref               string             `json:"ref"`
	Users             int                `json:"users"`
	Devices           int                `json:"devices"`
	Rate              float64            `json:"rate"`
	Conns             int                `json:"conns"`
	ConnectS          float64            `json:"connect_s"`
	SendsPerS         float64            `json:"sends_per_s"`
	DeliveriesPerS    float64            `json:"deliveries_per_s"`
	Latency           latency            `json:"latency"`
	Missing           int64              `json:"missing"`
	Duplicates        int64              `json:"duplicates"`
	ErrorFrames       int64              `json:"error_frames"`
	ConnsLost         int64              `json:"conns_lost"`
	GatewayRSS        int64              `json:"gateway_rss_bytes"`
	RSSPerConn        float64            `json:"rss_per_conn_bytes"`
	RSSTotalPerConn   float64            `json:"rss_total_per_conn_bytes"`
	GoroutinesPerConn float64            `json:"goroutines_per_conn"`
	CPU               map[string]float64 `json:"cpu_s_per_1k_deliveries"`
	LoadgenCPU        float64            `json:"loadgen_cpu_s_per_1k_deliveries"`
	CPUTotal          float64            `json:"cpu_s_per_1k_total"`
	RedisUsedMemory   int64              `json:"redis_used_memory_bytes"`
	SendErrors        int64              `json:"send_errors"`
	ClientOverflow    int64              `json:"client_overflow"`
	Misrouted         int64              `json:"misrouted"`
	MissingAcks       int64              `json:"missing_acks"`
	Unknown           int64              `json:"unknown"`
	Resume            *resumeStats       `json:"resume"`
	Fanout            *fanoutStats       `json:"fanout"`
	Target            string             `json:"target"`
	LowestFailing     float64            `json:"lowest_failing_rate"`
	Host              *struct {
		Busy  float64 `json:"busy"`
		Steal float64 `json:"steal"`
	} `json:"host_cpu"`
	Pass bool `json:"pass"`
}

// resumeStats is the part of a resume line's "resume" object runs.csv keeps.
type resumeStats struct {
	Resumes        int64 `json:"resumes"`
	MissedEach     int   `json:"missed_each"`
	NotRecovered   int64 `json:"not_recovered"`
	MissedMismatch int64 `json:"missed_mismatch"`
	PosMismatch    int64 `json:"pos_mismatch"`
	OutOfOrder     int64 `json:"out_of_order"`
	PosGaps        int64 `json:"pos_gaps"`
	Unexpected     int64 `json:"unexpected"`
	Incomplete     int64 `json:"incomplete"`
	Unsupported    bool  `json:"unsupported"`
}

// fanoutStats is the part of a load line's "fanout" object runs.csv keeps.
type fanoutStats struct {
	BytesPerDispatch float64 `json:"redis_out_bytes_per_dispatch"`
	UnroutedShare    float64 `json:"unrouted_share"`
}

// errors is what went wrong in a resume run beyond missing and duplicated
// events: wrong counts or positions, misordered or unexpected events,
// resumes that never completed, failed sends and error frames.
func (r *resumeStats) errors(res *result) int64 {
	return r.MissedMismatch + r.PosMismatch + r.OutOfOrder + r.PosGaps + r.Unexpected + r.Incomplete +
		res.SendErrors + res.ErrorFrames
}

// ParseResults reads the JSON lines loadgen writes (-json) and returns a
// row for each idle, load or saturation line, with m's fields. Lines that
// are not JSON objects with one of those modes are skipped, so a report's
// raw section may be fed as it is.
func ParseResults(r io.Reader, m Meta) ([]Row, error) {
	var rows []Row
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var res result
		if err := json.Unmarshal(line, &res); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if row := res.row(m); row != nil {
			rows = append(rows, row)
		}
	}
	return rows, sc.Err()
}

// row returns res as a row of runs.csv, or nil for a mode it does not keep.
func (res *result) row(m Meta) Row {
	row := Row{
		"run": m.Run, "date": m.Date, "commit": m.Commit, "scenario": m.Scenario, "label": m.Label,
		"mode": res.Mode, "users": itoa(res.Users), "devices": itoa(res.Devices),
	}
	if m.Workers > 0 {
		row["workers"] = itoa(m.Workers)
	}
	if c := m.Calib; c != (Calibration{}) {
		row["calib_cpu_ns"], row["calib_rtt_us"], row["calib_write_ns"] = num(c.CPUNs, 0), num(c.RTTUs, 2), num(c.WriteNs, 0)
	}
	if res.Stack != "" {
		row["stack"] = res.Stack
	}
	if res.Ref != "" {
		row["commit"] = res.Ref
	}
	switch res.Mode {
	case "load", "resume", "fan1n":
		if res.Target != "" {
			row["target"] = res.Target
		}
		row["rate"] = num(res.Rate, 0)
		row["sends_per_s"] = num(res.SendsPerS, 0)
		row["deliveries_per_s"] = num(res.DeliveriesPerS, 0)
		row["p50_ms"] = num(res.Latency.P50, 3)
		row["p90_ms"] = num(res.Latency.P90, 3)
		row["p99_ms"] = num(res.Latency.P99, 3)
		row["p999_ms"] = num(res.Latency.P999, 3)
		row["max_ms"] = num(res.Latency.Max, 3)
		row["missing"] = i64(res.Missing)
		row["duplicates"] = i64(res.Duplicates)
		// As the report's errors column, less the sockets lost, which
		// have a column of their own: error frames, sends failed or
		// dropped by the load generator, misrouted and unknown frames,
		// sends answered with no ack.
		row["errors"] = i64(res.ErrorFrames + res.SendErrors + res.ClientOverflow + res.Misrouted + res.Unknown + res.MissingAcks)
		row["conns_lost"] = i64(res.ConnsLost)
		for col, proc := range map[string]string{
			"cpu_gateway": "gateway", "cpu_handlers": "handlers-svc", "cpu_nats": "nats-server", "cpu_redis": "redis-server",
			"cpu_supervisor": "gateway-supervisor", "cpu_workers": "gateway-workers",
		} {
			if v, ok := res.CPU[proc]; ok {
				row[col] = num(v, 4)
			}
		}
		if res.LoadgenCPU > 0 {
			row["cpu_loadgen"] = num(res.LoadgenCPU, 4)
		}
		if res.CPUTotal > 0 {
			row["cpu_total"] = num(res.CPUTotal, 4)
		}
		if res.RedisUsedMemory > 0 {
			row["redis_used_mib"] = num(float64(res.RedisUsedMemory)/(1<<20), 1)
		}
		if h := res.Host; h != nil {
			row["host_busy"], row["host_steal"] = num(h.Busy, 3), num(h.Steal, 3)
		}
		if f := res.Fanout; f != nil {
			row["redis_out_bytes_per_dispatch"] = num(f.BytesPerDispatch, 1)
			row["unrouted_share"] = num(f.UnroutedShare, 4)
		}
		if res.Mode == "resume" {
			if res.Resume == nil || res.Resume.Unsupported {
				return nil // a stack without recovery: nothing was measured
			}
			row["sends_per_s"], row["deliveries_per_s"] = "", ""
			row["resumes"] = i64(res.Resume.Resumes)
			row["missed_per_resume"] = itoa(res.Resume.MissedEach)
			row["not_recovered"] = i64(res.Resume.NotRecovered)
			row["errors"] = i64(res.Resume.errors(res))
		}
		row["conns"] = itoa(res.Conns)
		if res.GatewayRSS > 0 {
			row["gateway_rss_mib"] = num(float64(res.GatewayRSS)/(1<<20), 1)
		}
		row["pass"] = map[bool]string{true: "yes", false: "no"}[res.Pass]
	case "idle":
		row["conns"] = itoa(res.Conns)
		row["connect_s"] = num(res.ConnectS, 2)
		row["conns_lost"] = i64(res.ConnsLost)
		row["gateway_rss_mib"] = num(float64(res.GatewayRSS)/(1<<20), 1)
		row["rss_per_conn_bytes"] = num(res.RSSPerConn, 0)
		row["rss_total_per_conn_bytes"] = num(res.RSSTotalPerConn, 0)
		row["goroutines_per_conn"] = num(res.GoroutinesPerConn, 2)
	case "saturation":
		row["rate"] = num(res.Rate, 0)
		row["deliveries_per_s"] = num(res.DeliveriesPerS, 0)
		if res.LowestFailing > 0 {
			row["lowest_failing_rate"] = num(res.LowestFailing, 0)
		}
	default:
		return nil
	}
	return row
}

func itoa(n int) string  { return strconv.Itoa(n) }
func i64(n int64) string { return strconv.FormatInt(n, 10) }
func num(f float64, prec int) string {
	return strconv.FormatFloat(f, 'f', prec, 64)
}

// Append adds rows to the CSV file at path, writing the header first when
// the file is new or empty. A file written before columns were added (its
// header is some of Columns, in their order) is first rewritten with every
// column, its rows' new cells empty. It refuses a file of other columns,
// rather than add rows that would not line up.
func Append(path string, rows []Row) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return writeRows(f, rows, true)
	}
	header, err := csv.NewReader(io.NewSectionReader(f, 0, st.Size())).Read()
	if err != nil {
		return fmt.Errorf("%s: header: %w", path, err)
	}
	if slices.Equal(header, Columns) {
		return writeRows(f, rows, false)
	}
	if !olderColumns(header) {
		return fmt.Errorf("%s: header is not benchplot's columns: %s", path, strings.Join(header, ","))
	}
	old, err := ReadRows(io.NewSectionReader(f, 0, st.Size()))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	f.Close()
	var b strings.Builder
	bw := csv.NewWriter(&b)
	for i, row := range append(old, rows...) {
		if i == 0 {
			_ = bw.Write(Columns)
		}
		_ = bw.Write(cells(row))
	}
	bw.Flush()
	return writeFile(path, b.String())
}

// olderColumns reports whether header is Columns less some columns added
// since, in Columns' order.
func olderColumns(header []string) bool {
	j := 0
	for _, col := range header {
		k := slices.Index(Columns[j:], col)
		if k < 0 {
			return false
		}
		j += k + 1
	}
	return len(header) > 0
}

// writeRows writes rows to w as CSV, after the header when header is set.
func writeRows(w io.Writer, rows []Row, header bool) error {
	cw := csv.NewWriter(w)
	if header {
		if err := cw.Write(Columns); err != nil {
			return err
		}
	}
	for _, row := range rows {
		if err := cw.Write(cells(row)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// cells is row's cells in the order of Columns.
func cells(row Row) []string {
	rec := make([]string, len(Columns))
	for i, col := range Columns {
		rec[i] = row[col]
	}
	return rec
}

// ReadRows reads a runs.csv: a header line, then rows, which may have any
// of Columns in any order (so older files with fewer columns still read).
func ReadRows(r io.Reader) ([]Row, error) {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	var rows []Row
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		row := make(Row, len(header))
		for i, col := range header {
			row[col] = rec[i]
		}
		rows = append(rows, row)
	}
}
