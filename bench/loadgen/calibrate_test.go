package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"
)

// TestCalibrate runs a short calibration on this machine: every figure is
// a positive, finite number, and the JSON line decodes to what was
// measured. How large the figures are is the host's business, not the
// test's.
func TestCalibrate(t *testing.T) {
	c, err := Calibrate(t.Context(), CalibrateOptions{Reps: 3, Rep: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{"cpu_ns": c.CPUNs, "rtt_us": c.RTTUs, "write_ns": c.WriteNs, "took_s": c.TookS} {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v, want a positive finite number", name, v)
		}
	}
	if c.Mode != "calibrate" || c.Reps != 3 || c.CPUWorkload == "" {
		t.Errorf("calibration %+v", c)
	}
	var back Calibration
	if err := json.Unmarshal([]byte(c.JSON()), &back); err != nil {
		t.Fatalf("%s: %v", c.JSON(), err)
	}
	if back != c {
		t.Errorf("decoded %+v, measured %+v", back, c)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(c.JSON()), &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"mode", "cpu_workload", "cpu_ns", "rtt_us", "write_ns", "reps"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("the JSON line lacks %q: %s", k, c.JSON())
		}
	}
}

// TestCalibrateStopsWithItsContext: a context that ends while a round trip
// or a write waits in a blocking system call wakes it (the sockets are shut
// down), and Calibrate returns the context's error rather than hang; no
// goroutine is left behind (TestMain's goleak).
func TestCalibrateStopsWithItsContext(t *testing.T) {
	// Repetitions of a minute: the context ends in the middle of the
	// first sizing run that lasts, inside the loop of system calls.
	long := CalibrateOptions{Reps: 3, Rep: time.Minute}
	for name, f := range map[string]func(context.Context, CalibrateOptions) (float64, error){
		"round trip": calibrateRoundTrip,
		"write":      calibrateWrite,
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		done := make(chan error, 1)
		go func() { _, err := f(ctx, long); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: a calibration whose context ended returned %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: still running 30 s after its context ended", name)
		}
		cancel()
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Calibrate(ctx, CalibrateOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Calibrate with a cancelled context: %v", err)
	}
}

// TestMedianPerOp: n is sized from the warm-up runs so a repetition takes
// about Rep, every repetition does that n, and the figure is the median
// per operation, an outlier repetition ignored.
func TestMedianPerOp(t *testing.T) {
	for _, c := range []struct {
		name string
		reps int
		ns   []time.Duration // per operation, each measured repetition in turn
		want float64
	}{
		{"odd", 5, []time.Duration{30, 1000, 10, 20, 40}, 30},
		{"even", 4, []time.Duration{30, 1000, 10, 20}, 25},
		{"one", 1, []time.Duration{7}, 7},
	} {
		var ns []int
		rep := 0
		sizing := true
		got, err := medianPerOp(t.Context(), CalibrateOptions{Reps: c.reps, Rep: time.Millisecond},
			func(n int) (time.Duration, error) {
				ns = append(ns, n)
				if sizing {
					d := time.Duration(n) * 10 // 10 ns per operation while sizing
					if d >= 100*time.Microsecond {
						sizing = false
					}
					return d, nil
				}
				rep++
				return time.Duration(n) * c.ns[rep-1], nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s: median %v ns per operation, want %v", c.name, got, c.want)
		}
		if rep != c.reps {
			t.Errorf("%s: %d repetitions, want %d", c.name, rep, c.reps)
		}
		// 10 ns per operation while sizing: 1 ms is 100,000 operations.
		for _, n := range ns[len(ns)-c.reps:] {
			if n != 100000 {
				t.Errorf("%s: a repetition of %d operations, want 100000 (calls: %v)", c.name, n, ns)
			}
		}
	}
}
