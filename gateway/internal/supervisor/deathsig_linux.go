package supervisor

import (
	"context"
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel send the worker SIGTERM when the thread
// that started it exits (Pdeathsig), so a worker never outlives a
// supervisor that was killed.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// StopWithParent returns ctx with its cancel function: on Linux the kernel
// stops a worker whose supervisor died (setDeathSignal), so there is
// nothing to watch.
func StopWithParent(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}
