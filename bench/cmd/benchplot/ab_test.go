package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// abJSONL is what an A/B run writes: the same rate on two stacks, each
// line naming its stack and commit, a resume run on the candidate, and one
// on a baseline without recovery, which measured nothing.
const abJSONL = `{"mode":"load","stack":"candidate","ref":"aa1d427","users":1000,"devices":2,"rate":4000,"sends_per_s":4000,"deliveries_per_s":16000,"latency":{"p50_ms":0.4,"p99_ms":3.2},"cpu_s_per_1k_deliveries":{"gateway":0.03,"gateway-supervisor":0.001,"gateway-workers":0.029,"handlers-svc":0.02,"nats-server":0.015,"redis-server":0.009},"cpu_s_per_1k_total":0.074,"redis_used_memory_bytes":52428800,"pass":true}
{"mode":"load","stack":"baseline","ref":"fff6f93","users":1000,"devices":2,"rate":4000,"sends_per_s":4000,"deliveries_per_s":16000,"latency":{"p50_ms":0.5,"p99_ms":3.9},"cpu_s_per_1k_deliveries":{"gateway":0.037},"pass":true}
{"mode":"resume","stack":"candidate","ref":"aa1d427","users":200,"devices":2,"rate":100,"latency":{"p50_ms":4.1,"p99_ms":12.5},"missing":3,"duplicates":0,"send_errors":1,"cpu_s_per_1k_deliveries":{"redis-server":0.02},"resume":{"resumes":200,"missed_each":100,"not_recovered":2,"missed_mismatch":1,"out_of_order":4,"incomplete":1},"pass":false}
{"mode":"resume","stack":"baseline","ref":"fff6f93","users":200,"devices":2,"resume":{"unsupported":true},"pass":false}
`

func TestParseResultsOfAnABRun(t *testing.T) {
	rows, err := ParseResults(strings.NewReader(abJSONL), Meta{Run: "ab", Date: "2026-12-02 03:00", Commit: "aa1d427-dirty", Scenario: "load"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("got %d rows, want 3 (the baseline's resume without recovery is left out): %v", len(rows), rows)
	}
	want := []Row{
		{"stack": "candidate", "commit": "aa1d427", "cpu_gateway": "0.0300", "cpu_supervisor": "0.0010", "cpu_workers": "0.0290", "cpu_total": "0.0740", "redis_used_mib": "50.0", "resumes": ""},
		{"stack": "baseline", "commit": "fff6f93", "p99_ms": "3.900", "cpu_gateway": "0.0370", "cpu_workers": "", "cpu_total": ""},
		{"mode": "resume", "stack": "candidate", "rate": "100", "p99_ms": "12.500", "resumes": "200", "missed_per_resume": "100",
			"not_recovered": "2", "missing": "3", "errors": "7", "sends_per_s": "", "cpu_redis": "0.0200", "pass": "no"},
	}
	for i, w := range want {
		for col, v := range w {
			if got := rows[i][col]; got != v {
				t.Errorf("row %d (%s) %s = %q, want %q", i, rows[i]["mode"], col, got, v)
			}
		}
	}
}

// TestAppendRewritesAnOlderFile: a runs.csv written before columns were
// added gets them, its rows kept with the new cells empty, and the new
// rows after them.
func TestAppendRewritesAnOlderFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.csv")
	old := strings.Join(Columns[:34], ",") + "\nr0,2026-11-25 15:08,1a27766,load,,load,2,1000,2,1000,1000,4000,0.903,1.391,1.935,12.415,27.248,0,0,0,0,0.0784,0.0386,0.0288,0.0106,0.0506,2000,,116.1,,,,,yes\n"
	if Columns[33] != "pass" {
		t.Fatalf("the original columns ended at pass, not %q", Columns[33])
	}
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := ParseResults(strings.NewReader(abJSONL), Meta{Run: "ab", Date: "2026-12-02 03:00", Scenario: "load"})
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
	if len(got) != 4 || got[0]["run"] != "r0" || got[0]["p99_ms"] != "1.935" || got[0]["stack"] != "" ||
		got[1]["stack"] != "candidate" || got[3]["mode"] != "resume" {
		t.Fatalf("rows after the rewrite: %v", got)
	}
	// Appending again leaves the header alone.
	if err := Append(path, rows[:1]); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if n := strings.Count(string(data), "run,date,commit"); n != 1 {
		t.Errorf("%d headers", n)
	}
	// Columns out of order are another file's, refused.
	other := filepath.Join(t.TempDir(), "other.csv")
	_ = os.WriteFile(other, []byte("date,run\n"), 0o644)
	if err := Append(other, rows); err == nil {
		t.Error("Append to a file whose columns are out of order succeeded")
	}
}

// TestSeriesOfAnABRun: the chart is of the candidate only, one point per
// rate (the median of the repeated runs).
func TestSeriesOfAnABRun(t *testing.T) {
	csv := `run,scenario,mode,users,devices,rate,p99_ms,pass,stack
ab,load,load,1000,2,4000,3,yes,candidate
ab,load,load,1000,2,4000,50,yes,baseline
ab,load,load,1000,2,4000,5,no,candidate
ab,load,load,1000,2,1000,1,yes,candidate
ab,load,load,1000,2,1000,9,yes,baseline
`
	rows, err := ReadRows(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	s := SeriesOf(rows, "load", 6)
	if len(s) != 1 || len(s[0].Points) != 2 {
		t.Fatalf("series %+v", s)
	}
	if p := s[0].Points; p[0] != (Point{Rate: 1000, P99: 1, Pass: true}) || p[1] != (Point{Rate: 4000, P99: 4, Pass: false}) {
		t.Errorf("points %+v, want 1000: 1 ms and 4000: 4 ms (median), failing", p)
	}
}
