//go:build linux

package loadgen

import (
	"os/exec"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestGroupCPUKeepsAWorkerThatExited: a load run's CPU per process is the
// difference of two Group.Sample calls, each the sum over the pids alive
// at that moment. A gateway worker that exits between them (a crash, or
// the watchdog's SIGKILL, after which the supervisor starts another) takes
// all of its CPU time out of the second sum: the workers' CPU for the
// window comes out too low, here negative. The supervisor reaped it, so
// its time is in the supervisor's cutime/cstime (fields 16 and 17 of
// /proc/<pid>/stat), which ReadProc does not read.
func TestGroupCPUKeepsAWorkerThatExited(t *testing.T) {
	// The "supervisor": a shell with one busy child, which it kills and
	// reaps when told on stdin, then waits for EOF.
	sup := exec.Command("sh", "-c", `sh -c 'while :; do :; done' & c=$!; read x; kill $c; wait $c; read y`)
	stdin, err := sup.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = sup.Process.Kill(); _ = sup.Wait() })
	workers := Group{Name: ProcWorkers, Pid: sup.Process.Pid, KidsOnly: true}
	gateway := Group{Name: ProcGateway, Pid: sup.Process.Pid, WithKids: true}
	testkit.Eventually(t, 10*time.Second, "the worker has run 100 ms", func() bool {
		return workers.Sample().CPU >= 100*time.Millisecond
	})
	beforeW, beforeG := workers.Sample(), gateway.Sample()
	if _, err := stdin.Write([]byte("stop\n")); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the worker has exited and been reaped", func() bool {
		return len(Children(sup.Process.Pid)) == 0
	})
	afterW, afterG := workers.Sample(), gateway.Sample()
	if d := afterW.CPU - beforeW.CPU; d < 0 {
		t.Errorf("%s CPU over the window: %s (before %s, after %s): a worker's CPU time vanished when it exited", ProcWorkers, d, beforeW.CPU, afterW.CPU)
	}
	if d := afterG.CPU - beforeG.CPU; d < 0 {
		t.Errorf("%s CPU over the window: %s (before %s, after %s): a worker's CPU time vanished when it exited", ProcGateway, d, beforeG.CPU, afterG.CPU)
	}
}
