package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// jsonl is what loadgen writes for a small make bench: an idle test, two
// load runs (one failing) and the saturation verdict, with a log line
// between them as a report's raw section may hold.
const jsonl = `{"mode":"idle","users":5000,"devices":2,"conns":10000,"connect_s":0.818401505,"conns_lost":0,"gateway_rss_bytes":108658688,"rss_per_conn_bytes":6405.7344,"rss_total_per_conn_bytes":10865.8688,"goroutines_per_conn":1,"pass":false}
{"mode":"load","users":1000,"devices":2,"rate":4000,"conns":2000,"sends_per_s":4000.047,"deliveries_per_s":16000.09,"latency":{"count":320000,"p50_ms":0.407,"p90_ms":0.851,"p99_ms":3.455,"p999_ms":6.495,"max_ms":15.265},"missing":0,"duplicates":0,"conns_lost":0,"error_frames":0,"gateway_rss_bytes":98521088,"cpu_s_per_1k_deliveries":{"gateway":0.0367,"handlers-svc":0.0216,"nats-server":0.0176,"redis-server":0.0079},"loadgen_cpu_s_per_1k_deliveries":0.0117,"pass":true}
{"level":"warn","msg":"not a result"}
{"mode":"load","users":1000,"devices":2,"rate":18000,"conns":2000,"sends_per_s":18000.4,"deliveries_per_s":70397.8,"latency":{"p50_ms":95.743,"p90_ms":171.007,"p99_ms":255.999,"p999_ms":323.583,"max_ms":373.647},"missing":0,"duplicates":0,"error_frames":7541,"pass":false}
{"deliveries_per_s":57200,"devices":2,"lowest_failing_rate":15000,"mode":"saturation","rate":14300,"users":1000}
`

func TestParseResults(t *testing.T) {
	rows, err := ParseResults(strings.NewReader(jsonl), Meta{Run: "r1", Date: "2026-11-25 20:28", Commit: "011e5d9", Scenario: "load", Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("got %d rows, want 4 (idle, 2 load, saturation): %v", len(rows), rows)
	}
	want := []Row{
		{"mode": "idle", "conns": "10000", "connect_s": "0.82", "gateway_rss_mib": "103.6", "rss_per_conn_bytes": "6406", "goroutines_per_conn": "1.00", "p99_ms": ""},
		{"mode": "load", "rate": "4000", "sends_per_s": "4000", "deliveries_per_s": "16000", "p99_ms": "3.455", "cpu_gateway": "0.0367", "cpu_loadgen": "0.0117", "pass": "yes", "workers": "2", "commit": "011e5d9"},
		{"mode": "load", "rate": "18000", "p99_ms": "255.999", "errors": "7541", "pass": "no"},
		{"mode": "saturation", "rate": "14300", "deliveries_per_s": "57200", "lowest_failing_rate": "15000", "p99_ms": "", "pass": ""},
	}
	for i, w := range want {
		for col, v := range w {
			if got := rows[i][col]; got != v {
				t.Errorf("row %d (%s) %s = %q, want %q", i, rows[i]["mode"], col, got, v)
			}
		}
	}
}

func TestAppendThenRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.csv")
	for _, run := range []string{"r1", "r2"} {
		rows, err := ParseResults(strings.NewReader(jsonl), Meta{Run: run, Date: "2026-11-25 20:28", Scenario: "load", Label: `GOGC=200, "quoted"`})
		if err != nil {
			t.Fatal(err)
		}
		if err := Append(path, rows); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "run,date,commit"); n != 1 {
		t.Fatalf("header written %d times:\n%s", n, data)
	}
	rows, err := ReadRows(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 8 || rows[5]["run"] != "r2" || rows[5]["p99_ms"] != "3.455" || rows[5]["label"] != `GOGC=200, "quoted"` {
		t.Fatalf("read back %d rows; row 5: %v", len(rows), rows[5])
	}

	// A file of other columns is refused, not appended to.
	other := filepath.Join(t.TempDir(), "other.csv")
	if err := os.WriteFile(other, []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Append(other, rows[:1]); err == nil {
		t.Fatal("Append to a file with another header succeeded")
	}
}

// smallCSV holds two make bench runs and an overload run, whose points must
// not be drawn with the load scenario's.
const smallCSV = `run,date,commit,scenario,mode,users,devices,workers,rate,p99_ms,pass
old,2026-11-25 19:52,3f9c341,load,idle,5000,2,2,,,
old,2026-11-25 19:52,3f9c341,load,load,1000,2,2,4000,4.09,yes
old,2026-11-25 19:52,3f9c341,load,load,1000,2,2,1000,1.9,yes
old,2026-11-25 19:52,3f9c341,load,load,1000,2,2,15000,63.2,no
ovl,2026-11-25 19:54,3f9c341,overload,load,1000,2,2,30000,483,no
new,2026-11-25 20:28,011e5d9,load,load,1000,2,2,1000,1.663,yes
new,2026-11-25 20:28,011e5d9,load,load,1000,2,2,4000,3.455,yes
new,2026-11-25 20:28,011e5d9,load,load,1000,2,2,18000,255.999,no
new,2026-11-25 20:28,011e5d9,load,load,1000,2,2,12000,29.951,yes
new,2026-11-25 20:28,011e5d9,load,saturation,1000,2,2,14300,,
`

// svgDoc is the part of the chart the test reads back.
type svgDoc struct {
	Groups []struct {
		Class   string `xml:"class,attr"`
		Run     string `xml:"data-run,attr"`
		Circles []struct {
			Rate string `xml:"data-rate,attr"`
			P99  string `xml:"data-p99,attr"`
			Fill string `xml:"fill,attr"`
			CY   string `xml:"cy,attr"`
		} `xml:"circle"`
		Polyline struct {
			Points string `xml:"points,attr"`
		} `xml:"polyline"`
	} `xml:"g"`
}

func TestDrawLatestRunWithPreviousFaint(t *testing.T) {
	rows, err := ReadRows(strings.NewReader(smallCSV))
	if err != nil {
		t.Fatal(err)
	}
	series := SeriesOf(rows, "load", 6)
	if len(series) != 2 || series[0].Run != "old" || series[1].Run != "new" {
		t.Fatalf("series %+v, want old then new", series)
	}
	var b strings.Builder
	if err := Draw(&b, series); err != nil {
		t.Fatal(err)
	}
	var doc svgDoc
	if err := xml.Unmarshal([]byte(b.String()), &doc); err != nil {
		t.Fatalf("not XML: %v\n%s", err, b.String())
	}
	var latest, previous int
	for _, g := range doc.Groups {
		switch g.Class {
		case "latest":
			latest++
			if g.Run != "new" {
				t.Errorf("latest group is run %q", g.Run)
			}
			var got []string
			for _, c := range g.Circles {
				got = append(got, c.Rate+":"+c.P99+":"+c.Fill)
			}
			// In rate order, the failing point hollow.
			want := "1000:1.663:#1f5fbf 4000:3.455:#1f5fbf 12000:29.951:#1f5fbf 18000:255.999:#ffffff"
			if strings.Join(got, " ") != want {
				t.Errorf("latest points\n got %s\nwant %s", strings.Join(got, " "), want)
			}
			if n := len(strings.Fields(g.Polyline.Points)); n != 4 {
				t.Errorf("latest line has %d points, want 4", n)
			}
			// Higher p99 is higher on the chart: a smaller y.
			for i := 1; i < len(g.Circles); i++ {
				lo, _ := strconv.ParseFloat(g.Circles[i-1].CY, 64)
				hi, _ := strconv.ParseFloat(g.Circles[i].CY, 64)
				if hi >= lo {
					t.Errorf("point %d (cy %v) is not above point %d (cy %v)", i, hi, i-1, lo)
				}
			}
		case "previous":
			previous++
			if g.Run != "old" || len(g.Circles) != 3 {
				t.Errorf("previous group run %q with %d points, want old with 3", g.Run, len(g.Circles))
			}
		}
	}
	if latest != 1 || previous != 1 {
		t.Fatalf("%d latest and %d previous groups, want 1 and 1", latest, previous)
	}
	for _, s := range []string{"commit 011e5d9", "p99 = 50 ms", "12,000", "faint: the 1 runs before"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("chart lacks %q", s)
		}
	}

	// Only the latest run when history is 1; nothing to draw for a
	// scenario without load runs.
	if s := SeriesOf(rows, "load", 1); len(s) != 1 || s[0].Run != "new" {
		t.Errorf("history 1: %+v", s)
	}
	if err := Draw(&b, SeriesOf(rows, "scale", 6)); err == nil {
		t.Error("Draw of no runs succeeded")
	}
}

func TestRecordAndDrawCommands(t *testing.T) {
	dir := t.TempDir()
	results := filepath.Join(dir, "results.jsonl")
	if err := os.WriteFile(results, []byte(jsonl), 0o644); err != nil {
		t.Fatal(err)
	}
	csvPath, svgPath := filepath.Join(dir, "runs.csv"), filepath.Join(dir, "p99.svg")
	var stderr strings.Builder
	if err := run([]string{"record", "-csv", csvPath, "-run", "r1", "-date", "2026-11-25 20:28", "-workers", "2", results}, &stderr); err != nil {
		t.Fatalf("record: %v %s", err, stderr.String())
	}
	if err := run([]string{"draw", "-csv", csvPath, "-out", svgPath}, &stderr); err != nil {
		t.Fatalf("draw: %v %s", err, stderr.String())
	}
	svg, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`data-rate="4000" data-p99="3.455"`, `data-rate="18000" data-p99="255.999"`} {
		if !strings.Contains(string(svg), s) {
			t.Errorf("chart lacks %s", s)
		}
	}
	if err := run([]string{"record", "-csv", csvPath, results}, &stderr); err == nil {
		t.Error("record without -run and -date succeeded")
	}
}

func TestParseResultsFanout(t *testing.T) {
	line := `{"mode":"load","stack":"per_user","users":10000,"devices":1,"rate":2000,"latency":{"p99_ms":4.5},"pass":true,` +
		`"fanout":{"workers":8,"publishes":40000,"redis_out_bytes_per_dispatch":331.25,"unrouted_share":0.00412}}
{"mode":"load","stack":"shared","users":10000,"devices":1,"rate":2000,"pass":true}`
	rows, err := ParseResults(strings.NewReader(line), Meta{Run: "f1", Scenario: "fanout", Workers: 8})
	if err != nil || len(rows) != 2 {
		t.Fatalf("rows %v, err %v", rows, err)
	}
	if r := rows[0]; r["stack"] != "per_user" || r["workers"] != "8" || r["redis_out_bytes_per_dispatch"] != "331.2" || r["unrouted_share"] != "0.0041" {
		t.Errorf("fan-out row: %v", r)
	}
	if r := rows[1]; r["redis_out_bytes_per_dispatch"] != "" || r["unrouted_share"] != "" {
		t.Errorf("a run without fan-out figures has them: %v", r)
	}
}

// calibLine is loadgen -mode calibrate's line.
const calibLine = `{"mode":"calibrate","cpu_workload":"encoding/json Marshal+Unmarshal of a dispatch","cpu_ns":2456.7,"rtt_us":21.456,"write_ns":1834.4,"reps":5,"took_s":3.1}`

func TestReadCalibration(t *testing.T) {
	// The last calibrate line wins; progress and result lines are skipped.
	in := "loadgen: progress\n" + strings.Replace(calibLine, "2456.7", "9999", 1) + "\n" +
		`{"mode":"load","rate":1000}` + "\n" + calibLine + "\n"
	c, err := ReadCalibration(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if c != (Calibration{CPUNs: 2456.7, RTTUs: 21.456, WriteNs: 1834.4}) {
		t.Errorf("read %+v", c)
	}
	for name, bad := range map[string]string{
		"none":           `{"mode":"load","rate":1000}`,
		"empty":          "",
		"figure missing": `{"mode":"calibrate","cpu_ns":2456.7,"rtt_us":21.4}`,
		"not JSON":       `{"mode":"calibrate",`,
	} {
		if c, err := ReadCalibration(strings.NewReader(bad)); err == nil {
			t.Errorf("%s: read %+v, no error", name, c)
		}
	}
}

// TestRecordWithCalibration: record -calib puts the run's calibration on
// every row it adds, whatever the row's mode; a run recorded without it
// leaves those cells empty.
func TestRecordWithCalibration(t *testing.T) {
	dir := t.TempDir()
	results, calib := filepath.Join(dir, "results.jsonl"), filepath.Join(dir, "calib.jsonl")
	csvPath := filepath.Join(dir, "runs.csv")
	if err := os.WriteFile(results, []byte(jsonl), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(calib, []byte(calibLine+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	if err := run([]string{"record", "-csv", csvPath, "-run", "c1", "-date", "2026-12-05 10:00", "-calib", calib, results}, &stderr); err != nil {
		t.Fatalf("record -calib: %v %s", err, stderr.String())
	}
	if err := run([]string{"record", "-csv", csvPath, "-run", "c0", "-date", "2026-12-05 11:00", results}, &stderr); err != nil {
		t.Fatalf("record: %v %s", err, stderr.String())
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := ReadRows(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 8 {
		t.Fatalf("%d rows, want 8", len(rows))
	}
	for _, r := range rows {
		want := [3]string{"2457", "21.46", "1834"}
		if r["run"] == "c0" {
			want = [3]string{}
		}
		if got := [3]string{r["calib_cpu_ns"], r["calib_rtt_us"], r["calib_write_ns"]}; got != want {
			t.Errorf("run %s, %s row: calibration %q, want %q", r["run"], r["mode"], got, want)
		}
	}
	// A -calib file without a calibration is refused, and nothing added.
	if err := run([]string{"record", "-csv", csvPath, "-run", "c2", "-date", "2026-12-05 12:00", "-calib", results, results}, &stderr); err == nil {
		t.Error("record with a -calib file of no calibration succeeded")
	}
	data, _ := os.ReadFile(csvPath)
	if strings.Contains(string(data), "c2,") {
		t.Error("rows added despite the bad -calib file")
	}
}

// TestAppendAddsTheCalibrationColumns: a runs.csv whose header ends at
// host_steal, as it did before the calibration, is rewritten with the
// calib_* columns, its rows' cells empty, the new rows' filled.
func TestAppendAddsTheCalibrationColumns(t *testing.T) {
	i := slices.Index(Columns, "host_steal")
	if i < 0 || Columns[i+1] != "calib_cpu_ns" {
		t.Fatalf("the calibration columns do not follow host_steal: %v", Columns)
	}
	path := filepath.Join(t.TempDir(), "runs.csv")
	old := strings.Join(Columns[:i+1], ",") + "\n" + "r0,2026-12-04 21:55,fff6f93,load,,load,2,1000,2,4000" + strings.Repeat(",", i-9) + "\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := ParseResults(strings.NewReader(jsonl), Meta{Run: "r1", Date: "2026-12-05 10:00", Scenario: "load",
		Calib: Calibration{CPUNs: 2456.7, RTTUs: 21.456, WriteNs: 1834.4}})
	if err != nil {
		t.Fatal(err)
	}
	if err := Append(path, rows); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(data), "\n"); first != strings.Join(Columns, ",") {
		t.Fatalf("header not rewritten: %s", first)
	}
	got, err := ReadRows(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0]["run"] != "r0" || got[0]["rate"] != "4000" || got[0]["calib_rtt_us"] != "" ||
		got[1]["run"] != "r1" || got[1]["calib_rtt_us"] != "21.46" || got[4]["calib_cpu_ns"] != "2457" {
		t.Fatalf("rows after the rewrite: %v", got)
	}
}
