package supervisor

import (
	"os"
	"os/exec"
	"strconv"

	"github.com/switchboard/switchboard/gateway/internal/config"
)

// WorkerEnv is the environment variable that tells a gateway process it is
// worker number N, not a supervisor; the config package reads it.
const WorkerEnv = config.WorkerIndexEnv

// ListenerFD is the file descriptor a worker finds its listener on.
const ListenerFD = 3

// ExecStart returns a StartFunc that runs the executable at path with args as
// a worker, inheriting stdout, stderr and the environment, plus env
// (KEY=value, which win over inherited ones). On Linux the worker is sent
// SIGTERM if the supervisor dies; elsewhere the worker watches for that
// itself (StopWithParent).
func ExecStart(path string, args, env []string) StartFunc {
	return func(index int, ln *os.File) (Process, error) {
		cmd := exec.Command(path, args...)
		cmd.Env = append(append(os.Environ(), env...), WorkerEnv+"="+strconv.Itoa(index))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.ExtraFiles = []*os.File{ln}
		setDeathSignal(cmd)
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return execProcess{cmd}, nil
	}
}

type execProcess struct{ cmd *exec.Cmd }

func (p execProcess) Pid() int                   { return p.cmd.Process.Pid }
func (p execProcess) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }
func (p execProcess) Wait() error                { return p.cmd.Wait() }
