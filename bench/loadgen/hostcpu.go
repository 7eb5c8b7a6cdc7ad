package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// HostCPU is the machine's CPU time by kind, in clock ticks summed over
// every CPU, from the first line of /proc/stat.
type HostCPU struct {
	Busy  int64 // user, nice, system, irq, softirq
	Idle  int64 // idle, iowait
	Steal int64 // taken by the hypervisor while this machine wanted to run
}

// parseHostCPU reads the "cpu" line of /proc/stat's contents.
func parseHostCPU(stat []byte) (HostCPU, error) {
	var h HostCPU
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return h, fmt.Errorf("/proc/stat: no cpu line with 8 times")
	}
	var v [8]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return h, fmt.Errorf("/proc/stat: cpu time %q: %w", f[i+1], err)
		}
		v[i] = n
	}
	// user nice system idle iowait irq softirq steal
	h.Busy = v[0] + v[1] + v[2] + v[5] + v[6]
	h.Idle = v[3] + v[4]
	h.Steal = v[7]
	return h, nil
}

// HostShares is what a window's CPU time of the whole machine went to,
// each a share of it (0 to 1): Busy running any process, Steal taken by
// the hypervisor. A run whose Steal is more than a few percent ran on a
// machine whose host was busy elsewhere: its latencies are the host's as
// much as the stack's (its CPU times, counted only while running, less so).
type HostShares struct {
	Busy  float64 `json:"busy"`
	Steal float64 `json:"steal"`
}

// Shares returns what the time between a and b went to.
func (b HostCPU) Shares(a HostCPU) HostShares {
	busy, idle, steal := b.Busy-a.Busy, b.Idle-a.Idle, b.Steal-a.Steal
	total := busy + idle + steal
	if total <= 0 {
		return HostShares{}
	}
	return HostShares{Busy: float64(busy) / float64(total), Steal: float64(steal) / float64(total)}
}

// hostSample reads HostCPU now; on a machine without /proc/stat it is zero.
func hostSample() HostCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return HostCPU{}
	}
	h, err := parseHostCPU(b)
	if err != nil {
		return HostCPU{}
	}
	return h
}
