package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestTableOneStackOrTwo: lines of one stack make the tables of each mode;
// lines naming two stacks make the side-by-side report, with the idle tests
// after it. Lines that are not JSON objects are skipped.
func TestTableOneStackOrTwo(t *testing.T) {
	one := `loadgen: a progress line
{"mode":"load","users":10,"devices":2,"rate":100,"latency":{"p50_ms":0.5,"p99_ms":2},"pass":true}
{"mode":"resume","users":10,"devices":2,"rate":50,"latency":{"count":10,"p99_ms":7},"resume":{"missed_each":100,"resumes":10,"recovered":10},"pass":true}
{"mode":"saturation","users":10,"devices":2,"rate":9000,"deliveries_per_s":36000,"lowest_failing_rate":9500}
`
	two := `{"mode":"idle","stack":"candidate","users":5,"devices":2,"conns":10}
{"mode":"load","stack":"candidate","ref":"aaa","users":10,"devices":2,"rate":100,"latency":{"p99_ms":2},"pass":true}
{"mode":"load","stack":"baseline","ref":"bbb","users":10,"devices":2,"rate":100,"latency":{"p99_ms":4},"pass":true}
`
	dir := t.TempDir()
	for _, c := range []struct {
		in   string
		want []string
		not  string
	}{
		{one, []string{"| candidate | 10x2 | 100 |", "**Resume**", "= **9000 sends/s** (36000 deliveries/s); lowest failing R tried: 9500."}, "Stacks compared"},
		{two, []string{"Stacks compared: candidate = aaa, baseline = bbb.", "| delivery latency p99, ms | 2.00 | 4.00 | 0.50 | -2.00 |", "Idle tests, one per stack:", "| 10 |"}, "| U x D | R (sends/s)"},
	} {
		path := filepath.Join(dir, "in.jsonl")
		if err := os.WriteFile(path, []byte(c.in), 0o644); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := table([]string{path}, &out); err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("table lacks %q:\n%s", w, out.String())
			}
		}
		if strings.Contains(out.String(), c.not) {
			t.Errorf("table has %q:\n%s", c.not, out.String())
		}
	}
	if err := table([]string{filepath.Join(dir, "missing")}, &strings.Builder{}); err == nil {
		t.Error("a missing file: no error")
	}
}

// TestTableSkipsCalibration: a calibration line (loadgen -mode calibrate)
// describes the host, not a phase, and adds nothing to the tables.
func TestTableSkipsCalibration(t *testing.T) {
	load := `{"mode":"load","users":10,"devices":2,"rate":100,"latency":{"p50_ms":0.5,"p99_ms":2},"pass":true}` + "\n"
	calib := `{"mode":"calibrate","cpu_workload":"encoding/json Marshal+Unmarshal of a dispatch","cpu_ns":2500.5,"rtt_us":21.5,"write_ns":1800,"reps":5}` + "\n"
	dir := t.TempDir()
	var outs []string
	for i, in := range []string{load, calib + load} {
		path := filepath.Join(dir, "in"+strconv.Itoa(i)+".jsonl")
		if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := table([]string{path}, &out); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, out.String())
	}
	if outs[0] != outs[1] {
		t.Errorf("with a calibration line:\n%s\nwithout:\n%s", outs[1], outs[0])
	}
}
