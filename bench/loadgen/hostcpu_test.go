package loadgen

import (
	"math"
	"runtime"
	"testing"
)

func TestHostCPUShares(t *testing.T) {
	a, err := parseHostCPU([]byte("cpu  100 5 20 800 10 1 4 60 0 0\ncpu0 50 2 10 400 5 0 2 30 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a != (HostCPU{Busy: 130, Idle: 810, Steal: 60}) {
		t.Fatalf("parsed %+v", a)
	}
	// 200 ticks later: 100 busy, 60 idle, 40 stolen.
	b, err := parseHostCPU([]byte("cpu  180 5 40 850 20 1 4 100 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := b.Shares(a)
	if math.Abs(got.Busy-0.5) > 1e-9 || math.Abs(got.Steal-0.2) > 1e-9 {
		t.Fatalf("shares %+v, want busy 0.5, steal 0.2", got)
	}
	if (a.Shares(a) != HostShares{}) {
		t.Fatal("an empty window has shares")
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 3", "cpu 1 2 3 4 5 6 7 x"} {
		if _, err := parseHostCPU([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestHostSampleReadsThisMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/stat is Linux's")
	}
	h := hostSample()
	if h.Busy+h.Idle <= 0 {
		t.Fatalf("no CPU time read from /proc/stat: %+v", h)
	}
}
