//go:build !linux

package supervisor

import (
	"context"
	"os"
	"os/exec"
)

// setDeathSignal does nothing: only Linux has Pdeathsig. The worker
// watches its parent instead (StopWithParent).
func setDeathSignal(*exec.Cmd) {}

// StopWithParent returns a context that also ends when this worker's
// supervisor dies, which it notices by being handed to another parent
// within parentPoll: without Pdeathsig nothing else tells a worker, and a
// worker must not outlive its supervisor, holding the port.
func StopWithParent(ctx context.Context) (context.Context, context.CancelFunc) {
	return watchParent(ctx, os.Getppid, parentPoll)
}
