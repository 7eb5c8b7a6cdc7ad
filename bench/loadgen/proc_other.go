//go:build !linux

package loadgen

// ReadProc reads the RSS and CPU time of pid from ps(1): only Linux has
// /proc.
func ReadProc(pid int) (ProcStat, error) { return psStat(pid) }

// Children returns the pids of pid's direct children, from pgrep(1).
func Children(pid int) []int { return psChildren(pid) }
