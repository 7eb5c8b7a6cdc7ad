package loadgen

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// psTimeout bounds one ps(1) or pgrep(1).
const psTimeout = 5 * time.Second

// psStat reads the RSS and CPU time of pid from ps(1), for systems without
// /proc. Its CPU time is as fine as ps prints it: hundredths of a second
// on macOS, whole seconds with procps.
func psStat(pid int) (ProcStat, error) {
	out, err := command("ps", "-o", "rss=,time=", "-p", strconv.Itoa(pid))
	if err != nil {
		return ProcStat{}, err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return ProcStat{}, fmt.Errorf("ps %d: %q: want RSS and time", pid, out)
	}
	kb, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return ProcStat{}, fmt.Errorf("ps %d: rss %q", pid, f[0])
	}
	cpu, err := parseCPUTime(f[1])
	if err != nil {
		return ProcStat{}, fmt.Errorf("ps %d: %w", pid, err)
	}
	return ProcStat{RSS: kb << 10, CPU: cpu}, nil
}

// psChildren returns the pids of pid's direct children from pgrep(1).
func psChildren(pid int) []int {
	out, _ := command("pgrep", "-P", strconv.Itoa(pid)) // exit 1: no children
	var pids []int
	for _, f := range strings.Fields(out) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

func command(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), psTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	return string(out), err
}

// parseCPUTime parses a CPU time as ps prints it: [[DD-]HH:]MM:SS with
// optional hundredths (".cc"), as in 1:02.50, 00:01:02 or 2-03:04:05.
func parseCPUTime(s string) (time.Duration, error) {
	bad := fmt.Errorf("cpu time %q: want [[DD-]HH:]MM:SS[.cc]", s)
	var days int64
	if d, rest, ok := strings.Cut(s, "-"); ok {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil || n < 0 {
			return 0, bad
		}
		days, s = n, rest
	}
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, bad
	}
	secs, err := strconv.ParseFloat(parts[len(parts)-1], 64)
	if err != nil || secs < 0 || secs >= 60 {
		return 0, bad
	}
	total := time.Duration(secs * float64(time.Second))
	for i, unit := range []time.Duration{time.Minute, time.Hour} {
		if i >= len(parts)-1 {
			break
		}
		n, err := strconv.ParseInt(parts[len(parts)-2-i], 10, 64)
		if err != nil || n < 0 {
			return 0, bad
		}
		total += time.Duration(n) * unit
	}
	return total + time.Duration(days)*24*time.Hour, nil
}
