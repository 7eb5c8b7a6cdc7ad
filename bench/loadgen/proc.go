package loadgen

import "time"

// ProcStat is what the system tells about one process: /proc on Linux
// (proc_linux.go), ps(1) elsewhere (proc_other.go).
type ProcStat struct {
	RSS int64         // resident bytes
	CPU time.Duration // user + system time
	// ReapedCPU is the user + system time of the process's children that
	// ended and that it waited for (Linux's cutime and cstime; 0 where
	// ps(1) is read): a gateway worker that exits mid-run (a crash, the
	// watchdog's kill) takes its time out of the live processes' sum and
	// into its supervisor's.
	ReapedCPU time.Duration
}

// Group is a named set of processes, measured together: the gateway is its
// supervisor and every worker.
type Group struct {
	Name     string
	Pid      int
	WithKids bool // include direct children (the gateway's workers)
	KidsOnly bool // only the direct children: the gateway's workers without their supervisor
}

// Pids returns the group's live pids.
func (g Group) Pids() []int {
	if g.Pid <= 0 {
		return nil
	}
	if g.KidsOnly {
		return Children(g.Pid)
	}
	pids := []int{g.Pid}
	if g.WithKids {
		pids = append(pids, Children(g.Pid)...)
	}
	return pids
}

// Sample sums RSS and CPU over the group's processes; a process that ended
// meanwhile is skipped. A group with children (the gateway, its workers)
// also counts the time of the children its process has reaped, so that a
// worker that ended between two samples keeps its time in the second.
func (g Group) Sample() ProcStat {
	if g.Pid <= 0 || !g.WithKids && !g.KidsOnly {
		return g.sum()
	}
	// A child reaped while the children are read would count both as a
	// child and in the reaped time, or in neither: the reaped time is read
	// before and after, and the children again when it moved.
	for try := 0; ; try++ {
		before, err := ReadProc(g.Pid)
		if err != nil {
			return g.sum()
		}
		sum := g.sum()
		after, err := ReadProc(g.Pid)
		if err == nil && (after.ReapedCPU == before.ReapedCPU || try == 2) {
			sum.CPU += after.ReapedCPU
			return sum
		}
		if err != nil {
			return sum
		}
	}
}

// sum sums RSS and CPU over the group's live processes.
func (g Group) sum() ProcStat {
	var sum ProcStat
	for _, pid := range g.Pids() {
		st, err := ReadProc(pid)
		if err != nil {
			continue
		}
		sum.RSS += st.RSS
		sum.CPU += st.CPU
	}
	return sum
}
